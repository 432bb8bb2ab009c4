//! A deterministic synthetic citizen registry for the eKYC demo, tests and
//! benchmarks.
//!
//! `citizen(seed, index)` returns the same made-up person for the same
//! arguments on every machine and every build, so a demo can say "citizen
//! #17 of seed 42" and a test can pin expected values. The records look like
//! an export of the Vietnamese citizen registry: 12-digit IDs with the real
//! structure (province of birth registration, century-and-gender digit,
//! year of birth, serial), names with diacritics in NFC, partial dates of
//! birth for some older people, card issue and expiry dates following the
//! renewal ages, and optional phone numbers.
//!
//! This crate must never be used as, mixed with, or mistaken for real data:
//! any resemblance to a real person is chance. It does no I/O of its own
//! (the writers take a `std::io::Write` from the caller) and uses no
//! external randomness. `Citizen`'s `Debug` is redacted so that a record
//! printed by accident never puts a (realistic-looking) identity in a log.
#![forbid(unsafe_code)]

mod date;
mod names;
mod places;
mod rng;

use std::fmt;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::date::{Date, days_in_month};
use crate::rng::{SplitMix64, mix64};

/// One synthetic citizen as the registry would export it: raw values, all
/// strings, `""` where the registry has no value.
///
/// Serialises with the keys of [`CSV_COLUMNS`]; empty values are left out,
/// and missing keys read back as `""`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Citizen {
    /// The 12-digit citizen ID: province code (3), century-and-gender (1),
    /// year of birth (2), serial (6). Unique per seed (see
    /// [`UNIQUE_IDS_PER_SEED`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id_number: String,
    /// Full name with diacritics, NFC, e.g. "Nguyễn Thị Thanh Hương".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub full_name: String,
    /// `YYYY-MM-DD`; about 4% `YYYY-MM` and 4% `YYYY`, mostly for people
    /// born before 1980, whose records often hold only part of the date.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub date_of_birth: String,
    /// "Nam" or "Nữ", consistent with the ID's gender digit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gender: String,
    /// Always "VN".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nationality: String,
    /// Place of origin (quê quán), usually in the province of the ID code,
    /// in one of several real-world styles.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub place_of_origin: String,
    /// Place of residence: house number and street, or hamlet, then commune,
    /// district and prefixed province.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub place_of_residence: String,
    /// `YYYY-MM-DD`, between 2016-01-01 and 2025-12-31 and after the 14th
    /// birthday; the card is the one still valid on 2025-12-31.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id_issue_date: String,
    /// `YYYY-MM-DD`: the 25th, 40th or 60th birthday, per the renewal rule
    /// (see [`citizen`]); `""` when the card never expires.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id_expiry_date: String,
    /// E.164 mobile number such as "+84912345678" for about 85% of
    /// citizens, `""` otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone_number: String,
}

/// Redacted: personal data, even synthetic, must not reach logs, and code
/// that logs a `Citizen` would leak real ones too.
impl fmt::Debug for Citizen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Citizen(<redacted>)")
    }
}

/// Column names of the CSV export, in order; also the JSON keys.
pub const CSV_COLUMNS: [&str; 10] = [
    "id_number",
    "full_name",
    "date_of_birth",
    "gender",
    "nationality",
    "place_of_origin",
    "place_of_residence",
    "id_issue_date",
    "id_expiry_date",
    "phone_number",
];

/// Citizen IDs of one seed are distinct for every index below this. The
/// 6-digit serial is a bijection of `index % UNIQUE_IDS_PER_SEED`, so beyond
/// it two citizens may share an ID if their other digits also agree.
pub const UNIQUE_IDS_PER_SEED: u64 = 1_000_000;

/// Multiplier of the serial bijection. Coprime to 10^6 (odd, not a
/// multiple of 5), so `index * K mod 10^6` is a permutation of `0..10^6`.
const SERIAL_MULTIPLIER: u64 = 634_871;

/// Birth-year buckets (first year, number of years, weight) from the 2019
/// census age pyramid, restricted to adults born 1940..=2007.
const BIRTH_YEARS: &[((i32, i32), u32)] = &[
    ((1940, 5), 12),
    ((1945, 5), 18),
    ((1950, 5), 29),
    ((1955, 5), 41),
    ((1960, 5), 51),
    ((1965, 5), 58),
    ((1970, 5), 64),
    ((1975, 5), 70),
    ((1980, 5), 76),
    ((1985, 5), 81),
    ((1990, 5), 78),
    ((1995, 5), 65),
    ((2000, 5), 66),
    ((2005, 3), 41),
];

/// Mobile prefixes after +84 (Viettel, MobiFone, VinaPhone, Vietnamobile,
/// Gmobile); Viettel's are listed more than once for its larger share.
const MOBILE_PREFIXES: &[&str] = &[
    "96", "97", "98", "86", "32", "33", "34", "35", "36", "37", "38", "39", "96", "97", "98", "90",
    "93", "89", "70", "76", "77", "78", "79", "91", "94", "88", "81", "82", "83", "84", "85", "92",
    "56", "58", "99", "59",
];

/// How much of the date of birth the registry holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Precision {
    Day,
    Month,
    Year,
}

impl Precision {
    /// Partial dates are mostly old records: about 12% each of year-month
    /// and year-only before 1960, 5% for 1960-1979, 2% after; about 4% each
    /// over the whole population.
    fn draw(rng: &mut SplitMix64, birth_year: i32) -> Self {
        let share = match birth_year {
            ..1960 => 120,
            1960..1980 => 50,
            _ => 20,
        };
        let roll = rng.below(1000);
        if roll < share {
            Self::Month
        } else if roll < 2 * share {
            Self::Year
        } else {
            Self::Day
        }
    }

    /// The date as the registry holds it.
    fn render(self, born: Date) -> String {
        match self {
            Self::Day => born.to_string(),
            Self::Month => format!("{:04}-{:02}", born.year, born.month),
            Self::Year => format!("{:04}", born.year),
        }
    }

    /// The latest date consistent with what the registry holds: card dates
    /// are computed from it, so the card is never issued before the 14th
    /// birthday however the missing parts are filled in.
    fn latest(self, born: Date) -> Date {
        match self {
            Self::Day => born,
            Self::Month => Date::new(born.year, born.month, days_in_month(born.year, born.month)),
            Self::Year => Date::new(born.year, 12, 31),
        }
    }
}

/// Card expiry per Article 21 of the Law on Identification: a card expires
/// on the 25th, 40th or 60th birthday, but one issued within two years
/// before such a birthday stays valid until the next one, and cards issued
/// from two years before the 60th birthday never expire (`None`).
fn expiry(born: Date, issued: Date) -> Option<Date> {
    [25, 40, 60]
        .into_iter()
        .find(|age| issued < born.birthday(age - 2))
        .map(|age| born.birthday(age))
}

/// The 6-digit serial of citizen `index`: a bijection on
/// `0..UNIQUE_IDS_PER_SEED`, offset per seed.
fn serial(seed: u64, index: u64) -> u64 {
    let offset = mix64(seed ^ 0x7365_7269_616c) % UNIQUE_IDS_PER_SEED; // "serial"
    ((index % UNIQUE_IDS_PER_SEED) * SERIAL_MULTIPLIER + offset) % UNIQUE_IDS_PER_SEED
}

/// The synthetic citizen number `index` of registry `seed`.
///
/// Random access: the result depends only on `(seed, index)`, so a demo can
/// take citizen #17 without generating the first 17. Each citizen draws
/// from its own SplitMix64 stream, started at output `index` of a stream
/// keyed by `seed`; the ID serial comes from a bijection of the index so
/// IDs of one seed never collide below [`UNIQUE_IDS_PER_SEED`].
///
/// Dates of issue and expiry are computed from the latest birth date
/// consistent with a partial date of birth. The expiry follows the renewal
/// rule: 25th, 40th or 60th birthday, skipping a milestone less than two
/// years after issue, none from two years before the 60th; and the card is
/// the one the person holds on 2025-12-31, so it has not expired by then.
pub fn citizen(seed: u64, index: u64) -> Citizen {
    let mut rng = SplitMix64::for_citizen(seed, index);

    let registered = places::weighted_province(&mut rng);
    let male = rng.chance(500);
    let birth_year = {
        let (first, years) = rng.weighted(BIRTH_YEARS);
        // `years` is at most 5, so the cast and addition cannot overflow.
        first + rng.below(years as u64) as i32
    };
    let month = rng.between(1, 12);
    let day = rng.between(1, days_in_month(birth_year, month));
    let born = Date::new(birth_year, month, day);
    let precision = Precision::draw(&mut rng, birth_year);

    let century_gender = match (birth_year >= 2000, male) {
        (false, true) => 0,
        (false, false) => 1,
        (true, true) => 2,
        (true, false) => 3,
    };
    let id_number = format!(
        "{}{}{:02}{:06}",
        registered.code,
        century_gender,
        birth_year % 100,
        serial(seed, index)
    );

    // Origin is the father's home province: usually where the birth was
    // registered, sometimes not.
    let origin = if rng.chance(900) {
        registered
    } else {
        places::weighted_province(&mut rng)
    };
    let full_name = names::full_name(&mut rng, male, birth_year, origin.is_southern());
    let place_of_origin = places::place_of_origin(&mut rng, origin);
    let residence = places::residence_province(&mut rng, origin);
    let place_of_residence = places::place_of_residence(&mut rng, residence);

    let (issued, expires) = issue_and_expiry(&mut rng, precision.latest(born));

    let phone_number = if rng.chance(850) {
        let prefix = rng.pick(MOBILE_PREFIXES);
        let rest = rng.below(10_000_000);
        format!("+84{prefix}{rest:07}")
    } else {
        String::new()
    };

    Citizen {
        id_number,
        full_name,
        date_of_birth: precision.render(born),
        gender: if male { "Nam" } else { "Nữ" }.to_owned(),
        nationality: "VN".to_owned(),
        place_of_origin,
        place_of_residence,
        id_issue_date: issued.to_string(),
        id_expiry_date: expires.map(|d| d.to_string()).unwrap_or_default(),
        phone_number,
    }
}

/// The day the synthetic registry is a snapshot of: the last possible issue
/// date, and every card is still valid on it.
const REGISTRY_AS_OF: Date = Date::new(2025, 12, 31);

/// The current card's issue date and its expiry.
///
/// The issue date is in 2016..=2025, after the 14th birthday, and late
/// enough that the card has not expired by [`REGISTRY_AS_OF`]: the registry
/// holds the card a person has now, and someone whose 25th, 40th or 60th
/// birthday has passed was issued a new card no earlier than two years
/// before it. 40% fall in the 2021-2022 chip-card campaign when it lies in
/// that range.
fn issue_and_expiry(rng: &mut SplitMix64, born: Date) -> (Date, Option<Date>) {
    let renewed_after = [25, 40, 60]
        .into_iter()
        .filter(|age| born.birthday(*age) <= REGISTRY_AS_OF)
        .map(|age| born.birthday(age - 2))
        .max();
    let earliest = Date::new(2016, 1, 1)
        .max(born.birthday(14).succ())
        .max(renewed_after.unwrap_or(Date::new(1900, 1, 1)));
    let campaign = (earliest.max(Date::new(2021, 1, 1)), Date::new(2022, 6, 30));
    let (lo, hi) = if rng.chance(400) && campaign.0 <= campaign.1 {
        campaign
    } else {
        (earliest, REGISTRY_AS_OF)
    };
    // `earliest <= REGISTRY_AS_OF` for everyone born by 2007 (their 14th
    // birthday, and any passed milestone less two years, come before it), so
    // the span is at least one day.
    let span = (hi.to_days() - lo.to_days() + 1) as u64;
    let issued = Date::from_days(lo.to_days() + rng.below(span) as i64);
    (issued, expiry(born, issued))
}

/// Citizens `0..count` of registry `seed`; the same as
/// `(0..count).map(|i| citizen(seed, i))`.
pub fn citizens(seed: u64, count: u64) -> impl Iterator<Item = Citizen> {
    (0..count).map(move |index| citizen(seed, index))
}

/// Writes `citizens` as UTF-8 CSV with a header row of [`CSV_COLUMNS`];
/// values the registry does not hold are empty cells.
pub fn write_csv<W: Write>(w: W, citizens: impl IntoIterator<Item = Citizen>) -> io::Result<()> {
    let mut out = csv::Writer::from_writer(w);
    out.write_record(CSV_COLUMNS)?;
    for c in citizens {
        out.write_record([
            &c.id_number,
            &c.full_name,
            &c.date_of_birth,
            &c.gender,
            &c.nationality,
            &c.place_of_origin,
            &c.place_of_residence,
            &c.id_issue_date,
            &c.id_expiry_date,
            &c.phone_number,
        ])?;
    }
    out.flush()
}

/// Writes `citizens` as JSON Lines: one object per line with the keys of
/// [`CSV_COLUMNS`], leaving out values the registry does not hold.
pub fn write_jsonl<W: Write>(w: W, citizens: impl IntoIterator<Item = Citizen>) -> io::Result<()> {
    let mut out = io::BufWriter::new(w);
    for c in citizens {
        serde_json::to_writer(&mut out, &c)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests;
