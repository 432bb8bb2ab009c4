//! Wall-clock time in the units the store and attestations use.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The time the request path decides by: rolling guard windows, quota
/// days, key expiry, attestation times. The server runs on the system
/// clock; tests hand the real server a manual clock so that rules about
/// time can be checked at chosen instants (a minute before midnight, 30
/// days later) instead of by waiting.
#[derive(Debug)]
pub enum Clock {
    /// The system clock.
    System,
    /// A clock that stands still until moved, in Unix milliseconds.
    Manual(AtomicI64),
}

impl Clock {
    /// A manual clock showing `ms`.
    pub fn manual(ms: i64) -> Clock {
        Clock::Manual(AtomicI64::new(ms))
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Manual(ms) => ms.load(Ordering::SeqCst),
        }
    }

    /// Now, as a timestamp.
    pub fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.now_ms()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// Moves a manual clock forward; the system clock cannot be moved.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(ms) = self {
            ms.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }
}

/// The latest calendar date anywhere on Earth (UTC+14) at `now`: a birth
/// or issue date after it is in the future in every time zone, so refusing
/// it never refuses a true date.
pub fn latest_date_on_earth(now: jiff::Timestamp) -> ekyc_domain::normalize::CivilDate {
    let date = now
        .checked_add(jiff::SignedDuration::from_hours(14))
        .unwrap_or(now)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    ekyc_domain::normalize::CivilDate {
        year: date.year().max(0) as u32,
        month: date.month() as u32,
        day: date.day() as u32,
    }
}

/// A protobuf timestamp for Unix milliseconds.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}
