//! The one tower stack every RPC passes through before its handler, built
//! in [`layers`].
//!
//! Authentication, validation and the limits are not here: they run inside
//! the Verify chain (`verify.rs`), in the order that keeps everything
//! before hashing cheap. What is here sees every call, authenticated or
//! not: the transport limits and the call's telemetry.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use tonic::Status;
use tonic::body::Body;
use tower_layer::{Layer, Stack};
use tracing::Instrument;

use ekyc_telemetry::{FutureExt as _, Telemetry};

use crate::metrics::Counters;
use crate::transport::MessageLimitLayer;

/// The server's layers, outermost first:
///
/// 1. [`RpcLayer`]: a tracing span per call (service, method, then the
///    tenant once authenticated and the status code at the end; never a
///    request value), the OpenTelemetry server span when telemetry is on
///    (continuing the caller's `traceparent`; the handler runs in its
///    context, so its steps are children), and the per-method call counts
///    and latency histograms. Outermost, so it also counts the calls the layers below
///    refuse, and times the whole call. It also bounds each call's time:
///    `transport.request_timeout_secs`, or for a registry import stream
///    (which lasts as long as its hashing) `transport.import_timeout_secs`;
///    a caller's shorter `grpc-timeout` wins.
/// 2. [`MessageLimitLayer`]: each request body checked against its
///    service's message limit and the server-wide buffer budget, before
///    tonic reserves a buffer for it (see `transport.rs`).
///
/// The HTTP/2 settings (streams, windows, keepalive, connection age) and
/// the connection limit act below the stack, in `grpc::run`.
pub fn layers(
    counters: Arc<Counters>,
    telemetry: Telemetry,
    limits: MessageLimitLayer,
    timeouts: CallTimeouts,
) -> Stack<MessageLimitLayer, RpcLayer> {
    Stack::new(
        limits,
        RpcLayer {
            counters,
            telemetry,
            timeouts,
        },
    )
}

/// How long a call may take on the server.
#[derive(Debug, Clone, Copy)]
pub struct CallTimeouts {
    /// Every call but the registry operator's.
    pub request: Duration,
    /// `RegistryService` calls: an import stream, and the publish and purge
    /// that rewrite or delete a whole pepper's rows.
    pub import: Duration,
}

/// The service whose calls last as long as the registry work they do.
const REGISTRY_PATH: &str = "/ekyc.v1.RegistryService/";

/// Telemetry and the time bound of every call: see [`layers`].
#[derive(Clone)]
pub struct RpcLayer {
    counters: Arc<Counters>,
    telemetry: Telemetry,
    timeouts: CallTimeouts,
}

impl<S> Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Rpc<S> {
        Rpc {
            inner,
            counters: Arc::clone(&self.counters),
            telemetry: self.telemetry.clone(),
            timeouts: self.timeouts,
        }
    }
}

/// The service [`RpcLayer`] makes.
#[derive(Clone)]
pub struct Rpc<S> {
    inner: S,
    counters: Arc<Counters>,
    telemetry: Telemetry,
    timeouts: CallTimeouts,
}

/// The services whose methods are named in metrics as they are; any other
/// path is counted as `other`, so a client cannot grow the label set.
const KNOWN_SERVICES: [&str; 6] = [
    "ekyc.v1.VerificationService",
    "ekyc.v1.TenantAdminService",
    "ekyc.v1.BillingService",
    "ekyc.v1.RegistryService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
];

/// The service and method of a gRPC path (`/pkg.Service/Method`), as
/// static strings from the known set.
fn rpc_name(path: &str) -> (&'static str, &'static str) {
    let other = ("other", "other");
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return other;
    };
    let Some(service) = KNOWN_SERVICES.iter().find(|s| **s == service) else {
        return other;
    };
    let known_method = crate::authz::RULES
        .iter()
        .map(|r| r.method)
        .chain(["Check", "Watch", "ServerReflectionInfo"])
        .find(|m| *m == method);
    match known_method {
        Some(method) => (service, method),
        None => (service, "other"),
    }
}

impl<S> tower_service::Service<http::Request<Body>> for Rpc<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (service, method) = rpc_name(request.uri().path());
        let limit = if request.uri().path().starts_with(REGISTRY_PATH) {
            self.timeouts.import
        } else {
            self.timeouts.request
        };
        let span = tracing::info_span!(
            "rpc",
            service,
            method,
            tenant = tracing::field::Empty,
            code = tracing::field::Empty,
        );
        // The OpenTelemetry span: named by the method's full name, or
        // `_OTHER` (the conventions' name for an unknown method).
        let otel = if self.telemetry.is_on() {
            let name = match (service, method) {
                ("other", _) | (_, "other") => "_OTHER".to_string(),
                _ => format!("{service}/{method}"),
            };
            self.telemetry.rpc_span(name, request.headers())
        } else {
            ekyc_telemetry::RpcSpan::none()
        };
        let context = otel.context();
        let finish = Finish {
            counters: Arc::clone(&self.counters),
            service,
            method,
            started: Instant::now(),
            span: span.clone(),
            otel,
        };
        // The handler runs inside the span, so `auth` can record the
        // tenant on it, and inside the OpenTelemetry context, so its steps
        // are children of the call.
        let response = self.inner.call(request).instrument(span);
        Box::pin(async move {
            let timed = match context {
                Some(cx) => tokio::time::timeout(limit, response.with_context(cx)).await,
                None => tokio::time::timeout(limit, response).await,
            };
            let Ok(response) = timed else {
                // What tonic's own server timeout answers.
                finish.record("CANCELLED");
                return Ok(Status::cancelled("Timeout expired").into_http());
            };
            let response = response?;
            // An error is sent as headers only (grpc-status among them);
            // an answer's status comes in the trailers after its body.
            if let Some(code) = grpc_status(response.headers()) {
                finish.record(code);
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(RpcBody {
                    inner: body,
                    finish: Some(finish),
                })
            }))
        })
    }
}

/// What is recorded when a call ends.
struct Finish {
    counters: Arc<Counters>,
    service: &'static str,
    method: &'static str,
    started: Instant,
    span: tracing::Span,
    otel: ekyc_telemetry::RpcSpan,
}

impl Finish {
    fn record(self, code: &'static str) {
        let elapsed = self.started.elapsed();
        self.span.record("code", code);
        tracing::debug!(
            parent: &self.span,
            elapsed_us = elapsed.as_micros() as u64,
            "call finished"
        );
        self.counters
            .rpc_finished(self.service, self.method, code, elapsed);
        self.otel.finish(code);
    }
}

/// A response body that records its call when the trailers pass, or as
/// `CANCELLED` when it is dropped before (the client went away).
struct RpcBody {
    inner: Body,
    finish: Option<Finish>,
}

impl http_body::Body for RpcBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|t| grpc_status(t).unwrap_or("UNKNOWN")),
            Some(Err(_)) => Some("INTERNAL"),
            None => Some("UNKNOWN"),
        };
        if let Some(code) = code
            && let Some(finish) = self.finish.take()
        {
            finish.record(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RpcBody {
    fn drop(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish.record("CANCELLED");
        }
    }
}

/// The gRPC status code name in `headers`, if they carry one.
fn grpc_status(headers: &http::HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(ekyc_proto::code_name(tonic::Code::from_i32(
        value.parse().ok()?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_are_named() {
        assert_eq!(
            rpc_name("/ekyc.v1.BillingService/ExportInvoice"),
            ("ekyc.v1.BillingService", "ExportInvoice")
        );
        assert_eq!(
            rpc_name("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            rpc_name("/ekyc.v1.BillingService/Mine"),
            ("ekyc.v1.BillingService", "other")
        );
        for path in ["/evil.Service/Verify", "/", "", "no-slash", "/a/b/c"] {
            assert_eq!(rpc_name(path), ("other", "other"), "{path}");
        }
    }

    #[test]
    fn status_codes_by_name() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", http::HeaderValue::from_static("8"));
        assert_eq!(grpc_status(&h), Some("RESOURCE_EXHAUSTED"));
        h.insert("grpc-status", http::HeaderValue::from_static("99"));
        assert_eq!(grpc_status(&h), Some("UNKNOWN"));
    }
}
