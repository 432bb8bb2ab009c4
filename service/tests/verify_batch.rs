//! VerifyBatch over real gRPC: one unary outcome per item, billing once,
//! replay across streams, a revoked key, the stream lifetime and resume,
//! and a unary caller served while a batch fills the pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

use ekyc_client::{Client, v1 as pb};
use ekyc_service::config::BatchConfig;
use ekyc_service::store::{Limits, TenantPolicy};
use ekyc_service::test_support::{TestOptions, TestServer, reason, unique_request_id};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_types::StatusExt;

/// The synthetic registry's seed (TestServer loads `ekyc_synth` citizens).
const SEED: u64 = 42;

fn request(request_id: String, id_number: String, claims: pb::Claims) -> pb::VerifyRequest {
    pb::VerifyRequest {
        request_id,
        id_number,
        claims: Some(claims),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: "consent-batch".into(),
    }
}

/// Name and birth date of citizen `index`, the birth date replaced by
/// `dob` when given: two fields, two units.
fn ask(prefix: &str, n: usize, index: u64, dob: Option<&str>) -> pb::VerifyRequest {
    let c = ekyc_synth::citizen(SEED, index);
    request(
        format!("{prefix}-{n}"),
        c.id_number.clone(),
        pb::Claims {
            full_name: Some(c.full_name.clone()),
            date_of_birth: Some(dob.map_or(c.date_of_birth.clone(), str::to_string)),
            ..Default::default()
        },
    )
}

/// A valid birth date that is not citizen `index`'s.
fn wrong_dob(index: u64, salt: usize) -> String {
    let truth = ekyc_synth::citizen(SEED, index).date_of_birth;
    (0..)
        .map(|k| format!("19{:02}-0{}-1{}", 40 + (salt + k) % 50, 1 + k % 9, k % 10))
        .find(|d| *d != truth)
        .expect("a different date")
}

/// What one item is expected to get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Match,
    Mismatch,
    Unknown,
    Invalid,
    Guarded,
    Tail,
}

/// The 1,000 items of the mixed batch, by position.
fn mixed_batch(prefix: &str, guarded: u64) -> Vec<(Kind, pb::VerifyRequest)> {
    (0..1000)
        .map(|n| match n {
            0..400 => (Kind::Match, ask(prefix, n, (n % 300) as u64, None)),
            400..600 => {
                let index = (n - 400) as u64;
                let dob = wrong_dob(index, n);
                (Kind::Mismatch, ask(prefix, n, index, Some(&dob)))
            }
            600..700 => {
                // Another seed's citizens are not in the registry.
                let c = ekyc_synth::citizen(7_777, n as u64);
                let claims = pb::Claims {
                    full_name: Some(c.full_name),
                    date_of_birth: Some(c.date_of_birth),
                    ..Default::default()
                };
                (
                    Kind::Unknown,
                    request(format!("{prefix}-{n}"), c.id_number, claims),
                )
            }
            // The guarded subject's items, far from the tail: refused
            // ones give their quota back later than the tail could use it.
            700..800 if n % 5 == 0 => {
                let dob = wrong_dob(guarded, n);
                (Kind::Guarded, ask(prefix, n, guarded, Some(&dob)))
            }
            700..800 => (Kind::Match, ask(prefix, n, (n % 250) as u64, None)),
            800..900 => {
                let mut req = ask(prefix, n, (n % 300) as u64, None);
                req.id_number = "12345".into();
                (Kind::Invalid, req)
            }
            _ => (Kind::Tail, ask(prefix, n, (n % 250) as u64, None)),
        })
        .collect()
}

/// Sends `items` on one VerifyBatch stream and collects every result by
/// request id, with how the stream ended.
async fn run_batch(
    client: &Client,
    items: Vec<pb::VerifyRequest>,
) -> (
    HashMap<String, pb::verify_batch_result::Outcome>,
    Result<(), tonic::Status>,
) {
    let request = client.request_with_deadline(tokio_stream::iter(items), None);
    let mut stream = match client.verification().verify_batch(request).await {
        Ok(r) => r.into_inner(),
        Err(s) => return (HashMap::new(), Err(s)),
    };
    let mut results = HashMap::new();
    loop {
        match stream.next().await {
            None => return (results, Ok(())),
            Some(Err(s)) => return (results, Err(s)),
            Some(Ok(r)) => {
                let outcome = r.outcome.expect("every result has an outcome");
                assert!(
                    results.insert(r.request_id.clone(), outcome).is_none(),
                    "one result per item: {} twice",
                    r.request_id
                );
            }
        }
    }
}

fn error_reason(outcome: &pb::verify_batch_result::Outcome) -> Option<String> {
    match outcome {
        pb::verify_batch_result::Outcome::Error(s) => {
            Some(reason(&ekyc_client::status_from_rpc(s)))
        }
        pb::verify_batch_result::Outcome::Response(_) => None,
    }
}

fn response(outcome: &pb::verify_batch_result::Outcome) -> Option<&pb::VerifyResponse> {
    match outcome {
        pb::verify_batch_result::Outcome::Response(r) => Some(r),
        pb::verify_batch_result::Outcome::Error(_) => None,
    }
}

/// Every usage event of `tenant`: what it was billed.
async fn events_of(server: &TestServer, tenant: &str) -> Vec<ekyc_billing::UsageEvent> {
    server
        .app
        .ledger
        .events(tenant, 0, i64::MAX)
        .await
        .expect("events")
}

async fn client(server: &TestServer, key: &str) -> Client {
    Client::connect(&server.endpoint(), Some(key), Duration::from_secs(10))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_gets_the_unary_outcome_per_item_and_bills_each_answer_once() {
    let server = TestServer::start(TestOptions {
        citizens: 300,
        ..TestOptions::default()
    })
    .await;
    // Units for what precedes the tail and a few more: the tail runs out.
    let quota = 2 * 785;
    let key = server
        .tenant(
            "bulk-telco",
            TenantPolicy {
                limits: Limits {
                    daily_quota_units: quota,
                    ..Limits::default()
                },
                ..TenantPolicy::default()
            },
        )
        .await;
    let tenant = server.tenant_id("bulk-telco").await;
    let c = client(&server, &key).await;
    let guarded = 299;
    let prefix = unique_request_id("mixed");
    let items = mixed_batch(&prefix, guarded);
    let kinds: HashMap<String, (usize, Kind)> = items
        .iter()
        .enumerate()
        .map(|(n, (k, r))| (r.request_id.clone(), (n, *k)))
        .collect();
    let requests: Vec<pb::VerifyRequest> = items.iter().map(|(_, r)| r.clone()).collect();
    let evaluations = || server.app.pool.stats().evaluations.load(Ordering::SeqCst);
    let before = evaluations();

    let (results, end) = run_batch(&c, requests.clone()).await;
    end.expect("the stream ends cleanly");
    assert_eq!(results.len(), 1000, "exactly one result per item");

    let mut tally: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut answered = Vec::new();
    for req in &requests {
        let outcome = &results[&req.request_id];
        let (n, kind) = kinds[&req.request_id];
        let got = match response(outcome) {
            Some(r) => {
                // The signed answer a unary call gets, over this item.
                c.check_answer(req, r.clone()).await.expect("attestation");
                answered.push(req.request_id.clone());
                if r.decision == pb::Decision::Yes as i32 {
                    "YES".to_string()
                } else {
                    "NO".to_string()
                }
            }
            None => error_reason(outcome).expect("an error"),
        };
        match (kind, got.as_str()) {
            (Kind::Match, "YES") | (Kind::Mismatch | Kind::Unknown, "NO") => {}
            (Kind::Invalid, "INVALID_REQUEST") => {
                let pb::verify_batch_result::Outcome::Error(s) = outcome else {
                    unreachable!()
                };
                let details = ekyc_client::status_from_rpc(s).get_error_details();
                let bad = details.bad_request().expect("field violations");
                assert_eq!(bad.field_violations[0].field, "id_number");
                assert_eq!(s.code, Code::InvalidArgument as i32);
            }
            (Kind::Guarded, "NO" | "SUBJECT_GUARD_TRIPPED" | "SUBJECT_BUSY") => {}
            (Kind::Tail, "YES") => {}
            (Kind::Tail | Kind::Match | Kind::Guarded, "QUOTA_EXCEEDED") => {}
            other => panic!("item {n}: {other:?}"),
        }
        *tally.entry((format!("{kind:?}"), got)).or_default() += 1;
    }
    let count = |kind: &str, got: &str| {
        tally
            .get(&(kind.to_string(), got.to_string()))
            .copied()
            .unwrap_or(0)
    };
    // The guard held across concurrent items: at most its five failures
    // were answered, and the rest were refused before any Argon2.
    let guarded_no = count("Guarded", "NO");
    assert!((1..=5).contains(&guarded_no), "{tally:?}");
    assert!(count("Guarded", "SUBJECT_GUARD_TRIPPED") >= 1, "{tally:?}");
    // The quota ran out at the tail and was used up exactly. Items are
    // answered concurrently, so an earlier item still in flight when the
    // tail began may meet the end of the quota too (a guarded one
    // included), but no more of them than a stream holds in flight.
    let per_stream = server.app.batches.per_stream();
    let early = count("Match", "QUOTA_EXCEEDED") + count("Guarded", "QUOTA_EXCEEDED");
    assert!(early < per_stream, "{tally:?}");
    assert!(count("Tail", "QUOTA_EXCEEDED") >= 90 - early, "{tally:?}");
    let units = 2 * answered.len() as u64;
    assert!(units <= quota && quota < units + 2, "{units} of {quota}");
    // One evaluation per answered item, none for the refused.
    assert_eq!(evaluations() - before, answered.len() as u64);

    // The ledger holds exactly the answered items, once each.
    let events = events_of(&server, &tenant).await;
    let mut billed: Vec<String> = events.iter().map(|e| e.request_id.clone()).collect();
    billed.sort();
    answered.sort();
    assert_eq!(billed, answered);
    assert!(events.iter().all(|e| e.units == 2));

    // The same batch again: every answer is replayed as it was, nothing is
    // hashed or billed again, and the refusals stand.
    let before_replay = evaluations();
    let (again, end) = run_batch(&c, requests.clone()).await;
    end.expect("the second stream ends cleanly");
    assert_eq!(again.len(), 1000);
    for id in &answered {
        let (first, second) = (response(&results[id]), response(&again[id]));
        assert_eq!(
            first.map(|r| (&r.transaction_id, &r.attestation)),
            second.map(|r| (&r.transaction_id, &r.attestation)),
            "{id} replayed as answered"
        );
    }
    assert_eq!(evaluations(), before_replay, "replays hash nothing");
    let events_after = events_of(&server, &tenant).await;
    assert_eq!(events_after.len(), events.len(), "billed once");

    // A unary call gets what the stream gave: the stored answer of an
    // answered item, the same refusal for an invalid one and for the
    // guarded subject.
    let answered_req = &requests[0];
    let unary = c.verify(answered_req.clone()).await.expect("replayed");
    assert_eq!(
        Some(&unary.response.transaction_id),
        response(&results[&answered_req.request_id]).map(|r| &r.transaction_id)
    );
    let invalid = &requests[800];
    let s = c
        .verify_unchecked(invalid.clone())
        .await
        .expect_err("invalid");
    let pb::verify_batch_result::Outcome::Error(batch_status) = &results[&invalid.request_id]
    else {
        panic!("invalid item answered")
    };
    assert_eq!(s.code() as i32, batch_status.code);
    assert_eq!(s.message(), batch_status.message);
    assert_eq!(
        format!("{:?}", s.get_error_details().bad_request()),
        format!(
            "{:?}",
            ekyc_client::status_from_rpc(batch_status)
                .get_error_details()
                .bad_request()
        )
    );
    // Through another tenant (this one's quota is spent, and quota comes
    // before the guard): the guard is the subject's, not the tenant's.
    let other = client(
        &server,
        &server.tenant("other-bank", TenantPolicy::default()).await,
    )
    .await;
    let s = other
        .verify_unchecked(ask(&prefix, 5000, guarded, None))
        .await
        .expect_err("guarded");
    assert_eq!(reason(&s), "SUBJECT_GUARD_TRIPPED");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_mid_stream_stops_it_at_the_next_item() {
    let server = TestServer::start(TestOptions::default()).await;
    let (_, admin_key) =
        ekyc_service::tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
            .await
            .expect("bootstrap");
    let admin = client(&server, &admin_key.token).await;
    let key = server.tenant("revoked-bank", TenantPolicy::default()).await;
    let key_id = ekyc_service::auth::parse(&key).expect("key").0;
    let c = client(&server, &key).await;

    let (tx, rx) = mpsc::channel(4);
    let request = c.request_with_deadline(ReceiverStream::new(rx), None);
    let mut stream = c
        .verification()
        .verify_batch(request)
        .await
        .expect("opened")
        .into_inner();
    let prefix = unique_request_id("revoked");
    for n in 0..3 {
        tx.send(ask(&prefix, n, n as u64, None))
            .await
            .expect("send");
        let r = stream
            .next()
            .await
            .expect("a result")
            .expect("not an error");
        assert!(response(r.outcome.as_ref().expect("outcome")).is_some());
    }
    admin
        .admin()
        .revoke_api_key(admin.request(pb::RevokeApiKeyRequest {
            key_id: key_id.clone(),
        }))
        .await
        .expect("revoked");
    tx.send(ask(&prefix, 3, 3, None)).await.expect("send");
    let end = stream
        .next()
        .await
        .expect("the stream ends with a status")
        .expect_err("refused");
    assert_eq!(
        (end.code(), reason(&end).as_str()),
        (Code::Unauthenticated, "API_KEY_REVOKED")
    );
    assert!(stream.next().await.is_none(), "nothing after the refusal");
    // A new stream with the key is refused as it opens.
    let (_, end) = run_batch(&c, vec![ask(&prefix, 4, 4, None)]).await;
    assert_eq!(reason(&end.expect_err("refused")), "API_KEY_REVOKED");
    // Only the three answered items were billed.
    let tenant = server.tenant_id("revoked-bank").await;
    let events = events_of(&server, &tenant).await;
    assert_eq!(events.len(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_past_its_lifetime_answers_what_it_read_and_the_client_resumes() {
    let server = TestServer::start(TestOptions {
        // Slow enough (some 8 ms an item here) that one second ends a
        // stream well before its 400 items are answered.
        memory_kib: 16 * 1024,
        iterations: 4,
        pool_threads: 1,
        batch: BatchConfig {
            max_in_flight_per_stream: 4,
            max_stream_secs: 1,
            ..BatchConfig::default()
        },
        ..TestOptions::default()
    })
    .await;
    let key = server.tenant("resume-telco", TenantPolicy::default()).await;
    let tenant = server.tenant_id("resume-telco").await;
    let c = client(&server, &key).await;
    let prefix = unique_request_id("resume");
    let all: Vec<pb::VerifyRequest> = (0..150)
        .map(|n| ask(&prefix, n, n as u64 % 50, None))
        .collect();

    let mut done: HashMap<String, pb::verify_batch_result::Outcome> = HashMap::new();
    let mut streams = 0;
    while done.len() < all.len() {
        streams += 1;
        assert!(
            streams <= 50,
            "no progress: {} of {}",
            done.len(),
            all.len()
        );
        let pending: Vec<pb::VerifyRequest> = all
            .iter()
            .filter(|r| !done.contains_key(&r.request_id))
            .cloned()
            .collect();
        let (results, end) = run_batch(&c, pending).await;
        for (id, outcome) in results {
            assert!(response(&outcome).is_some(), "{id}: {outcome:?}");
            done.insert(id, outcome);
        }
        if let Err(s) = end {
            assert_eq!(
                (s.code(), reason(&s).as_str()),
                (Code::Unavailable, "STREAM_LIFETIME_REACHED")
            );
        }
    }
    assert!(streams >= 2, "the lifetime ended at least one stream");
    let events = events_of(&server, &tenant).await;
    assert_eq!(events.len(), all.len(), "every item billed once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_caller_is_served_next_while_a_batch_fills_the_pool() {
    let server = TestServer::start(TestOptions {
        // Evaluations much longer than a call's way to the pool, even on
        // a loaded machine (some 20 ms each here).
        memory_kib: 32 * 1024,
        iterations: 4,
        pool_threads: 1,
        queue_capacity: 2,
        batch: BatchConfig {
            max_in_flight_per_stream: 32,
            max_in_flight_per_tenant: 64,
            ..BatchConfig::default()
        },
        ..TestOptions::default()
    })
    .await;
    let bulk = client(
        &server,
        &server.tenant("bulk", TenantPolicy::default()).await,
    )
    .await;
    let bank = client(
        &server,
        &server.tenant("bank", TenantPolicy::default()).await,
    )
    .await;
    let stats = &server.app.pool.stats();
    let prefix = unique_request_id("fair");
    let items: Vec<pb::VerifyRequest> = (0..120)
        .map(|n| ask(&prefix, n, n as u64 % 50, None))
        .collect();
    let batch = tokio::spawn(async move { run_batch(&bulk, items).await });

    // Wait until the batch has queued far more than the pool's queue holds.
    let waiting = tokio::time::timeout(Duration::from_secs(20), async {
        while stats.batch_queued.load(Ordering::SeqCst) < 16 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    waiting
        .await
        .expect("the batch fills the pool's batch lane");
    for n in 0..5 {
        let before = stats.batch_evaluations.load(Ordering::SeqCst);
        let queued = stats.batch_queued.load(Ordering::SeqCst) as u64;
        let answered = bank
            .verify(ask(&prefix, 1000 + n, n as u64, None))
            .await
            .expect("a unary call is answered, never shed, while the batch runs");
        assert_eq!(answered.response.decision, pb::Decision::Yes as i32);
        let during = stats.batch_evaluations.load(Ordering::SeqCst) - before;
        // With one thread, the unary job waits for the batch evaluation
        // running when it arrives, not for the batch's queue. What the
        // counter also sees are the evaluations that run while the call is
        // on its way to the pool and back (authentication, replay lookup,
        // quota, guard, ledger write), a handful on a loaded machine; a
        // first-come pool would make it wait for every queued one.
        assert!(
            queued >= 16 && during * 2 <= queued,
            "unary call {n} waited for {during} batch evaluations \
             with {queued} queued when it was sent"
        );
        assert!(
            stats.batch_queued.load(Ordering::SeqCst) > 0,
            "the batch was still waiting"
        );
    }
    assert!(
        stats.batch_queued.load(Ordering::SeqCst) <= 32,
        "bounded per stream"
    );
    let (results, end) = batch.await.expect("join");
    end.expect("the batch ends cleanly");
    assert_eq!(results.len(), 120);
    assert_eq!(stats.shed.load(Ordering::SeqCst), 0, "nothing was shed");
    server.stop().await;
}

/// What the server logs, captured for the test (one process per test).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_logs_lines_that_do_not_grow_with_it() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let server = TestServer::start(TestOptions::default()).await;
    let key = server.tenant("log-telco", TenantPolicy::default()).await;
    let c = client(&server, &key).await;
    let prefix = unique_request_id("logs");
    let items: Vec<pb::VerifyRequest> = (0..300)
        .map(|n| ask(&prefix, n, n as u64 % 50, None))
        .collect();
    let (results, end) = run_batch(&c, items).await;
    end.expect("the stream ends cleanly");
    assert_eq!(results.len(), 300);
    server.stop().await;
    let text = String::from_utf8(logs.0.lock().expect("log buffer").clone()).expect("utf-8");
    let answered: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("verify answered"))
        .collect();
    assert_eq!(answered.len(), 300, "one line per answered item");
    for line in answered {
        // The stream's span names its tenant once, not once per item read.
        assert_eq!(line.matches("tenant=").count(), 2, "{line}");
        assert!(line.len() < 600, "{} bytes: {line}", line.len());
    }
}
