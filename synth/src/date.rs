//! Just enough proleptic Gregorian calendar for birth, issue and expiry
//! dates. Kept local (no `time` or `chrono`) because the generator needs only
//! day counting, and owning it keeps the output independent of their
//! versions.

use std::fmt;

/// A calendar date. Field order makes the derived `Ord` chronological.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Date {
    /// Year, e.g. 1987.
    pub(crate) year: i32,
    /// Month, 1..=12.
    pub(crate) month: u32,
    /// Day of month, 1..=days_in_month.
    pub(crate) day: u32,
}

/// Whether `year` has a 29 February.
pub(crate) const fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Number of days in `month` of `year`.
pub(crate) const fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Date {
    /// The date `year-month-day`; the caller guarantees it exists.
    pub(crate) const fn new(year: i32, month: u32, day: u32) -> Self {
        Self { year, month, day }
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    pub(crate) const fn to_days(self) -> i64 {
        let year = if self.month <= 2 {
            self.year as i64 - 1
        } else {
            self.year as i64
        };
        let era = year.div_euclid(400);
        let yoe = year - era * 400;
        let mp = (self.month as i64 + 9) % 12; // March = 0
        let doy = (153 * mp + 2) / 5 + self.day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01 (Hinnant's `civil_from_days`).
    pub(crate) const fn from_days(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
        Self::new(year as i32, month, day)
    }

    /// The next day.
    pub(crate) const fn succ(self) -> Self {
        Self::from_days(self.to_days() + 1)
    }

    /// The day this date's person turns `age`. A 29 February birthday falls
    /// on 28 February in common years (the earlier reading, so a card never
    /// outlives the birthday it is tied to).
    pub(crate) const fn birthday(self, age: i32) -> Self {
        let year = self.year + age;
        let day = if self.day > days_in_month(year, self.month) {
            days_in_month(year, self.month)
        } else {
            self.day
        };
        Self::new(year, self.month, day)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_counting_round_trips() {
        assert_eq!(Date::new(1970, 1, 1).to_days(), 0);
        assert_eq!(Date::new(2000, 3, 1).to_days(), 11_017);
        for days in -30_000..30_000 {
            let date = Date::from_days(days);
            assert_eq!(date.to_days(), days);
            assert!(date.day >= 1 && date.day <= days_in_month(date.year, date.month));
        }
    }

    #[test]
    fn leap_day_birthdays() {
        let born = Date::new(2004, 2, 29);
        assert_eq!(born.birthday(14).to_string(), "2018-02-28");
        assert_eq!(born.birthday(16).to_string(), "2020-02-29");
        assert_eq!(Date::new(1999, 12, 31).succ().to_string(), "2000-01-01");
    }
}
