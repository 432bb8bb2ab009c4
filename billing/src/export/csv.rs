//! CSV export of an invoice document, for spreadsheets and accounting
//! imports.
//!
//! The output is RFC 4180: UTF-8 (no byte order mark), CRLF after every
//! record (the last one too), a header row, and a field quoted (`"..."`,
//! inner quotes doubled) exactly when it contains a comma, a double quote,
//! CR or LF. The columns are [`CSV_COLUMNS`], versioned by
//! [`CSV_FORMAT_VERSION`], which is also the first cell of every data row.

use rust_decimal::prelude::ToPrimitive;

use crate::model::{InvoiceDocument, LineKind};
use crate::words::vnd_in_words;

use super::{amount_string, price_string};

/// Version of the column layout [`invoice_csv`] writes by default; it is
/// the value of the `format_version` column of every data row. A consumer
/// must reject a version it does not know. Columns are only ever added at
/// the end, and adding or changing one bumps the version; every earlier
/// version stays available ([`CsvVersion`]).
pub const CSV_FORMAT_VERSION: u32 = 2;

/// A column layout of the CSV export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvVersion {
    /// [`CSV_COLUMNS_V1`]: lines and totals.
    V1,
    /// [`CSV_COLUMNS`]: version 1 and the parties' legal particulars and
    /// the total in words.
    V2,
}

impl CsvVersion {
    /// The layout with this number, if there is one.
    pub fn from_number(n: u32) -> Option<CsvVersion> {
        match n {
            1 => Some(CsvVersion::V1),
            2 => Some(CsvVersion::V2),
            _ => None,
        }
    }

    fn number(self) -> u32 {
        match self {
            CsvVersion::V1 => 1,
            CsvVersion::V2 => 2,
        }
    }
}

/// The header row of format version 1, in order.
///
/// | column           | content |
/// |------------------|---------|
/// | `format_version` | the layout's version, `1` or `2` |
/// | `invoice_number` | e.g. `EKYC-000042`; empty on a draft |
/// | `issuer_id`      | the issuer's id, e.g. `EKYC` |
/// | `tenant_id`      | the billed tenant's id |
/// | `tenant_name`    | the billed tenant's name (UTF-8, as is) |
/// | `period`         | billing month, `YYYY-MM` |
/// | `currency`       | ISO 4217 code, e.g. `VND` |
/// | `line_no`        | 1, 2, ... for line items; empty on total rows |
/// | `kind`           | a line's kind in snake_case (`calls`, `included_units`, `field_units`, `adjustment`, `adjustment_calls`, `minimum_top_up`), or `subtotal`, `tax`, `total` |
/// | `description`    | the line's description; `Subtotal`, `Tax`, `Total` on total rows |
/// | `quantity`       | count of calls or units, an integer; empty on total rows |
/// | `unit_price`     | price of one, as exact as priced, trailing zeros dropped (`350.5`, `0`); the tax rate as a fraction (`0.1` for 10 %) on the `tax` row; empty on the `subtotal` and `total` rows |
/// | `amount`         | the line's amount, or the subtotal, tax or total, with exactly the currency's minor-unit digits (`3702000` for VND, `12.50` for 2 digits) |
///
/// Rows: the header, one row per line item in the invoice's order, then
/// the `subtotal`, `tax` and `total` rows. Numbers use `.` as decimal
/// separator, no thousands separator, and a leading `-` when negative.
///
/// Formula injection: a *text* cell (`invoice_number`, `issuer_id`,
/// `tenant_id`, `tenant_name`, `period`, `currency`, `kind`,
/// `description`, and in version 2 every party and words cell) whose value
/// starts with `=`, `+`, `-`, `@`, TAB or CR (which spreadsheets may run as
/// a formula), or with an apostrophe, is written with one extra leading
/// apostrophe `'`. A consumer reading text cells back strips one leading
/// apostrophe if present; that is exact, since every value starting with
/// one was given another. Number cells are never changed.
pub const CSV_COLUMNS_V1: &[&str] = &[
    "format_version",
    "invoice_number",
    "issuer_id",
    "tenant_id",
    "tenant_name",
    "period",
    "currency",
    "line_no",
    "kind",
    "description",
    "quantity",
    "unit_price",
    "amount",
];

/// The header row of format version 2: [`CSV_COLUMNS_V1`], then
///
/// | column              | content |
/// |---------------------|---------|
/// | `seller_legal_name` | the issuer's legal name (its name if it has none), on every row |
/// | `seller_tax_code`   | its tax code (mã số thuế), 10 digits or `NNNNNNNNNN-NNN`; empty if not configured |
/// | `seller_address`    | its address; empty if not configured |
/// | `buyer_legal_name`  | the tenant's legal name (its name if it has none), on every row |
/// | `buyer_tax_code`    | its tax code; empty if not recorded |
/// | `buyer_address`     | its address; empty if not recorded |
/// | `amount_in_words`   | on the `total` row of a VND invoice, the total in Vietnamese words (`Hai mươi sáu nghìn đồng`); empty elsewhere |
pub const CSV_COLUMNS: &[&str] = &[
    "format_version",
    "invoice_number",
    "issuer_id",
    "tenant_id",
    "tenant_name",
    "period",
    "currency",
    "line_no",
    "kind",
    "description",
    "quantity",
    "unit_price",
    "amount",
    "seller_legal_name",
    "seller_tax_code",
    "seller_address",
    "buyer_legal_name",
    "buyer_tax_code",
    "buyer_address",
    "amount_in_words",
];

/// The invoice as CSV in `version`'s layout (see [`CSV_COLUMNS`]). Pure:
/// the same document always gives the same bytes.
pub fn invoice_csv(doc: &InvoiceDocument, version: CsvVersion) -> Vec<u8> {
    let columns = match version {
        CsvVersion::V1 => CSV_COLUMNS_V1,
        CsvVersion::V2 => CSV_COLUMNS,
    };
    let mut out = String::new();
    let header: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
    push_record(&mut out, &header);

    let prefix = [
        version.number().to_string(),
        text(&doc.number),
        text(&doc.issuer.id),
        text(&doc.tenant_id),
        text(&doc.tenant_name),
        text(&doc.period),
        text(&doc.currency),
    ];
    let (seller, buyer) = (doc.seller(), doc.buyer());
    let parties = [
        text(&seller.legal_name),
        text(&seller.tax_code),
        text(&seller.address),
        text(&buyer.legal_name),
        text(&buyer.tax_code),
        text(&buyer.address),
    ];
    let words = (doc.currency == "VND")
        .then(|| doc.priced.total.to_u64().map(vnd_in_words))
        .flatten()
        .unwrap_or_default();
    let mut row = |line_no: String, kind: &str, description: &str, quantity, unit_price, amount| {
        let mut cells = prefix.to_vec();
        cells.extend([
            line_no,
            text(kind),
            text(description),
            quantity,
            unit_price,
            amount,
        ]);
        if version == CsvVersion::V2 {
            cells.extend(parties.iter().cloned());
            cells.push(if kind == "total" {
                text(&words)
            } else {
                String::new()
            });
        }
        push_record(&mut out, &cells);
    };

    let minor = doc.minor_units;
    for (i, line) in doc.priced.lines.iter().enumerate() {
        row(
            (i + 1).to_string(),
            kind_name(line.kind),
            &line.description,
            line.quantity.to_string(),
            price_string(line.unit_price),
            amount_string(line.amount, minor),
        );
    }
    let priced = &doc.priced;
    row(
        String::new(),
        "subtotal",
        "Subtotal",
        String::new(),
        String::new(),
        amount_string(priced.subtotal, minor),
    );
    row(
        String::new(),
        "tax",
        "Tax",
        String::new(),
        price_string(doc.tax_rate),
        amount_string(priced.tax, minor),
    );
    row(
        String::new(),
        "total",
        "Total",
        String::new(),
        String::new(),
        amount_string(priced.total, minor),
    );
    out.into_bytes()
}

/// The `kind` cell of a line: its serde (snake_case) name, spelled out so
/// the CSV format does not change silently with the model.
fn kind_name(kind: LineKind) -> &'static str {
    match kind {
        LineKind::Calls => "calls",
        LineKind::IncludedUnits => "included_units",
        LineKind::FieldUnits => "field_units",
        LineKind::Adjustment => "adjustment",
        LineKind::AdjustmentCalls => "adjustment_calls",
        LineKind::MinimumTopUp => "minimum_top_up",
    }
}

/// A text cell, guarded against formula injection (see [`CSV_COLUMNS_V1`]).
fn text(value: &str) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\'') => format!("'{value}"),
        _ => value.to_owned(),
    }
}

/// Appends one record, RFC 4180 quoted, and its CRLF.
fn push_record(out: &mut String, cells: &[String]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if cell.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(cell);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use rust_decimal::Decimal;

    use super::*;
    use crate::export::sample_invoice;
    use crate::model::LineItem;

    /// Parses CSV with Python's `csv` module (strict mode), the reference
    /// reader; fails the test if python3 is missing.
    fn python_rows(csv: &[u8]) -> Vec<Vec<String>> {
        let script = "import csv, io, json, sys\n\
             text = io.TextIOWrapper(sys.stdin.buffer, encoding='utf-8', newline='')\n\
             rows = list(csv.reader(text, strict=True))\n\
             sys.stdout.write(json.dumps(rows))\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 is needed by this test (the reference CSV reader)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(csv)
            .expect("write to python3");
        let output = child.wait_with_output().expect("python3 runs");
        assert!(
            output.status.success(),
            "python3 csv failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("python3 printed JSON rows")
    }

    fn prefix(version: &'static str) -> Vec<&'static str> {
        vec![
            version,
            "EKYC-000042",
            "EKYC",
            "tenant-vcb",
            "Vietcombank",
            "2026-01",
            "VND",
        ]
    }

    fn row(tail: &[&str]) -> Vec<String> {
        prefix("1")
            .into_iter()
            .chain(tail.iter().copied())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn python_reads_back_every_cell_of_version_1() {
        let inv = sample_invoice(5);
        let csv = invoice_csv(&inv.document, CsvVersion::V1);
        let rows = python_rows(&csv);
        let expected = vec![
            CSV_COLUMNS_V1.iter().map(|c| (*c).to_owned()).collect(),
            row(&["1", "calls", "Answered calls", "1234", "500", "617000"]),
            row(&[
                "2",
                "included_units",
                "Included field units 1-10,000",
                "10000",
                "0",
                "0",
            ]),
            row(&[
                "3",
                "field_units",
                "Field units 10,001-100,000",
                "4321",
                "350.5",
                "1514511",
            ]),
            row(&[
                "4",
                "adjustment",
                "Late events of 2025-12 (\"re-sent\")",
                "77",
                "300",
                "23100",
            ]),
            row(&[
                "5",
                "minimum_top_up",
                "Minimum top-up to 2,500,000",
                "1",
                "345389",
                "345389",
            ]),
            row(&["", "subtotal", "Subtotal", "", "", "2500000"]),
            row(&["", "tax", "Tax", "", "0.1", "250000"]),
            row(&["", "total", "Total", "", "", "2750000"]),
        ];
        assert_eq!(rows, expected);
        assert_eq!(rows[0].len(), CSV_COLUMNS_V1.len());
    }

    #[test]
    fn version_2_adds_the_particulars_and_the_words() {
        let inv = sample_invoice(5);
        let rows = python_rows(&invoice_csv(&inv.document, CsvVersion::V2));
        assert_eq!(rows[0], CSV_COLUMNS);
        assert_eq!(&rows[0][..CSV_COLUMNS_V1.len()], CSV_COLUMNS_V1);
        let v1 = python_rows(&invoice_csv(&inv.document, CsvVersion::V1));
        for (r2, r1) in rows.iter().zip(&v1).skip(1) {
            assert_eq!(r2[0], "2");
            assert_eq!(
                r2[1..CSV_COLUMNS_V1.len()],
                r1[1..],
                "the v1 cells are unchanged"
            );
            assert_eq!(
                r2[CSV_COLUMNS_V1.len()..CSV_COLUMNS_V1.len() + 6],
                [
                    "Trung tâm Dữ liệu quốc gia về dân cư",
                    "0109876543",
                    "Số 47 Phạm Văn Đồng, phường Cổ Nhuế 1, quận Bắc Từ Liêm, Hà Nội",
                    "Ngân hàng TMCP Ngoại thương Việt Nam",
                    "0100112437-001",
                    "198 Trần Quang Khải, phường Lý Thái Tổ, quận Hoàn Kiếm, Hà Nội",
                ]
            );
        }
        let total = rows.last().expect("total row");
        assert_eq!(total[8], "total");
        assert_eq!(total[19], "Hai triệu bảy trăm năm mươi nghìn đồng");
        assert!(rows[1][19].is_empty());
        assert_eq!(CsvVersion::from_number(1), Some(CsvVersion::V1));
        assert_eq!(CsvVersion::from_number(3), None);
    }

    #[test]
    fn records_end_in_crlf_and_quote_only_when_needed() {
        let csv = String::from_utf8(invoice_csv(&sample_invoice(4).document, CsvVersion::V1))
            .expect("UTF-8");
        assert!(csv.starts_with("format_version,invoice_number,"));
        assert!(csv.ends_with("\r\n"));
        assert_eq!(csv.matches('\n').count(), csv.matches("\r\n").count());
        assert_eq!(csv.lines().count(), 1 + 4 + 3);
        assert!(csv.contains(",calls,Answered calls,1234,500,617000\r\n"));
        assert!(csv.contains(",\"Field units 10,001-100,000\",4321,350.5,1514511\r\n"));
        assert!(csv.contains(",\"Late events of 2025-12 (\"\"re-sent\"\")\",77,"));
        assert!(csv.contains(",,subtotal,Subtotal,,,2154611\r\n"));
    }

    #[test]
    fn embedded_line_breaks_are_quoted() {
        let mut doc = sample_invoice(1).document;
        doc.priced.lines[0].description = "two\r\nlines\nand \"quotes\", commas".into();
        let rows = python_rows(&invoice_csv(&doc, CsvVersion::V1));
        assert_eq!(rows[1][9], "two\r\nlines\nand \"quotes\", commas");
        assert_eq!(rows.len(), 1 + 1 + 3);
    }

    #[test]
    fn formula_injection_is_defused() {
        let mut doc = sample_invoice(0).document;
        doc.tenant_name = "=HYPERLINK(\"http://evil.example\",\"x\")".into();
        doc.tenant_id = "+cmd".into();
        doc.issuer.id = "@SUM(A1)".into();
        let texts = ["-2+3", "\tTAB", "'quoted", "plain - text", "a=b"];
        doc.priced.lines = texts
            .iter()
            .map(|d| LineItem {
                kind: LineKind::Adjustment,
                description: (*d).to_owned(),
                quantity: 1,
                unit_price: Decimal::new(-5, 0),
                amount: Decimal::new(-5, 0),
            })
            .collect();
        let rows = python_rows(&invoice_csv(&doc, CsvVersion::V1));
        let first = &rows[1];
        assert_eq!(first[2], "'@SUM(A1)");
        assert_eq!(first[3], "'+cmd");
        assert_eq!(first[4], "'=HYPERLINK(\"http://evil.example\",\"x\")");
        let descriptions: Vec<&str> = rows[1..=texts.len()]
            .iter()
            .map(|r| r[9].as_str())
            .collect();
        assert_eq!(
            descriptions,
            ["'-2+3", "'\tTAB", "''quoted", "plain - text", "a=b"]
        );
        // Numbers are numbers: never prefixed.
        assert_eq!(first[11], "-5");
        assert_eq!(first[12], "-5");
        // Stripping one leading apostrophe gives every value back.
        for (cell, original) in descriptions.iter().zip(texts) {
            let back = cell.strip_prefix('\'').unwrap_or(cell);
            assert_eq!(back, original);
        }
        // The particulars of version 2 are text cells too.
        doc.buyer = Some(crate::model::Party {
            legal_name: "=EVIL()".into(),
            address: "-1".into(),
            tax_code: String::new(),
        });
        let rows = python_rows(&invoice_csv(&doc, CsvVersion::V2));
        assert_eq!(rows[1][16], "'=EVIL()");
        assert_eq!(rows[1][18], "'-1");
    }

    #[test]
    fn amounts_have_exactly_the_minor_unit_digits() {
        let mut doc = sample_invoice(1).document;
        doc.currency = "USD".into();
        doc.minor_units = 2;
        doc.priced.lines[0].unit_price = "0.0250".parse().expect("decimal");
        doc.priced.lines[0].amount = Decimal::new(125, 1);
        doc.priced.subtotal = Decimal::new(125, 1);
        doc.priced.tax = "1.25".parse().expect("decimal");
        doc.priced.total = "13.750".parse().expect("decimal");
        let rows = python_rows(&invoice_csv(&doc, CsvVersion::V1));
        assert_eq!(rows[1][11..], ["0.025", "12.50"]);
        assert_eq!(rows[2][12], "12.50");
        assert_eq!(rows[3][12], "1.25");
        assert_eq!(rows[4][12], "13.75");
    }

    #[test]
    fn kind_names_match_serde() {
        for kind in [
            LineKind::Calls,
            LineKind::IncludedUnits,
            LineKind::FieldUnits,
            LineKind::Adjustment,
            LineKind::MinimumTopUp,
        ] {
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind_name(kind)));
        }
    }

    #[test]
    fn same_document_same_bytes() {
        let doc = sample_invoice(7).document;
        for v in [CsvVersion::V1, CsvVersion::V2] {
            assert_eq!(invoice_csv(&doc, v), invoice_csv(&doc.clone(), v));
        }
    }
}
