//! Limits shared by every replica through Redis.
//!
//! Each check is one Lua script, so it is atomic on the Redis server: two
//! replicas can never both take the last unit of a quota or the last token
//! of a burst. The rate limit reads Redis's own clock (`TIME`), so replicas
//! with skewed clocks still share one schedule.
//!
//! Keys (all under the configured prefix):
//! - `rate:{tenant}`: the GCRA theoretical arrival time, microseconds.
//! - `quota:{tenant}:{YYYY-MM-DD}` and `quota:{tenant}:{YYYY-MM}`: units
//!   used in a day or month of the tenant's zone; expire after the period.
//! - `guard:{pseudonym hex}`: the subject's attempts, a sorted set scored
//!   by admission time (Unix ms, the service's clock) with members
//!   `p:{ticket}` (in flight) and `f:{ticket}` (settled as failed); it
//!   expires once its newest attempt is older than the guard's horizon.

use std::time::Duration;

use redis::Script;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::guard::{Decision, GuardConfig, Settlement};

/// GCRA, as in `governor`: a request is allowed when the theoretical
/// arrival time after it lies no more than `capacity` intervals ahead.
/// Returns {1, remaining} or {0, retry-after microseconds}.
const RATE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval)}
";

/// Adds units to the day and month counters unless either would pass its
/// limit (0: none). Returns {1, day, month} or {0, which (1 day, 2 month),
/// day, month}.
const RESERVE: &str = r"
local units = tonumber(ARGV[1])
local day = tonumber(redis.call('GET', KEYS[1])) or 0
local month = tonumber(redis.call('GET', KEYS[2])) or 0
local day_limit = tonumber(ARGV[2])
local month_limit = tonumber(ARGV[3])
if day_limit > 0 and day + units > day_limit then return {0, 1, day, month} end
if month_limit > 0 and month + units > month_limit then return {0, 2, day, month} end
day = redis.call('INCRBY', KEYS[1], units)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
month = redis.call('INCRBY', KEYS[2], units)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {1, 0, day, month}
";

/// Takes back `ARGV[1]` from each existing key, never below zero.
const RELEASE: &str = r"
for _, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key))
  if n then
    if n > tonumber(ARGV[1]) then
      redis.call('DECRBY', key, ARGV[1])
    else
      redis.call('SET', key, 0, 'KEEPTTL')
    end
  end
end
return 1
";

/// Counts a subject's attempts as `guard.rs` does: the shared preamble
/// of the guard scripts. ARGV[1] is now (ms), ARGV[2..6] the settings
/// (`GuardConfig::script_args`). Drops attempts past the horizon, then
/// sets `short`/`long` (attempts in each window) and `sf`/`lf` (failure
/// times in each, ascending). `skip` names a member left out.
const GUARD_COUNT: &str = r"
local now = tonumber(ARGV[1])
local window, max = tonumber(ARGV[2]), tonumber(ARGV[3])
local long_window, long_max = tonumber(ARGV[4]), tonumber(ARGV[5])
local in_flight_timeout = tonumber(ARGV[6])
local horizon = window
if long_max > 0 and long_window > horizon then horizon = long_window end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - horizon)
local function count(skip)
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  local short, long, sf, lf = 0, 0, {}, {}
  for i = 1, #entries, 2 do
    local member, at = entries[i], tonumber(entries[i + 1])
    if member ~= skip then
      local failed = string.sub(member, 1, 2) == 'f:' or now - at >= in_flight_timeout
      if at > now - long_window then
        long = long + 1
        if failed then lf[#lf + 1] = at end
      end
      if at > now - window then
        short = short + 1
        if failed then sf[#sf + 1] = at end
      end
    end
  end
  return short, long, sf, lf
end
local function tripped_for(sf, lf)
  local wait = -1
  if max > 0 and #sf >= max then wait = math.max(wait, sf[#sf - max + 1] + window - now) end
  if long_max > 0 and #lf >= long_max then wait = math.max(wait, lf[#lf - long_max + 1] + long_window - now) end
  return wait
end
";

/// Admits attempt ARGV[7] unless the guard refuses it: {1} admitted (and
/// recorded as in flight), {2} busy, {0, ms until one frees up} tripped.
const ADMIT: &str = r"
local short, long, sf, lf = count(nil)
local wait = tripped_for(sf, lf)
if wait >= 0 then return {0, math.max(wait, 1)} end
if (max > 0 and short >= max) or (long_max > 0 and long >= long_max) then return {2, 0} end
redis.call('ZADD', KEYS[1], now, 'p:' .. ARGV[7])
redis.call('PEXPIRE', KEYS[1], horizon)
return {1, 0}
";

/// Settles attempt ARGV[7]; ARGV[8] is 1 for a failure (kept, marked
/// failed), else it is removed. Returns 1 when the failure locked the
/// subject out (no allowance was used up before it, one is now).
const SETTLE: &str = r"
local member = 'p:' .. ARGV[7]
local at = redis.call('ZSCORE', KEYS[1], member)
if not at then return 0 end
if ARGV[8] ~= '1' then
  redis.call('ZREM', KEYS[1], member)
  return 0
end
local _, _, sf0, lf0 = count(member)
local was_open = tripped_for(sf0, lf0) < 0
redis.call('ZREM', KEYS[1], member)
redis.call('ZADD', KEYS[1], at, 'f:' .. ARGV[7])
local _, _, sf, lf = count(nil)
if was_open and tripped_for(sf, lf) >= 0 then return 1 end
return 0
";

/// Forgets the subject's failures (and attempts in flight past the
/// timeout), keeping the others; returns how many were forgotten.
const CLEAR: &str = r"
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local gone = 0
for i = 1, #entries, 2 do
  local member, at = entries[i], tonumber(entries[i + 1])
  if string.sub(member, 1, 2) == 'f:' or now - at >= in_flight_timeout then
    redis.call('ZREM', KEYS[1], member)
    gone = gone + 1
  end
end
return gone
";

/// Reads counters and the rate state with the server's clock:
/// {now µs, day, month, tat or -1}.
const USAGE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local day = tonumber(redis.call('GET', KEYS[1])) or 0
local month = tonumber(redis.call('GET', KEYS[2])) or 0
local tat = tonumber(redis.call('GET', KEYS[3])) or -1
return {now, day, month, tat}
";

/// A Redis failure, as the limiter sees it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedError {
    /// The command failed (connection refused, reset, script error).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within the configured timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// The Redis connection and the scripts.
pub(crate) struct SharedLimits {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    rate: Script,
    reserve: Script,
    release: Script,
    admit: Script,
    settle: Script,
    clear: Script,
    usage: Script,
}

impl SharedLimits {
    /// Connects lazily: the service starts even while Redis is down, and
    /// the connection manager reconnects by itself after a failure.
    pub(crate) fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, SharedError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Retries are ours to pace (see `Limiter`), not the driver's:
            // a call must never wait on a reconnection loop.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        Ok(SharedLimits {
            conn: ConnectionManager::new_lazy_with_config(client, config)?,
            prefix: prefix.to_string(),
            timeout,
            rate: Script::new(RATE),
            reserve: Script::new(RESERVE),
            release: Script::new(RELEASE),
            admit: Script::new(&format!("{GUARD_COUNT}{ADMIT}")),
            settle: Script::new(&format!("{GUARD_COUNT}{SETTLE}")),
            clear: Script::new(&format!("{GUARD_COUNT}{CLEAR}")),
            usage: Script::new(USAGE),
        })
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        key.push_str(&parts.join(":"));
        key
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[impl redis::ToRedisArgs],
    ) -> Result<T, SharedError> {
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(k);
        }
        for a in args {
            invocation.arg(a);
        }
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| SharedError::Timeout(self.timeout))?
            .map_err(SharedError::from)
    }

    /// One GCRA check. `Ok(Ok(remaining))` or `Ok(Err(retry_after))`.
    pub(crate) async fn check_rate(
        &self,
        tenant: &str,
        interval_us: u64,
        capacity: u64,
    ) -> Result<Result<u64, Duration>, SharedError> {
        let (allowed, value): (i64, i64) = self
            .run(
                &self.rate,
                &[self.key(&["rate", tenant])],
                &[interval_us, capacity],
            )
            .await?;
        Ok(if allowed == 1 {
            Ok(value.max(0) as u64)
        } else {
            Err(Duration::from_micros(value.max(1) as u64))
        })
    }

    /// Reserves units in both periods. `Ok(Ok([day, month]))` after the
    /// addition, or `Ok(Err((0 day | 1 month, used)))`.
    pub(crate) async fn reserve(
        &self,
        tenant: &str,
        units: u64,
        labels: [&str; 2],
        limits: [u64; 2],
        ttls_ms: [u64; 2],
    ) -> Result<Result<[u64; 2], (usize, u64)>, SharedError> {
        let (ok, which, day, month): (i64, i64, i64, i64) = self
            .run(
                &self.reserve,
                &self.quota_keys(tenant, labels),
                &[units, limits[0], limits[1], ttls_ms[0], ttls_ms[1]],
            )
            .await?;
        let used = [day.max(0) as u64, month.max(0) as u64];
        Ok(if ok == 1 {
            Ok(used)
        } else {
            let i = if which == 1 { 0 } else { 1 };
            Err((i, used[i]))
        })
    }

    fn quota_keys(&self, tenant: &str, labels: [&str; 2]) -> Vec<String> {
        labels
            .iter()
            .map(|l| self.key(&["quota", tenant, l]))
            .collect()
    }

    /// Gives back units of an unanswered call.
    pub(crate) async fn release(
        &self,
        tenant: &str,
        units: u64,
        labels: [&str; 2],
    ) -> Result<(), SharedError> {
        let _: i64 = self
            .run(&self.release, &self.quota_keys(tenant, labels), &[units])
            .await?;
        Ok(())
    }

    fn guard_key(&self, subject: &[u8; 32]) -> String {
        self.key(&["guard", &hex(subject)])
    }

    /// The guard scripts' arguments: now, the settings, then `extra`.
    fn guard_args(now_ms: i64, config: &GuardConfig, extra: &[String]) -> Vec<String> {
        let mut args = vec![now_ms.to_string()];
        args.extend(config.script_args().iter().map(i64::to_string));
        args.extend(extra.iter().cloned());
        args
    }

    /// Records attempt `id` unless the guard refuses it (see `ADMIT`).
    pub(crate) async fn admit(
        &self,
        subject: &[u8; 32],
        id: u128,
        now_ms: i64,
        config: &GuardConfig,
    ) -> Result<Decision, SharedError> {
        let (outcome, wait): (i64, i64) = self
            .run(
                &self.admit,
                &[self.guard_key(subject)],
                &Self::guard_args(now_ms, config, &[format!("{id:032x}")]),
            )
            .await?;
        Ok(match outcome {
            1 => Decision::Admit,
            2 => Decision::Busy,
            _ => Decision::Tripped(Duration::from_millis(wait.max(1) as u64)),
        })
    }

    /// Settles attempt `id`; true when it locked the subject out.
    pub(crate) async fn settle(
        &self,
        subject: &[u8; 32],
        id: u128,
        settlement: Settlement,
        now_ms: i64,
        config: &GuardConfig,
    ) -> Result<bool, SharedError> {
        let failed = if settlement == Settlement::Failed {
            "1"
        } else {
            "0"
        };
        let locked: i64 = self
            .run(
                &self.settle,
                &[self.guard_key(subject)],
                &Self::guard_args(now_ms, config, &[format!("{id:032x}"), failed.into()]),
            )
            .await?;
        Ok(locked == 1)
    }

    /// Forgets a subject's failures; returns how many.
    pub(crate) async fn clear(
        &self,
        subject: &[u8; 32],
        now_ms: i64,
        config: &GuardConfig,
    ) -> Result<u64, SharedError> {
        let gone: i64 = self
            .run(
                &self.clear,
                &[self.guard_key(subject)],
                &Self::guard_args(now_ms, config, &[]),
            )
            .await?;
        Ok(gone.max(0) as u64)
    }

    /// Units used in the two periods, and the rate bucket's remaining
    /// capacity (when the tenant is rate limited).
    pub(crate) async fn usage(
        &self,
        tenant: &str,
        labels: [&str; 2],
        rate: Option<(u64, u64)>,
    ) -> Result<([u64; 2], Option<u64>), SharedError> {
        let mut keys = self.quota_keys(tenant, labels);
        keys.push(self.key(&["rate", tenant]));
        let (now, day, month, tat): (i64, i64, i64, i64) =
            self.run(&self.usage, &keys, &[0u64; 0]).await?;
        let remaining = rate.map(|(interval, capacity)| {
            if tat < now {
                capacity
            } else {
                // Tokens left = how far the schedule is from full, in intervals.
                let ahead = (tat - now) as u64;
                capacity.saturating_sub(ahead.div_ceil(interval.max(1)))
            }
        });
        Ok(([day.max(0) as u64, month.max(0) as u64], remaining))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
