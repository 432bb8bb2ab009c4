//! Limits shared through a real Redis: two `ekycd` processes enforce one
//! rate limit, one quota and one subject guard; and Redis outages follow
//! the documented failure policies and heal by themselves.
//!
//! The shared Redis (127.0.0.1:6379) is only used under a key prefix unique
//! to the run, removed at the end. Outage tests start their own
//! `redis-server` on a free port and kill that one.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ekyc_client::{Client, v1 as pb};
use ekyc_limits::{LimitStats, LimitsConfig, OnRedisFailure, RateLimit};
use ekyc_service::store::{Limits, TenantPolicy};
use ekyc_service::test_support::{
    EkycdProcess, Prepared, PrivateRedis, SHARED_REDIS_URL, TestOptions, TestServer,
    prepare_data_dir, reason, remove_redis_prefix, unique_redis_prefix,
};
use tonic::Code;
use tonic_types::StatusExt;

fn ask(index: u64, date_of_birth: Option<&str>, n: u64) -> pb::VerifyRequest {
    let c = ekyc_synth::citizen(42, index);
    pb::VerifyRequest {
        request_id: ekyc_service::test_support::unique_request_id(&format!("req-{index}-{n}")),
        id_number: c.id_number,
        claims: Some(pb::Claims {
            date_of_birth: Some(date_of_birth.unwrap_or(&c.date_of_birth).to_string()),
            ..Default::default()
        }),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: "consent-1".into(),
    }
}

fn limits(rate: u64, burst: u64, daily: u64) -> TenantPolicy {
    TenantPolicy {
        limits: Limits {
            requests_per_second: rate,
            burst,
            daily_quota_units: daily,
            monthly_quota_units: 0,
        },
        ..TenantPolicy::default()
    }
}

/// One `ekycd serve` sharing the test's Redis prefix.
struct Replica(EkycdProcess);

impl Replica {
    fn start(prepared: &Prepared, dir: &Path, prefix: &str) -> Replica {
        Replica(prepared.start_ekycd(
            env!("CARGO_BIN_EXE_ekycd"),
            dir,
            &[
                ("EKYCD_LIMITS__REDIS_URL", SHARED_REDIS_URL),
                ("EKYCD_LIMITS__REDIS_KEY_PREFIX", prefix),
                ("EKYCD_LIMITS__REPLICAS", "2"),
            ],
        ))
    }

    async fn client(&self, key: &str) -> Arc<Client> {
        Arc::new(
            Client::connect(&self.0.endpoint, Some(key), Duration::from_secs(10))
                .await
                .expect("connect"),
        )
    }

    /// A sample from its Prometheus endpoint.
    fn metric(&self, line_prefix: &str) -> u64 {
        let mut stream = std::net::TcpStream::connect(&self.0.metrics).expect("metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut body = String::new();
        stream.read_to_string(&mut body).expect("response");
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line_prefix} not in {body}"))
    }
}

struct Replicas {
    prefix: String,
    replicas: [Replica; 2],
    keys: Vec<String>,
    admin_key: String,
    _prepared: Prepared,
    _dir: tempfile::TempDir,
}

/// A registry with tenants `policies`, served by two replicas sharing one
/// Redis prefix.
async fn two_replicas(test: &str, policies: &[(&str, TenantPolicy)]) -> Replicas {
    let dir = tempfile::tempdir().expect("dir");
    let prefix = unique_redis_prefix(test);
    let prepared = prepare_data_dir(dir.path(), 50, policies).await;
    let replicas = [
        Replica::start(&prepared, dir.path(), &prefix),
        Replica::start(&prepared, dir.path(), &prefix),
    ];
    Replicas {
        prefix,
        replicas,
        keys: prepared.keys.clone(),
        admin_key: prepared.admin_key.clone(),
        _prepared: prepared,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_enforce_one_rate_limit_one_quota_and_one_guard() {
    let rate = RateLimit {
        per_second: 10,
        burst: 10,
    };
    let p = two_replicas(
        "replicas",
        &[
            ("rate-bank", limits(rate.per_second, rate.burst, 0)),
            ("quota-bank", limits(0, 0, 30)),
            ("bank-a", TenantPolicy::default()),
            ("telco-b", TenantPolicy::default()),
        ],
    )
    .await;

    // Rate: four callers on each replica, as fast as they can, for 3 s.
    let answered = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let start = Instant::now();
    let stop = start + Duration::from_secs(3);
    let mut callers = Vec::new();
    for (i, replica) in p.replicas.iter().enumerate() {
        let c = replica.client(&p.keys[0]).await;
        for caller in 0..4u64 {
            let (c, answered) = (Arc::clone(&c), Arc::clone(&answered));
            callers.push(tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < stop {
                    n += 1;
                    // Subjects of its own, so that only the rate limit
                    // refuses (never the guard's in-flight allowance).
                    let subject = (i as u64 * 4 + caller) * 5 + n % 5;
                    match c
                        .verify_unchecked(ask(subject, None, caller * 100_000 + n))
                        .await
                    {
                        Ok(_) => {
                            answered[i].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(s) => assert_eq!(reason(&s), "RATE_LIMITED", "{s:?}"),
                    }
                }
            }));
        }
    }
    for c in callers {
        c.await.expect("caller");
    }
    let elapsed = start.elapsed();
    let per_replica = [0, 1].map(|i| answered[i].load(Ordering::Relaxed));
    let total = per_replica[0] + per_replica[1];
    let expected = rate.admitted_over(elapsed);
    // Tolerance: the first and last intervals of the window, as seen by
    // Redis rather than by the test's clock.
    assert!(
        total.abs_diff(expected) <= 2,
        "both replicas together answered {total} ({per_replica:?}); one shared GCRA allows {expected} in {elapsed:?}"
    );
    assert!(
        per_replica.iter().all(|&n| n > 0),
        "both replicas answered some: {per_replica:?}"
    );

    // Quota: 30 units, 160 one-unit calls from 16 concurrent callers on
    // two replicas. Exactly 30 are answered.
    let mut calls = Vec::new();
    for replica in &p.replicas {
        let c = replica.client(&p.keys[1]).await;
        for caller in 0..8u64 {
            let c = Arc::clone(&c);
            calls.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for n in 0..10 {
                    // Many subjects, so that only the quota refuses.
                    let subject = (caller * 10 + n) % 40;
                    outcomes.push(
                        c.verify_unchecked(ask(subject, None, caller * 10 + n))
                            .await,
                    );
                }
                outcomes
            }));
        }
    }
    let (mut ok, mut refused) = (0, 0);
    for call in calls {
        for outcome in call.await.expect("caller") {
            match outcome {
                Ok(_) => ok += 1,
                Err(s) => {
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
                    refused += 1;
                }
            }
        }
    }
    assert_eq!((ok, refused), (30, 130), "exactly the quota is answered");

    // Either replica reports the shared usage.
    let admin = p.replicas[1].client(&p.admin_key).await;
    let tenants = admin
        .admin()
        .list_tenants(admin.request(pb::ListTenantsRequest::default()))
        .await
        .expect("tenants")
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
    assert!(usage.shared);
    assert_eq!(usage.daily.expect("daily").used_units, 30);

    // Guard: a birth-date sweep, one tenant on each replica.
    let bank = p.replicas[0].client(&p.keys[2]).await;
    let telco = p.replicas[1].client(&p.keys[3]).await;
    let mut outcomes = Vec::new();
    for n in 0..10u64 {
        let via = if n % 2 == 0 { &bank } else { &telco };
        let day = format!("1950-02-{:02}", n + 1);
        outcomes.push(match via.verify_unchecked(ask(3, Some(&day), n)).await {
            Ok(_) => "answered".to_string(),
            Err(s) => reason(&s),
        });
    }
    assert_eq!(
        outcomes,
        [vec!["answered"; 5], vec!["SUBJECT_GUARD_TRIPPED"; 5]].concat()
    );

    // Every Argon2 evaluation was an answered call, on each replica.
    let evaluations: u64 = p
        .replicas
        .iter()
        .map(|r| r.metric("ekyc_argon2_evaluations_total"))
        .sum();
    assert_eq!(evaluations, total + 30 + 5);
    let trips: u64 = p
        .replicas
        .iter()
        .map(|r| r.metric("ekyc_subject_guard_trips_total"))
        .sum();
    assert_eq!(trips, 5);
    remove_redis_prefix(&p.prefix).await;
}

fn outage_limits(redis: &PrivateRedis) -> LimitsConfig {
    LimitsConfig {
        redis_url: redis.url(),
        redis_key_prefix: "outage:".into(),
        redis_timeout_ms: 100,
        redis_retry_ms: 200,
        replicas: 2,
        ..ekyc_service::test_support::test_limits()
    }
}

async fn server_with(limits: LimitsConfig) -> TestServer {
    TestServer::start(TestOptions {
        limits,
        ..TestOptions::default()
    })
    .await
}

async fn client(server: &TestServer, key: &str) -> Client {
    Client::connect(&server.endpoint(), Some(key), Duration::from_secs(10))
        .await
        .expect("connect")
}

/// Calls until one is answered, for at most `within`.
async fn answered_within(c: &Client, within: Duration) -> Duration {
    let start = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        match c.verify_unchecked(ask(4, None, 1_000 + n)).await {
            Ok(_) => return start.elapsed(),
            Err(s) => assert!(
                start.elapsed() < within,
                "not answering {within:?} after Redis came back: {s:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_redis_outage_refuses_calls_quickly_and_heals_by_itself() {
    let mut redis = PrivateRedis::start();
    let server = server_with(outage_limits(&redis)).await;
    let key = server.tenant("plain-bank", TenantPolicy::default()).await;
    let c = client(&server, &key).await;
    c.verify_unchecked(ask(4, None, 0)).await.expect("redis up");
    let evaluations = server.app.pool.stats().evaluations.load(Ordering::SeqCst);

    redis.kill();
    // The subject guard and quotas fail closed: refused, at once, unhashed.
    for n in 0..10 {
        let started = Instant::now();
        let s = c
            .verify_unchecked(ask(4, None, 10 + n))
            .await
            .expect_err("guard fails closed");
        assert_eq!(
            (s.code(), reason(&s).as_str()),
            (Code::Unavailable, "LIMITS_UNAVAILABLE")
        );
        assert!(s.get_error_details().retry_info().is_some());
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a refusal waits at most the Redis timeout: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        server.app.pool.stats().evaluations.load(Ordering::SeqCst),
        evaluations,
        "nothing was hashed"
    );
    let stats = server.app.limiter.stats();
    assert!(LimitStats::get(&stats.redis_errors) >= 1);
    assert!(LimitStats::get(&stats.guard_fallbacks) >= 10);

    redis.restart();
    let took = answered_within(&c, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(10));
    // Back on Redis: no more fallbacks.
    let fallbacks = LimitStats::get(&stats.guard_fallbacks);
    for n in 0..5 {
        c.verify_unchecked(ask(5, None, n)).await.expect("healed");
    }
    assert_eq!(LimitStats::get(&stats.guard_fallbacks), fallbacks);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_local_fallbacks_an_outage_keeps_answering_under_per_replica_limits() {
    let mut redis = PrivateRedis::start();
    let mut limits = outage_limits(&redis);
    limits.on_redis_failure.quota = OnRedisFailure::Local;
    limits.on_redis_failure.subject_guard = OnRedisFailure::Local;
    let server = server_with(limits).await;
    let rate = RateLimit {
        per_second: 10,
        burst: 10,
    };
    let key = server
        .tenant("steady-bank", limits_policy(rate, 1_000))
        .await;
    let c = client(&server, &key).await;
    c.verify_unchecked(ask(6, None, 0)).await.expect("redis up");

    redis.kill();
    // This replica enforces half the limit (replicas = 2) locally.
    let share = rate.share(2);
    let start = Instant::now();
    let mut answered = 0;
    for n in 0..40 {
        match c.verify_unchecked(ask(6, None, 1 + n)).await {
            Ok(_) => answered += 1,
            Err(s) => assert_eq!(reason(&s), "RATE_LIMITED", "{s:?}"),
        }
    }
    let allowed = share.admitted_over(start.elapsed());
    assert!(
        answered >= share.capacity() && answered <= allowed + 1,
        "answered {answered}, the local share allows {allowed}"
    );
    let stats = server.app.limiter.stats();
    assert!(LimitStats::get(&stats.rate_fallbacks) >= 40);
    assert!(LimitStats::get(&stats.quota_fallbacks) >= 1);

    // The guard still guards, locally.
    let guarded = server.tenant("guarded-bank", TenantPolicy::default()).await;
    let g = client(&server, &guarded).await;
    let mut outcomes = Vec::new();
    for n in 0..7u64 {
        let day = format!("1951-03-{:02}", n + 1);
        outcomes.push(g.verify_unchecked(ask(7, Some(&day), n)).await.is_ok());
    }
    assert_eq!(outcomes, [vec![true; 5], vec![false; 2]].concat());

    redis.restart();
    // Calls go on being answered while the limiter reconnects, and its
    // state lands in Redis again within seconds.
    let conn = redis::Client::open(redis.url()).expect("url");
    let mut conn = conn
        .get_multiplexed_async_connection()
        .await
        .expect("private redis");
    let start = Instant::now();
    let mut keys: Vec<String> = Vec::new();
    let mut n = 100;
    while keys.is_empty() && start.elapsed() < Duration::from_secs(10) {
        n += 1;
        g.verify_unchecked(ask(8, None, n))
            .await
            .expect("answered throughout");
        keys = redis::cmd("KEYS")
            .arg("outage:*")
            .query_async(&mut conn)
            .await
            .expect("keys");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!keys.is_empty(), "the limiter writes to Redis again");
    server.stop().await;
}

fn limits_policy(rate: RateLimit, daily: u64) -> TenantPolicy {
    limits(rate.per_second, rate.burst, daily)
}
