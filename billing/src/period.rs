//! Billing months in a tenant's time zone.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A calendar month in one zone, as the instants it spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Month {
    /// `YYYY-MM`.
    pub label: String,
    /// First instant, Unix milliseconds.
    pub start_ms: i64,
    /// First instant of the next month, Unix milliseconds.
    pub end_ms: i64,
}

/// A period label or zone that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// Not `YYYY-MM`.
    #[error("period must be a month written YYYY-MM")]
    Label,
    /// Not an IANA zone name.
    #[error("unknown time zone")]
    Zone,
}

impl Month {
    /// The month `label` (`YYYY-MM`) in zone `tz`.
    pub fn parse(label: &str, tz: &str) -> Result<Month, PeriodError> {
        let zone = TimeZone::get(tz).map_err(|_| PeriodError::Zone)?;
        let bytes = label.as_bytes();
        if bytes.len() != 7 || bytes[4] != b'-' {
            return Err(PeriodError::Label);
        }
        let year: i16 = label[..4].parse().map_err(|_| PeriodError::Label)?;
        let month: i8 = label[5..].parse().map_err(|_| PeriodError::Label)?;
        let first = Date::new(year, month, 1).map_err(|_| PeriodError::Label)?;
        let next = first
            .checked_add(1.month())
            .map_err(|_| PeriodError::Label)?;
        let start = |d: Date| -> Result<i64, PeriodError> {
            Ok(d.to_zoned_datetime(zone.clone())
                .map_err(|_| PeriodError::Label)?
                .timestamp()
                .as_millisecond())
        };
        Ok(Month {
            label: format!("{year:04}-{month:02}"),
            start_ms: start(first)?,
            end_ms: start(next)?,
        })
    }

    /// The month containing the instant `ms` in zone `tz`.
    pub fn containing(ms: i64, tz: &str) -> Result<Month, PeriodError> {
        let zone = TimeZone::get(tz).map_err(|_| PeriodError::Zone)?;
        let at = Timestamp::from_millisecond(ms).map_err(|_| PeriodError::Label)?;
        let date = at.to_zoned_datetime(zone).date();
        Month::parse(&format!("{:04}-{:02}", date.year(), date.month()), tz)
    }
}

/// RFC 3339 (UTC, milliseconds) of Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_local() {
        let m = Month::parse("2026-11", "Asia/Ho_Chi_Minh").unwrap();
        assert_eq!(rfc3339(m.start_ms), "2026-10-31T17:00:00Z");
        assert_eq!(rfc3339(m.end_ms), "2026-11-30T17:00:00Z");
        let inside = Month::containing(m.end_ms - 1, "Asia/Ho_Chi_Minh").unwrap();
        assert_eq!(inside, m);
        let next = Month::containing(m.end_ms, "Asia/Ho_Chi_Minh").unwrap();
        assert_eq!(next.label, "2026-12");
        assert_eq!(Month::parse("2026-13", "UTC"), Err(PeriodError::Label));
        assert_eq!(Month::parse("2026-1", "UTC"), Err(PeriodError::Label));
        assert_eq!(Month::parse("2026-01", "Nowhere/X"), Err(PeriodError::Zone));
    }
}
