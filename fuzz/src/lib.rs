//! What the fuzz targets share: whether a message quotes a value, and the
//! import check (read any bytes as an export, validate every row).

use ekyc_domain::normalize::CivilDate;
pub use ekyc_input::rows::Format;
use ekyc_input::rows::{read_rows_from, validate_row};

/// Reads `data` as an export in `format` and validates every row; checks
/// that no message quotes a value of the input.
pub fn rows(data: &[u8], format: Format) {
    let today = CivilDate {
        year: 2026,
        month: 12,
        day: 1,
    };
    let (rows, rejects) = match read_rows_from(data, format) {
        Ok(read) => read,
        Err(e) => {
            quotes_nothing(&e.to_string(), data);
            return;
        }
    };
    for r in &rejects {
        quotes_nothing(&r.description, data);
    }
    for row in &rows {
        if let Err(violations) = validate_row(row, today) {
            for v in violations {
                for (_, value) in &row.values {
                    assert!(!quotes(&v.description, value), "a violation quotes a value");
                }
            }
        }
    }
}

/// An import error or reject may name columns and rules, never a stretch
/// of the input that could be a value.
fn quotes_nothing(message: &str, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for token in text.split(['\n', ',', '"', '{', '}', ':']) {
        assert!(!quotes(message, token), "an import error quotes the input");
    }
}

/// Whether `message` quotes `value`, for values that look like personal
/// data. Messages are static lowercase ASCII text, field names and small
/// numbers (limits such as 256 or 1900), so a value made only of such text
/// can appear in one by coincidence (the fuzzer finds those, e.g. a value
/// spelling "id_number must contain"). A value with a non-ASCII letter, a
/// capitalised word ("Nguyen") or five digits in a row cannot, and is what
/// names, addresses, IDs and phone numbers look like.
pub fn quotes(message: &str, value: &str) -> bool {
    let value = value.trim();
    let mut run = 0;
    let mut digits = 0;
    for c in value.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        digits = digits.max(run);
    }
    let capitalised = value
        .split(|c: char| !c.is_alphabetic())
        .any(|w| w.chars().any(char::is_uppercase) && w.chars().any(char::is_lowercase));
    let personal = (!value.is_ascii() && value.chars().count() >= 3) || capitalised || digits >= 5;
    personal && message.contains(value)
}
