//! The subject guard against a hostile relying party, over real gRPC, with
//! in-process limits and with limits shared through Redis:
//!
//! - a verifier that cuts its calls at chosen moments (a short
//!   `grpc-timeout`, a stream reset) and retries each `request_id` learns
//!   no more unsuccessful answers about a subject than the guard allows;
//! - no 24-hour span admits more than the allowance, across midnight UTC
//!   (07:00 in Vietnam) too, and a long horizon caps a patient attacker;
//! - the agency can clear a locked-out subject, audited without the ID.
//!
//! Time-dependent cases run the server on a manual clock.

use std::collections::HashSet;
use std::time::Duration;

use ekyc_client::{Client, v1 as pb};
use ekyc_limits::LimitsConfig;
use ekyc_service::store::TenantPolicy;
use ekyc_service::test_support::{
    SHARED_REDIS_URL, TestOptions, TestServer, reason, remove_redis_prefix, test_limits,
    unique_redis_prefix, unique_request_id,
};
use tonic::Status;
use tonic_types::StatusExt;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn retry_after(s: &Status) -> Duration {
    s.get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo")
}

/// A question about synthetic citizen `index`: its true name and the
/// given birth date (wrong ones are `1970-01-01` + n days).
fn ask(index: u64, date_of_birth: &str, request_id: String) -> pb::VerifyRequest {
    let c = ekyc_synth::citizen(42, index);
    pb::VerifyRequest {
        request_id,
        id_number: c.id_number,
        claims: Some(pb::Claims {
            full_name: Some(c.full_name),
            date_of_birth: Some(date_of_birth.to_string()),
            ..Default::default()
        }),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: "consent-1".into(),
    }
}

fn wrong_date(n: u64) -> String {
    let day = jiff::civil::date(1970, 1, 1)
        .checked_add(jiff::Span::new().days(n as i64))
        .expect("date");
    day.to_string()
}

/// In process, or shared through the test's Redis prefix.
#[derive(Clone, Copy, Debug)]
enum Backend {
    InProcess,
    Redis,
}

struct Guarded {
    server: TestServer,
    prefix: Option<String>,
}

impl Guarded {
    async fn start(backend: Backend, test: &str, manual_clock: Option<&str>) -> Guarded {
        let prefix = matches!(backend, Backend::Redis).then(|| unique_redis_prefix(test));
        let limits = LimitsConfig {
            redis_url: prefix
                .as_ref()
                .map_or(String::new(), |_| SHARED_REDIS_URL.to_string()),
            redis_key_prefix: prefix.clone().unwrap_or_else(|| "ekyc:".into()),
            redis_timeout_ms: 2_000,
            ..test_limits()
        };
        let server = TestServer::start(TestOptions {
            limits,
            manual_clock_ms: manual_clock
                .map(|t| t.parse::<jiff::Timestamp>().expect("time").as_millisecond()),
            ..TestOptions::default()
        })
        .await;
        Guarded { server, prefix }
    }

    async fn client(&self, tenant: &str) -> Client {
        let key = self.server.tenant(tenant, TenantPolicy::default()).await;
        Client::connect(&self.server.endpoint(), Some(&key), Duration::from_secs(10))
            .await
            .expect("connect")
    }

    async fn stop(self) {
        let redis_errors =
            ekyc_limits::LimitStats::get(&self.server.app.limiter.stats().redis_errors);
        self.server.stop().await;
        if let Some(p) = self.prefix {
            remove_redis_prefix(&p).await;
        }
        assert_eq!(redis_errors, 0, "redis must answer (scripts/services.sh)");
    }
}

/// Asks one wrong birth date; `Ok(true)` for an answered NO.
async fn fail_once(c: &Client, index: u64, n: u64) -> Result<bool, Status> {
    let r = c
        .verify_unchecked(ask(index, &wrong_date(n), unique_request_id("fail")))
        .await?;
    assert_eq!(r.decision, pb::Decision::No as i32);
    Ok(true)
}

/// A deterministic stream of numbers for the reset moments.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

async fn cut_calls_never_learn_more_than_the_allowance(backend: Backend) {
    let g = Guarded::start(backend, "cut-calls", None).await;
    let c = g.client("hostile-bank").await;
    let max = g.server.config.limits.subject_guard.max_failures;

    // How long an answer takes here (matching questions about another
    // subject, which the guard does not count).
    let mut times = Vec::new();
    for _ in 0..15 {
        let truth = ekyc_synth::citizen(42, 20).date_of_birth;
        let started = std::time::Instant::now();
        c.verify_unchecked(ask(20, &truth, unique_request_id("time")))
            .await
            .expect("a match");
        times.push(started.elapsed());
    }
    times.sort();
    let answer_time = times[times.len() / 2];

    // Each attempt is cut at a moment swept across 0.2..1.4 answer times
    // (the end of that span is where the usage event is being written),
    // by its own grpc-timeout or by a reset, then retried with the same
    // request_id until it is answered or refused for good.
    let target = 7;
    let mut rng = Xorshift(0x5eed_1234_abcd);
    let mut told_no: HashSet<String> = HashSet::new();
    let mut answered_at_once = 0;
    let attempts = 200u64;
    for n in 0..attempts {
        let request_id = unique_request_id("cut");
        let req = ask(target, &wrong_date(n), request_id.clone());
        let (from, span) = (
            answer_time.as_micros() as u64 / 5,
            answer_time.as_micros() as u64 * 6 / 5,
        );
        let mut stub = c.verification();
        let first = if n % 2 == 0 {
            // The server drops the call at its deadline.
            let mut r = c.request(req.clone());
            r.set_timeout(Duration::from_micros(from + span * n / attempts));
            stub.verify(r).await.ok()
        } else {
            // The client resets the stream at a random moment.
            let cut = Duration::from_micros(from + rng.below(span));
            tokio::time::timeout(cut, stub.verify(c.request(req.clone())))
                .await
                .ok()
                .and_then(Result::ok)
        };
        if let Some(r) = first {
            assert_eq!(r.get_ref().decision, pb::Decision::No as i32);
            answered_at_once += 1;
            told_no.insert(request_id.clone());
            continue;
        }
        for _ in 0..200 {
            match c.verify_unchecked(req.clone()).await {
                Ok(r) => {
                    assert_eq!(r.decision, pb::Decision::No as i32);
                    told_no.insert(request_id.clone());
                    break;
                }
                Err(s) if reason(&s) == "SUBJECT_BUSY" => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(s) => {
                    assert_eq!(reason(&s), "SUBJECT_GUARD_TRIPPED", "{s:?}");
                    break;
                }
            }
        }
    }
    assert!(
        told_no.len() as u64 <= max,
        "{} distinct NO answers about one subject where the guard allows {max} \
         ({answered_at_once} answered before the cut; answer time {answer_time:?}, {backend:?})",
        told_no.len()
    );
    // The attack did reach the guard: the subject is locked out, even for
    // the true date, and every answer the attacker got was billed once.
    let truth = ekyc_synth::citizen(42, target).date_of_birth;
    let s = c
        .verify_unchecked(ask(target, &truth, unique_request_id("truth")))
        .await
        .expect_err("locked out");
    assert_eq!(reason(&s), "SUBJECT_GUARD_TRIPPED");
    let tenant = g.server.tenant_id("hostile-bank").await;
    let billed: Vec<_> = g
        .server
        .app
        .ledger
        .events(&tenant, 0, i64::MAX)
        .await
        .expect("ledger")
        .into_iter()
        .filter(|e| e.outcome == "no")
        .collect();
    assert_eq!(billed.len(), told_no.len(), "each answer billed once");
    for e in &billed {
        assert!(told_no.contains(&e.request_id), "billed but never told");
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_calls_never_learn_more_than_the_allowance_in_process() {
    cut_calls_never_learn_more_than_the_allowance(Backend::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_calls_never_learn_more_than_the_allowance_with_redis() {
    cut_calls_never_learn_more_than_the_allowance(Backend::Redis).await;
}

async fn no_day_long_span_admits_more_than_the_allowance(backend: Backend) {
    // Two minutes before midnight UTC, 06:58 in Hanoi.
    let g = Guarded::start(backend, "window", Some("2026-12-01T23:58:00Z")).await;
    let bank = g.client("bank-a").await;
    let telco = g.client("telco-b").await;
    let target = 5;
    for n in 0..5 {
        let via = if n % 2 == 0 { &bank } else { &telco };
        fail_once(via, target, n)
            .await
            .expect("within the allowance");
    }
    let s = fail_once(&bank, target, 10).await.expect_err("sixth");
    assert_eq!(reason(&s), "SUBJECT_GUARD_TRIPPED");
    assert_eq!(retry_after(&s), DAY);
    // Four minutes later it is a new UTC day: an epoch-aligned window would
    // admit five more here.
    g.server.advance(Duration::from_secs(4 * 60));
    let s = fail_once(&telco, target, 11)
        .await
        .expect_err("past midnight");
    assert_eq!(reason(&s), "SUBJECT_GUARD_TRIPPED");
    assert_eq!(retry_after(&s), DAY - Duration::from_secs(4 * 60));
    // A millisecond before the first failure is 24 hours old: still shut.
    g.server
        .advance(DAY - Duration::from_secs(4 * 60) - Duration::from_millis(1));
    let s = fail_once(&bank, target, 12).await.expect_err("not yet");
    assert_eq!(reason(&s), "SUBJECT_GUARD_TRIPPED");
    assert_eq!(retry_after(&s), Duration::from_millis(1));
    // At 24 hours all five age out at once (they share one instant): five
    // more, not ten.
    g.server.advance(Duration::from_millis(1));
    for n in 0..5 {
        fail_once(&telco, target, 20 + n).await.expect("a new span");
    }
    let s = fail_once(&bank, target, 30).await.expect_err("sixth again");
    assert_eq!(reason(&s), "SUBJECT_GUARD_TRIPPED");
    // The guard says who locked the subject out.
    let lockouts = |tenant: &str| g.server.app.counters.guard_counts(tenant);
    let (bank_id, telco_id) = (
        g.server.tenant_id("bank-a").await,
        g.server.tenant_id("telco-b").await,
    );
    assert_eq!(lockouts(&bank_id).lockouts, 1, "the first fifth failure");
    assert_eq!(lockouts(&telco_id).lockouts, 1, "the second");
    assert_eq!(
        lockouts(&bank_id).failures + lockouts(&telco_id).failures,
        10
    );
    assert_eq!(lockouts(&bank_id).refusals, 3);
    let metrics = ekyc_service::metrics::render(&g.server.app);
    assert!(
        metrics.contains(&format!(
            "ekyc_subject_guard_lockouts_total{{tenant=\"{bank_id}\"}} 1"
        )),
        "{metrics}"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_day_long_span_admits_more_than_the_allowance_in_process() {
    no_day_long_span_admits_more_than_the_allowance(Backend::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_day_long_span_admits_more_than_the_allowance_with_redis() {
    no_day_long_span_admits_more_than_the_allowance(Backend::Redis).await;
}

async fn a_patient_attacker_meets_the_long_horizon(backend: Backend) {
    let g = Guarded::start(backend, "long", Some("2026-12-01T10:00:00Z")).await;
    let c = g.client("patient-bank").await;
    let target = 9;
    let guard = g.server.config.limits.subject_guard;
    assert_eq!(
        (guard.long_max_failures, guard.long_window_secs),
        (20, 30 * 24 * 3600)
    );
    // Five a day, each day a little later than the last, for four days.
    for day in 0..4u64 {
        for n in 0..5 {
            fail_once(&c, target, day * 10 + n)
                .await
                .unwrap_or_else(|s| panic!("day {day}: {s:?}"));
        }
        g.server.advance(DAY + HOUR);
    }
    // Day five: the last 24 hours hold no failure, the last 30 days 20.
    let s = fail_once(&c, target, 99).await.expect_err("long horizon");
    assert_eq!(reason(&s), "SUBJECT_GUARD_TRIPPED");
    let wait = retry_after(&s);
    // Until the first failure is 30 days old: 30 days after day 0.
    assert_eq!(wait, 30 * DAY - 4 * (DAY + HOUR));
    g.server.advance(wait - Duration::from_millis(1));
    assert!(fail_once(&c, target, 100).await.is_err(), "still capped");
    g.server.advance(Duration::from_millis(1));
    fail_once(&c, target, 101)
        .await
        .expect("the oldest failure has aged out");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_attacker_meets_the_long_horizon_in_process() {
    a_patient_attacker_meets_the_long_horizon(Backend::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_attacker_meets_the_long_horizon_with_redis() {
    a_patient_attacker_meets_the_long_horizon(Backend::Redis).await;
}

async fn the_agency_clears_a_locked_out_citizen(backend: Backend) {
    let g = Guarded::start(backend, "clear", None).await;
    let attacker = g.client("griefing-bank").await;
    let target = 11;
    for n in 0..5 {
        fail_once(&attacker, target, n).await.expect("allowed");
    }
    // The citizen's own bank can no longer verify them.
    let own_bank = g.client("own-bank").await;
    let citizen = ekyc_synth::citizen(42, target);
    let s = own_bank
        .verify_unchecked(ask(
            target,
            &citizen.date_of_birth,
            unique_request_id("own"),
        ))
        .await
        .expect_err("locked out");
    assert_eq!(reason(&s), "SUBJECT_GUARD_TRIPPED");

    let (_, admin_key) =
        ekyc_service::tenants::bootstrap(&g.server.app.store, g.server.app.limiter.config(), false)
            .await
            .expect("bootstrap");
    let admin = Client::connect(
        &g.server.endpoint(),
        Some(&admin_key.token),
        Duration::from_secs(10),
    )
    .await
    .expect("connect");
    let clear = |id_number: &str, why: &str| pb::ClearSubjectGuardRequest {
        id_number: id_number.to_string(),
        reason: why.to_string(),
    };
    // Only the agency may clear, and bad input is named.
    let s = own_bank
        .admin()
        .clear_subject_guard(own_bank.request(clear(&citizen.id_number, "ticket 12")))
        .await
        .expect_err("a verifier");
    assert_eq!(reason(&s), "ROLE_NOT_ALLOWED");
    let s = admin
        .admin()
        .clear_subject_guard(admin.request(clear("12345", "ticket 12")))
        .await
        .expect_err("bad id");
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    let bad = s.get_error_details();
    let fields: Vec<_> = bad
        .bad_request()
        .expect("BadRequest")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, ["id_number"]);
    let s = admin
        .admin()
        .clear_subject_guard(admin.request(clear(&citizen.id_number, "ticket\u{202e}21")))
        .await
        .expect_err("bidi override in the reason");
    assert_eq!(s.code(), tonic::Code::InvalidArgument);

    let cleared = admin
        .admin()
        .clear_subject_guard(admin.request(clear(
            &citizen.id_number,
            "citizen's complaint ticket 12, locked out by griefing-bank",
        )))
        .await
        .expect("clear")
        .into_inner();
    assert_eq!(cleared.cleared_failures, 5);
    assert_eq!(cleared.audit_subject.len(), 64);
    own_bank
        .verify_unchecked(ask(
            target,
            &citizen.date_of_birth,
            unique_request_id("own"),
        ))
        .await
        .expect("answered again");

    // The audit trail names the subject by its pseudonym, never the ID.
    let events = admin
        .admin()
        .list_audit_events(admin.request(pb::ListAuditEventsRequest::default()))
        .await
        .expect("audit")
        .into_inner()
        .events;
    let entry = events
        .iter()
        .find(|e| e.action == "subject_guard.clear")
        .expect("audited");
    assert!(
        entry.new_value.contains(&cleared.audit_subject),
        "{entry:?}"
    );
    let everything = format!("{events:?}");
    assert!(!everything.contains(&citizen.id_number));
    let id = ekyc_domain::normalize::normalize_id(&citizen.id_number).expect("id");
    for name in g.server.app.keyring.pseudonyms(&id) {
        assert!(!everything.contains(&hex::encode(name)));
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agency_clears_a_locked_out_citizen_in_process() {
    the_agency_clears_a_locked_out_citizen(Backend::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agency_clears_a_locked_out_citizen_with_redis() {
    the_agency_clears_a_locked_out_citizen(Backend::Redis).await;
}
