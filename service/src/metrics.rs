//! What the server counts, and the Prometheus scrape endpoint
//! (`GET /metrics`), through `prometheus-client` (the official Rust client,
//! OpenMetrics text).
//!
//! Metrics carry no personal data: labels are methods, status codes,
//! outcomes, reasons, limit names and tenant ids, never a subject, a claim
//! or a request value. The endpoint is served by hyper over HTTP/1.1 on its
//! own port (usually not exposed outside the cluster), so the gRPC port
//! stays HTTP/2-only.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ekyc_limits::LimitStats;
use ekyc_telemetry::{Kind, Reading, Samples};
use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::App;

/// One label, e.g. `("outcome", "answered")`.
type Label = [(&'static str, String); 1];
/// An RPC's service and method (`ekyc.v1.BillingService`, `ExportInvoice`).
type MethodLabels = [(&'static str, String); 2];
/// An RPC's service, method and status code name (`OK`, `NOT_FOUND`).
type CallLabels = [(&'static str, String); 3];

/// The latency buckets of every RPC, in seconds: 0.5 ms doubling to about
/// 16 s, which brackets a cheap refusal (well under a millisecond), one
/// Argon2 evaluation (tens of ms) and a queue at its deadline.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

/// Everything the server counts itself (the hashing pool, the limiter and
/// the transport keep their own atomics, read at each scrape).
#[derive(Debug)]
pub struct Counters {
    /// Verify calls: `answered`, or the refusal's `ErrorInfo` reason.
    verify: Family<Label, Counter>,
    /// Per tenant id: what its calls did to subjects' guard allowances.
    /// Anyone with a verifier key can lock a citizen out of every bank by
    /// sending wrong answers; these show who does.
    guard_failures: Family<Label, Counter>,
    guard_lockouts: Family<Label, Counter>,
    guard_refusals: Family<Label, Counter>,
    /// Every RPC by service, method and status code.
    rpc_calls: Family<CallLabels, Counter>,
    /// Every RPC's time on the server, by service and method.
    rpc_seconds: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            verify: Family::default(),
            guard_failures: Family::default(),
            guard_lockouts: Family::default(),
            guard_refusals: Family::default(),
            rpc_calls: Family::default(),
            rpc_seconds: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
        }
    }
}

/// One tenant's effect on the subject guard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GuardCounts {
    /// Its unsuccessful answers, each of which used some subject's allowance.
    pub failures: u64,
    /// Its failures that used up a subject's allowance (locked it out).
    pub lockouts: u64,
    /// Its calls refused because the subject was locked out.
    pub refusals: u64,
}

fn label(name: &'static str, value: &str) -> Label {
    [(name, value.to_string())]
}

impl Counters {
    /// Counts one Verify outcome.
    pub fn verify_outcome(&self, outcome: &'static str) {
        self.verify.get_or_create(&label("outcome", outcome)).inc();
    }

    /// Counts a settled guard attempt of `tenant`.
    pub fn guard_settled(&self, tenant: &str, failed: bool, locked_out: bool) {
        let tenant = label("tenant", tenant);
        if failed {
            self.guard_failures.get_or_create(&tenant).inc();
        }
        if locked_out {
            self.guard_lockouts.get_or_create(&tenant).inc();
        }
    }

    /// Counts a call of `tenant` refused by the guard.
    pub fn guard_refused(&self, tenant: &str) {
        self.guard_refusals
            .get_or_create(&label("tenant", tenant))
            .inc();
    }

    /// What `tenant`'s calls did to the guard so far.
    pub fn guard_counts(&self, tenant: &str) -> GuardCounts {
        let tenant = label("tenant", tenant);
        let get = |f: &Family<Label, Counter>| f.get(&tenant).map_or(0, |c| c.get());
        GuardCounts {
            failures: get(&self.guard_failures),
            lockouts: get(&self.guard_lockouts),
            refusals: get(&self.guard_refusals),
        }
    }

    /// Verify calls with this outcome so far.
    pub fn verify_count(&self, outcome: &str) -> u64 {
        self.verify
            .get(&label("outcome", outcome))
            .map_or(0, |c| c.get())
    }

    /// Counts one finished RPC: its status code and time on the server.
    pub fn rpc_finished(&self, service: &str, method: &str, code: &str, elapsed: Duration) {
        let (service, method) = (service.to_string(), method.to_string());
        self.rpc_seconds
            .get_or_create(&[("service", service.clone()), ("method", method.clone())])
            .observe(elapsed.as_secs_f64());
        self.rpc_calls
            .get_or_create(&[
                ("service", service),
                ("method", method),
                ("code", code.to_string()),
            ])
            .inc();
    }

    /// RPCs of `method` that ended with `code` so far.
    pub fn rpc_count(&self, service: &str, method: &str, code: &str) -> u64 {
        self.rpc_calls
            .get(&[
                ("service", service.to_string()),
                ("method", method.to_string()),
                ("code", code.to_string()),
            ])
            .map_or(0, |c| c.get())
    }
}

/// The OpenMetrics text of everything the server counts.
pub fn render(app: &App) -> String {
    let c = &app.counters;
    let mut registry = Registry::default();
    // The families are shared handles: registering clones exposes the
    // live counts. (The library ends each help text with a full stop.)
    registry.register(
        "ekyc_rpc_calls",
        "RPCs by service, method and gRPC status code",
        c.rpc_calls.clone(),
    );
    registry.register(
        "ekyc_rpc_duration_seconds",
        "Time on the server of each RPC, from its request head to its last frame",
        c.rpc_seconds.clone(),
    );
    registry.register(
        "ekyc_verify_calls",
        "Verify calls by outcome: answered, or the refusal's ErrorInfo reason",
        c.verify.clone(),
    );
    registry.register(
        "ekyc_subject_guard_failures",
        "Unsuccessful answers counted against a subject's allowance, by tenant",
        c.guard_failures.clone(),
    );
    registry.register(
        "ekyc_subject_guard_lockouts",
        "Unsuccessful answers that used up a subject's allowance (locked it out), by tenant",
        c.guard_lockouts.clone(),
    );
    registry.register(
        "ekyc_subject_guard_refusals",
        "Calls refused because their subject was locked out, by tenant",
        c.guard_refusals.clone(),
    );
    registry.register_collector(Box::new(Snapshot(readings(app))));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The readings of the hashing pool, the limiter, the transport, the
/// errors answered, the keys and the telemetry export, as they stand now:
/// what the scrape endpoint serves beside the families above, and what
/// OTLP pushes (`ekyc_telemetry::Telemetry::observe`).
pub fn readings(app: &App) -> Vec<Reading> {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let size = |c: &std::sync::atomic::AtomicUsize| c.load(Ordering::Relaxed) as u64;
    let one = Samples::One;
    let counter = |name, help, samples| Reading {
        name,
        help,
        kind: Kind::Counter,
        samples,
    };
    let gauge = |name, help, samples| Reading {
        name,
        help,
        kind: Kind::Gauge,
        samples,
    };
    let pool = app.pool.stats();
    let limits = app.limiter.stats();
    let get = LimitStats::get;
    let t = &app.transport_stats;
    let (spans_dropped, metric_exports_dropped) = app.telemetry.dropped();
    let mut readings = vec![
        counter(
            "ekyc_argon2_evaluations",
            "Argon2id evaluations completed.",
            one(load(&pool.evaluations)),
        ),
        gauge(
            "ekyc_argon2_in_flight",
            "Argon2id evaluations running now.",
            one(size(&pool.in_flight)),
        ),
        gauge(
            "ekyc_argon2_threads",
            "Hashing threads: the evaluations that can run at once (utilisation is ekyc_argon2_in_flight over this).",
            one(app.pool.threads() as u64),
        ),
        counter(
            "ekyc_argon2_shed",
            "Calls shed because every hashing thread was busy and the queue full.",
            one(load(&pool.shed)),
        ),
        gauge(
            "ekyc_argon2_queued",
            "Jobs waiting for a hashing thread now, by lane (unary calls first).",
            Samples::Labeled(vec![
                (("lane", "interactive"), size(&pool.queued)),
                (("lane", "batch"), size(&pool.batch_queued)),
            ]),
        ),
        counter(
            "ekyc_argon2_batch_evaluations",
            "Argon2id evaluations of VerifyBatch items (included in ekyc_argon2_evaluations).",
            one(load(&pool.batch_evaluations)),
        ),
        counter(
            "ekyc_argon2_expired",
            "Queued calls dropped because their deadline passed.",
            one(load(&pool.expired)),
        ),
        counter(
            "ekyc_limit_rejections",
            "Calls refused by a limit.",
            Samples::Labeled(vec![
                (("limit", "rate"), get(&limits.rate_limited)),
                (("limit", "quota"), get(&limits.quota_exceeded)),
                (("limit", "subject_guard"), get(&limits.guard_tripped)),
            ]),
        ),
        counter(
            "ekyc_subject_guard_trips",
            "Calls refused because their subject had too many unsuccessful answers.",
            one(get(&limits.guard_tripped)),
        ),
        counter(
            "ekyc_transport_refusals",
            "Requests or connections refused by a transport limit.",
            Samples::Labeled(vec![
                (("reason", "message_too_large"), load(&t.too_large)),
                (("reason", "request_buffers_full"), load(&t.buffers_full)),
                (("reason", "connection_limit"), load(&t.connections_refused)),
            ]),
        ),
        gauge(
            "ekyc_transport_connections",
            "Open client connections.",
            one(size(&t.connections)),
        ),
        gauge(
            "ekyc_transport_buffered_request_bytes",
            "Bytes reserved for partly received request messages, server-wide.",
            one(size(&t.buffered_bytes)),
        ),
        counter(
            "ekyc_redis_errors",
            "Redis calls of the limits layer that failed or timed out.",
            one(get(&limits.redis_errors)),
        ),
        counter(
            "ekyc_limit_fallbacks",
            "Limit checks decided by the failure policy because Redis was unreachable.",
            Samples::Labeled(vec![
                (("limit", "rate"), get(&limits.rate_fallbacks)),
                (("limit", "quota"), get(&limits.quota_fallbacks)),
                (("limit", "subject_guard"), get(&limits.guard_fallbacks)),
            ]),
        ),
        counter(
            "ekyc_errors",
            "Errors answered on any RPC since the process started, by ErrorInfo reason (STORE_UNAVAILABLE: the database; LEDGER_UNAVAILABLE: the usage ledger; LIMITS_UNAVAILABLE: Redis under a closed policy).",
            Samples::Labeled(
                crate::error::answered_errors()
                    .map(|(reason, n)| (("reason", reason.as_str()), n))
                    .collect(),
            ),
        ),
        gauge(
            "ekyc_signing_key_created_timestamp_seconds",
            "When the attestation signing key in use started signing (unix seconds).",
            one((app.signing_key_since_ms / 1000).max(0) as u64),
        ),
        counter(
            "ekyc_telemetry_dropped",
            "OpenTelemetry data not delivered to the collector: spans dropped (queue full, export failed or slow), metric exports failed.",
            Samples::Labeled(vec![
                (("signal", "spans"), spans_dropped),
                (("signal", "metrics"), metric_exports_dropped),
            ]),
        ),
    ];
    if let Some(not_after) = app.tls_not_after_secs {
        readings.push(gauge(
            "ekyc_tls_certificate_expiry_timestamp_seconds",
            "When the server's TLS certificate expires (unix seconds).",
            one(not_after.max(0) as u64),
        ));
    }
    readings
}

/// [`readings`] as a `prometheus-client` collector.
#[derive(Debug)]
struct Snapshot(Vec<Reading>);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for read in &self.0 {
            let kind = match read.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(read.name, read.help, None, kind)?;
            match &read.samples {
                Samples::One(value) => sample(kind, metric, *value)?,
                Samples::Labeled(samples) => {
                    for (label, value) in samples {
                        let label = [*label];
                        sample(kind, metric.encode_family(&label)?, *value)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes one sample of a counter or gauge.
fn sample(kind: MetricType, encoder: MetricEncoder<'_>, value: u64) -> Result<(), std::fmt::Error> {
    match kind {
        MetricType::Gauge => ConstGauge::new(value as i64).encode(encoder),
        _ => ConstCounter::new(value).encode(encoder),
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes. A
/// failed accept (say, out of file descriptors) is logged and retried
/// after a pause instead of spinning.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let app = Arc::clone(&app);
                async move { Ok::<_, Infallible>(answer(&app, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                // One scrape per connection: scrapers reconnect anyway, and
                // an idle scraper then holds nothing.
                .keep_alive(false)
                .header_read_timeout(Duration::from_secs(5))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // A scraper that stalls must not hold a task forever.
            let _ = tokio::time::timeout(Duration::from_secs(10), connection).await;
        });
    }
}

/// The answer to one HTTP request on the metrics port.
fn answer<B>(app: &App, request: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) =
        if request.method() == http::Method::GET && request.uri().path() == "/metrics" {
            (
                http::StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                render(app),
            )
        } else {
            (
                http::StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "only GET /metrics is served here\n".to_string(),
            )
        };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
