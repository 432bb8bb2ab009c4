//! The subject guard gives the same decisions in process and in Redis: one
//! scenario (rolling windows, the long horizon, attempts in flight,
//! lockouts, clearing) runs against both and must produce the same log.
//! The Redis run uses the shared server on 127.0.0.1:6379 under a key
//! prefix of its own, removed afterwards.

use ekyc_limits::{GuardDecision, Limiter, LimitsConfig, Settlement};
use jiff::Timestamp;

const DAY_MS: i64 = 24 * 3600 * 1000;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).expect("in range")
}

/// A line per decision, with the refusal's wait, so two limiters can be
/// compared exactly.
async fn scenario(limiter: &Limiter) -> Vec<String> {
    let mut log = Vec::new();
    let subject = [42u8; 32];
    // 2026-12-01T23:59:00Z: a minute before midnight UTC (07:00 in Hanoi).
    let t0: i64 = "2026-12-01T23:59:00Z"
        .parse::<Timestamp>()
        .expect("time")
        .as_millisecond();
    // Times are logged relative to t0, as "day+ms".
    let rel = move |now: i64| format!("{}d+{}", (now - t0) / DAY_MS, (now - t0) % DAY_MS);
    let fail = async |now: i64, log: &mut Vec<String>| match limiter
        .admit_subject(subject, at(now))
        .await
        .expect("guard")
    {
        GuardDecision::Admitted(ticket) => {
            let locked = limiter
                .settle_subject(ticket, Settlement::Failed, at(now))
                .await;
            let what = if locked {
                "failed, locked out"
            } else {
                "failed"
            };
            log.push(format!("{} {what}", rel(now)));
        }
        GuardDecision::Busy => log.push(format!("{} busy", rel(now))),
        GuardDecision::Tripped { retry_after } => log.push(format!(
            "{} tripped for {}",
            rel(now),
            rel(t0 + retry_after.as_millis() as i64)
        )),
    };
    for n in 0..6 {
        fail(t0 + n, &mut log).await;
    }
    // Across midnight, and up to the first failure's 24 hours.
    for now in [t0 + 120_000, t0 + DAY_MS - 1, t0 + DAY_MS, t0 + DAY_MS + 1] {
        fail(now, &mut log).await;
    }
    // Attempts in flight fill the allowance: busy, not tripped.
    let later = t0 + 3 * DAY_MS;
    let mut tickets = Vec::new();
    for n in 0..5 {
        match limiter
            .admit_subject(subject, at(later + n))
            .await
            .expect("guard")
        {
            GuardDecision::Admitted(t) => tickets.push(t),
            other => log.push(format!("unexpected {other:?}")),
        }
    }
    fail(later + 10, &mut log).await;
    // A match and an unanswered call give their places back.
    let mut tickets = tickets.into_iter();
    for settlement in [Settlement::Matched, Settlement::Unanswered] {
        let t = tickets.next().expect("ticket");
        let locked = limiter.settle_subject(t, settlement, at(later + 20)).await;
        log.push(format!("{settlement:?}: locked out {locked}"));
    }
    fail(later + 30, &mut log).await;
    for t in tickets {
        let locked = limiter
            .settle_subject(t, Settlement::Failed, at(later + 40))
            .await;
        log.push(format!("failed: locked out {locked}"));
    }
    // The agency clears the subject: it is answered again.
    let cleared = limiter
        .clear_subject(subject, at(later + 50))
        .await
        .expect("clear");
    log.push(format!("cleared {cleared}"));
    fail(later + 60, &mut log).await;
    // Five a day until the long horizon (20 per 30 days) is full.
    for day in 4..8 {
        for n in 0..5 {
            fail(t0 + day * DAY_MS + n, &mut log).await;
        }
    }
    fail(t0 + 9 * DAY_MS, &mut log).await;
    fail(t0 + 40 * DAY_MS, &mut log).await;
    log
}

fn limiter(config: LimitsConfig) -> Limiter {
    Limiter::new(config).expect("limiter")
}

#[tokio::test]
async fn the_guard_decides_the_same_in_process_and_in_redis() {
    let local = scenario(&limiter(LimitsConfig::default())).await;

    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).expect("random");
    let prefix = format!(
        "ekyc-test:guard-conformance:{}:",
        nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let shared = limiter(LimitsConfig {
        redis_url: "redis://127.0.0.1:6379".into(),
        redis_key_prefix: prefix.clone(),
        redis_timeout_ms: 2_000,
        ..LimitsConfig::default()
    });
    let remote = scenario(&shared).await;
    let redis_errors = ekyc_limits::LimitStats::get(&shared.stats().redis_errors);
    remove_prefix(&prefix).await;
    assert_eq!(redis_errors, 0, "redis must answer (scripts/services.sh)");
    assert_eq!(local, remote, "in process and in Redis");

    let expected = [
        // Five failures a minute before midnight UTC; the fifth locks out.
        "0d+0 failed",
        "0d+1 failed",
        "0d+2 failed",
        "0d+3 failed",
        "0d+4 failed, locked out",
        "0d+5 tripped for 0d+86399995",
        // Past midnight UTC (an epoch-aligned window would open here).
        "0d+120000 tripped for 0d+86280000",
        "0d+86399999 tripped for 0d+1",
        // Each failure frees its place exactly 24 hours after it.
        "1d+0 failed, locked out",
        "1d+1 failed, locked out",
        // Five in flight: busy, not tripped.
        "3d+10 busy",
        "Matched: locked out false",
        "Unanswered: locked out false",
        "3d+30 failed",
        "failed: locked out false",
        "failed: locked out false",
        "failed: locked out false",
        // The agency's clear forgets every failure in the horizon.
        "cleared 11",
        "3d+60 failed",
        "4d+0 failed",
        "4d+1 failed",
        "4d+2 failed",
        "4d+3 failed, locked out",
        "4d+4 tripped for 0d+56",
        "5d+0 failed",
        "5d+1 failed",
        "5d+2 failed",
        "5d+3 failed",
        "5d+4 failed, locked out",
        "6d+0 failed, locked out",
        "6d+1 failed, locked out",
        "6d+2 failed, locked out",
        "6d+3 failed, locked out",
        "6d+4 failed, locked out",
        "7d+0 failed, locked out",
        "7d+1 failed, locked out",
        "7d+2 failed, locked out",
        "7d+3 failed, locked out",
        "7d+4 failed, locked out",
        // 20 failures since the clear: the long horizon holds until the
        // oldest of them (3d+60) is 30 days old, though the day is clear.
        "9d+0 tripped for 24d+60",
        "40d+0 failed",
    ];
    assert_eq!(local, expected);
}

async fn remove_prefix(prefix: &str) {
    let client = redis::Client::open("redis://127.0.0.1:6379").expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("shared redis on 127.0.0.1:6379");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .expect("del");
    }
}
