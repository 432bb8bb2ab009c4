//! In-process limits: the whole state of a single `ekycd` without Redis,
//! and the fallback of a replica whose Redis is unreachable.
//!
//! Rate limits use `governor`'s keyed GCRA limiters, one per distinct
//! (rate, burst) pair, keyed by tenant. Quotas are plain counters per
//! period; the subject guard keeps each subject's recent attempts
//! (`guard.rs` decides over them). `housekeep` drops whatever can no
//! longer matter (fully recovered rate state, ended periods and windows),
//! so memory follows the active tenants and subjects, not history.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use jiff::Timestamp;

use crate::guard::{self, Attempt, Decision, GuardConfig, Settlement};
use crate::{RateDecision, RateLimit};

type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// Counters and limiters of one process.
#[derive(Default)]
pub(crate) struct LocalLimits {
    rate: Mutex<HashMap<RateLimit, KeyedLimiter>>,
    /// (tenant, period label) -> (units used, end of the period).
    quota: Mutex<HashMap<(String, String), (u64, Timestamp)>>,
    /// Subject pseudonym -> its attempts within the guard's horizon.
    guard: Mutex<HashMap<[u8; 32], Vec<Attempt>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves plain counters behind,
    // which are still consistent enough to keep limiting.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalLimits {
    /// One GCRA check of `tenant` against `limit` (which must be limited).
    pub(crate) fn check_rate(&self, tenant: &str, limit: RateLimit) -> RateDecision {
        let Some(quota) = governor_quota(limit) else {
            return RateDecision::Allowed { remaining: None };
        };
        let mut map = lock(&self.rate);
        let limiter = map
            .entry(limit)
            .or_insert_with(|| RateLimiter::hashmap(quota).with_middleware());
        match limiter.check_key(&tenant.to_string()) {
            Ok(snapshot) => RateDecision::Allowed {
                remaining: Some(u64::from(snapshot.remaining_burst_capacity())),
            },
            Err(not_until) => RateDecision::Limited {
                retry_after: not_until.wait_time_from(limiter.clock().now()),
            },
        }
    }

    /// Adds `units` to both periods unless that would pass a limit (0 is
    /// no limit). Returns the totals after the addition, or the kind of the
    /// first period that would overflow and its current total.
    pub(crate) fn reserve(
        &self,
        tenant: &str,
        units: u64,
        periods: [(&str, Timestamp, u64); 2],
    ) -> Result<[u64; 2], (usize, u64)> {
        let mut map = lock(&self.quota);
        let used = periods.map(|(label, _, _)| {
            map.get(&(tenant.to_string(), label.to_string()))
                .map_or(0, |(u, _)| *u)
        });
        for (i, (_, _, limit)) in periods.iter().enumerate() {
            if *limit > 0 && used[i].saturating_add(units) > *limit {
                return Err((i, used[i]));
            }
        }
        let mut after = [0; 2];
        for (i, (label, ends_at, _)) in periods.iter().enumerate() {
            let entry = map
                .entry((tenant.to_string(), label.to_string()))
                .or_insert((0, *ends_at));
            entry.0 = entry.0.saturating_add(units);
            after[i] = entry.0;
        }
        Ok(after)
    }

    /// Gives back units reserved for a call that was not answered.
    pub(crate) fn release(&self, tenant: &str, units: u64, labels: [&str; 2]) {
        let mut map = lock(&self.quota);
        for label in labels {
            if let Some(entry) = map.get_mut(&(tenant.to_string(), label.to_string())) {
                entry.0 = entry.0.saturating_sub(units);
            }
        }
    }

    /// Units used in a period so far.
    pub(crate) fn used(&self, tenant: &str, label: &str) -> u64 {
        lock(&self.quota)
            .get(&(tenant.to_string(), label.to_string()))
            .map_or(0, |(u, _)| *u)
    }

    /// Records attempt `id` about `subject` at `now_ms` unless the guard
    /// refuses it.
    pub(crate) fn admit(
        &self,
        subject: [u8; 32],
        id: u128,
        now_ms: i64,
        config: &GuardConfig,
    ) -> Decision {
        let mut map = lock(&self.guard);
        let attempts = map.entry(subject).or_default();
        let decision = guard::decide(attempts, now_ms, config);
        if decision == Decision::Admit {
            attempts.push(Attempt {
                at_ms: now_ms,
                id,
                failed: false,
            });
        }
        decision
    }

    /// Settles an admitted attempt; true when it locked the subject out.
    pub(crate) fn settle(
        &self,
        subject: [u8; 32],
        id: u128,
        settlement: Settlement,
        now_ms: i64,
        config: &GuardConfig,
    ) -> bool {
        lock(&self.guard)
            .get_mut(&subject)
            .is_some_and(|attempts| guard::settle(attempts, id, settlement, now_ms, config))
    }

    /// Forgets a subject's failures; returns how many.
    pub(crate) fn clear(&self, subject: [u8; 32], now_ms: i64) -> u64 {
        lock(&self.guard)
            .get_mut(&subject)
            .map_or(0, |attempts| guard::clear(attempts, now_ms))
    }

    /// Drops state that can no longer affect a decision.
    pub(crate) fn housekeep(&self, now: Timestamp, guard: &GuardConfig) {
        lock(&self.rate).retain(|_, limiter| {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            !limiter.is_empty()
        });
        lock(&self.quota).retain(|_, (_, ends_at)| *ends_at > now);
        let now_ms = now.as_millisecond();
        lock(&self.guard).retain(|_, attempts| {
            guard::expire(attempts, now_ms, guard);
            !attempts.is_empty()
        });
    }

    /// Entries held (rate keys, quota counters, guard counters).
    pub(crate) fn sizes(&self) -> (usize, usize, usize) {
        let rate = lock(&self.rate).values().map(|l| l.len()).sum();
        (rate, lock(&self.quota).len(), lock(&self.guard).len())
    }
}

/// The governor quota for a limit; `None` when it is too fast to express
/// (more than one request per nanosecond), which is no limit in practice.
fn governor_quota(limit: RateLimit) -> Option<Quota> {
    let period = Duration::from_nanos(1_000_000_000 / limit.per_second.max(1));
    let burst = NonZeroU32::new(u32::try_from(limit.capacity()).unwrap_or(u32::MAX))?;
    Some(Quota::with_period(period)?.allow_burst(burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let local = LocalLimits::default();
        let limit = RateLimit {
            per_second: 10,
            burst: 3,
        };
        let mut allowed = 0;
        let mut retry = Duration::ZERO;
        for _ in 0..10 {
            match local.check_rate("tn_a", limit) {
                RateDecision::Allowed { .. } => allowed += 1,
                RateDecision::Limited { retry_after } => retry = retry_after,
            }
        }
        assert_eq!(allowed, 3, "a burst of 3 from idle");
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_millis(100),
            "{retry:?}"
        );
        // Another tenant with the same limit has its own bucket.
        assert!(matches!(
            local.check_rate("tn_b", limit),
            RateDecision::Allowed { remaining: Some(2) }
        ));
    }

    #[test]
    fn quota_reservation_is_all_or_nothing() {
        let local = LocalLimits::default();
        let end = Timestamp::MAX;
        let periods = [("2026-11-29", end, 5), ("2026-11", end, 0)];
        assert_eq!(local.reserve("tn", 3, periods), Ok([3, 3]));
        assert_eq!(local.reserve("tn", 3, periods), Err((0, 3)));
        assert_eq!(local.reserve("tn", 2, periods), Ok([5, 5]));
        local.release("tn", 2, ["2026-11-29", "2026-11"]);
        assert_eq!(local.used("tn", "2026-11-29"), 3);
        assert_eq!(local.used("tn", "2026-11"), 3);
    }

    #[test]
    fn the_guard_keeps_attempts_per_subject() {
        let local = LocalLimits::default();
        let config = GuardConfig {
            max_failures: 2,
            ..GuardConfig::default()
        };
        let (s, other) = ([7; 32], [8; 32]);
        assert_eq!(local.admit(s, 1, 1_000, &config), Decision::Admit);
        assert_eq!(local.admit(s, 2, 1_000, &config), Decision::Admit);
        assert_eq!(local.admit(s, 3, 1_000, &config), Decision::Busy);
        assert_eq!(local.admit(other, 4, 1_000, &config), Decision::Admit);
        assert!(!local.settle(s, 1, Settlement::Failed, 1_001, &config));
        assert!(local.settle(s, 2, Settlement::Failed, 1_001, &config));
        assert!(matches!(
            local.admit(s, 5, 1_002, &config),
            Decision::Tripped(_)
        ));
        assert_eq!(local.clear(s, 1_003), 2);
        assert_eq!(local.admit(s, 6, 1_004, &config), Decision::Admit);
    }

    #[test]
    fn housekeeping_forgets_ended_periods_and_recovered_tenants() {
        let local = LocalLimits::default();
        let limit = RateLimit {
            per_second: 1_000,
            burst: 1,
        };
        for n in 0..500 {
            local.check_rate(&format!("tn_{n}"), limit);
        }
        let past: Timestamp = "2026-11-29T00:00:00Z".parse().unwrap();
        let future: Timestamp = "2026-11-30T00:00:00Z".parse().unwrap();
        local
            .reserve("tn", 1, [("old", past, 0), ("current", future, 0)])
            .unwrap();
        let guard = GuardConfig::default();
        let old = past.as_millisecond() - guard.horizon_ms();
        assert_eq!(local.admit([1; 32], 1, old, &guard), Decision::Admit);
        let recent = past.as_millisecond();
        assert_eq!(local.admit([2; 32], 2, recent, &guard), Decision::Admit);
        assert_eq!(local.sizes(), (500, 2, 2));
        // One request per millisecond: 5 ms later every bucket is full again.
        std::thread::sleep(Duration::from_millis(5));
        local.housekeep("2026-11-29T12:00:00Z".parse().unwrap(), &guard);
        assert_eq!(local.sizes(), (0, 1, 1));
        assert_eq!(local.used("tn", "current"), 1);
    }
}
