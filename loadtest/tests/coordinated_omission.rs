//! The open loop does not suffer from coordinated omission: against a
//! server that freezes all answers for 500 ms once, latency measured from
//! each request's scheduled send time puts the stall in the p99, while a
//! closed loop (whose callers simply stop sending while they wait) reports
//! a p99 that hides it.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ekyc_loadtest::{Arrivals, Config, Mix, Mode, Report, run};
use ekyc_proto::v1 as pb;
use ekyc_proto::v1::verification_service_server::{VerificationService, VerificationServiceServer};
use tonic::{Request, Response, Status};

/// When the stall starts, after the first request, and how long it lasts.
const STALL_AFTER: Duration = Duration::from_millis(1000);
const STALL_FOR: Duration = Duration::from_millis(500);

/// Answers YES at once, except that every call arriving between 1.0 s and
/// 1.5 s after the first one is held until 1.5 s.
#[derive(Default)]
struct Staller {
    first: OnceLock<Instant>,
}

#[tonic::async_trait]
impl VerificationService for Staller {
    async fn verify(
        &self,
        _request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let now = Instant::now();
        let first = *self.first.get_or_init(|| now);
        let (from, to) = (first + STALL_AFTER, first + STALL_AFTER + STALL_FOR);
        if now >= from && now < to {
            tokio::time::sleep_until(to.into()).await;
        }
        Ok(Response::new(pb::VerifyResponse {
            decision: pb::Decision::Yes as i32,
            ..Default::default()
        }))
    }

    type VerifyBatchStream = tokio_stream::Empty<Result<pb::VerifyBatchResult, Status>>;

    async fn verify_batch(
        &self,
        _request: Request<tonic::Streaming<pb::VerifyRequest>>,
    ) -> Result<Response<Self::VerifyBatchStream>, Status> {
        Err(Status::unimplemented(
            "this baseline answers unary calls only",
        ))
    }

    async fn list_signing_keys(
        &self,
        _request: Request<pb::ListSigningKeysRequest>,
    ) -> Result<Response<pb::ListSigningKeysResponse>, Status> {
        Ok(Response::new(pb::ListSigningKeysResponse::default()))
    }
}

/// Starts a stalling server on 127.0.0.1:0 and returns its endpoint.
async fn staller() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(VerificationServiceServer::new(Staller::default()))
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}

fn config(endpoint: String, mode: Mode) -> Config {
    Config {
        endpoint,
        api_key: "test-key".into(),
        overlimit_key: None,
        mode,
        connections: 2,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(3),
        max_requests: None,
        timeout: Duration::from_secs(5),
        mix: "match=1".parse::<Mix>().unwrap(),
        citizens: 300,
        registry_seed: 42,
        rng_seed: 1,
    }
}

async fn drive(mode: Mode) -> Report {
    let report = run(&config(staller().await, mode)).await.unwrap();
    println!("{}", report.table());
    assert_eq!(
        report.total.sent, report.total.answered,
        "{:?}",
        report.total.errors
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_shows_a_stall_that_a_closed_loop_hides() {
    let began = Instant::now();
    let open = drive(Mode::Open {
        rate: 200.0,
        arrivals: Arrivals::Constant,
    })
    .await;
    let t = &open.total;
    assert!((599..=601).contains(&t.sent), "sent {}", t.sent);
    // About 100 of the 600 calls were scheduled in the 500 ms stall; the
    // 6th largest latency (p99) is about 470 ms.
    let open_p99 = t.percentile_ms(99.0);
    assert!(
        open_p99 >= 400.0,
        "open-loop p99 {open_p99} ms hides the stall"
    );
    assert!(
        t.percentile_ms(50.0) < 100.0,
        "the server is fast apart from the stall"
    );
    let svg = open.svg();
    assert_eq!(svg.matches("<polyline").count(), 2, "match and total");

    let closed = Arc::new(drive(Mode::Closed { callers: 2 }).await);
    let c = &closed.total;
    // Each caller waited through the stall once (so the max shows it), but
    // sent nothing meanwhile: two slow calls among thousands.
    assert!(c.max_ms() >= 400.0, "the closed loop did meet the stall");
    let closed_p99 = c.percentile_ms(99.0);
    assert!(
        closed_p99 < 100.0 && closed_p99 * 4.0 < open_p99,
        "closed-loop p99 {closed_p99} ms vs open-loop {open_p99} ms"
    );
    println!("test took {:.1} s", began.elapsed().as_secs_f64());
}
