//! OpenTelemetry as a platform engineer sees it: a real `ekycd` process
//! exporting to a collector (here an in-test OTLP receiver implementing
//! the collector's trace and metrics services), with the RPC semantic
//! conventions, the caller's trace continued, and nothing personal in
//! anything it sends; and, with the collector gone, calls that do not
//! notice while the loss is counted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ekyc_client::{Client, v1 as pb};
use ekyc_service::store::TenantPolicy;
use ekyc_service::test_support::{http_get, personal_values, prepare_data_dir};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;

/// What the receiver was sent.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
}

/// The collector's two services, keeping every request.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .expect("lock")
            .traces
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .expect("lock")
            .metrics
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves the receiver on a free loopback port; its `http://` URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (traces, metrics) = (self.clone(), self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(traces))
                .add_service(MetricsServiceServer::new(metrics))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .expect("receiver");
        });
        format!("http://{addr}")
    }

    fn spans(&self) -> Vec<Span> {
        let received = self.0.lock().expect("lock");
        received
            .traces
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.clone())
            .collect()
    }

    fn metric_names(&self) -> Vec<String> {
        let received = self.0.lock().expect("lock");
        received
            .metrics
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| s.metrics.iter().map(|m| m.name.clone()))
            .collect()
    }
}

/// A string attribute of a span.
fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

fn verify_request(c: &ekyc_synth::Citizen, n: usize, truthful: bool) -> pb::VerifyRequest {
    pb::VerifyRequest {
        request_id: format!("otel-{n}"),
        id_number: c.id_number.clone(),
        claims: Some(pb::Claims {
            full_name: Some(if truthful {
                c.full_name.clone()
            } else {
                format!("{} Văn", c.full_name)
            }),
            date_of_birth: Some(c.date_of_birth.clone()),
            place_of_residence: Some(c.place_of_residence.clone()),
            ..Default::default()
        }),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: format!("consent-otel-{n}"),
    }
}

/// Waits up to 30 s for `ready`.
async fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_the_collector_with_the_conventions_and_nothing_personal() {
    // The caller's application propagates W3C trace context; the client
    // injects it through the global propagator.
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let dir = tempfile::tempdir().expect("dir");
    let prepared =
        prepare_data_dir(dir.path(), 40, &[("otel-bank", TenantPolicy::default())]).await;
    let mut server = prepared.start_ekycd(
        env!("CARGO_BIN_EXE_ekycd"),
        dir.path(),
        &[
            ("EKYCD_TELEMETRY__OTLP_ENDPOINT", &endpoint),
            ("EKYCD_TELEMETRY__METRICS_INTERVAL_SECS", "1"),
            ("EKYCD_TELEMETRY__INSTANCE_ID", "otel-test-pod"),
        ],
    );
    let key = &prepared.keys[0];
    let client = Client::connect(&server.endpoint, Some(key), Duration::from_secs(10))
        .await
        .expect("connect");
    let citizens: Vec<_> = ekyc_synth::citizens(42, 40).collect();

    // One call inside a trace the caller started.
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("trace id");
    let parent_id = SpanId::from_hex("00f067aa0ba902b7").expect("span id");
    let caller = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        trace_id,
        parent_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ));
    let traced = {
        use opentelemetry::context::FutureExt as _;
        client
            .verify(verify_request(&citizens[0], 0, true))
            .with_context(caller)
            .await
            .expect("traced verify")
    };
    assert_eq!(traced.response.decision(), pb::Decision::Yes);
    // More calls, true and false, a batch, and a refusal that echoes
    // nothing of what it refused.
    for (n, c) in citizens.iter().enumerate().skip(1).take(12) {
        client
            .verify(verify_request(c, n, n % 3 != 0))
            .await
            .expect("verify");
    }
    let mut bad = verify_request(&citizens[20], 999, true);
    bad.purpose_code = format!("{} BAD", citizens[20].full_name);
    assert!(
        client.verify(bad).await.is_err(),
        "a bad purpose code is refused"
    );
    let items: Vec<_> = citizens[25..30]
        .iter()
        .enumerate()
        .map(|(n, c)| verify_request(c, 500 + n, true))
        .collect();
    let mut results = client
        .verify_batch(tokio_stream::iter(items))
        .await
        .expect("batch");
    let mut answered = 0;
    while let Some(result) = results.message().await.expect("batch result") {
        assert!(matches!(
            result.outcome,
            Some(pb::verify_batch_result::Outcome::Response(_))
        ));
        answered += 1;
    }
    assert_eq!(answered, 5);

    // The traced call: a server span continuing the caller's trace, with
    // its steps as children.
    let trace = trace_id.to_bytes().to_vec();
    eventually("the traced call's spans", || {
        receiver
            .spans()
            .iter()
            .filter(|s| s.trace_id == trace)
            .count()
            >= 4
    })
    .await;
    let spans = receiver.spans();
    let in_trace: Vec<_> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let rpc = in_trace
        .iter()
        .find(|s| s.name == "ekyc.v1.VerificationService/Verify")
        .expect("the Verify server span");
    assert_eq!(
        rpc.parent_span_id,
        parent_id.to_bytes().to_vec(),
        "continues the caller's span"
    );
    assert_eq!(rpc.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(attribute(&rpc.attributes, "rpc.system.name"), Some("grpc"));
    assert_eq!(
        attribute(&rpc.attributes, "rpc.method"),
        Some("ekyc.v1.VerificationService/Verify")
    );
    assert_eq!(
        attribute(&rpc.attributes, "rpc.response.status_code"),
        Some("OK")
    );
    assert_eq!(attribute(&rpc.attributes, "error.type"), None);
    for step in ["hash", "store.lookup", "ledger.write"] {
        let child = in_trace
            .iter()
            .find(|s| s.name == step)
            .unwrap_or_else(|| panic!("no {step} span in the traced call"));
        assert_eq!(
            child.parent_span_id, rpc.span_id,
            "{step} is a child of the call"
        );
        assert!(child.end_time_unix_nano >= child.start_time_unix_nano);
    }
    // The refusal: the caller's error, not the server's (no error.type).
    let invalid = spans
        .iter()
        .find(|s| attribute(&s.attributes, "rpc.response.status_code") == Some("INVALID_ARGUMENT"))
        .expect("the refused call's span");
    assert_eq!(attribute(&invalid.attributes, "error.type"), None);
    // The batch's items hash under the VerifyBatch span.
    eventually("the batch's spans", || {
        receiver
            .spans()
            .iter()
            .any(|s| s.name == "ekyc.v1.VerificationService/VerifyBatch")
    })
    .await;

    // Metrics: the convention's call duration and the service's own.
    eventually("the metrics", || {
        let names = receiver.metric_names();
        [
            "rpc.server.call.duration",
            "ekyc_argon2_evaluations",
            "ekyc_argon2_in_flight",
            "ekyc_argon2_threads",
            "ekyc_argon2_queued",
            "ekyc_limit_rejections",
            "ekyc_subject_guard_trips",
            "ekyc_redis_errors",
            "ekyc_errors",
            "ekyc_telemetry_dropped",
        ]
        .iter()
        .all(|n| names.iter().any(|m| m == n))
    })
    .await;

    let status = server.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "ekycd exits 0: {status:?}"
    );

    // Nothing personal, and no secret, in anything received: every string
    // of every request, resource and attribute included.
    let everything = {
        let received = receiver.0.lock().expect("lock");
        format!("{:?}{:?}", received.traces, received.metrics)
    };
    assert!(
        everything.contains("otel-test-pod"),
        "sanity: the dump holds strings"
    );
    let mut needles = personal_values(&citizens);
    needles.push(key.clone());
    needles.push(key[key.len() - 16..].to_string());
    needles.push("consent-otel-".into());
    for needle in &needles {
        assert!(
            !everything.contains(needle.as_str()),
            "telemetry holds a loaded citizen's value or a secret ({} bytes)",
            needle.len()
        );
    }
    // The resource says who sent it.
    let received = receiver.0.lock().expect("lock");
    let resource = received.traces[0].resource_spans[0]
        .resource
        .as_ref()
        .expect("resource");
    assert_eq!(
        attribute(&resource.attributes, "service.name"),
        Some("ekycd")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_no_call_and_is_counted() {
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let dir = tempfile::tempdir().expect("dir");
    let prepared =
        prepare_data_dir(dir.path(), 40, &[("lost-bank", TenantPolicy::default())]).await;
    let endpoint = format!("http://{closed}");
    let mut server = prepared.start_ekycd(
        env!("CARGO_BIN_EXE_ekycd"),
        dir.path(),
        &[
            ("EKYCD_TELEMETRY__OTLP_ENDPOINT", &endpoint),
            ("EKYCD_TELEMETRY__EXPORT_TIMEOUT_MS", "500"),
            ("EKYCD_TELEMETRY__METRICS_INTERVAL_SECS", "1"),
        ],
    );
    let client = Client::connect(
        &server.endpoint,
        Some(&prepared.keys[0]),
        Duration::from_secs(10),
    )
    .await
    .expect("connect");
    let citizens: Vec<_> = ekyc_synth::citizens(42, 40).collect();
    for (n, c) in citizens.iter().enumerate().take(30) {
        let answer = client
            .verify(verify_request(c, n, true))
            .await
            .expect("answered while the collector is gone");
        assert_eq!(answer.response.decision(), pb::Decision::Yes);
    }
    // What could not be sent shows on the service's own metrics.
    let mut dropped = (0.0, 0.0);
    eventually("dropped telemetry to be counted", || {
        let text = http_get(&server.metrics, "/metrics");
        let value = |signal: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "ekyc_telemetry_dropped_total{{signal=\"{signal}\"}}"
                    ))
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        dropped = (value("spans"), value("metrics"));
        dropped.0 >= 30.0 && dropped.1 >= 1.0
    })
    .await;
    let status = server.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "ekycd exits 0: {status:?}"
    );
}
