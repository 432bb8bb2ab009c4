//! The rows of a registry export (CSV or JSON Lines), read and validated.
//!
//! Columns (CSV header names, or JSON keys; all values are strings, an empty
//! value means "the registry has no value"): `id_number` (required),
//! `full_name`, `date_of_birth`, `gender`, `nationality`, `place_of_origin`,
//! `place_of_residence`, `id_issue_date`, `id_expiry_date`, `phone_number`.
//! Every row is validated on its own; a bad row becomes a [`Reject`] that
//! names its line, field and rule, never the value.
//!
//! A reader other than the import (the batch verifier's input, which also
//! carries `request_id`, `purpose_code`, `consent_reference`) names the
//! extra columns it takes with [`RowStream::with_extra_columns`]; the
//! import takes none, so a stray column there is still refused.

use std::io::{BufRead, Read};
use std::path::Path;

use ekyc_domain::Field;
use ekyc_domain::normalize::{
    CivilDate, IdNumber, Normalized, Violation, check_date_ranges, normalize_field, normalize_id,
};

/// Input file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// Guesses the format from a file extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// One raw input row: values by column, exactly as read.
pub struct RawRow {
    /// 1-based line (CSV: record line including the header).
    pub line: u64,
    /// `(column, value)` pairs.
    pub values: Vec<(String, String)>,
}

impl std::fmt::Debug for RawRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawRow(line {}, <redacted>)", self.line)
    }
}

/// One rejected row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Line in the input file.
    pub line: u64,
    /// Column or field name.
    pub field: String,
    /// Stable rule name.
    pub rule: String,
    /// Explanation without the value.
    pub description: String,
}

/// The export cannot be read at all (as opposed to rows being rejected).
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    /// The CSV header names an unknown column or lacks `id_number`.
    #[error("{0}")]
    Header(String),
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads every row of an export in `format` from `input`. Malformed lines
/// become rejects; a bad header is an error before any row is read.
pub fn read_rows_from(
    input: impl BufRead + Send,
    format: Format,
) -> Result<(Vec<RawRow>, Vec<Reject>), RowsError> {
    let (mut rows, mut rejects) = (Vec::new(), Vec::new());
    for row in RowStream::new(input, format)? {
        match row? {
            Ok(row) => rows.push(row),
            Err(reject) => rejects.push(reject),
        }
    }
    Ok((rows, rejects))
}

/// The rows of an export, read one at a time: what an import holds at
/// once does not grow with the file. Each item is a row or the reject of a
/// malformed line; an error reading the input ends the stream.
pub struct RowStream<'a> {
    inner: Inner<'a>,
    /// Column names accepted besides `id_number` and the claim fields.
    extra: Vec<String>,
}

enum Inner<'a> {
    Csv {
        records: csv::StringRecordsIntoIter<Box<dyn Read + Send + 'a>>,
        headers: Vec<String>,
    },
    Jsonl {
        lines: std::io::Lines<Box<dyn BufRead + Send + 'a>>,
        line_no: u64,
    },
}

impl<'a> RowStream<'a> {
    /// Starts reading `input`; a CSV header is read and checked at once.
    /// Only `id_number` and the claim fields are known columns.
    pub fn new(
        input: impl BufRead + Send + 'a,
        format: Format,
    ) -> Result<RowStream<'a>, RowsError> {
        RowStream::with_extra_columns(input, format, &[])
    }

    /// Like [`RowStream::new`], but the columns named in `extra` are known
    /// too: their values come through in [`RawRow::values`] like any
    /// other, and it is the caller's job to read them (and to keep them
    /// out of [`validate_row`], which skips names that are not fields).
    pub fn with_extra_columns(
        input: impl BufRead + Send + 'a,
        format: Format,
        extra: &[&str],
    ) -> Result<RowStream<'a>, RowsError> {
        let extra: Vec<String> = extra.iter().map(|c| c.to_string()).collect();
        let inner = match format {
            Format::Csv => {
                let input: Box<dyn Read + Send + 'a> = Box::new(input);
                let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
                let headers = csv_headers(&mut reader, &extra)?;
                Inner::Csv {
                    records: reader.into_records(),
                    headers,
                }
            }
            Format::Jsonl => {
                let input: Box<dyn BufRead + Send + 'a> = Box::new(input);
                Inner::Jsonl {
                    lines: input.lines(),
                    line_no: 0,
                }
            }
        };
        Ok(RowStream { inner, extra })
    }
}

impl Iterator for RowStream<'_> {
    type Item = std::io::Result<Result<RawRow, Reject>>;

    fn next(&mut self) -> Option<Self::Item> {
        let extra = &self.extra;
        match &mut self.inner {
            Inner::Csv { records, headers } => {
                let record = match records.next()? {
                    // Reading failed: the import must stop, not take the
                    // rest of the file for missing.
                    Err(e) if e.is_io_error() => {
                        return Some(Err(match e.into_kind() {
                            csv::ErrorKind::Io(io) => io,
                            _ => std::io::Error::other("cannot read the input"),
                        }));
                    }
                    record => record,
                };
                Some(Ok(match record {
                    Ok(r) => Ok(RawRow {
                        line: r.position().map_or(0, |p| p.line()),
                        values: headers
                            .iter()
                            .cloned()
                            .zip(r.iter().map(str::to_string))
                            .collect(),
                    }),
                    Err(e) => Err(Reject {
                        line: e.position().map_or(0, |p| p.line()),
                        field: "row".into(),
                        rule: "malformed_csv".into(),
                        // The csv error text can quote field bytes: a fixed text.
                        description: "row is not valid csv or has the wrong number of columns"
                            .into(),
                    }),
                }))
            }
            Inner::Jsonl { lines, line_no } => loop {
                let line = match lines.next()? {
                    Ok(line) => line,
                    Err(e) => return Some(Err(e)),
                };
                *line_no += 1;
                if let Some(row) = jsonl_row(*line_no, &line, extra) {
                    return Some(Ok(row));
                }
            },
        }
    }
}

/// The header row, checked: every column known (or in `extra`),
/// `id_number` among them.
fn csv_headers(
    reader: &mut csv::Reader<Box<dyn Read + Send + '_>>,
    extra: &[String],
) -> Result<Vec<String>, RowsError> {
    let headers: Vec<String> = reader
        .headers()
        // The csv error text can quote bytes of the row: fixed text only.
        .map_err(|_| RowsError::Header("cannot read the header row as csv".into()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if let Some(position) = headers
        .iter()
        .position(|h| !known_column(h) && !extra.contains(h))
    {
        // The name is not echoed: in a file without a header row it is a
        // citizen's value.
        let also = if extra.is_empty() {
            String::new()
        } else {
            format!(", or {}", extra.join(", "))
        };
        return Err(RowsError::Header(format!(
            "column {} of the header row is not a known column (the first row must name \
             the columns: id_number and the claim field names{also})",
            position + 1
        )));
    }
    if !headers.iter().any(|h| h == "id_number") {
        return Err(RowsError::Header(
            "the header has no id_number column".into(),
        ));
    }
    Ok(headers)
}

/// One JSON Lines row, or its reject; `None` for a blank line. Keys in
/// `extra` are known besides `id_number` and the claim fields.
fn jsonl_row(line_no: u64, line: &str, extra: &[String]) -> Option<Result<RawRow, Reject>> {
    if line.trim().is_empty() {
        return None;
    }
    let reject = |rule: &str, description: &str| Reject {
        line: line_no,
        field: "row".into(),
        rule: rule.into(),
        description: description.into(),
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(line) else {
        return Some(Err(reject("malformed_json", "line is not a json object")));
    };
    let mut values = Vec::with_capacity(map.len());
    for (k, v) in map {
        if !known_column(&k) && !extra.contains(&k) {
            return Some(Err(unknown_column(line_no)));
        }
        match v {
            serde_json::Value::String(s) => values.push((k, s)),
            serde_json::Value::Null => {}
            _ => {
                return Some(Err(Reject {
                    line: line_no,
                    field: k,
                    rule: "not_a_string".into(),
                    description: "every value must be a json string".into(),
                }));
            }
        }
    }
    Some(Ok(RawRow {
        line: line_no,
        values,
    }))
}

/// Reads a delete list: one ID number per line; blank lines and lines
/// starting with `#` are skipped.
pub fn delete_list(text: &str) -> Vec<RawRow> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| RawRow {
            line: i as u64 + 1,
            values: vec![("id_number".into(), l.trim().to_string())],
        })
        .collect()
}

fn known_column(c: &str) -> bool {
    c == "id_number" || Field::from_name(c).is_some()
}

/// The reject of a row naming a column that is neither `id_number` nor a
/// claim field (JSON Lines keys, fields of a gRPC import). The name itself
/// is not echoed: it may be a value.
pub fn unknown_column(line: u64) -> Reject {
    Reject {
        line,
        field: "row".into(),
        rule: "unknown_column".into(),
        description: "an object key is not id_number or a claim field name".into(),
    }
}

/// A row from named values (a gRPC import's fields), checked as a JSON
/// Lines row is: an unknown name rejects the row.
pub fn row_from_pairs(line: u64, values: Vec<(String, String)>) -> Result<RawRow, Reject> {
    if values.iter().any(|(name, _)| !known_column(name)) {
        return Err(unknown_column(line));
    }
    Ok(RawRow { line, values })
}

/// A validated row, ready to hash. `Debug` shows no values: both field
/// types redact themselves.
#[derive(Debug)]
pub struct ValidRow {
    /// The canonical ID number.
    pub id: IdNumber,
    /// The normalised fields.
    pub fields: Vec<(Field, Normalized)>,
}

/// Validates one row: every value normalised, then the date ranges of a
/// request (no birth or issue date after `today`, no expiry before issue),
/// so the registry holds nothing a Verify would refuse to ask about.
pub fn validate_row(row: &RawRow, today: CivilDate) -> Result<ValidRow, Vec<Violation>> {
    let mut violations = Vec::new();
    let mut id = None;
    let mut fields = Vec::new();
    for (col, value) in &row.values {
        if col == "id_number" {
            match normalize_id(value) {
                Ok(v) => id = Some(v),
                Err(v) => violations.push(v),
            }
            continue;
        }
        let Some(field) = Field::from_name(col) else {
            continue;
        };
        if value.trim().is_empty() {
            continue;
        }
        match normalize_field(field, value) {
            Ok(n) => fields.push((field, n)),
            Err(v) => violations.push(v),
        }
    }
    if id.is_none() && violations.iter().all(|v| v.field != "id_number") {
        violations.push(Violation {
            field: "id_number",
            rule: "required",
            description: "id_number is required".into(),
        });
    }
    if fields.is_empty() && violations.is_empty() {
        violations.push(Violation {
            field: "row",
            rule: "no_fields",
            description: "a record needs at least one field besides id_number".into(),
        });
    }
    if violations.is_empty() {
        violations = check_date_ranges(&fields, today);
    }
    match id {
        Some(id) if violations.is_empty() => Ok(ValidRow { id, fields }),
        _ => Err(violations),
    }
}

/// Writes the reject report as CSV, `line,field,rule,description`: what
/// `ekycd import` and `ekyc registry import` write.
pub fn write_reject_report(w: impl std::io::Write, rejects: &[Reject]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(w);
    let csv_err = |e: csv::Error| std::io::Error::other(e.to_string());
    w.write_record(["line", "field", "rule", "description"])
        .map_err(csv_err)?;
    for r in rejects {
        w.write_record([
            r.line.to_string().as_str(),
            &r.field,
            &r.rule,
            &r.description,
        ])
        .map_err(csv_err)?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> CivilDate {
        CivilDate {
            year: 2026,
            month: 12,
            day: 1,
        }
    }

    #[test]
    fn rows_with_dates_out_of_range_are_rejected() {
        let row = |dob: &str, issued: &str, expires: &str| RawRow {
            line: 2,
            values: vec![
                ("id_number".into(), "079085001234".into()),
                ("date_of_birth".into(), dob.into()),
                ("id_issue_date".into(), issued.into()),
                ("id_expiry_date".into(), expires.into()),
            ],
        };
        assert!(validate_row(&row("1985-03-12", "2021-05-10", "2045-03-12"), today()).is_ok());
        let rules = |r: &RawRow| -> Vec<(&str, &str)> {
            validate_row(r, today())
                .expect_err("out of range")
                .iter()
                .map(|v| (v.field, v.rule))
                .collect()
        };
        assert_eq!(
            rules(&row("2026-12-02", "2021-05-10", "2020-01-01")),
            [
                ("date_of_birth", "in_the_future"),
                ("id_expiry_date", "before_issue_date")
            ]
        );
    }

    #[test]
    fn row_violations_name_field_and_rule_without_values() {
        let row = RawRow {
            line: 7,
            values: vec![
                ("id_number".into(), "12345".into()),
                ("date_of_birth".into(), "1990-02-30".into()),
                ("full_name".into(), "Trần Thị Bình".into()),
            ],
        };
        let v = validate_row(&row, today()).expect_err("invalid");
        let fields: Vec<_> = v.iter().map(|v| v.field).collect();
        assert!(fields.contains(&"id_number") && fields.contains(&"date_of_birth"));
        for v in &v {
            assert!(!v.description.contains("1990") && !v.description.contains("12345"));
        }
    }

    /// A reader that gives its text, then fails: what a stream yields
    /// before the failure shows it reads as it goes.
    struct FailsAfter(std::io::Cursor<Vec<u8>>);

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::other("disk gone")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn rows_stream_as_they_are_read() {
        for (format, text) in [
            (
                Format::Csv,
                "id_number,full_name\n001085000001,An\n001085000002,Binh\n",
            ),
            (
                Format::Jsonl,
                "{\"id_number\":\"001085000001\"}\n{\"id_number\":\"2\"}\n",
            ),
        ] {
            let input = std::io::BufReader::new(FailsAfter(std::io::Cursor::new(text.into())));
            let mut rows = RowStream::new(input, format).expect("header");
            let first = rows
                .next()
                .expect("a row")
                .expect("read")
                .expect("a row, not a reject");
            assert_eq!(first.values[0].1, "001085000001", "{format:?}");
            assert!(
                rows.next().expect("second").expect("read").is_ok(),
                "{format:?}"
            );
            // Then the failure, as an error: never a reject, or the end
            // of the file, which would import half a registry.
            match rows.next() {
                Some(Err(e)) => assert_eq!(e.to_string(), "disk gone", "{format:?}"),
                other => panic!("{format:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn jsonl_rejects_bad_lines_and_keeps_good_ones() {
        let input = "{\"id_number\":\"001085000001\",\"full_name\":\"An\"}\nnot json\n\n{\"id_number\":\"1\",\"079085001234\":\"42\"}\n{\"id_number\":\"1\",\"gender\":3}\n";
        let (rows, rejects) = read_rows_from(input.as_bytes(), Format::Jsonl).expect("read");
        assert_eq!(rows.len(), 1);
        let rules: Vec<_> = rejects.iter().map(|r| (r.line, r.rule.as_str())).collect();
        assert_eq!(
            rules,
            vec![
                (2, "malformed_json"),
                (4, "unknown_column"),
                (5, "not_a_string")
            ]
        );
        assert!(
            rejects
                .iter()
                .all(|r| !format!("{r:?}").contains("079085001234")),
            "an unknown key may be a value and is never echoed"
        );
    }
    #[test]
    fn extra_columns_are_read_only_where_asked_for() {
        let extra = ["request_id", "purpose_code", "consent_reference"];
        let csv = "id_number,full_name,request_id,purpose_code\n001085000001,An,r-1,KYC\n";
        let jsonl =
            "{\"id_number\":\"001085000001\",\"request_id\":\"r-1\",\"consent_reference\":\"c\"}\n";

        let rows: Vec<_> = RowStream::with_extra_columns(csv.as_bytes(), Format::Csv, &extra)
            .expect("header with extra columns")
            .map(|r| r.expect("read").expect("row"))
            .collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].line, 2);
        assert!(
            rows[0]
                .values
                .contains(&("request_id".into(), "r-1".into()))
        );
        assert!(
            rows[0]
                .values
                .contains(&("purpose_code".into(), "KYC".into()))
        );

        let rows: Vec<_> = RowStream::with_extra_columns(jsonl.as_bytes(), Format::Jsonl, &extra)
            .expect("jsonl")
            .map(|r| r.expect("read").expect("row"))
            .collect();
        assert!(
            rows[0]
                .values
                .contains(&("consent_reference".into(), "c".into()))
        );

        // A column that is not among the extras is still refused.
        let other = "id_number,request_id,note\n1,r,x\n";
        assert!(matches!(
            RowStream::with_extra_columns(other.as_bytes(), Format::Csv, &extra),
            Err(RowsError::Header(_))
        ));
        let other = "{\"id_number\":\"1\",\"request_id\":\"r\",\"note\":\"x\"}\n";
        let reject = RowStream::with_extra_columns(other.as_bytes(), Format::Jsonl, &extra)
            .expect("jsonl")
            .next()
            .expect("a line")
            .expect("read")
            .expect_err("unknown key");
        assert_eq!(reject.rule, "unknown_column");

        // The import's reader knows none of them: request_id is refused
        // in a header and as a key, as before.
        assert!(matches!(
            RowStream::new(csv.as_bytes(), Format::Csv),
            Err(RowsError::Header(_))
        ));
        let (rows, rejects) = read_rows_from(jsonl.as_bytes(), Format::Jsonl).expect("read");
        assert!(rows.is_empty());
        assert_eq!(
            (rejects[0].line, rejects[0].rule.as_str()),
            (1, "unknown_column")
        );
    }
}
