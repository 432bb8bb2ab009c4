//! The per-subject guard's arithmetic: rolling windows over attempt times.
//!
//! Every admitted attempt about a subject is recorded, with its time, the
//! moment it is admitted, and counts as an unsuccessful answer from then
//! on. Settling it as a match (or as never answered) takes it back;
//! settling it as failed only marks it settled. So an attempt whose caller
//! vanished, or whose process died, keeps counting: nothing a caller does
//! can get an answer out of the service that the guard did not count.
//!
//! Two rolling windows bound the failures: `max_failures` in any span of
//! `window_secs` (5 per 24 hours by default) and `long_max_failures` in any
//! span of `long_window_secs` (20 per 30 days), so neither a burst around
//! a window boundary nor a patient attacker over weeks gets more. An
//! attempt is *in flight* until settled; one older than
//! [`IN_FLIGHT_TIMEOUT_MS`] is treated as failed, as its settlement is
//! evidently lost.
//!
//! [`decide`] and [`settle`] are the reference for the Redis scripts in
//! `shared.rs`, which implement the same rules atomically on the server;
//! `tests/guard_conformance.rs` runs one scenario against both.

use std::time::Duration;

use serde::Deserialize;

/// An attempt in flight for longer than this has lost its settlement (its
/// process died): it counts as failed. Calls are bounded far below this
/// by the transport's request timeout.
pub const IN_FLIGHT_TIMEOUT_MS: i64 = 120_000;

/// The subject guard's settings (`[limits.subject_guard]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Unsuccessful answers about one subject allowed in any span of
    /// `window_secs`, across all tenants; 0 turns the guard off.
    pub max_failures: u64,
    /// Length of the short rolling window, in seconds.
    pub window_secs: u64,
    /// Unsuccessful answers allowed in any span of `long_window_secs`;
    /// 0 turns the long horizon off.
    pub long_max_failures: u64,
    /// Length of the long rolling window, in seconds.
    pub long_window_secs: u64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_failures: 5,
            window_secs: 24 * 3600,
            long_max_failures: 20,
            long_window_secs: 30 * 24 * 3600,
        }
    }
}

impl GuardConfig {
    /// Whether the guard is on at all.
    pub fn enabled(&self) -> bool {
        self.max_failures > 0
    }

    /// The short window in milliseconds.
    pub fn window_ms(&self) -> i64 {
        secs_to_ms(self.window_secs)
    }

    /// The long window in milliseconds.
    pub fn long_window_ms(&self) -> i64 {
        secs_to_ms(self.long_window_secs)
    }

    /// How far back attempts can still matter.
    pub fn horizon_ms(&self) -> i64 {
        if self.long_max_failures > 0 {
            self.window_ms().max(self.long_window_ms())
        } else {
            self.window_ms()
        }
    }

    /// The settings as the Redis scripts take them, in this order:
    /// window, max, long window, long max, in-flight timeout.
    pub(crate) fn script_args(&self) -> [i64; 5] {
        [
            self.window_ms(),
            self.max_failures as i64,
            self.long_window_ms(),
            self.long_max_failures as i64,
            IN_FLIGHT_TIMEOUT_MS,
        ]
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// One recorded attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// When it was admitted, Unix milliseconds.
    pub at_ms: i64,
    /// The ticket's id.
    pub id: u128,
    /// Settled as failed (else in flight).
    pub failed: bool,
}

/// What the guard decided about one more attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Record it.
    Admit,
    /// Failures plus attempts in flight fill an allowance: wait for those.
    Busy,
    /// Failures alone fill an allowance; one frees up after this long.
    Tripped(Duration),
}

struct Counts {
    /// Attempts in the short window, and the times of its failures.
    short: usize,
    short_failed: Vec<i64>,
    /// The same over the long window.
    long: usize,
    long_failed: Vec<i64>,
}

fn counts(attempts: &[Attempt], now_ms: i64, config: &GuardConfig) -> Counts {
    let mut c = Counts {
        short: 0,
        short_failed: Vec::new(),
        long: 0,
        long_failed: Vec::new(),
    };
    let mut sorted: Vec<&Attempt> = attempts.iter().collect();
    sorted.sort_by_key(|a| a.at_ms);
    for a in sorted {
        let failed = a.failed || now_ms - a.at_ms >= IN_FLIGHT_TIMEOUT_MS;
        if a.at_ms > now_ms - config.long_window_ms() {
            c.long += 1;
            if failed {
                c.long_failed.push(a.at_ms);
            }
        }
        if a.at_ms > now_ms - config.window_ms() {
            c.short += 1;
            if failed {
                c.short_failed.push(a.at_ms);
            }
        }
    }
    c
}

/// When failures in one window drop below `max`: the oldest failure that
/// must age out leaves `window_ms` after it was admitted.
fn frees_after(failed: &[i64], max: u64, window_ms: i64, now_ms: i64) -> Option<i64> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    (max > 0 && failed.len() >= max).then(|| failed[failed.len() - max] + window_ms - now_ms)
}

/// Decides about one more attempt given the subject's recorded ones.
pub(crate) fn decide(attempts: &[Attempt], now_ms: i64, config: &GuardConfig) -> Decision {
    let c = counts(attempts, now_ms, config);
    let long_max = config.long_max_failures;
    let short = frees_after(
        &c.short_failed,
        config.max_failures,
        config.window_ms(),
        now_ms,
    );
    let long = frees_after(&c.long_failed, long_max, config.long_window_ms(), now_ms);
    if let Some(wait) = short.into_iter().chain(long).max() {
        return Decision::Tripped(Duration::from_millis(wait.max(1) as u64));
    }
    let full = |n: usize, max: u64| max > 0 && n as u64 >= max;
    if full(c.short, config.max_failures) || full(c.long, long_max) {
        Decision::Busy
    } else {
        Decision::Admit
    }
}

/// How an admitted attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Its answer left the service as a match: taken back.
    Matched,
    /// Its answer may have told the caller something other than a match
    /// (including "we cannot say"): it stays counted.
    Failed,
    /// Nothing was computed (the hashing pool refused the job before
    /// hashing it), so nothing can have been learnt: taken back.
    Unanswered,
}

/// Settles attempt `id`; returns whether this settlement used up an
/// allowance (the failure that locked the subject out).
pub(crate) fn settle(
    attempts: &mut Vec<Attempt>,
    id: u128,
    settlement: Settlement,
    now_ms: i64,
    config: &GuardConfig,
) -> bool {
    let Some(i) = attempts.iter().position(|a| a.id == id) else {
        return false;
    };
    if settlement != Settlement::Failed {
        attempts.swap_remove(i);
        return false;
    }
    let tripped =
        |attempts: &[Attempt]| matches!(decide(attempts, now_ms, config), Decision::Tripped(_));
    let mut without = attempts.clone();
    without.swap_remove(i);
    let was_open = !tripped(&without);
    attempts[i].failed = true;
    was_open && tripped(attempts)
}

/// Forgets a subject's failures (the agency's clear), keeping attempts
/// still in flight so their answers are counted when they settle.
/// Returns how many were forgotten.
pub(crate) fn clear(attempts: &mut Vec<Attempt>, now_ms: i64) -> u64 {
    let before = attempts.len();
    attempts.retain(|a| !a.failed && now_ms - a.at_ms < IN_FLIGHT_TIMEOUT_MS);
    (before - attempts.len()) as u64
}

/// Drops attempts too old to matter.
pub(crate) fn expire(attempts: &mut Vec<Attempt>, now_ms: i64, config: &GuardConfig) {
    let horizon = config.horizon_ms();
    attempts.retain(|a| a.at_ms > now_ms - horizon);
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const DAY: i64 = 24 * H;

    fn config() -> GuardConfig {
        GuardConfig::default()
    }

    fn admit(attempts: &mut Vec<Attempt>, now_ms: i64) -> Decision {
        let d = decide(attempts, now_ms, &config());
        if d == Decision::Admit {
            let id = attempts.len() as u128 + 1 + (now_ms as u128) * 1000;
            attempts.push(Attempt {
                at_ms: now_ms,
                id,
                failed: false,
            });
        }
        d
    }

    fn fail_at(attempts: &mut Vec<Attempt>, now_ms: i64) -> bool {
        assert_eq!(admit(attempts, now_ms), Decision::Admit, "at {now_ms}");
        let id = attempts.last().expect("admitted").id;
        settle(attempts, id, Settlement::Failed, now_ms, &config())
    }

    #[test]
    fn no_24_hour_span_admits_more_than_the_allowance() {
        // Five failures a minute before midnight UTC; with epoch-aligned
        // windows five more would pass two minutes later.
        let t0 = 1_796_169_540_000; // 2026-12-01T23:59:00Z
        let mut a = Vec::new();
        for n in 0..5 {
            assert_eq!(fail_at(&mut a, t0 + n), n == 4, "the fifth locks out");
        }
        let Decision::Tripped(wait) = decide(&a, t0 + 2 * 60_000, &config()) else {
            panic!("tripped across midnight");
        };
        assert_eq!(wait.as_millis() as i64, DAY - 2 * 60_000);
        // The first failure ages out exactly 24 hours after it: one more.
        assert!(matches!(
            decide(&a, t0 + DAY - 1, &config()),
            Decision::Tripped(_)
        ));
        assert!(
            fail_at(&mut a, t0 + DAY),
            "the fifth in this span locks out again"
        );
        assert!(matches!(
            decide(&a, t0 + DAY, &config()),
            Decision::Tripped(_)
        ));
        assert_eq!(admit(&mut a, t0 + DAY + 1), Decision::Admit);
    }

    #[test]
    fn the_long_horizon_caps_a_patient_attacker() {
        let t0 = 1_796_169_540_000;
        let mut a = Vec::new();
        // Five a day for four days: 20 failures, each day allowed.
        for day in 0..4 {
            for n in 0..5 {
                fail_at(&mut a, t0 + day * DAY + n);
            }
        }
        // Day five: the short window is clear, the long one is full until
        // the first failure is 30 days old.
        let now = t0 + 4 * DAY + 1;
        let Decision::Tripped(wait) = decide(&a, now, &config()) else {
            panic!("the long cap holds");
        };
        assert_eq!(wait.as_millis() as i64, t0 + 30 * DAY - now);
        assert_eq!(admit(&mut a, t0 + 30 * DAY + 1), Decision::Admit);
    }

    #[test]
    fn attempts_in_flight_count_and_stale_ones_are_failures() {
        let t0 = 1_000 * DAY;
        let mut a = Vec::new();
        for n in 0..5 {
            assert_eq!(admit(&mut a, t0 + n), Decision::Admit);
        }
        // Five in flight: a sixth must wait, it is not locked out.
        assert_eq!(decide(&a, t0 + 10, &config()), Decision::Busy);
        // A match gives its place back, a failure keeps it.
        let ids: Vec<u128> = a.iter().map(|x| x.id).collect();
        assert!(!settle(&mut a, ids[0], Settlement::Matched, t0, &config()));
        assert!(!settle(
            &mut a,
            ids[1],
            Settlement::Unanswered,
            t0,
            &config()
        ));
        assert!(!settle(&mut a, ids[2], Settlement::Failed, t0, &config()));
        assert_eq!(a.len(), 3);
        assert_eq!(decide(&a, t0 + 10, &config()), Decision::Admit);
        // Never settled: once past the timeout they are failures, and the
        // subject is locked out rather than busy.
        for n in 0..2 {
            assert_eq!(admit(&mut a, t0 + 20 + n), Decision::Admit);
        }
        assert_eq!(decide(&a, t0 + 30, &config()), Decision::Busy);
        assert!(matches!(
            decide(&a, t0 + 21 + IN_FLIGHT_TIMEOUT_MS, &config()),
            Decision::Tripped(_)
        ));
    }

    #[test]
    fn clearing_forgets_failures_but_not_attempts_in_flight() {
        let t0 = 1_000 * DAY;
        let mut a = Vec::new();
        for n in 0..4 {
            fail_at(&mut a, t0 + n);
        }
        assert_eq!(admit(&mut a, t0 + 10), Decision::Admit);
        assert_eq!(clear(&mut a, t0 + 20), 4);
        assert_eq!(a.len(), 1);
        assert!(!a[0].failed);
        expire(&mut a, t0 + 20 + DAY * 31, &config());
        assert!(a.is_empty());
    }
}
