//! Rate limits, quotas and the subject guard as a tenant meets them over
//! gRPC: refusals with the right status and details, nothing hashed and
//! nothing consumed by a refused call, and the usage an admin sees.
//!
//! These run against in-process limits; tests/shared_limits.rs runs the
//! same limits shared through Redis by two `ekycd` processes, and Redis
//! outages.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ekyc_client::{Client, v1 as pb};
use ekyc_limits::RateLimit;
use ekyc_service::store::{Limits, TenantPolicy};
use ekyc_service::test_support::{TestOptions, TestServer, reason};
use tonic::Code;
use tonic_types::StatusExt;

async fn client(server: &TestServer, key: &str) -> Client {
    Client::connect(&server.endpoint(), Some(key), Duration::from_secs(10))
        .await
        .expect("connect")
}

fn policy(limits: Limits) -> TenantPolicy {
    TenantPolicy {
        limits,
        ..TenantPolicy::default()
    }
}

/// A request about synthetic citizen `index` with its true name and the
/// given birth date (and its gender too when `fields` is 3).
fn ask(index: u64, date_of_birth: Option<&str>, fields: usize, n: usize) -> pb::VerifyRequest {
    let c = ekyc_synth::citizen(42, index);
    let mut claims = pb::Claims {
        full_name: Some(c.full_name.clone()),
        ..Default::default()
    };
    if fields >= 2 {
        claims.date_of_birth = Some(date_of_birth.unwrap_or(&c.date_of_birth).to_string());
    }
    if fields >= 3 {
        claims.gender = Some(c.gender.clone());
    }
    pb::VerifyRequest {
        request_id: ekyc_service::test_support::unique_request_id(&format!("req-{index}-{n}")),
        id_number: c.id_number,
        claims: Some(claims),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: "consent-1".into(),
    }
}

fn evaluations(server: &TestServer) -> u64 {
    server.app.pool.stats().evaluations.load(Ordering::SeqCst)
}

fn header(md: &tonic::metadata::MetadataMap, name: &str) -> Option<u64> {
    md.get(name)?.to_str().ok()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_at_twenty_times_the_rate_gets_exactly_the_gcra_allowance() {
    let server = TestServer::start(TestOptions::default()).await;
    let limit = RateLimit {
        per_second: 5,
        burst: 5,
    };
    let key = server
        .tenant(
            "flooding-bank",
            policy(Limits {
                requests_per_second: limit.per_second,
                burst: limit.burst,
                ..Limits::default()
            }),
        )
        .await;
    let c = Arc::new(client(&server, &key).await);
    let before = evaluations(&server);

    // Open loop at 100 requests/s (20x the limit) for 2 s.
    let period = Duration::from_millis(10);
    let start = Instant::now();
    let mut calls = Vec::new();
    for n in 0..200u32 {
        tokio::time::sleep_until((start + period * n).into()).await;
        let c = Arc::clone(&c);
        calls.push(tokio::spawn(async move {
            c.verify_raw(ask(3, None, 1, n as usize)).await
        }));
    }
    let sending = start.elapsed();
    let (mut answered, mut limited) = (0u64, 0u64);
    for call in calls {
        match call.await.expect("task") {
            Ok(response) => {
                answered += 1;
                assert!(
                    header(response.metadata(), "x-ratelimit-remaining").is_some(),
                    "answers carry the remaining burst"
                );
            }
            Err(s) => {
                assert_eq!(
                    (s.code(), reason(&s).as_str()),
                    (Code::ResourceExhausted, "RATE_LIMITED")
                );
                let retry = s
                    .get_error_details()
                    .retry_info()
                    .and_then(|r| r.retry_delay)
                    .expect("RetryInfo");
                assert!(
                    retry > Duration::ZERO && retry <= Duration::from_millis(200),
                    "the real delay, at most one interval: {retry:?}"
                );
                assert!(s.metadata().get("grpc-retry-pushback-ms").is_some());
                limited += 1;
            }
        }
    }
    // GCRA admits the burst, then one request per interval of the window
    // in which requests reached the server: at least the sending window
    // (less one for a boundary), at most until the last answer (plus one).
    let done = start.elapsed();
    let (low, high) = (
        limit.admitted_over(sending).saturating_sub(1),
        limit.admitted_over(done) + 1,
    );
    assert!(
        (low..=high).contains(&answered),
        "answered {answered}; GCRA allows {low}..={high} (sent over {sending:?}, done at {done:?})"
    );
    assert!(
        high - low <= 6,
        "the window is tight enough to mean something"
    );
    assert_eq!(answered + limited, 200);
    assert_eq!(
        evaluations(&server) - before,
        answered,
        "only answered calls are hashed"
    );
    assert_eq!(server.app.counters.verify_count("answered"), answered);
    assert_eq!(server.app.counters.verify_count("RATE_LIMITED"), limited);
    let metrics = ekyc_service::metrics::render(&server.app);
    assert!(
        metrics.contains(&format!(
            "ekyc_limit_rejections_total{{limit=\"rate\"}} {limited}"
        )),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_count_units_refuse_with_quota_failure_and_show_in_usage() {
    let server = TestServer::start(TestOptions::default()).await;
    let key = server
        .tenant(
            "quota-bank",
            policy(Limits {
                daily_quota_units: 10,
                monthly_quota_units: 100,
                ..Limits::default()
            }),
        )
        .await;
    let c = client(&server, &key).await;
    let before = evaluations(&server);

    // Three fields cost three units: 10 units buy three such calls.
    let mut left = Vec::new();
    for n in 0..3 {
        let r = c
            .verify_raw(ask(5, None, 3, n))
            .await
            .expect("within quota");
        left.push((
            header(r.metadata(), "x-quota-daily-remaining"),
            header(r.metadata(), "x-quota-monthly-remaining"),
        ));
    }
    assert_eq!(
        left,
        vec![
            (Some(7), Some(97)),
            (Some(4), Some(94)),
            (Some(1), Some(91))
        ]
    );
    let s = c
        .verify_raw(ask(5, None, 3, 3))
        .await
        .expect_err("would pass the daily quota");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::ResourceExhausted, "QUOTA_EXCEEDED")
    );
    let details = s.get_error_details();
    let failure = details.quota_failure().expect("QuotaFailure");
    assert_eq!(
        failure.violations[0].subject,
        "tenant.policy.limits.daily_quota_units"
    );
    assert!(
        failure.violations[0]
            .description
            .contains("Asia/Ho_Chi_Minh")
    );
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("period").map(String::as_str),
        Some("daily")
    );
    assert_eq!(header(s.metadata(), "x-quota-daily-remaining"), Some(0));
    // The refused call consumed nothing: one unit is still there.
    c.verify_raw(ask(5, None, 1, 4))
        .await
        .expect("the last unit");
    let s = c.verify_raw(ask(5, None, 1, 5)).await.expect_err("used up");
    assert_eq!(reason(&s), "QUOTA_EXCEEDED");
    assert_eq!(evaluations(&server) - before, 4, "refusals are not hashed");

    // A monthly quota is named as such.
    let monthly = server
        .tenant(
            "monthly-bank",
            policy(Limits {
                monthly_quota_units: 2,
                ..Limits::default()
            }),
        )
        .await;
    let m = client(&server, &monthly).await;
    m.verify_raw(ask(6, None, 2, 0)).await.expect("two units");
    let s = m
        .verify_raw(ask(6, None, 1, 1))
        .await
        .expect_err("month used");
    let details = s.get_error_details();
    assert_eq!(
        details.quota_failure().expect("QuotaFailure").violations[0].subject,
        "tenant.policy.limits.monthly_quota_units"
    );

    // The agency sees the usage the service enforces.
    let (_, admin_key) =
        ekyc_service::tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
            .await
            .expect("bootstrap");
    let admin = client(&server, &admin_key.token).await;
    let tenants = admin
        .admin()
        .list_tenants(admin.request(pb::ListTenantsRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .tenants;
    let quota_bank = tenants
        .iter()
        .find(|t| t.name == "quota-bank")
        .expect("tenant");
    let usage = admin
        .admin()
        .get_tenant_usage(admin.request(pb::GetTenantUsageRequest {
            tenant_id: quota_bank.tenant_id.clone(),
        }))
        .await
        .expect("usage")
        .into_inner();
    let daily = usage.daily.expect("daily");
    assert_eq!(
        (daily.used_units, daily.limit_units, daily.remaining_units),
        (10, 10, Some(0))
    );
    let monthly = usage.monthly.expect("monthly");
    assert_eq!(
        (monthly.used_units, monthly.remaining_units),
        (10, Some(90))
    );
    assert_eq!(usage.time_zone, "Asia/Ho_Chi_Minh");
    assert!(!usage.shared);
    // The local calendar day: today's label in Ho Chi Minh City.
    let today = jiff::Timestamp::now()
        .in_tz("Asia/Ho_Chi_Minh")
        .expect("zone")
        .date()
        .to_string();
    assert_eq!(daily.period, today);
    // A verifier key may not read usage.
    let s = c
        .admin()
        .get_tenant_usage(c.request(pb::GetTenantUsageRequest {
            tenant_id: quota_bank.tenant_id.clone(),
        }))
        .await
        .expect_err("verifier");
    assert_eq!(reason(&s), "ROLE_NOT_ALLOWED");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeping_a_birth_date_through_two_tenants_is_cut_off_by_the_subject_guard() {
    let server = TestServer::start(TestOptions::default()).await;
    let bank = client(
        &server,
        &server.tenant("bank-a", TenantPolicy::default()).await,
    )
    .await;
    let telco = client(
        &server,
        &server.tenant("telco-b", TenantPolicy::default()).await,
    )
    .await;
    let before = evaluations(&server);
    let target = 7;
    let truth = ekyc_synth::citizen(42, target).date_of_birth;

    // An attacker walks the birth date, alternating tenants. The default
    // guard allows 5 unsuccessful answers per subject per day.
    let mut answered = 0;
    let mut refused = 0;
    for (n, day) in (1..=28).map(|d| format!("1970-01-{d:02}")).enumerate() {
        if day == truth {
            continue;
        }
        let via = if n % 2 == 0 { &bank } else { &telco };
        match via.verify_raw(ask(target, Some(&day), 2, n)).await {
            Ok(r) => {
                assert_eq!(r.get_ref().decision, pb::Decision::No as i32);
                answered += 1;
            }
            Err(s) => {
                assert_eq!(
                    (s.code(), reason(&s).as_str()),
                    (Code::ResourceExhausted, "SUBJECT_GUARD_TRIPPED")
                );
                let retry = s
                    .get_error_details()
                    .retry_info()
                    .and_then(|r| r.retry_delay);
                assert!(retry.is_some_and(|d| d <= Duration::from_secs(24 * 3600)));
                assert!(
                    s.metadata().get("grpc-retry-pushback-ms").is_none(),
                    "no automatic retry"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(answered, 5, "cut off at the guard count");
    assert!(refused >= 20);
    // Even the true date is refused now, through either tenant.
    for via in [&bank, &telco] {
        let s = via
            .verify_raw(ask(target, Some(&truth), 2, 99))
            .await
            .expect_err("guarded");
        assert_eq!(reason(&s), "SUBJECT_GUARD_TRIPPED");
    }
    assert_eq!(evaluations(&server) - before, 5, "refusals are not hashed");
    let trips = ekyc_limits::LimitStats::get(&server.app.limiter.stats().guard_tripped);
    assert_eq!(trips, refused + 2);
    let metrics = ekyc_service::metrics::render(&server.app);
    assert!(
        metrics.contains(&format!("ekyc_subject_guard_trips_total {trips}")),
        "{metrics}"
    );

    // Successful answers do not count: a customer verified every day
    // keeps being answered, and its failures still have their allowance.
    let other = 8;
    for n in 0..10 {
        let r = bank
            .verify_raw(ask(other, None, 2, n))
            .await
            .expect("match");
        assert_eq!(r.get_ref().decision, pb::Decision::Yes as i32);
    }
    for n in 0..5 {
        bank.verify_raw(ask(other, Some("1900-01-01"), 2, 10 + n))
            .await
            .expect("five failures are allowed");
    }
    let s = bank
        .verify_raw(ask(other, None, 2, 20))
        .await
        .expect_err("sixth");
    assert_eq!(reason(&s), "SUBJECT_GUARD_TRIPPED");
    // Concurrent questions about one subject: no more can be in flight
    // than failures it has left, so concurrency cannot beat the guard; the
    // rest are asked to retry shortly (SUBJECT_BUSY), not tripped.
    let busy_subject = 10;
    let bank = Arc::new(bank);
    let calls: Vec<_> = (0..12)
        .map(|n| {
            let bank = Arc::clone(&bank);
            tokio::spawn(async move {
                bank.verify_raw(ask(busy_subject, Some("1900-01-01"), 2, n))
                    .await
            })
        })
        .collect();
    let mut failed_answers = 0;
    for call in calls {
        match call.await.expect("task") {
            Ok(_) => failed_answers += 1,
            Err(s) => {
                let r = reason(&s);
                assert!(r == "SUBJECT_BUSY" || r == "SUBJECT_GUARD_TRIPPED", "{s:?}");
                if r == "SUBJECT_BUSY" {
                    assert!(s.metadata().get("grpc-retry-pushback-ms").is_some());
                }
            }
        }
    }
    assert!(
        (1..=5).contains(&failed_answers),
        "at most the allowance is answered: {failed_answers}"
    );
    // An unknown ID is guarded the same way, so the guard does not tell
    // whether the ID exists.
    for n in 0..5 {
        bank.verify_raw(ask(9_000 + n, None, 2, 0))
            .await
            .expect("uniform answer");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_shed_call_gives_its_quota_back() {
    let server = TestServer::start(TestOptions {
        pool_threads: 1,
        queue_capacity: 1,
        memory_kib: 8 * 1024,
        iterations: 2,
        ..TestOptions::default()
    })
    .await;
    let key = server
        .tenant(
            "busy-bank",
            policy(Limits {
                daily_quota_units: 1_000,
                ..Limits::default()
            }),
        )
        .await;
    let c = Arc::new(client(&server, &key).await);
    // 20 concurrent calls on a pool of one thread and one queue slot: most
    // are shed; exactly the answered ones are counted. Each asks about a
    // subject of its own, so the only refusal is the pool's (20 questions
    // about one subject in flight at once would also meet the guard's
    // SUBJECT_BUSY, as a slower store makes likelier).
    let calls: Vec<_> = (0..20)
        .map(|n| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.verify_raw(ask(11 + n as u64, None, 2, n)).await })
        })
        .collect();
    let mut answered = 0;
    let mut shed = 0;
    for call in calls {
        match call.await.expect("task") {
            Ok(_) => answered += 1,
            Err(s) => {
                assert_eq!(reason(&s), "HASHING_OVERLOADED");
                shed += 1;
            }
        }
    }
    assert!(shed > 0 && answered > 0, "answered {answered}, shed {shed}");
    // Releases of shed calls run as they fail; read the usage after all.
    let usage = server
        .app
        .limiter
        .usage(
            &server.tenant_id("busy-bank").await,
            RateLimit {
                per_second: 0,
                burst: 0,
            },
            &ekyc_limits::time_zone("Asia/Ho_Chi_Minh").expect("zone"),
            jiff::Timestamp::now(),
        )
        .await
        .expect("usage");
    assert_eq!(usage.day_used, 2 * answered, "two units per answered call");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_an_answered_request_count_against_the_rate_limit() {
    let server = TestServer::start(TestOptions::default()).await;
    let limit = RateLimit {
        per_second: 5,
        burst: 5,
    };
    let key = server
        .tenant(
            "retrying-bank",
            policy(Limits {
                requests_per_second: limit.per_second,
                burst: limit.burst,
                ..Limits::default()
            }),
        )
        .await;
    let c = Arc::new(client(&server, &key).await);
    let req = ask(12, None, 2, 0);
    let first = c.verify_unchecked(req.clone()).await.expect("answered");
    let hashed = evaluations(&server);
    // 50 retries of the answered request at once.
    let started = Instant::now();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (c, req) = (Arc::clone(&c), req.clone());
            tokio::spawn(async move { c.verify_raw(req).await })
        })
        .collect();
    let (mut replayed, mut limited) = (0u64, 0u64);
    for call in calls {
        match call.await.expect("task") {
            Ok(r) => {
                assert_eq!(r.get_ref(), &first, "a replay is the same answer");
                replayed += 1;
            }
            Err(s) => {
                assert_eq!(reason(&s), "RATE_LIMITED", "{s:?}");
                assert!(s.get_error_details().retry_info().is_some());
                limited += 1;
            }
        }
    }
    let allowed = limit.admitted_over(started.elapsed()) - 1;
    assert!(
        replayed <= allowed && limited >= 50 - allowed,
        "{replayed} replayed, {limited} limited; the limit allows {allowed}"
    );
    assert!(limited > 0);
    assert_eq!(evaluations(&server), hashed, "replays are never hashed");
    let billed = server
        .app
        .ledger
        .events(&server.tenant_id("retrying-bank").await, 0, i64::MAX)
        .await
        .expect("ledger");
    assert_eq!(billed.len(), 1, "and billed once");
    server.stop().await;
}
