//! Per-tenant rate limits and quotas, and the per-subject guard.
//!
//! A [`Limiter`] answers three questions before a Verify is hashed:
//! may this tenant call now ([`Limiter::check_rate`], GCRA), has it units
//! left today and this month ([`Limiter::reserve_quota`]), and may anyone
//! still ask about this subject ([`Limiter::admit_subject`], rolling
//! windows over the subject's recent unsuccessful answers, `guard.rs`).
//! Reservations are taken before the expensive work and given back when a
//! call is not answered, so a refused or shed call consumes nothing.
//!
//! State lives in process by default and in Redis when configured, so every
//! replica enforces one limit. When Redis cannot be reached each limit
//! follows its own [`OnRedisFailure`] policy; every fallback is counted in
//! [`LimitStats`] and logged, never silent.

mod guard;
mod local;
pub mod periods;
mod shared;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Deserialize;

pub use guard::{GuardConfig, IN_FLIGHT_TIMEOUT_MS, Settlement};
pub use periods::{DEFAULT_TIME_ZONE, Period, PeriodKind, Periods, UnknownTimeZone, time_zone};

use guard::Decision;
use local::LocalLimits;
use shared::{SharedError, SharedLimits};

/// A tenant's request rate: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Sustained requests per second; 0 means no rate limit.
    pub per_second: u64,
    /// Requests allowed at once from idle; 0 means one second's worth.
    pub burst: u64,
}

impl RateLimit {
    /// Whether there is no limit at all.
    pub fn is_unlimited(&self) -> bool {
        self.per_second == 0
    }

    /// The bucket size: `burst`, or one second's worth when unset.
    pub fn capacity(&self) -> u64 {
        if self.burst == 0 {
            self.per_second.max(1)
        } else {
            self.burst
        }
    }

    /// Time between two requests at the sustained rate, in microseconds
    /// (at least 1).
    pub fn interval_us(&self) -> u64 {
        (1_000_000 / self.per_second.max(1)).max(1)
    }

    /// This limit's share on one of `replicas` processes, used while the
    /// shared state is unreachable: each replica enforces its part, so the
    /// whole fleet stays near the limit the tenant paid for.
    pub fn share(&self, replicas: u32) -> RateLimit {
        let n = u64::from(replicas.max(1));
        RateLimit {
            per_second: self.per_second.div_ceil(n).max(1),
            burst: self.capacity().div_ceil(n).max(1),
        }
    }

    /// Requests GCRA admits when called at least as fast as the limit for
    /// `elapsed` from idle: the burst plus one per interval.
    pub fn admitted_over(&self, elapsed: Duration) -> u64 {
        self.capacity() + (elapsed.as_micros() as u64) / self.interval_us()
    }
}

/// What a rate check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Go on; `remaining` requests could follow at once (unknown when
    /// the limit was not checked).
    Allowed {
        /// Requests left in the burst.
        remaining: Option<u64>,
    },
    /// Refused; the next request is admitted after `retry_after`.
    Limited {
        /// The real delay until one more request fits.
        retry_after: Duration,
    },
}

/// A tenant's quotas in billable units; 0 means no quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    /// Units per calendar day in the tenant's zone.
    pub daily: u64,
    /// Units per calendar month in the tenant's zone.
    pub monthly: u64,
}

/// Units reserved for one call; give them back with
/// [`Limiter::release_quota`] if the call is not answered.
#[derive(Debug, Clone)]
#[must_use = "a reservation must be kept (answered) or released"]
pub struct QuotaGrant {
    tenant: String,
    units: u64,
    labels: [String; 2],
    source: Source,
    /// Units left today after this call (`None`: no daily quota).
    pub daily_remaining: Option<u64>,
    /// Units left this month after this call (`None`: no monthly quota).
    pub monthly_remaining: Option<u64>,
}

/// What a quota check decided.
#[derive(Debug, Clone)]
pub enum QuotaDecision {
    /// Reserved.
    Granted(QuotaGrant),
    /// The call would pass a quota.
    Exceeded {
        /// The period whose quota is used up.
        period: Period,
        /// Its limit.
        limit: u64,
        /// Units already used in it.
        used: u64,
    },
}

/// An admitted attempt about a subject. It is recorded, and counts as a
/// failure, from admission; settle it with [`Limiter::settle_subject`] to
/// take it back (a match, or nothing computed). A ticket that is never
/// settled keeps counting, so a caller that vanishes gains nothing.
#[derive(Debug)]
#[must_use = "an attempt counts as failed until it is settled"]
pub struct SubjectTicket {
    subject: [u8; 32],
    id: u128,
    source: Source,
}

/// What the subject guard decided.
#[derive(Debug)]
pub enum GuardDecision {
    /// Go on.
    Admitted(SubjectTicket),
    /// Too many failed attempts about this subject in a rolling window.
    Tripped {
        /// Until the oldest failure that must age out has.
        retry_after: Duration,
    },
    /// Failed attempts plus attempts still in flight reach the allowance:
    /// this one must wait for those to be answered.
    Busy,
}

/// Which limit a failure policy or an outage concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// The per-tenant rate limit.
    Rate,
    /// The per-tenant quotas.
    Quota,
    /// The per-subject guard.
    SubjectGuard,
}

impl LimitKind {
    /// Name used in logs, metrics and error messages.
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Rate => "rate",
            LimitKind::Quota => "quota",
            LimitKind::SubjectGuard => "subject_guard",
        }
    }
}

/// A limit could not be checked and its policy is to refuse.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the shared {} state is unreachable", .limit.name())]
pub struct Unavailable {
    /// The limit that could not be checked.
    pub limit: LimitKind,
}

/// What a limit does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisFailure {
    /// Enforce in this process (rate: the shared limit divided by
    /// `replicas`; quota and guard: counted here, per replica).
    Local,
    /// Refuse the call with `UNAVAILABLE`.
    Closed,
    /// Let the call through unchecked (counted and logged).
    Open,
}

/// Per-limit policies while Redis is unreachable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailurePolicy {
    /// Rate limits: default `local`.
    pub rate: OnRedisFailure,
    /// Quotas: default `closed` (a quota is a promise to the payer).
    pub quota: OnRedisFailure,
    /// The subject guard: default `closed`; `open` is not accepted.
    pub subject_guard: OnRedisFailure,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            rate: OnRedisFailure::Local,
            quota: OnRedisFailure::Closed,
            subject_guard: OnRedisFailure::Closed,
        }
    }
}

/// Limits configuration (the `[limits]` section of `ekycd`'s config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `redis://host:port/db`; empty keeps all state in this process.
    pub redis_url: String,
    /// Prefix of every key this service writes in Redis.
    pub redis_key_prefix: String,
    /// How long one Redis call may take before it counts as a failure.
    pub redis_timeout_ms: u64,
    /// After a failure, how long to use the fallback before trying Redis
    /// again.
    pub redis_retry_ms: u64,
    /// Replicas sharing the limits; local fallback rate limits are the
    /// shared limit divided by this.
    pub replicas: u32,
    /// What each limit does while Redis is unreachable.
    pub on_redis_failure: FailurePolicy,
    /// The per-subject guard.
    pub subject_guard: GuardConfig,
    /// Requests per second of a tenant created without a rate limit of its
    /// own, so that no tenant is unlimited by omission; 0 leaves such
    /// tenants unlimited.
    pub default_requests_per_second: u64,
    /// Burst of a tenant created without one.
    pub default_burst: u64,
    /// Daily quota (units) of a tenant created without one; 0: none.
    pub default_daily_quota_units: u64,
    /// Monthly quota (units) of a tenant created without one; 0: none.
    pub default_monthly_quota_units: u64,
    /// Admin and billing calls per second, per calling tenant, so that no
    /// key (a finance key drafting invoices, say) can keep the ledger or
    /// the store busy; 0 turns it off.
    pub admin_requests_per_second: u64,
    /// Burst of admin and billing calls.
    pub admin_burst: u64,
}

impl LimitsConfig {
    /// The admin and billing rate limit of one calling tenant.
    pub fn admin_rate(&self) -> RateLimit {
        RateLimit {
            per_second: self.admin_requests_per_second,
            burst: self.admin_burst,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            redis_url: String::new(),
            redis_key_prefix: "ekyc:".to_string(),
            redis_timeout_ms: 250,
            redis_retry_ms: 1_000,
            replicas: 1,
            on_redis_failure: FailurePolicy::default(),
            subject_guard: GuardConfig::default(),
            default_requests_per_second: 20,
            default_burst: 40,
            default_daily_quota_units: 0,
            default_monthly_quota_units: 0,
            admin_requests_per_second: 10,
            admin_burst: 50,
        }
    }
}

impl LimitsConfig {
    /// Checks the configuration without connecting to anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.on_redis_failure.subject_guard == OnRedisFailure::Open {
            return Err(ConfigError::GuardFailOpen);
        }
        let g = &self.subject_guard;
        if g.window_secs == 0 {
            return Err(ConfigError::GuardWindow);
        }
        if g.long_max_failures > 0
            && (g.long_window_secs < g.window_secs || g.long_max_failures < g.max_failures)
        {
            return Err(ConfigError::GuardLongHorizon);
        }
        if self.default_burst > 0 && self.default_requests_per_second == 0 {
            return Err(ConfigError::BurstWithoutRate("limits.default_burst"));
        }
        if self.admin_burst > 0 && self.admin_requests_per_second == 0 {
            return Err(ConfigError::BurstWithoutRate("limits.admin_burst"));
        }
        if !self.redis_url.is_empty() && redis::Client::open(self.redis_url.as_str()).is_err() {
            return Err(ConfigError::RedisUrl);
        }
        Ok(())
    }
}

/// A configuration the limiter refuses.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// `on_redis_failure.subject_guard = "open"` would let a brute force
    /// through exactly when nobody is looking.
    #[error(
        "limits.on_redis_failure.subject_guard must be \"closed\" or \"local\": the guard may not fail open"
    )]
    GuardFailOpen,
    /// A zero-length window.
    #[error("limits.subject_guard.window_secs must be at least 1")]
    GuardWindow,
    /// A long horizon shorter or stricter than the short window.
    #[error(
        "limits.subject_guard.long_window_secs must be at least window_secs and long_max_failures at least max_failures (or 0 to turn the long horizon off)"
    )]
    GuardLongHorizon,
    /// A burst without a rate means nothing.
    #[error("{0} needs the matching requests_per_second above 0")]
    BurstWithoutRate(&'static str),
    /// The Redis URL does not parse.
    #[error("limits.redis_url is not a valid Redis URL")]
    RedisUrl,
}

/// Counters for metrics and tests. Reasons that refuse a call count once
/// per refused call; fallbacks count once per call decided without Redis.
#[derive(Debug, Default)]
pub struct LimitStats {
    /// Calls refused by a rate limit.
    pub rate_limited: AtomicU64,
    /// Calls refused by a quota.
    pub quota_exceeded: AtomicU64,
    /// Calls refused by the subject guard.
    pub guard_tripped: AtomicU64,
    /// Failures that used up a subject's allowance (lockouts).
    pub guard_lockouts: AtomicU64,
    /// Redis calls that failed or timed out.
    pub redis_errors: AtomicU64,
    /// Rate checks decided locally because Redis was unreachable.
    pub rate_fallbacks: AtomicU64,
    /// Quota checks decided by policy because Redis was unreachable.
    pub quota_fallbacks: AtomicU64,
    /// Guard checks decided by policy because Redis was unreachable.
    pub guard_fallbacks: AtomicU64,
}

impl LimitStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Where a reservation was taken, so it is given back to the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Shared,
    Local,
    /// Not counted anywhere (no limit, or failed open).
    Nowhere,
}

/// A tenant's usage against its limits, for the admin view.
#[derive(Debug, Clone)]
pub struct Usage {
    /// Requests that could be made at once now (`None`: no rate limit).
    pub rate_remaining: Option<u64>,
    /// Today in the tenant's zone.
    pub day: Period,
    /// Units used today.
    pub day_used: u64,
    /// This month in the tenant's zone.
    pub month: Period,
    /// Units used this month.
    pub month_used: u64,
}

/// The limits of one process, in process or shared through Redis.
pub struct Limiter {
    config: LimitsConfig,
    local: LocalLimits,
    /// Local limiters used only while Redis is down, so the fallback's
    /// divided limits never mix with the single-process state.
    fallback: LocalLimits,
    shared: Option<SharedLimits>,
    /// Monotonic instant before which Redis is not tried again.
    redis_down_until: std::sync::Mutex<Option<Instant>>,
    stats: LimitStats,
}

impl Limiter {
    /// A limiter from its configuration. Connecting to Redis is lazy: the
    /// service starts (and follows its failure policies) while Redis is
    /// down.
    pub fn new(config: LimitsConfig) -> Result<Limiter, ConfigError> {
        config.validate()?;
        let shared = if config.redis_url.is_empty() {
            None
        } else {
            Some(
                SharedLimits::new(
                    &config.redis_url,
                    &config.redis_key_prefix,
                    Duration::from_millis(config.redis_timeout_ms.max(1)),
                )
                .map_err(|_| ConfigError::RedisUrl)?,
            )
        };
        Ok(Limiter {
            config,
            local: LocalLimits::default(),
            fallback: LocalLimits::default(),
            shared,
            redis_down_until: std::sync::Mutex::new(None),
            stats: LimitStats::default(),
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Whether state is shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The counters.
    pub fn stats(&self) -> &LimitStats {
        &self.stats
    }

    /// Redis, unless it failed within the last `redis_retry_ms`.
    fn redis(&self) -> Option<&SharedLimits> {
        let shared = self.shared.as_ref()?;
        let mut down = self
            .redis_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *down {
            Some(until) if Instant::now() < until => None,
            Some(_) => {
                // Probe again; the connection manager reconnects on use.
                *down = None;
                Some(shared)
            }
            None => Some(shared),
        }
    }

    fn redis_failed(&self, limit: LimitKind, error: &SharedError) {
        LimitStats::bump(&self.stats.redis_errors);
        let mut down = self
            .redis_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if down.is_none() {
            tracing::warn!(
                limit = limit.name(),
                error = %error,
                retry_ms = self.config.redis_retry_ms,
                "redis unreachable; limits follow their failure policy until it answers"
            );
        }
        *down = Some(Instant::now() + Duration::from_millis(self.config.redis_retry_ms));
    }

    /// Checks and counts one request against the tenant's rate limit.
    pub async fn check_rate(
        &self,
        tenant: &str,
        limit: RateLimit,
    ) -> Result<RateDecision, Unavailable> {
        if limit.is_unlimited() {
            return Ok(RateDecision::Allowed { remaining: None });
        }
        let decision = match self.shared.as_ref() {
            None => self.local.check_rate(tenant, limit),
            Some(_) => {
                let outcome = match self.redis() {
                    Some(redis) => Some(
                        redis
                            .check_rate(tenant, limit.interval_us(), limit.capacity())
                            .await,
                    ),
                    None => None,
                };
                match outcome {
                    Some(Ok(Ok(remaining))) => RateDecision::Allowed {
                        remaining: Some(remaining),
                    },
                    Some(Ok(Err(retry_after))) => RateDecision::Limited { retry_after },
                    failed => {
                        if let Some(Err(e)) = &failed {
                            self.redis_failed(LimitKind::Rate, e);
                        }
                        LimitStats::bump(&self.stats.rate_fallbacks);
                        match self.config.on_redis_failure.rate {
                            OnRedisFailure::Local => self
                                .fallback
                                .check_rate(tenant, limit.share(self.config.replicas)),
                            OnRedisFailure::Open => RateDecision::Allowed { remaining: None },
                            OnRedisFailure::Closed => {
                                return Err(Unavailable {
                                    limit: LimitKind::Rate,
                                });
                            }
                        }
                    }
                }
            }
        };
        if matches!(decision, RateDecision::Limited { .. }) {
            LimitStats::bump(&self.stats.rate_limited);
        }
        Ok(decision)
    }

    /// Reserves `units` in the tenant's day and month (in `tz`). Usage is
    /// counted even without quotas, so the admin view can show it.
    pub async fn reserve_quota(
        &self,
        tenant: &str,
        quota: Quota,
        tz: &TimeZone,
        units: u64,
        now: Timestamp,
    ) -> Result<QuotaDecision, Unavailable> {
        let periods = Periods::at(now, tz);
        let labels = [periods.day.label.as_str(), periods.month.label.as_str()];
        let limits = [quota.daily, quota.monthly];
        let enforced = quota.daily > 0 || quota.monthly > 0;
        let (source, result) = match self.shared.as_ref() {
            None => (
                Source::Local,
                self.reserve_local(&self.local, tenant, units, &periods, limits),
            ),
            Some(_) => {
                let outcome = match self.redis() {
                    Some(redis) => {
                        let ttls = [&periods.day, &periods.month].map(|p| ttl_ms(now, p));
                        Some(redis.reserve(tenant, units, labels, limits, ttls).await)
                    }
                    None => None,
                };
                match outcome {
                    Some(Ok(result)) => (Source::Shared, result),
                    failed => {
                        if let Some(Err(e)) = &failed {
                            self.redis_failed(LimitKind::Quota, e);
                        }
                        LimitStats::bump(&self.stats.quota_fallbacks);
                        match self.config.on_redis_failure.quota {
                            // Without a quota there is nothing to protect:
                            // the call goes on, only the usage view misses it.
                            _ if !enforced => (Source::Nowhere, Ok([0, 0])),
                            OnRedisFailure::Local => (
                                Source::Local,
                                self.reserve_local(&self.fallback, tenant, units, &periods, limits),
                            ),
                            OnRedisFailure::Open => (Source::Nowhere, Ok([0, 0])),
                            OnRedisFailure::Closed => {
                                return Err(Unavailable {
                                    limit: LimitKind::Quota,
                                });
                            }
                        }
                    }
                }
            }
        };
        match result {
            Ok(used) => Ok(QuotaDecision::Granted(QuotaGrant {
                tenant: tenant.to_string(),
                units,
                labels: [periods.day.label.clone(), periods.month.label.clone()],
                source,
                daily_remaining: remaining(quota.daily, used[0], source),
                monthly_remaining: remaining(quota.monthly, used[1], source),
            })),
            Err((i, used)) => {
                LimitStats::bump(&self.stats.quota_exceeded);
                let [day, month] = [periods.day, periods.month];
                Ok(QuotaDecision::Exceeded {
                    period: if i == 0 { day } else { month },
                    limit: limits[i],
                    used,
                })
            }
        }
    }

    fn reserve_local(
        &self,
        state: &LocalLimits,
        tenant: &str,
        units: u64,
        periods: &Periods,
        limits: [u64; 2],
    ) -> Result<[u64; 2], (usize, u64)> {
        state.reserve(
            tenant,
            units,
            [
                (&periods.day.label, periods.day.ends_at, limits[0]),
                (&periods.month.label, periods.month.ends_at, limits[1]),
            ],
        )
    }

    /// Gives back the units of a call that was not answered.
    pub async fn release_quota(&self, grant: QuotaGrant) {
        let labels = [grant.labels[0].as_str(), grant.labels[1].as_str()];
        match grant.source {
            Source::Nowhere => {}
            Source::Local if self.shared.is_none() => {
                self.local.release(&grant.tenant, grant.units, labels)
            }
            Source::Local => self.fallback.release(&grant.tenant, grant.units, labels),
            Source::Shared => {
                if let Some(redis) = self.shared.as_ref()
                    && let Err(e) = redis.release(&grant.tenant, grant.units, labels).await
                {
                    // The units stay counted: the tenant loses them, never
                    // gains any. Logged so support can credit them.
                    self.redis_failed(LimitKind::Quota, &e);
                    tracing::warn!(
                        tenant = %grant.tenant,
                        units = grant.units,
                        "could not give back quota units of an unanswered call"
                    );
                }
            }
        }
    }

    /// Admits an attempt about `subject` (a keyed pseudonym, never the ID)
    /// unless it has used up an allowance in either rolling window.
    /// Attempts still in flight count as possible failures, so concurrency
    /// cannot get more than the allowance answered: when they fill it the
    /// answer is [`GuardDecision::Busy`]. The admitted attempt is recorded
    /// at once and counts as a failure until it is settled otherwise.
    pub async fn admit_subject(
        &self,
        subject: [u8; 32],
        now: Timestamp,
    ) -> Result<GuardDecision, Unavailable> {
        let config = &self.config.subject_guard;
        let id = ticket_id();
        let ticket = |source| {
            GuardDecision::Admitted(SubjectTicket {
                subject,
                id,
                source,
            })
        };
        if !config.enabled() {
            return Ok(ticket(Source::Nowhere));
        }
        let now_ms = now.as_millisecond();
        let (source, decision) = match self.shared.as_ref() {
            None => (Source::Local, self.local.admit(subject, id, now_ms, config)),
            Some(_) => {
                let outcome = match self.redis() {
                    Some(redis) => Some(redis.admit(&subject, id, now_ms, config).await),
                    None => None,
                };
                match outcome {
                    Some(Ok(decision)) => (Source::Shared, decision),
                    failed => {
                        if let Some(Err(e)) = &failed {
                            self.redis_failed(LimitKind::SubjectGuard, e);
                        }
                        LimitStats::bump(&self.stats.guard_fallbacks);
                        match self.config.on_redis_failure.subject_guard {
                            OnRedisFailure::Local => (
                                Source::Local,
                                self.fallback.admit(subject, id, now_ms, config),
                            ),
                            // `Open` is refused by `new`.
                            OnRedisFailure::Closed | OnRedisFailure::Open => {
                                return Err(Unavailable {
                                    limit: LimitKind::SubjectGuard,
                                });
                            }
                        }
                    }
                }
            }
        };
        match decision {
            Decision::Admit => Ok(ticket(source)),
            Decision::Busy => Ok(GuardDecision::Busy),
            Decision::Tripped(retry_after) => {
                LimitStats::bump(&self.stats.guard_tripped);
                Ok(GuardDecision::Tripped { retry_after })
            }
        }
    }

    /// Settles an attempt: [`Settlement::Failed`] keeps it counted (marked
    /// settled), the others take it back. Returns whether this failure
    /// used up an allowance, i.e. locked the subject out; the caller
    /// knows which tenant to blame in its metrics.
    pub async fn settle_subject(
        &self,
        ticket: SubjectTicket,
        settlement: Settlement,
        now: Timestamp,
    ) -> bool {
        let config = &self.config.subject_guard;
        let now_ms = now.as_millisecond();
        let locked = match ticket.source {
            Source::Nowhere => false,
            Source::Local if self.shared.is_none() => {
                self.local
                    .settle(ticket.subject, ticket.id, settlement, now_ms, config)
            }
            Source::Local => {
                self.fallback
                    .settle(ticket.subject, ticket.id, settlement, now_ms, config)
            }
            Source::Shared => match self.shared.as_ref() {
                Some(redis) => {
                    match redis
                        .settle(&ticket.subject, ticket.id, settlement, now_ms, config)
                        .await
                    {
                        Ok(locked) => locked,
                        Err(e) => {
                            // The attempt stays recorded as in flight, so
                            // it counts as failed: stricter, never looser.
                            self.redis_failed(LimitKind::SubjectGuard, &e);
                            false
                        }
                    }
                }
                None => false,
            },
        };
        if locked {
            LimitStats::bump(&self.stats.guard_lockouts);
        }
        locked
    }

    /// Forgets a subject's unsuccessful answers everywhere this limiter
    /// keeps them (the agency's clear, after a citizen was locked out by
    /// someone else's wrong answers). Attempts still in flight stay
    /// counted. Returns how many failures were forgotten.
    pub async fn clear_subject(
        &self,
        subject: [u8; 32],
        now: Timestamp,
    ) -> Result<u64, Unavailable> {
        let now_ms = now.as_millisecond();
        let mut cleared = self.local.clear(subject, now_ms) + self.fallback.clear(subject, now_ms);
        if let Some(redis) = self.shared.as_ref() {
            // Not through `redis()`: a clear is rare and must reach Redis
            // or say it did not, whatever the recent outage history.
            match redis
                .clear(&subject, now_ms, &self.config.subject_guard)
                .await
            {
                Ok(n) => cleared += n,
                Err(e) => {
                    self.redis_failed(LimitKind::SubjectGuard, &e);
                    return Err(Unavailable {
                        limit: LimitKind::SubjectGuard,
                    });
                }
            }
        }
        Ok(cleared)
    }

    /// The tenant's usage now, for the admin view.
    pub async fn usage(
        &self,
        tenant: &str,
        limit: RateLimit,
        tz: &TimeZone,
        now: Timestamp,
    ) -> Result<Usage, Unavailable> {
        let periods = Periods::at(now, tz);
        let labels = [periods.day.label.as_str(), periods.month.label.as_str()];
        let rate = (!limit.is_unlimited()).then(|| (limit.interval_us(), limit.capacity()));
        let (used, rate_remaining) = match self.shared.as_ref() {
            None => (
                [
                    self.local.used(tenant, labels[0]),
                    self.local.used(tenant, labels[1]),
                ],
                None,
            ),
            Some(redis) => match redis.usage(tenant, labels, rate).await {
                Ok(found) => found,
                Err(e) => {
                    self.redis_failed(LimitKind::Quota, &e);
                    return Err(Unavailable {
                        limit: LimitKind::Quota,
                    });
                }
            },
        };
        Ok(Usage {
            rate_remaining,
            day: periods.day,
            day_used: used[0],
            month: periods.month,
            month_used: used[1],
        })
    }

    /// Drops in-process state that can no longer affect a decision; call
    /// it periodically (the server does, every minute).
    pub fn housekeep(&self, now: Timestamp) {
        let guard = &self.config.subject_guard;
        self.local.housekeep(now, guard);
        self.fallback.housekeep(now, guard);
    }

    /// In-process entries held: (rate keys, quota counters, guard counters).
    pub fn local_sizes(&self) -> (usize, usize, usize) {
        let (a, b, c) = self.local.sizes();
        let (d, e, f) = self.fallback.sizes();
        (a + d, b + e, c + f)
    }
}

/// A ticket id unique across replicas: 128 random bits.
fn ticket_id() -> u128 {
    let mut bytes = [0u8; 16];
    // Without randomness the id falls back to the wall clock and a
    // counter: unique within this process, and across replicas unless two
    // fail at the same nanosecond.
    if getrandom::fill(&mut bytes).is_err() {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return (nanos << 32) ^ u128::from(n);
    }
    u128::from_le_bytes(bytes)
}

fn remaining(limit: u64, used: u64, source: Source) -> Option<u64> {
    (limit > 0 && source != Source::Nowhere).then(|| limit.saturating_sub(used))
}

/// How long a period's counter must live: to the period's end, plus two
/// days so the admin view and late reconciliation can still read it.
fn ttl_ms(now: Timestamp, period: &Period) -> u64 {
    let left = period.ends_at.as_millisecond() - now.as_millisecond();
    left.max(0) as u64 + 2 * 24 * 3600 * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_divide_rate_and_burst() {
        let l = RateLimit {
            per_second: 10,
            burst: 0,
        };
        assert_eq!(l.capacity(), 10);
        assert_eq!(
            l.share(3),
            RateLimit {
                per_second: 4,
                burst: 4
            }
        );
        assert_eq!(l.admitted_over(Duration::from_secs(2)), 30);
    }

    #[test]
    fn the_guard_may_not_fail_open() {
        let mut c = LimitsConfig::default();
        c.on_redis_failure.subject_guard = OnRedisFailure::Open;
        assert!(matches!(Limiter::new(c), Err(ConfigError::GuardFailOpen)));
    }
}
