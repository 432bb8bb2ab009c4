//! Versioned normalisation of claimed and registry values.
//!
//! Registry values and claimed values are both passed through these rules and
//! only the results are hashed, so two spellings match exactly when they
//! normalise to the same string. The rules are therefore part of the stored
//! data: any change that alters an output for some input is a new
//! [`NORMALIZATION_VERSION`] and a re-import, never an edit in place. This
//! module is the reference for those rules; other implementations (importers,
//! clients that pre-check input) must follow it to the letter.
//!
//! Bad input is refused with a [`Violation`]; it is never "fixed" into some
//! other value, because a silently repaired claim could match a record the
//! claimant did not mean. A violation names the field and the rule and never
//! contains the value or any part of it (it is personal data). No input string
//! makes these functions panic.
//!
//! # Version 1
//!
//! ## Every field (and the ID number)
//!
//! In this order:
//!
//! 1. An input of more than `16 × MAX_FIELD_CHARS` bytes is refused as
//!    `too_long` before anything else is done with it; this bounds the work an
//!    attacker can cause and is far above the longest valid value in any
//!    Unicode normalisation form.
//! 2. Control and invisible characters are refused (`control_character`):
//!    U+0000–U+001F (so also tab, CR and LF), U+007F–U+009F, the soft hyphen,
//!    zero-width spaces and joiners (U+200B–U+200F, U+2060–U+2064, U+FEFF),
//!    bidirectional controls (U+061C, U+202A–U+202E, U+2066–U+2069), the line
//!    and paragraph separators U+2028/U+2029, the other format characters
//!    (general category Cf), variation selectors, the combining grapheme
//!    joiner and the Hangul fillers. They are invisible on screen, so a value
//!    containing them is not what the person saw.
//! 3. Unicode NFC.
//! 4. Leading and trailing whitespace is removed and every internal run of
//!    Unicode whitespace (U+00A0, U+2000–U+200A, U+3000, ...) becomes one
//!    ASCII space.
//! 5. Nothing left: `empty`. More than [`MAX_FIELD_CHARS`] characters (Unicode
//!    scalar values) left: `too_long`.
//!
//! Then the field's own rules below. Violation fields are `"id_number"` or
//! [`Field::name`].
//!
//! ## ID number ([`normalize_id`])
//!
//! Spaces are removed ("079 085 001 234" is accepted); every remaining
//! character must be an ASCII digit, otherwise `invalid_format` (no dots,
//! dashes, fullwidth or other non-ASCII digits). 12 digits is a citizen ID
//! ([`IdKind::CitizenId12`]) whose first three digits must be a province code
//! from [`crate::provinces`] (`unknown_province_code`); the fourth digit
//! (century and gender) may be any digit. 9 digits is a legacy ID
//! ([`IdKind::LegacyId9`]). Any other count is `invalid_length`. The canonical
//! form is the digits.
//!
//! ## Vietnamese words: tone placement and folding
//!
//! Names and places share two rules. *Canonical tone placement*: every word
//! (maximal run of letters and combining marks) that parses as one Vietnamese
//! syllable — an initial consonant from `b c ch d đ g gh gi h k kh l m n ng
//! ngh nh p ph qu r s t th tr v x` or none, a vowel nucleus from the fixed
//! table of one to three vowels (`a ă â e ê i o ô ơ u ư y ai ao au ay âu ây eo
//! êu ia iê iu oa oă oe oi oo ôi ơi ua uâ uê ui uô uơ uy ưa ưi ươ ưu yê iêu oai
//! oao oay oeo uây uôi uya uyê uyu ươi ươu yêu`) and a final from `c ch m n ng
//! nh p t` or none, where `qu` is always the initial when a letter follows it
//! and `gi` is the initial when a vowel follows it — and that carries exactly
//! one tone mark (grave, acute, tilde, hook above, dot below) on one of its
//! vowel letters, has that mark moved to:
//!
//! 1. the last nucleus vowel with a quality mark (ă â ê ô ơ ư), so ơ in ươ;
//! 2. else the vowel, if the nucleus is one vowel;
//! 3. else the last nucleus vowel, if a final consonant follows;
//! 4. else the second vowel of `oa`, `oe`, `uy` (the "new style": hoà, khoẻ,
//!    thuỷ);
//! 5. else the first vowel of any other two-vowel nucleus (hải, của, mía);
//! 6. else the middle vowel of a three-vowel nucleus (ngoại, khuỷu).
//!
//! So "Hòa"/"Hoà", "Thủy"/"Thuỷ", "Khỏe"/"Khoẻ", "Hóa"/"Hoá" and the misplaced
//! "qúa"/"quá", "gìa"/"già" give one form each, and "Tuấn" stays. A word that
//! is not such a syllable (foreign letters f j w z or non-Latin letters,
//! clusters outside the tables, more than one tone mark, a tone on a consonant,
//! other marks, a tone above written before a circumflex or breve) keeps its
//! marks exactly where they are. The letters themselves are never changed, so
//! spelling variants such as i/y ("Quí"/"Quý") remain different.
//!
//! *Folding* (the diacritic-insensitive form): NFD, remove every combining
//! mark (general category M), map `đ` to `d` (it has no decomposition), NFC.
//!
//! ## full_name
//!
//! Typographic apostrophes U+2019 and U+02BC (which phone keyboards insert for
//! `'`) are read as the ASCII apostrophe. Then only letters (Unicode
//! alphabetic), combining marks directly after a letter or mark, spaces, `-`
//! and `'` are allowed; anything else (digits, other punctuation, symbols,
//! emoji, a mark after a space) is `invalid_character`; a value without any
//! letter (only hyphens and apostrophes) is `invalid_format`. `exact` is the
//! value lowercased (full Unicode lowercasing, so `Đ` → `đ`), NFC, with
//! canonical tone placement. `folded` is the fold of `exact` ("Nguyễn Văn Ân", "NGUYEN
//! VAN AN" and "nguyen  van an" all fold to "nguyen van an"). `tokens` are the
//! folded form split on spaces and hyphens, sorted and deduplicated.
//! `coarser` is empty.
//!
//! ## date_of_birth, id_issue_date, id_expiry_date
//!
//! Accepted shapes, with ASCII digits and exactly this zero padding:
//! `YYYY-MM-DD`, `YYYY-MM`, `YYYY` and the Vietnamese written order
//! `DD/MM/YYYY`; any other shape is `invalid_format`. The year must be in
//! 1900..=2100 (`out_of_range`); the month in 01..=12 and the day must exist in
//! that month, with 29 February only in Gregorian leap years
//! (`impossible_date`). `exact` is ISO 8601 at the given precision
//! (`DD/MM/YYYY` becomes `YYYY-MM-DD`); `coarser` is `[YYYY-MM, YYYY]` for a
//! full date, `[YYYY]` for a year-month and empty for a year, so a claim can
//! be compared with a registry that only holds the coarser value. No folded
//! form, no tokens.
//!
//! ### Range rules ([`check_date_ranges`])
//!
//! Checked on a request's claims once every field has normalised; they
//! refuse, they never change a value, so they are not part of
//! [`NORMALIZATION_VERSION`]. `date_of_birth` and `id_issue_date` must not
//! be in the future (`in_the_future`): a partial date is in the future when
//! its first day is after today, and "today" is the latest calendar date
//! anywhere on Earth (UTC+14), so no time zone makes a true date look
//! future. `id_expiry_date` must not be before `id_issue_date`
//! (`before_issue_date`): refused when the last day the expiry may mean is
//! before the first day the issue date may mean.
//!
//! ## gender
//!
//! Case-insensitive: `m`, `male`, `nam` → `M`; `f`, `female`, `nữ`, `nu` →
//! `F`; `x`, `other`, `khác`, `khac` → `X`; anything else `unknown_value`.
//!
//! ## nationality
//!
//! Two ASCII letters, case-insensitive, that form an officially assigned ISO
//! 3166-1 alpha-2 code → that code in uppercase. The aliases `VNM`, `Việt
//! Nam`, `Viet Nam` and `Vietnam`, compared after folding and lowercasing →
//! `VN`. Anything else is `invalid_format` (including unassigned two-letter
//! codes such as `XX` or the user-assigned `XK`).
//!
//! ## place_of_origin, place_of_residence
//!
//! Typographic apostrophes are read as `'` as for names. Allowed: letters,
//! combining marks directly after a letter or mark, ASCII digits, spaces and
//! `, ; . / - ' ( )`; anything else is `invalid_character`. Then: lowercase,
//! NFC, canonical tone placement; `,` `;` `.` `(` `)` become spaces; `/` and
//! `-` are kept when the character before is a letter, mark or digit and the
//! character after is an ASCII digit (house numbers "12/3", "12a/5", "12-14",
//! "k5/12"), and otherwise become spaces ("Bà Rịa - Vũng Tàu", "Bà
//! Rịa-Vũng Tàu" and "bà rịa vũng tàu" are the same); whitespace is collapsed
//! again. Finally every space-separated token equal to an abbreviation is
//! replaced by its expansion:
//!
//! | token | expansion |
//! |---|---|
//! | `tp` | `thành phố` |
//! | `q` | `quận` |
//! | `p` | `phường` |
//! | `tx` | `thị xã` |
//! | `tt` | `thị trấn` |
//! | `h` | `huyện` |
//! | `x` | `xã` |
//! | `hcm` | `hồ chí minh` |
//! | `hn` | `hà nội` |
//! | `tphcm` | `thành phố hồ chí minh` |
//! | `tphn` | `thành phố hà nội` |
//! | `q` + digits, e.g. `q1` | `quận` + space + the digits |
//! | `p` + digits, e.g. `p12` | `phường` + space + the digits |
//!
//! Because the separators become spaces first, "TP.", "Q.1", "P. Bến Nghé"
//! and "TP.HCM" expand too ("quận 1", "phường bến nghé", "thành phố hồ chí
//! minh"). If nothing but separators was given the value is `empty`; if no
//! letter or digit is left (only apostrophes) it is `invalid_format`; if the
//! expansions make it longer than [`MAX_FIELD_CHARS`], `too_long` (so that
//! `exact` is always itself a valid input). `folded` is the fold of `exact`;
//! `tokens` are the folded form split on spaces, sorted and deduplicated.
//!
//! ## phone_number
//!
//! Spaces, `-`, `.`, `(` and `)` are removed. Then either `+` followed by 8 to
//! 15 ASCII digits, the first not `0` and not starting `840` (a Vietnamese
//! number written with its trunk zero after the country code is ambiguous),
//! kept as is; or a Vietnamese national number: `0` followed by 9 digits, the
//! first of them not `0`, or `02` followed by 9 digits (a fixed line with its
//! area code), which becomes `+84` followed by the digits after the leading
//! `0`. Anything else, including `84...` without `+` and `00...`, is
//! `invalid_format`.
//!
//! ## Idempotence
//!
//! For every field the `exact` form is itself a valid input and normalises to
//! the same [`Normalized`]; NFC and NFD spellings of an input give the same
//! result.

mod countries;
mod vietnamese;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::Field;
use crate::provinces::is_province_code;

/// Version of the normalisation rules; stored with every record so that a
/// change of rules is a re-import, never a silent mismatch.
pub const NORMALIZATION_VERSION: u16 = 1;

/// Longest accepted value of any field, in characters.
pub const MAX_FIELD_CHARS: usize = 256;

/// Inputs larger than this many bytes are refused before any other work. Even
/// fully decomposed (UTF-8 NFD grows a string at most threefold) a value of
/// [`MAX_FIELD_CHARS`] four-byte characters fits with room for padding.
const MAX_RAW_BYTES: usize = 16 * MAX_FIELD_CHARS;

/// Field name used in violations about the ID number.
const ID_FIELD: &str = "id_number";

/// Why a value was refused. Never contains the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {description}")]
pub struct Violation {
    /// `"id_number"` or a [`Field::name`].
    pub field: &'static str,
    /// Stable machine-readable rule name, e.g. `"impossible_date"`.
    pub rule: &'static str,
    /// Lowercase human explanation naming the rule, without the value.
    pub description: String,
}

impl Violation {
    /// Every violation is built here from static text and the field name
    /// only, so no code path can put the value into the message.
    fn new(field: &'static str, rule: &'static str, explanation: &'static str) -> Self {
        Violation {
            field,
            rule,
            description: format!("{field} {explanation}"),
        }
    }
}

/// Which kind of ID document number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// 12-digit citizen identity card number (CCCD).
    CitizenId12,
    /// Legacy 9-digit identity card number (CMND).
    LegacyId9,
}

/// A validated, canonical ID number. `Debug` never shows the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct IdNumber {
    digits: String,
    kind: IdKind,
}

impl IdNumber {
    /// The canonical digits (the Argon2 password).
    pub fn as_str(&self) -> &str {
        &self.digits
    }
    /// The kind of document.
    pub fn kind(&self) -> IdKind {
        self.kind
    }
}

impl std::fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdNumber({:?}, <redacted>)", self.kind)
    }
}

/// Validate and canonicalise an ID number.
pub fn normalize_id(raw: &str) -> Result<IdNumber, Violation> {
    let text = prepare(ID_FIELD, raw)?;
    let digits: String = text.chars().filter(|c| *c != ' ').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Violation::new(
            ID_FIELD,
            "invalid_format",
            "must contain only ascii digits and spaces",
        ));
    }
    let kind = match digits.len() {
        12 => {
            // All ASCII, so byte 3 is a character boundary.
            if !digits.get(..3).is_some_and(is_province_code) {
                return Err(Violation::new(
                    ID_FIELD,
                    "unknown_province_code",
                    "must start with a known province code",
                ));
            }
            IdKind::CitizenId12
        }
        9 => IdKind::LegacyId9,
        _ => {
            return Err(Violation::new(
                ID_FIELD,
                "invalid_length",
                "must have 12 digits (citizen id) or 9 digits (legacy id)",
            ));
        }
    };
    Ok(IdNumber { digits, kind })
}

/// The canonical forms of one field value. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The canonical exact form.
    pub exact: String,
    /// Coarser forms that a registry value at lower precision may equal
    /// (a full date's year-month and year), most precise first.
    pub coarser: Vec<String>,
    /// Diacritic- and case-insensitive form, for fields that have one.
    pub folded: Option<String>,
    /// Folded tokens for token-scored fields, sorted and deduplicated.
    pub tokens: Vec<String>,
}

impl Normalized {
    /// A value with only an exact form.
    fn exact_only(exact: String) -> Self {
        Normalized {
            exact,
            coarser: Vec::new(),
            folded: None,
            tokens: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Normalized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Normalized(<redacted>)")
    }
}

/// Validate and canonicalise one field value.
pub fn normalize_field(field: Field, raw: &str) -> Result<Normalized, Violation> {
    let name = field.name();
    let text = prepare(name, raw)?;
    match field {
        Field::FullName => full_name(name, &text),
        Field::DateOfBirth | Field::IdIssueDate | Field::IdExpiryDate => date(name, &text),
        Field::Gender => gender(name, &text),
        Field::Nationality => nationality(name, &text),
        Field::PlaceOfOrigin | Field::PlaceOfResidence => place(name, &text),
        Field::PhoneNumber => phone(name, &text),
    }
}

/// The steps shared by every field: bound the work, refuse invisible
/// characters, NFC, trim and collapse whitespace, then check emptiness and
/// length on what is left.
fn prepare(field: &'static str, raw: &str) -> Result<String, Violation> {
    if raw.len() > MAX_RAW_BYTES {
        return Err(too_long(field));
    }
    if raw.chars().any(is_invisible) {
        return Err(Violation::new(
            field,
            "control_character",
            "must not contain control or invisible formatting characters",
        ));
    }
    let text = collapse_whitespace(&raw.nfc().collect::<String>());
    if text.is_empty() {
        return Err(empty(field));
    }
    check_length(field, &text)?;
    Ok(text)
}

fn empty(field: &'static str) -> Violation {
    Violation::new(field, "empty", "must not be empty")
}

fn too_long(field: &'static str) -> Violation {
    // Spelled out rather than formatted so the message stays a constant.
    const _: () = assert!(MAX_FIELD_CHARS == 256);
    Violation::new(field, "too_long", "must be at most 256 characters long")
}

fn check_length(field: &'static str, text: &str) -> Result<(), Violation> {
    if text.chars().count() > MAX_FIELD_CHARS {
        Err(too_long(field))
    } else {
        Ok(())
    }
}

/// Control characters and characters that render as nothing (see the module
/// documentation for the list and the reason). Public so that other text
/// the service stores and shows (tenant names, certificate subjects) is
/// held to the same rule.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E007F}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// Trim, and turn every internal run of Unicode whitespace into one space.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Read the typographic apostrophes that phone keyboards substitute for `'`
/// as `'`, so a name typed on a phone matches the same name typed elsewhere.
fn unify_apostrophes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{2019}' | '\u{02BC}' => '\'',
            c => c,
        })
        .collect()
}

/// Refuse any character outside `allowed`; a combining mark is allowed only
/// directly after a letter or another mark, so that stripping marks for the
/// folded form can never leave a stray mark on a space or punctuation.
fn check_characters(
    field: &'static str,
    text: &str,
    allowed: impl Fn(char) -> bool,
    explanation: &'static str,
) -> Result<(), Violation> {
    let mut prev: Option<char> = None;
    for c in text.chars() {
        let ok = if is_combining_mark(c) {
            prev.is_some_and(|p| p.is_alphabetic() || is_combining_mark(p))
        } else {
            allowed(c)
        };
        if !ok {
            return Err(Violation::new(field, "invalid_character", explanation));
        }
        prev = Some(c);
    }
    Ok(())
}

/// Full Unicode lowercasing followed by NFC (lowercasing may decompose, as
/// for `İ`).
fn lowercase_nfc(text: &str) -> String {
    text.to_lowercase().nfc().collect()
}

/// Split on any of `separators`, drop empty pieces, sort and deduplicate.
fn sorted_tokens(text: &str, separators: &[char]) -> Vec<String> {
    let mut tokens: Vec<String> = text
        .split(separators)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    tokens
}

fn full_name(field: &'static str, text: &str) -> Result<Normalized, Violation> {
    let text = unify_apostrophes(text);
    check_characters(
        field,
        &text,
        |c| c.is_alphabetic() || matches!(c, ' ' | '-' | '\''),
        "may contain only letters, spaces, hyphens and apostrophes",
    )?;
    // Only hyphens and apostrophes is not a name, and must not match one.
    if !text.chars().any(char::is_alphabetic) {
        return Err(Violation::new(
            field,
            "invalid_format",
            "must contain at least one letter",
        ));
    }
    let exact: String = vietnamese::canonical_tones(&lowercase_nfc(&text))
        .nfc()
        .collect();
    // Lowercasing can lengthen a value (`İ` becomes two characters).
    check_length(field, &exact)?;
    let folded = vietnamese::fold(&exact);
    let tokens = sorted_tokens(&folded, &[' ', '-']);
    Ok(Normalized {
        exact,
        coarser: Vec::new(),
        folded: Some(folded),
        tokens,
    })
}

/// Whether `text` has the shape of `pattern`, where `9` stands for any ASCII
/// digit and every other byte for itself.
fn has_shape(text: &str, pattern: &str) -> bool {
    text.len() == pattern.len()
        && text.bytes().zip(pattern.bytes()).all(|(t, p)| {
            if p == b'9' {
                t.is_ascii_digit()
            } else {
                t == p
            }
        })
}

/// The number in `text[range]`; callers have checked the shape, so the range
/// is all ASCII digits, but a miss is still an error rather than a panic.
fn number(text: &str, range: std::ops::Range<usize>) -> Option<u32> {
    text.get(range)?.parse().ok()
}

fn is_leap_year(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 31,
    }
}

fn date(field: &'static str, text: &str) -> Result<Normalized, Violation> {
    let invalid_format = || {
        Violation::new(
            field,
            "invalid_format",
            "must be formatted as YYYY-MM-DD, YYYY-MM, YYYY or DD/MM/YYYY",
        )
    };
    let parts = if has_shape(text, "9999-99-99") {
        (number(text, 0..4), number(text, 5..7), number(text, 8..10))
    } else if has_shape(text, "99/99/9999") {
        (number(text, 6..10), number(text, 3..5), number(text, 0..2))
    } else if has_shape(text, "9999-99") {
        (number(text, 0..4), number(text, 5..7), None)
    } else if has_shape(text, "9999") {
        (number(text, 0..4), None, None)
    } else {
        return Err(invalid_format());
    };
    let (Some(year), month, day) = parts else {
        return Err(invalid_format());
    };
    if !(1900..=2100).contains(&year) {
        return Err(Violation::new(
            field,
            "out_of_range",
            "year must be between 1900 and 2100",
        ));
    }
    let impossible = || {
        Violation::new(
            field,
            "impossible_date",
            "must be a real calendar date (YYYY-MM-DD, YYYY-MM, YYYY or DD/MM/YYYY)",
        )
    };
    let year_s = format!("{year:04}");
    let Some(month) = month else {
        return Ok(Normalized::exact_only(year_s));
    };
    if !(1..=12).contains(&month) {
        return Err(impossible());
    }
    let month_s = format!("{year_s}-{month:02}");
    let Some(day) = day else {
        return Ok(Normalized {
            coarser: vec![year_s],
            ..Normalized::exact_only(month_s)
        });
    };
    if day < 1 || day > days_in_month(year, month) {
        return Err(impossible());
    }
    Ok(Normalized {
        coarser: vec![month_s.clone(), year_s],
        ..Normalized::exact_only(format!("{month_s}-{day:02}"))
    })
}

/// A calendar date, for the range rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CivilDate {
    /// Year.
    pub year: u32,
    /// Month, 1-12.
    pub month: u32,
    /// Day of the month, 1-31.
    pub day: u32,
}

/// The first and last day a normalised date (`YYYY`, `YYYY-MM` or
/// `YYYY-MM-DD`) may mean; `None` for anything else.
fn date_span(exact: &str) -> Option<(CivilDate, CivilDate)> {
    let year = number(exact, 0..4)?;
    let month = (exact.len() >= 7).then(|| number(exact, 5..7)).flatten();
    let day = (exact.len() == 10).then(|| number(exact, 8..10)).flatten();
    let at = |month, day| CivilDate { year, month, day };
    Some(match (month, day) {
        (Some(m), Some(d)) => (at(m, d), at(m, d)),
        (Some(m), None) => (at(m, 1), at(m, days_in_month(year, m))),
        _ => (at(1, 1), at(12, 31)),
    })
}

/// The range rules of a request's normalised dates (see the module
/// documentation): births and issue dates not in the future, expiry not
/// before issue. `today` is the latest calendar date anywhere (UTC+14).
pub fn check_date_ranges(claims: &[(Field, Normalized)], today: CivilDate) -> Vec<Violation> {
    let span = |field| {
        claims
            .iter()
            .find(|(f, _)| *f == field)
            .and_then(|(_, n)| date_span(&n.exact))
    };
    let mut violations = Vec::new();
    for field in [Field::DateOfBirth, Field::IdIssueDate] {
        if span(field).is_some_and(|(first, _)| first > today) {
            violations.push(Violation::new(
                field.name(),
                "in_the_future",
                "must not be in the future",
            ));
        }
    }
    if let (Some((issued, _)), Some((_, expires))) =
        (span(Field::IdIssueDate), span(Field::IdExpiryDate))
        && expires < issued
    {
        violations.push(Violation::new(
            Field::IdExpiryDate.name(),
            "before_issue_date",
            "must not be before id_issue_date",
        ));
    }
    violations
}

fn gender(field: &'static str, text: &str) -> Result<Normalized, Violation> {
    let exact = match lowercase_nfc(text).as_str() {
        "m" | "male" | "nam" => "M",
        "f" | "female" | "nữ" | "nu" => "F",
        "x" | "other" | "khác" | "khac" => "X",
        _ => {
            return Err(Violation::new(
                field,
                "unknown_value",
                "must be m, f or x or one of their documented aliases",
            ));
        }
    };
    Ok(Normalized::exact_only(exact.to_owned()))
}

fn nationality(field: &'static str, text: &str) -> Result<Normalized, Violation> {
    if text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic()) {
        let code = text.to_ascii_uppercase();
        if countries::is_assigned(&code) {
            return Ok(Normalized::exact_only(code));
        }
    } else if matches!(
        vietnamese::fold(&lowercase_nfc(text)).as_str(),
        "vnm" | "viet nam" | "vietnam"
    ) {
        return Ok(Normalized::exact_only("VN".to_owned()));
    }
    Err(Violation::new(
        field,
        "invalid_format",
        "must be an assigned iso 3166-1 alpha-2 country code or a name of viet nam",
    ))
}

/// Administrative abbreviations expanded in addresses, by whole token. The
/// expansions are already in canonical form (a unit test checks this), so
/// normalising an address twice changes nothing.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("tp", "thành phố"),
    ("q", "quận"),
    ("p", "phường"),
    ("tx", "thị xã"),
    ("tt", "thị trấn"),
    ("h", "huyện"),
    ("x", "xã"),
    ("hcm", "hồ chí minh"),
    ("hn", "hà nội"),
    ("tphcm", "thành phố hồ chí minh"),
    ("tphn", "thành phố hà nội"),
];

/// Abbreviations that are also written glued to a number ("Q1", "P12").
const NUMBERED_ABBREVIATIONS: &[(char, &str)] = &[('q', "quận"), ('p', "phường")];

fn expand_token(token: &str, out: &mut Vec<String>) {
    if let Some((_, expansion)) = ABBREVIATIONS.iter().find(|(a, _)| *a == token) {
        out.push((*expansion).to_owned());
        return;
    }
    let mut chars = token.chars();
    if let Some(first) = chars.next()
        && let rest = chars.as_str()
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_digit())
        && let Some((_, expansion)) = NUMBERED_ABBREVIATIONS.iter().find(|(a, _)| *a == first)
    {
        out.push(format!("{expansion} {rest}"));
        return;
    }
    out.push(token.to_owned());
}

fn place(field: &'static str, text: &str) -> Result<Normalized, Violation> {
    let text = unify_apostrophes(text);
    check_characters(
        field,
        &text,
        |c| {
            c.is_alphabetic()
                || c.is_ascii_digit()
                || matches!(c, ' ' | ',' | ';' | '.' | '/' | '-' | '\'' | '(' | ')')
        },
        "may contain only letters, digits, spaces and , ; . / - ' ( )",
    )?;
    let toned: Vec<char> = vietnamese::canonical_tones(&lowercase_nfc(&text))
        .nfc()
        .collect();
    let separated: String = toned
        .iter()
        .enumerate()
        .map(|(i, &c)| match c {
            ',' | ';' | '.' | '(' | ')' => ' ',
            '/' | '-' => {
                // Keep the joiners of house numbers ("12/3", "12-14"); a `/`
                // or `-` anywhere else only separates words.
                let before = i
                    .checked_sub(1)
                    .and_then(|j| toned.get(j))
                    .is_some_and(|p| {
                        p.is_alphabetic() || p.is_ascii_digit() || is_combining_mark(*p)
                    });
                let after = toned.get(i + 1).is_some_and(char::is_ascii_digit);
                if before && after { c } else { ' ' }
            }
            c => c,
        })
        .collect();
    let mut words = Vec::new();
    for token in separated.split_whitespace() {
        expand_token(token, &mut words);
    }
    let exact = words.join(" ");
    if exact.is_empty() {
        return Err(empty(field));
    }
    // Apostrophes alone are not an address, and must not match one.
    if !exact
        .chars()
        .any(|c| c.is_alphabetic() || c.is_ascii_digit())
    {
        return Err(Violation::new(
            field,
            "invalid_format",
            "must contain at least one letter or digit",
        ));
    }
    check_length(field, &exact)?;
    let folded = vietnamese::fold(&exact);
    let tokens = sorted_tokens(&folded, &[' ']);
    Ok(Normalized {
        exact,
        coarser: Vec::new(),
        folded: Some(folded),
        tokens,
    })
}

fn phone(field: &'static str, text: &str) -> Result<Normalized, Violation> {
    let invalid = || {
        Violation::new(
            field,
            "invalid_format",
            "must be e.164 (+ and 8 to 15 digits) or a vietnamese national number (0 and 9 digits)",
        )
    };
    let compact: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let exact = if let Some(digits) = compact.strip_prefix('+') {
        let ok = all_digits(digits)
            && (8..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && !digits.starts_with("840");
        if !ok {
            return Err(invalid());
        }
        compact
    } else if all_digits(&compact) {
        let national = match compact.len() {
            10 => compact.starts_with('0') && !compact.starts_with("00"),
            11 => compact.starts_with("02"),
            _ => false,
        };
        match compact.get(1..) {
            Some(subscriber) if national => format!("+84{subscriber}"),
            _ => return Err(invalid()),
        }
    } else {
        return Err(invalid());
    };
    Ok(Normalized::exact_only(exact))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(field: Field, raw: &str) -> Normalized {
        match normalize_field(field, raw) {
            Ok(n) => n,
            Err(v) => panic!("{raw:?} refused: {v}"),
        }
    }

    fn exact(field: Field, raw: &str) -> String {
        norm(field, raw).exact
    }

    fn rule(field: Field, raw: &str) -> &'static str {
        match normalize_field(field, raw) {
            Ok(n) => panic!("{raw:?} accepted as {:?}", n.exact),
            Err(v) => v.rule,
        }
    }

    fn id_rule(raw: &str) -> &'static str {
        match normalize_id(raw) {
            Ok(_) => panic!("{raw:?} accepted"),
            Err(v) => v.rule,
        }
    }

    // ---- general rules ----

    #[test]
    fn general_rules_apply_to_every_field() {
        let long = "a".repeat(MAX_FIELD_CHARS + 1);
        let huge = "a".repeat(MAX_RAW_BYTES + 1);
        for f in Field::ALL {
            assert_eq!(rule(f, ""), "empty", "{f}");
            assert_eq!(rule(f, " \u{a0}\u{3000} "), "empty", "{f}");
            assert_eq!(rule(f, &long), "too_long", "{f}");
            assert_eq!(rule(f, &huge), "too_long", "{f}");
            for bad in [
                "a\u{0}b",
                "a\tb",
                "a\nb",
                "a\u{7f}",
                "a\u{85}",
                "a\u{200b}b",
                "a\u{200d}b",
                "\u{feff}a",
                "a\u{202e}b",
                "a\u{2066}b",
                "a\u{ad}b",
                "a\u{2028}b",
                "a\u{fe0f}",
            ] {
                assert_eq!(rule(f, bad), "control_character", "{f} {bad:?}");
                let v = normalize_field(f, bad).expect_err("refused");
                assert_eq!(v.field, f.name());
            }
        }
        assert_eq!(id_rule(""), "empty");
        assert_eq!(id_rule(&long), "too_long");
        assert_eq!(id_rule("079\u{200b}085001234"), "control_character");
    }

    #[test]
    fn unicode_whitespace_is_collapsed() {
        assert_eq!(
            exact(Field::FullName, "\u{3000} Nguyễn\u{a0}\u{2003}Văn   An "),
            "nguyễn văn an"
        );
        assert_eq!(exact(Field::Gender, "\u{a0}Nam\u{202f}"), "M");
    }

    #[test]
    fn length_is_counted_in_characters_after_trimming() {
        let at_limit = "ă".repeat(MAX_FIELD_CHARS);
        assert_eq!(
            norm(Field::FullName, &format!("  {at_limit}  ")).exact,
            at_limit
        );
        // The same name decomposed is longer in code points but not in NFC.
        let nfd: String = at_limit.nfd().collect();
        assert_eq!(exact(Field::FullName, &nfd), at_limit);
    }

    // ---- id number ----

    #[test]
    fn id_numbers() {
        let id = normalize_id("079085001234").expect("valid");
        assert_eq!(id.as_str(), "079085001234");
        assert_eq!(id.kind(), IdKind::CitizenId12);
        let spaced = normalize_id(" 079 085 001\u{a0}234 ").expect("valid");
        assert_eq!(spaced, id);
        let legacy = normalize_id("123456789").expect("valid");
        assert_eq!(legacy.kind(), IdKind::LegacyId9);
        for century in '0'..='9' {
            assert!(normalize_id(&format!("001{century}85001234")).is_ok());
        }
        assert!(!format!("{id:?}").contains("079085001234"));
    }

    #[test]
    fn id_violations() {
        for bad in [
            "079-085-001234",
            "079.085.001.234",
            "07908500123a",
            "０７９０８５００１２３４",
            "٠٧٩٠٨٥٠٠١٢٣٤",
            "+79085001234",
        ] {
            assert_eq!(id_rule(bad), "invalid_format", "{bad}");
        }
        for bad in [
            "07908500123",
            "0790850012345",
            "12345678",
            "1",
            "1234567890",
        ] {
            assert_eq!(id_rule(bad), "invalid_length", "{bad}");
        }
        for bad in [
            "003085001234",
            "000085001234",
            "097085001234",
            "999085001234",
        ] {
            assert_eq!(id_rule(bad), "unknown_province_code", "{bad}");
        }
    }

    // ---- full name ----

    #[test]
    fn names_are_lowercased_and_toned_canonically() {
        assert_eq!(exact(Field::FullName, "Nguyễn Văn An"), "nguyễn văn an");
        assert_eq!(exact(Field::FullName, "ĐẶNG THỊ HOÀ"), "đặng thị hoà");
        for (a, b) in [
            ("Lê Thị Hòa", "Lê Thị Hoà"),
            ("Nguyễn Thị Thủy", "Nguyễn Thị Thuỷ"),
            ("Khỏe", "Khoẻ"),
            ("Hóa", "Hoá"),
            ("Trần Quý", "TRẦN QÚY"),
        ] {
            assert_eq!(exact(Field::FullName, a), exact(Field::FullName, b), "{a}");
        }
        assert_eq!(exact(Field::FullName, "Lê Hòa"), "lê hoà");
        assert_eq!(exact(Field::FullName, "Thủy"), "thuỷ");
        assert_eq!(exact(Field::FullName, "Tuấn"), "tuấn");
        assert_eq!(exact(Field::FullName, "Huỳnh Tấn Phát"), "huỳnh tấn phát");
    }

    #[test]
    fn names_fold_and_tokenise() {
        let a = norm(Field::FullName, "Nguyễn Văn An");
        let b = norm(Field::FullName, "NGUYEN VAN AN");
        let c = norm(Field::FullName, "nguyen  van an");
        assert_eq!(a.folded.as_deref(), Some("nguyen van an"));
        assert_eq!(a.folded, b.folded);
        assert_eq!(a.folded, c.folded);
        assert_ne!(a.exact, b.exact);

        let an = norm(Field::FullName, "Nguyễn Văn An");
        let an_hat = norm(Field::FullName, "Nguyễn Văn Ân");
        assert_ne!(an.exact, an_hat.exact);
        assert_eq!(an.folded, an_hat.folded);

        let d = norm(Field::FullName, "Đoàn-Lê Văn An văn");
        assert_eq!(d.folded.as_deref(), Some("doan-le van an van"));
        assert_eq!(d.tokens, ["an", "doan", "le", "van"]);
        assert!(d.coarser.is_empty());
    }

    #[test]
    fn names_accept_apostrophes_hyphens_and_other_scripts() {
        assert_eq!(exact(Field::FullName, "H’Hen Niê"), "h'hen niê");
        assert_eq!(exact(Field::FullName, "H'Hen Niê"), "h'hen niê");
        assert_eq!(exact(Field::FullName, "Jean-Pierre"), "jean-pierre");
        assert_eq!(exact(Field::FullName, "José Müller"), "josé müller");
        assert_eq!(exact(Field::FullName, "王小明"), "王小明");
        // A foreign word keeps its mark where it was written.
        assert_eq!(exact(Field::FullName, "Leá"), "leá");
    }

    #[test]
    fn names_need_a_letter() {
        for bad in ["-", "'", "- ' -", "’"] {
            assert_eq!(rule(Field::FullName, bad), "invalid_format", "{bad:?}");
        }
        for bad in ["'", "' '", "(')"] {
            assert_eq!(rule(Field::PlaceOfOrigin, bad), "invalid_format", "{bad:?}");
        }
        assert_eq!(exact(Field::PlaceOfOrigin, "5"), "5");
    }

    #[test]
    fn name_violations() {
        for bad in [
            "Nguyen Van An 2",
            "Nguyễn.Văn",
            "An!",
            "An 😀",
            "An_B",
            "An@b",
            "\u{301}An",
            "An \u{301}",
            "An-\u{301}",
            "An１",
        ] {
            assert_eq!(rule(Field::FullName, bad), "invalid_character", "{bad:?}");
        }
    }

    // ---- dates ----

    #[test]
    fn dates_in_every_shape() {
        let full = norm(Field::DateOfBirth, "1985-03-12");
        assert_eq!(full.exact, "1985-03-12");
        assert_eq!(full.coarser, ["1985-03", "1985"]);
        assert_eq!(full.folded, None);
        assert!(full.tokens.is_empty());
        assert_eq!(norm(Field::DateOfBirth, "12/03/1985"), full);
        let month = norm(Field::IdIssueDate, " 1985-03 ");
        assert_eq!(month.exact, "1985-03");
        assert_eq!(month.coarser, ["1985"]);
        let year = norm(Field::IdExpiryDate, "2100");
        assert_eq!(year.exact, "2100");
        assert!(year.coarser.is_empty());
        assert_eq!(exact(Field::DateOfBirth, "1900-01-01"), "1900-01-01");
        assert_eq!(exact(Field::DateOfBirth, "31/12/2100"), "2100-12-31");
    }

    #[test]
    fn future_dates_and_expiry_before_issue_are_out_of_range() {
        let today = CivilDate {
            year: 2026,
            month: 12,
            day: 2,
        };
        let claims = |pairs: &[(Field, &str)]| -> Vec<(Field, Normalized)> {
            pairs.iter().map(|(f, v)| (*f, norm(*f, v))).collect()
        };
        let rules = |pairs: &[(Field, &str)]| -> Vec<(&'static str, &'static str)> {
            check_date_ranges(&claims(pairs), today)
                .into_iter()
                .map(|v| (v.field, v.rule))
                .collect()
        };
        // Today, this month and this year are not the future.
        for ok in ["2026-12-02", "02/12/2026", "2026-12", "2026"] {
            assert!(rules(&[(Field::DateOfBirth, ok)]).is_empty(), "{ok}");
        }
        for future in ["2026-12-03", "2027-01", "2027"] {
            assert_eq!(
                rules(&[(Field::DateOfBirth, future), (Field::IdIssueDate, future)]),
                [
                    ("date_of_birth", "in_the_future"),
                    ("id_issue_date", "in_the_future")
                ],
                "{future}"
            );
        }
        // An expiry in the future is what a valid card has.
        assert!(rules(&[(Field::IdExpiryDate, "2040-01-01")]).is_empty());
        assert_eq!(
            rules(&[
                (Field::IdIssueDate, "2021-05-10"),
                (Field::IdExpiryDate, "2021-05-09")
            ]),
            [("id_expiry_date", "before_issue_date")]
        );
        // Partial dates: refused only when no reading of them fits.
        assert!(
            rules(&[
                (Field::IdIssueDate, "2021-05-10"),
                (Field::IdExpiryDate, "2021-05")
            ])
            .is_empty()
        );
        assert!(
            rules(&[
                (Field::IdIssueDate, "2021"),
                (Field::IdExpiryDate, "2021-01-01")
            ])
            .is_empty()
        );
        assert_eq!(
            rules(&[(Field::IdIssueDate, "2021"), (Field::IdExpiryDate, "2020")]),
            [("id_expiry_date", "before_issue_date")]
        );
        let v = &check_date_ranges(&claims(&[(Field::DateOfBirth, "2030-01-01")]), today)[0];
        assert_eq!(v.description, "date_of_birth must not be in the future");
    }

    #[test]
    fn leap_years() {
        assert_eq!(exact(Field::DateOfBirth, "2000-02-29"), "2000-02-29");
        assert_eq!(exact(Field::DateOfBirth, "2024-02-29"), "2024-02-29");
        assert_eq!(exact(Field::DateOfBirth, "29/02/1996"), "1996-02-29");
        for bad in ["1900-02-29", "2023-02-29", "2100-02-29", "2024-02-30"] {
            assert_eq!(rule(Field::DateOfBirth, bad), "impossible_date", "{bad}");
        }
    }

    #[test]
    fn date_violations() {
        for bad in [
            "1985-04-31",
            "1985-00-10",
            "1985-13-01",
            "1985-01-00",
            "1985-01-32",
            "1985-00",
            "1985-13",
            "31/04/1985",
            "00/01/1985",
        ] {
            assert_eq!(rule(Field::DateOfBirth, bad), "impossible_date", "{bad}");
        }
        for bad in [
            "1899-12-31",
            "2101-01-01",
            "1899",
            "0000",
            "9999-01",
            "01/01/1899",
        ] {
            assert_eq!(rule(Field::DateOfBirth, bad), "out_of_range", "{bad}");
        }
        for bad in [
            "1985-3-12",
            "85-03-12",
            "1985/03/12",
            "12-03-1985",
            "1985-03-12T00:00",
            "1985 03 12",
            "03/1985",
            "1/3/1985",
            "12.03.1985",
            "１９８５",
            "198５-03-12",
            "+985",
            "march 1985",
        ] {
            assert_eq!(rule(Field::DateOfBirth, bad), "invalid_format", "{bad}");
        }
        let v = normalize_field(Field::DateOfBirth, "1985-02-30").expect_err("impossible");
        assert_eq!(
            v,
            Violation {
                field: "date_of_birth",
                rule: "impossible_date",
                description:
                    "date_of_birth must be a real calendar date (YYYY-MM-DD, YYYY-MM, YYYY or DD/MM/YYYY)"
                        .into(),
            }
        );
    }

    // ---- gender, nationality ----

    #[test]
    fn genders() {
        for (raw, want) in [
            ("m", "M"),
            ("Male", "M"),
            ("NAM", "M"),
            ("f", "F"),
            ("FEMALE", "F"),
            ("Nữ", "F"),
            ("NỮ", "F"),
            ("nu", "F"),
            ("X", "X"),
            ("Other", "X"),
            ("Khác", "X"),
            ("khac", "X"),
        ] {
            let n = norm(Field::Gender, raw);
            assert_eq!(n.exact, want, "{raw}");
            assert_eq!(n.folded, None);
        }
        assert_eq!(exact(Field::Gender, &"Nữ".nfd().collect::<String>()), "F");
        for bad in ["man", "woman", "n", "nử", "0", "ma le"] {
            assert_eq!(rule(Field::Gender, bad), "unknown_value", "{bad}");
        }
    }

    #[test]
    fn nationalities() {
        for (raw, want) in [
            ("vn", "VN"),
            ("VN", "VN"),
            ("Us", "US"),
            ("VNM", "VN"),
            ("Việt Nam", "VN"),
            ("VIỆT NAM", "VN"),
            ("viet  nam", "VN"),
            ("Vietnam", "VN"),
        ] {
            let n = norm(Field::Nationality, raw);
            assert_eq!(n.exact, want, "{raw}");
            assert_eq!(n.folded, None);
        }
        for bad in [
            "XX",
            "XK",
            "V",
            "USA",
            "Việt",
            "ＶＮ",
            "V N",
            "Vi-et Nam",
            "12",
        ] {
            assert_eq!(rule(Field::Nationality, bad), "invalid_format", "{bad}");
        }
    }

    // ---- places ----

    #[test]
    fn places_expand_abbreviations_and_separators() {
        let f = Field::PlaceOfResidence;
        assert_eq!(
            exact(f, "12 Lê Lợi, Phường Bến Nghé, Quận 1, Hồ Chí Minh"),
            "12 lê lợi phường bến nghé quận 1 hồ chí minh"
        );
        assert_eq!(
            exact(f, "12 Lê Lợi, P. Bến Nghé, Q.1, TP.HCM"),
            "12 lê lợi phường bến nghé quận 1 thành phố hồ chí minh"
        );
        assert_eq!(exact(f, "TPHCM"), "thành phố hồ chí minh");
        assert_eq!(exact(f, "HCM"), "hồ chí minh");
        assert_eq!(exact(f, "Tp. Hà Nội"), "thành phố hà nội");
        assert_eq!(exact(f, "HN"), "hà nội");
        assert_eq!(exact(f, "Q1; P12"), "quận 1 phường 12");
        assert_eq!(exact(f, "TX. Sơn Tây"), "thị xã sơn tây");
        assert_eq!(
            exact(f, "TT Đông Anh, H. Đông Anh"),
            "thị trấn đông anh huyện đông anh"
        );
        assert_eq!(exact(f, "X. Tân Hòa"), "xã tân hoà");
        assert_eq!(exact(f, "Thôn 3 (cũ)"), "thôn 3 cũ");
        // Words that merely start like an abbreviation are left alone.
        assert_eq!(exact(f, "Quy Nhơn"), "quy nhơn");
        assert_eq!(exact(f, "qa"), "qa");
    }

    #[test]
    fn places_keep_house_numbers() {
        let f = Field::PlaceOfOrigin;
        assert_eq!(exact(f, "12/3 Nguyễn Trãi"), "12/3 nguyễn trãi");
        assert_eq!(exact(f, "12A/5 Hẻm 7"), "12a/5 hẻm 7");
        assert_eq!(exact(f, "K5/12 Đà Nẵng"), "k5/12 đà nẵng");
        assert_eq!(
            exact(f, "Số 12-14 Lý Thường Kiệt"),
            "số 12-14 lý thường kiệt"
        );
        for variant in ["Bà Rịa - Vũng Tàu", "Bà Rịa-Vũng Tàu", "bà rịa / vũng tàu"]
        {
            assert_eq!(exact(f, variant), "bà rịa vũng tàu", "{variant}");
        }
        assert_eq!(exact(f, "Khu phố 3-Phường 5"), "khu phố 3 phường 5");
        assert_eq!(exact(f, "Ea H'Leo, Đắk Lắk"), "ea h'leo đắk lắk");
    }

    #[test]
    fn places_fold_and_tokenise() {
        let n = norm(Field::PlaceOfResidence, "Phường Bến Nghé, Q.1, Phường 1");
        assert_eq!(n.exact, "phường bến nghé quận 1 phường 1");
        assert_eq!(n.folded.as_deref(), Some("phuong ben nghe quan 1 phuong 1"));
        assert_eq!(n.tokens, ["1", "ben", "nghe", "phuong", "quan"]);
        assert!(n.coarser.is_empty());
        let hoa_old = norm(Field::PlaceOfOrigin, "Khánh Hòa");
        let hoa_new = norm(Field::PlaceOfOrigin, "Khánh Hoà");
        assert_eq!(hoa_old, hoa_new);
    }

    #[test]
    fn place_violations() {
        let f = Field::PlaceOfResidence;
        for bad in [
            "12 Lê Lợi #3",
            "Lê Lợi & Hai",
            "a@b",
            "Số 5: Lê Lợi",
            "Q１",
            "Hà Nội 😀",
            "ab_c",
        ] {
            assert_eq!(rule(f, bad), "invalid_character", "{bad:?}");
        }
        for bad in [",", " . ; ( ) ", "- / -"] {
            assert_eq!(rule(f, bad), "empty", "{bad:?}");
        }
        // Expansion may not push the canonical form past the limit.
        let many = "tphcm ".repeat(MAX_FIELD_CHARS / 6);
        assert_eq!(rule(f, &many), "too_long");
    }

    #[test]
    fn abbreviation_expansions_are_canonical() {
        for (abbr, expansion) in ABBREVIATIONS
            .iter()
            .copied()
            .chain(NUMBERED_ABBREVIATIONS.iter().map(|(_, e)| ("", *e)))
        {
            for f in [Field::PlaceOfOrigin, Field::PlaceOfResidence] {
                assert_eq!(exact(f, expansion), expansion, "{abbr}");
            }
        }
    }

    // ---- phone ----

    #[test]
    fn phone_numbers() {
        let f = Field::PhoneNumber;
        for (raw, want) in [
            ("0912345678", "+84912345678"),
            ("091 234 5678", "+84912345678"),
            ("091-234-5678", "+84912345678"),
            ("091.234.5678", "+84912345678"),
            ("+84 912 345 678", "+84912345678"),
            ("(+84) 912-345-678", "+84912345678"),
            ("(024) 3825 1234", "+842438251234"),
            ("+1 (415) 555-0100", "+14155550100"),
            ("+44 20 7946 0958", "+442079460958"),
            ("+12345678", "+12345678"),
            ("+123456789012345", "+123456789012345"),
        ] {
            let n = norm(f, raw);
            assert_eq!(n.exact, want, "{raw}");
            assert_eq!(n.folded, None);
        }
        for bad in [
            "84912345678",
            "912345678",
            "0012345678",
            "+0912345678",
            "+840912345678",
            "+1234567",
            "+1234567890123456",
            "091234567",
            "09123456789",
            "+84 912 ABC",
            "+84+912345678",
            "091/234/5678",
            "０９１２３４５６７８",
        ] {
            assert_eq!(rule(f, bad), "invalid_format", "{bad}");
        }
    }

    // ---- descriptions ----

    #[test]
    fn descriptions_never_contain_the_input() {
        let cases: &[(Option<Field>, &str)] = &[
            (None, "079-085-001234"),
            (None, "0790850012345"),
            (None, "003085001234"),
            (None, "secret\u{200b}"),
            (Some(Field::FullName), "Nguyen Van An 2"),
            (Some(Field::FullName), "Trần\u{0}Hưng"),
            (Some(Field::DateOfBirth), "1985-02-30"),
            (Some(Field::DateOfBirth), "1850-01-01"),
            (Some(Field::DateOfBirth), "12.03.1985"),
            (Some(Field::IdIssueDate), "2023-13"),
            (Some(Field::Gender), "woman"),
            (Some(Field::Nationality), "Atlantis"),
            (Some(Field::PlaceOfOrigin), "12 Lê Lợi #3"),
            (Some(Field::PlaceOfResidence), ",,,"),
            (Some(Field::PhoneNumber), "84912345678"),
            (Some(Field::PhoneNumber), "call me"),
        ];
        for &(field, input) in cases {
            let v = match field {
                Some(f) => normalize_field(f, input).expect_err("bad input"),
                None => normalize_id(input).expect_err("bad input"),
            };
            assert!(!v.description.contains(input), "{input:?}");
            assert!(!v.to_string().contains(input), "{input:?}");
            check_description(&v);
        }
    }

    /// Lowercase apart from the date shape placeholders, no trailing
    /// punctuation, and starts with the field it is about.
    fn check_description(v: &Violation) {
        let d = &v.description;
        assert!(d.starts_with(v.field), "{d}");
        let without_shapes = d.replace("YYYY", "").replace("MM", "").replace("DD", "");
        assert_eq!(without_shapes, without_shapes.to_lowercase(), "{d}");
        assert!(!d.ends_with(['.', '!', '?', ',', ';', ':']), "{d}");
    }

    // ---- properties ----

    /// Vietnamese letters in both cases, precomposed and as combining marks,
    /// plus the separators names use: the inputs where tone placement,
    /// casing and NFC/NFD handling meet.
    fn vietnamese_text(extra: &'static str, max_len: usize) -> impl Strategy<Value = String> {
        const LETTERS: &str = "abcdđeghiklmnopqrstuvxyăâêôơư\
            àáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ\
            ABCDĐEGHIKLMNOPQRSTUVXYĂÂÊÔƠƯÀÁẢÃẠẰẮẲẴẶẦẤẨẪẬÈÉẺẼẸỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌỒỐỔỖỘỜỚỞỠỢÙÚỦŨỤỪỨỬỮỰỲÝỶỸỴ\
            \u{300}\u{301}\u{303}\u{309}\u{323}\u{302}\u{306}\u{31b}  -'";
        let chars: Vec<char> = LETTERS.chars().chain(extra.chars()).collect();
        proptest::collection::vec(proptest::sample::select(chars), 0..max_len)
            .prop_map(|v| v.into_iter().collect())
    }

    /// Whole words shaped like Vietnamese names, so that most inputs pass
    /// validation and reach the tone rules.
    fn vietnamese_name() -> impl Strategy<Value = String> {
        let word = proptest::sample::select(vec![
            "Nguyễn",
            "Trần",
            "Lê",
            "Phạm",
            "Hoàng",
            "Huỳnh",
            "Võ",
            "Đặng",
            "Bùi",
            "Đỗ",
            "Hồ",
            "Ngô",
            "Dương",
            "Lý",
            "Văn",
            "Thị",
            "Hòa",
            "Hoà",
            "Thủy",
            "Thuỷ",
            "Khỏe",
            "Khoẻ",
            "Hóa",
            "Hoá",
            "Tuấn",
            "Quỳnh",
            "Ngọc",
            "Giang",
            "Khuê",
            "Nguyệt",
            "Xuân",
            "Thúy",
            "Quý",
            "Qúy",
            "Gìa",
            "Già",
            "Ngoại",
            "Ngòai",
            "Khuỷu",
            "Khủyu",
            "Trường",
            "An",
            "Ân",
        ]);
        proptest::collection::vec(word, 1..5).prop_map(|w| w.join(" "))
    }

    fn all_fields() -> impl Strategy<Value = Field> {
        proptest::sample::select(Field::ALL.to_vec())
    }

    fn assert_idempotent(field: Field, raw: &str) -> Result<(), TestCaseError> {
        if let Ok(first) = normalize_field(field, raw) {
            let again = normalize_field(field, &first.exact);
            prop_assert!(again.is_ok(), "{field}: exact form refused: {again:?}");
            if let Ok(again) = again {
                prop_assert_eq!(&again.exact, &first.exact, "{}", field);
                prop_assert_eq!(&again.folded, &first.folded, "{}", field);
                prop_assert_eq!(&again.tokens, &first.tokens, "{}", field);
                prop_assert_eq!(&again.coarser, &first.coarser, "{}", field);
            }
        }
        Ok(())
    }

    fn assert_nfc_nfd_agree(field: Field, raw: &str) -> Result<(), TestCaseError> {
        let nfc: String = raw.nfc().collect();
        let nfd: String = raw.nfd().collect();
        prop_assert_eq!(
            normalize_field(field, &nfc),
            normalize_field(field, &nfd),
            "{}",
            field
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn never_panics_on_any_string(field in all_fields(), s in any::<String>()) {
            let _ = normalize_field(field, &s);
            let _ = normalize_id(&s);
        }

        #[test]
        fn never_panics_on_vietnamese_text(
            field in all_fields(),
            s in vietnamese_text("0123456789,;./()+", 40),
        ) {
            let _ = normalize_field(field, &s);
            let _ = normalize_id(&s);
        }

        #[test]
        fn exact_is_idempotent_on_any_string(field in all_fields(), s in any::<String>()) {
            assert_idempotent(field, &s)?;
        }

        #[test]
        fn exact_is_idempotent_on_vietnamese_text(
            field in all_fields(),
            s in vietnamese_text("0123456789,;./()", 40),
        ) {
            assert_idempotent(field, &s)?;
        }

        #[test]
        fn exact_is_idempotent_on_names(s in vietnamese_name()) {
            prop_assert!(normalize_field(Field::FullName, &s).is_ok());
            assert_idempotent(Field::FullName, &s)?;
            assert_idempotent(Field::PlaceOfOrigin, &s)?;
        }

        #[test]
        fn id_is_idempotent(s in "[0-9 ]{0,16}") {
            if let Ok(id) = normalize_id(&s) {
                prop_assert_eq!(normalize_id(id.as_str()), Ok(id));
            }
        }

        #[test]
        fn nfc_and_nfd_agree(field in all_fields(), s in vietnamese_text("0123456789,./", 40)) {
            assert_nfc_nfd_agree(field, &s)?;
        }

        #[test]
        fn nfc_and_nfd_agree_on_any_string(field in all_fields(), s in any::<String>()) {
            assert_nfc_nfd_agree(field, &s)?;
        }

        #[test]
        fn case_does_not_matter_for_names(s in vietnamese_text("", 30)) {
            let upper = normalize_field(Field::FullName, &s.to_uppercase());
            let lower = normalize_field(Field::FullName, &s.to_lowercase());
            prop_assert_eq!(upper, lower);
        }

        #[test]
        fn case_does_not_matter_for_real_names(s in vietnamese_name()) {
            let upper = normalize_field(Field::FullName, &s.to_uppercase());
            let lower = normalize_field(Field::FullName, &s.to_lowercase());
            prop_assert!(upper.is_ok());
            prop_assert_eq!(upper, lower);
        }

        #[test]
        fn descriptions_depend_only_on_field_and_rule(
            field in all_fields(),
            a in vietnamese_text("0123456789,./#@!", 20),
            b in any::<String>(),
        ) {
            // The description is a function of (field, rule) alone, so it
            // cannot carry any part of the value.
            if let (Err(va), Err(vb)) = (normalize_field(field, &a), normalize_field(field, &b)) {
                check_description(&va);
                check_description(&vb);
                if va.rule == vb.rule {
                    prop_assert_eq!(va, vb);
                }
            }
            if let (Err(va), Err(vb)) = (normalize_id(&a), normalize_id(&b))
                && va.rule == vb.rule
            {
                prop_assert_eq!(va, vb);
            }
        }
    }
}
