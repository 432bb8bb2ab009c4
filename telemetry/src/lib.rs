//! OpenTelemetry for `ekycd`: a span per RPC and child spans for the steps
//! of a Verify that cost time, and the service's metrics, both over OTLP
//! (gRPC) to a collector.
//!
//! Two rules shape it:
//!
//! - **Nothing personal leaves.** Spans carry only the attributes set here
//!   ([`Telemetry::rpc_span`], [`Telemetry::step`]): method names, status
//!   codes, error types, step names. No request value is ever passed in, so
//!   none can be exported; `service/tests/telemetry.rs` receives everything
//!   a real `ekycd` exports and searches it for the loaded citizens' data.
//! - **An absent collector costs nothing.** Ended spans go into a bounded
//!   queue ([`spans::BoundedProcessor`]); a full queue drops the span and
//!   counts it, a failed or slow export drops its batch and counts it. No
//!   call ever waits for the collector.
//!
//! The metrics are the same readings the Prometheus endpoint serves
//! ([`Reading`], read at collection time), plus the semantic-convention
//! call duration histogram `rpc.server.call.duration`.

mod spans;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::metrics::{Histogram, Meter, MeterProvider as _};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

pub use opentelemetry::context::FutureExt;

/// How telemetry is exported (`[telemetry]` in the service's config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The collector's OTLP gRPC endpoint, e.g. `http://collector:4317`
    /// (checked by the caller's configuration: an `http(s)://` URL).
    pub otlp_endpoint: String,
    /// `service.name` of the resource.
    pub service_name: String,
    /// `service.instance.id` (the pod or host name), if known.
    pub instance_id: Option<String>,
    /// Fraction of traces started here that are kept (a caller's sampled
    /// flag wins: the sampler is parent-based).
    pub sample_ratio: f64,
    /// Ended spans that may wait for export; more are dropped and counted.
    pub max_queued_spans: usize,
    /// Longest one export (a batch of spans, or the metrics) may take.
    pub export_timeout: Duration,
    /// How often metrics are collected and pushed.
    pub metrics_interval: Duration,
}

/// Telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The endpoint is not a URL tonic accepts, or the exporter failed to build.
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(String),
}

/// What export dropped, for the service's own metrics: telemetry that
/// cannot reach its collector must itself be visible somewhere else.
#[derive(Debug, Default)]
pub struct Dropped {
    /// Spans dropped: queue full, or their export failed or timed out.
    pub spans: AtomicU64,
    /// Metric exports that failed or timed out.
    pub metric_exports: AtomicU64,
}

/// The kind of a metric reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows (exported as a monotonic sum).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One metric read off the service's atomics at collection time: the
/// Prometheus endpoint and OTLP export the same readings.
#[derive(Debug, Clone)]
pub struct Reading {
    /// The metric's name (Prometheus adds `_total` to counters).
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The values: one without labels, or one per value of a single label.
    pub samples: Samples,
}

/// A reading's values.
#[derive(Debug, Clone)]
pub enum Samples {
    /// One value, no labels.
    One(u64),
    /// One value per value of a single label: `((label, value), count)`.
    Labeled(Vec<((&'static str, &'static str), u64)>),
}

/// Reads every metric; called once per collection.
pub type ReadAll = Arc<dyn Fn() -> Vec<Reading> + Send + Sync>;

/// The telemetry handle every part that records something holds. Cheap to
/// clone; [`Telemetry::off`] records nothing and costs a branch.
#[derive(Clone, Default)]
pub struct Telemetry(Option<Arc<Inner>>);

struct Inner {
    tracer: SdkTracer,
    traces: SdkTracerProvider,
    meters: SdkMeterProvider,
    meter: Meter,
    rpc_duration: Histogram<f64>,
    dropped: Arc<Dropped>,
    propagator: TraceContextPropagator,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Telemetry(on)"
        } else {
            "Telemetry(off)"
        })
    }
}

impl Telemetry {
    /// Nothing recorded, nothing exported.
    pub fn off() -> Telemetry {
        Telemetry(None)
    }

    /// Starts the exporters. Must run inside a Tokio runtime: the OTLP
    /// client and the span queue's task live on it. Nothing connects yet;
    /// an unreachable collector only shows up as dropped telemetry.
    pub fn start(settings: &Settings) -> Result<Telemetry, StartError> {
        use opentelemetry_otlp::WithExportConfig as _;
        let mut resource = Resource::builder().with_service_name(settings.service_name.clone());
        if let Some(id) = &settings.instance_id {
            resource = resource.with_attribute(KeyValue::new("service.instance.id", id.clone()));
        }
        let resource = resource
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let dropped = Arc::new(Dropped::default());
        let exporter_error =
            |e: opentelemetry_otlp::ExporterBuildError| StartError::Exporter(e.to_string());
        let span_exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.otlp_endpoint.clone())
            .with_timeout(settings.export_timeout)
            .build()
            .map_err(exporter_error)?;
        let processor = spans::BoundedProcessor::start(
            span_exporter,
            &resource,
            settings.max_queued_spans,
            settings.export_timeout,
            Arc::clone(&dropped),
        );
        let traces = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(resource.clone())
            .build();
        let tracer = traces.tracer("ekycd");

        let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(settings.otlp_endpoint.clone())
            .with_timeout(settings.export_timeout)
            .build()
            .map_err(exporter_error)?;
        let reader = PeriodicReader::builder(spans::CountingMetricExporter {
            inner: metric_exporter,
            dropped: Arc::clone(&dropped),
        })
        .with_interval(settings.metrics_interval)
        .build();
        let meters = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        let meter = meters.meter("ekycd");
        let rpc_duration = meter
            .f64_histogram("rpc.server.call.duration")
            .with_unit("s")
            .with_description(
                "Time on the server of each RPC, from its request head to its last frame",
            )
            .with_boundaries(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
                0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
            ])
            .build();
        Ok(Telemetry(Some(Arc::new(Inner {
            tracer,
            traces,
            meters,
            meter,
            rpc_duration,
            dropped,
            propagator: TraceContextPropagator::new(),
        }))))
    }

    /// Whether anything is recorded.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// What export has dropped so far (zero when off).
    pub fn dropped(&self) -> (u64, u64) {
        self.0.as_ref().map_or((0, 0), |i| {
            (
                i.dropped.spans.load(Ordering::Relaxed),
                i.dropped.metric_exports.load(Ordering::Relaxed),
            )
        })
    }

    /// Exports `read`'s metrics at every collection: one observable
    /// instrument per reading it returns now (the set of names is fixed).
    pub fn observe(&self, read: ReadAll) {
        let Some(inner) = &self.0 else { return };
        for reading in read() {
            let name = reading.name;
            let read = Arc::clone(&read);
            // Each instrument reads all and reports its own: the readings
            // are a few dozen atomics, collected once a minute.
            let observe = move || {
                read()
                    .into_iter()
                    .find(|r| r.name == name)
                    .map(|r| r.samples)
            };
            match reading.kind {
                Kind::Counter => {
                    inner
                        .meter
                        .u64_observable_counter(name)
                        .with_description(reading.help)
                        .with_callback(move |o| {
                            for (value, attrs) in flatten(observe()) {
                                o.observe(value, &attrs);
                            }
                        })
                        .build();
                }
                Kind::Gauge => {
                    inner
                        .meter
                        .u64_observable_gauge(name)
                        .with_description(reading.help)
                        .with_callback(move |o| {
                            for (value, attrs) in flatten(observe()) {
                                o.observe(value, &attrs);
                            }
                        })
                        .build();
                }
            }
        }
    }

    /// Starts the server span of one RPC, a child of the caller's trace if
    /// its metadata carries a W3C `traceparent`. `method` is the full
    /// `package.Service/Method`, or `_OTHER` for a path the server does not
    /// know (so a client cannot grow the set of span names).
    pub fn rpc_span(&self, method: String, headers: &http::HeaderMap) -> RpcSpan {
        let Some(inner) = &self.0 else {
            return RpcSpan(None);
        };
        let parent = inner.propagator.extract(&Headers(headers));
        let span = inner
            .tracer
            .span_builder(method.clone())
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("rpc.system.name", "grpc"),
                KeyValue::new("rpc.method", method.clone()),
            ])
            .start_with_context(&inner.tracer, &parent);
        RpcSpan(Some(RpcSpanInner {
            cx: parent.with_span(span),
            method,
            started: Instant::now(),
            telemetry: Arc::clone(inner),
        }))
    }

    /// A child span of the current RPC for one step of its work (`hash`,
    /// `store.lookup`, `ledger.write`); it ends when dropped. No span
    /// outside an RPC: there is nothing to hang it on.
    pub fn step(&self, name: &'static str) -> Step {
        let Some(inner) = &self.0 else {
            return Step(None);
        };
        let cx = Context::current();
        if !cx.span().span_context().is_valid() {
            return Step(None);
        }
        Step(Some(
            inner
                .tracer
                .span_builder(name)
                .with_kind(SpanKind::Internal)
                .start_with_context(&inner.tracer, &cx),
        ))
    }

    /// Exports what is queued and stops, within `bound`. Blocking: call it
    /// off the async threads (`spawn_blocking`).
    pub fn shutdown(&self, bound: Duration) {
        let Some(inner) = &self.0 else { return };
        if let Err(e) = inner.traces.shutdown_with_timeout(bound) {
            tracing::debug!(error = %e, "span export did not finish at shutdown");
        }
        if let Err(e) = inner.meters.shutdown_with_timeout(bound) {
            tracing::debug!(error = %e, "metric export did not finish at shutdown");
        }
    }

    /// Exports the metrics now (tests, and before shutdown).
    pub fn flush_metrics(&self) {
        if let Some(inner) = &self.0 {
            let _ = inner.meters.force_flush();
        }
    }
}

/// The server span of one RPC; see [`Telemetry::rpc_span`].
pub struct RpcSpan(Option<RpcSpanInner>);

struct RpcSpanInner {
    cx: Context,
    method: String,
    started: Instant,
    telemetry: Arc<Inner>,
}

impl RpcSpan {
    /// No span (telemetry off).
    pub fn none() -> RpcSpan {
        RpcSpan(None)
    }

    /// The context the call's handler runs in (its steps' parent), if
    /// telemetry is on.
    pub fn context(&self) -> Option<Context> {
        self.0.as_ref().map(|s| s.cx.clone())
    }

    /// Ends the span with the call's gRPC status code name (`OK`,
    /// `UNAVAILABLE`, ...) and records its duration.
    pub fn finish(self, code: &'static str) {
        let Some(s) = self.0 else { return };
        let elapsed = s.started.elapsed();
        let span = s.cx.span();
        span.set_attribute(KeyValue::new("rpc.response.status_code", code));
        let mut attributes = vec![
            KeyValue::new("rpc.system.name", "grpc"),
            KeyValue::new("rpc.method", s.method),
            KeyValue::new("rpc.response.status_code", code),
        ];
        if server_error(code) {
            span.set_attribute(KeyValue::new("error.type", code));
            span.set_status(Status::error(code));
            attributes.push(KeyValue::new("error.type", code));
        }
        span.end();
        s.telemetry
            .rpc_duration
            .record(elapsed.as_secs_f64(), &attributes);
    }
}

/// Whether a status code is an error of the server's, per the gRPC
/// semantic conventions (a refusal of the caller's request is not).
fn server_error(code: &str) -> bool {
    matches!(
        code,
        "UNKNOWN"
            | "DEADLINE_EXCEEDED"
            | "UNIMPLEMENTED"
            | "INTERNAL"
            | "UNAVAILABLE"
            | "DATA_LOSS"
    )
}

/// One step of an RPC's work; ends when dropped.
pub struct Step(Option<opentelemetry_sdk::trace::Span>);

impl Step {
    /// Marks the step failed, with a stable error type (a reason name,
    /// never a message that could carry input).
    pub fn fail(&mut self, error_type: &'static str) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(KeyValue::new("error.type", error_type));
            span.set_status(Status::error(error_type));
        }
    }
}

/// Incoming metadata as the propagator reads it.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// A reading's samples as values with their attributes.
fn flatten(samples: Option<Samples>) -> Vec<(u64, Vec<KeyValue>)> {
    match samples {
        None => Vec::new(),
        Some(Samples::One(v)) => vec![(v, Vec::new())],
        Some(Samples::Labeled(values)) => values
            .into_iter()
            .map(|((k, v), n)| (n, vec![KeyValue::new(k, v)]))
            .collect(),
    }
}
