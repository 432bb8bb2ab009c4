//! Quota periods: the calendar day and the billing month that contain an
//! instant, in a tenant's time zone.
//!
//! Periods are named by their local dates (`2026-11-29`, `2026-11`), so
//! every replica that agrees on the time agrees on the counter to charge;
//! each period also carries the instant it ends, for `RetryInfo` and for
//! expiring its counter.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, ZonedDateTime};

/// The time zone quota periods use unless a tenant chooses another.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Ho_Chi_Minh";

/// Which quota a period belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    /// A calendar day.
    Day,
    /// A calendar (billing) month.
    Month,
}

impl PeriodKind {
    /// `daily` or `monthly`, as quota violations name them.
    pub fn name(self) -> &'static str {
        match self {
            PeriodKind::Day => "daily",
            PeriodKind::Month => "monthly",
        }
    }
}

/// One day or month in one time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// Day or month.
    pub kind: PeriodKind,
    /// `YYYY-MM-DD` or `YYYY-MM`, in the tenant's zone.
    pub label: String,
    /// First instant of the next period.
    pub ends_at: Timestamp,
}

/// The day and month that contain an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periods {
    /// The local calendar day.
    pub day: Period,
    /// The local calendar month.
    pub month: Period,
}

/// A time zone name that is not in the bundled tz database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone; use an IANA name such as {DEFAULT_TIME_ZONE}")]
pub struct UnknownTimeZone;

/// Looks a zone up in the bundled tz database.
pub fn time_zone(name: &str) -> Result<TimeZone, UnknownTimeZone> {
    TimeZone::get(name).map_err(|_| UnknownTimeZone)
}

impl Periods {
    /// The periods containing `now` in `tz`.
    pub fn at(now: Timestamp, tz: &TimeZone) -> Periods {
        let local = now.to_zoned_datetime(tz.clone());
        let date = local.date();
        let next_day = date.tomorrow().unwrap_or(date);
        let first = date.first_of_month();
        let next_month = first.checked_add(1.month()).unwrap_or(first);
        Periods {
            day: Period {
                kind: PeriodKind::Day,
                label: date.strftime("%Y-%m-%d").to_string(),
                ends_at: start_of(next_day, tz),
            },
            month: Period {
                kind: PeriodKind::Month,
                label: date.strftime("%Y-%m").to_string(),
                ends_at: start_of(next_month, tz),
            },
        }
    }
}

/// The first instant of a local date (midnight, or the first instant after
/// a gap when a zone skips midnight).
fn start_of(date: Date, tz: &TimeZone) -> Timestamp {
    date.to_zoned_datetime(tz.clone())
        .map(|z: ZonedDateTime| z.timestamp())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn days_and_months_follow_the_tenants_zone() {
        let hcm = time_zone(DEFAULT_TIME_ZONE).unwrap();
        // 17:30 UTC on 30 Nov is 00:30 on 1 Dec in Ho Chi Minh City (UTC+7).
        let p = Periods::at(ts("2026-11-30T17:30:00Z"), &hcm);
        assert_eq!(p.day.label, "2026-12-01");
        assert_eq!(p.month.label, "2026-12");
        assert_eq!(p.day.ends_at, ts("2026-12-01T17:00:00Z"));
        assert_eq!(p.month.ends_at, ts("2026-12-31T17:00:00Z"));
        // One minute before local midnight it is still November.
        let p = Periods::at(ts("2026-11-30T16:59:00Z"), &hcm);
        assert_eq!(p.day.label, "2026-11-30");
        assert_eq!(p.month.label, "2026-11");
        assert_eq!(p.month.ends_at, ts("2026-11-30T17:00:00Z"));
    }

    #[test]
    fn a_utc_tenant_gets_utc_periods() {
        let p = Periods::at(ts("2026-11-30T17:30:00Z"), &TimeZone::UTC);
        assert_eq!(p.day.label, "2026-11-30");
        assert_eq!(p.month.label, "2026-11");
        assert_eq!(p.day.ends_at, ts("2026-12-01T00:00:00Z"));
    }

    #[test]
    fn daylight_saving_days_have_their_real_length() {
        let ny = time_zone("America/New_York").unwrap();
        // 8 March 2026: clocks go forward, the day lasts 23 hours.
        let p = Periods::at(ts("2026-03-08T12:00:00Z"), &ny);
        assert_eq!(p.day.label, "2026-03-08");
        assert_eq!(p.day.ends_at, ts("2026-03-09T04:00:00Z"));
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert_eq!(time_zone("Mars/Olympus_Mons"), Err(UnknownTimeZone));
        assert!(time_zone("Europe/Paris").is_ok());
    }
}
