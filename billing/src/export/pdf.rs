//! PDF export of a signed invoice: a printable A4 invoice, written by hand
//! as PDF 1.4.
//!
//! The file uses only the standard Type 1 fonts Helvetica and
//! Helvetica-Bold (which every reader has, so nothing is embedded) with
//! `WinAnsiEncoding`, one uncompressed content stream per page, and a
//! classic cross-reference table. It has no clock-derived data: the Info
//! dictionary's `CreationDate` is the invoice's `issued_at` and the file
//! `ID` is derived from the signed bytes, so the same invoice always gives
//! the same bytes.
//!
//! Text outside WinAnsi cannot be shown with these fonts. A string that
//! has any such character is folded: Vietnamese letters lose their
//! diacritics (`Đông Á` → `Dong A`, including the letters WinAnsi has, so
//! a name is never half accented), combining marks are dropped, and any
//! other character outside WinAnsi becomes `?`. Strings WinAnsi can show
//! (`Société Générale`) are kept as they are. The Info dictionary (title,
//! author) keeps the exact Unicode text.
//!
//! Layout: a header (issuer, `INVOICE`, billed-to tenant, invoice number,
//! dates, period, plan, currency), the table of lines (No., Description,
//! Quantity, Unit price, Amount; numbers right-aligned with thousands
//! separators), subtotal, tax and a bold total, then a verification block
//! (event count, events digest, signing key id, signature). Pages that
//! overflow continue on a new page that repeats the table header; every
//! page has a footer `Page i of n`.

use std::fmt::Write as _;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::{amount_string, price_string};
use crate::model::{InvoiceDocument, SignedInvoice};

/// The invoice as a PDF 1.4 file (see the module docs). Pure: the same
/// invoice always gives the same bytes.
pub fn invoice_pdf(inv: &SignedInvoice) -> Vec<u8> {
    let pages = Layout::run(inv);
    write_file(inv, &pages)
}

// ---------------------------------------------------------------------------
// Geometry. Every coordinate and width is an integer number of millipoints
// (1/1000 pt): font widths are in 1/1000 em and font sizes whole points,
// so text widths are exact and the output never depends on float
// formatting.

/// A length in millipoints.
type Mp = i64;
const PT: Mp = 1000;
const PAGE_W: Mp = 595 * PT;
const PAGE_H: Mp = 842 * PT;
const LEFT: Mp = 50 * PT;
const RIGHT: Mp = 545 * PT;
/// The last sentence of the verification block.
const VERIFY_NOTE: &str = "Verify: the Ed25519 signature covers the canonical JSON of this \
                           invoice (export JSON, field document).";
/// Lowest point body content may reach; the footer is below it.
const BODY_BOTTOM: Mp = 64 * PT;
/// Top of the body on continuation pages.
const CONTINUED_TOP: Mp = 772 * PT;

/// Table columns: left edges of text columns, right edges of number ones.
const COL_NO_RIGHT: Mp = 72 * PT;
const COL_DESC_X: Mp = 84 * PT;
const COL_DESC_W: Mp = 226 * PT;
const COL_QTY_RIGHT: Mp = 378 * PT;
const COL_PRICE_RIGHT: Mp = 460 * PT;
const COL_AMOUNT_RIGHT: Mp = RIGHT - 4 * PT;
/// Line height of table rows.
const ROW_LEADING: Mp = 12 * PT;
/// Most lines a description is wrapped onto.
const MAX_DESC_LINES: usize = 12;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
}

impl Font {
    fn resource(self) -> &'static str {
        match self {
            Font::Regular => "F1",
            Font::Bold => "F2",
        }
    }

    fn widths(self) -> &'static [u16; 224] {
        match self {
            Font::Regular => &HELVETICA_WIDTHS,
            Font::Bold => &HELVETICA_BOLD_WIDTHS,
        }
    }
}

/// Font, size in whole points, and gray level of text (`None`: black).
#[derive(Clone, Copy)]
struct Style {
    font: Font,
    size: Mp,
    gray: Option<&'static str>,
}

const TITLE: Style = Style {
    font: Font::Bold,
    size: 24,
    gray: None,
};
const ISSUER: Style = Style {
    font: Font::Bold,
    size: 12,
    gray: None,
};
const TENANT: Style = Style {
    font: Font::Bold,
    size: 11,
    gray: None,
};
const BODY: Style = Style {
    font: Font::Regular,
    size: 9,
    gray: None,
};
const BODY_BOLD: Style = Style {
    font: Font::Bold,
    size: 9,
    gray: None,
};
const LABEL: Style = Style {
    font: Font::Regular,
    size: 9,
    gray: Some("0.35"),
};
const CAPTION: Style = Style {
    font: Font::Bold,
    size: 8,
    gray: Some("0.35"),
};
const TOTAL: Style = Style {
    font: Font::Bold,
    size: 11,
    gray: None,
};
const SMALL: Style = Style {
    font: Font::Regular,
    size: 8,
    gray: None,
};
const SMALL_BOLD: Style = Style {
    font: Font::Bold,
    size: 8,
    gray: None,
};
const FOOTER: Style = Style {
    font: Font::Regular,
    size: 8,
    gray: Some("0.35"),
};

/// Width of WinAnsi text in a style.
fn width(text: &[u8], style: Style) -> Mp {
    let widths = style.font.widths();
    let em: Mp = text
        .iter()
        .map(|&b| Mp::from(widths[usize::from(b.max(32) - 32)]))
        .sum();
    em * style.size
}

/// A length as a PDF number: integer points, or up to 3 decimals.
fn num(v: Mp) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let (whole, frac) = (v.abs() / PT, v.abs() % PT);
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let frac = format!("{frac:03}");
        format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// One page's content stream.
#[derive(Default)]
struct Canvas {
    ops: String,
}

impl Canvas {
    /// WinAnsi `text` with its baseline starting at (`x`, `y`).
    fn text(&mut self, x: Mp, y: Mp, style: Style, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        let (open, close) = match style.gray {
            Some(g) => (format!("q {g} g "), " Q"),
            None => (String::new(), ""),
        };
        let _ = write!(
            self.ops,
            "{open}BT /{} {} Tf {} {} Td (",
            style.font.resource(),
            style.size,
            num(x),
            num(y)
        );
        for &b in text {
            match b {
                b'(' | b')' | b'\\' => {
                    self.ops.push('\\');
                    self.ops.push(char::from(b));
                }
                32..=126 => self.ops.push(char::from(b)),
                _ => {
                    let _ = write!(self.ops, "\\{b:03o}");
                }
            }
        }
        let _ = writeln!(self.ops, ") Tj ET{close}");
    }

    /// WinAnsi `text` ending at `right`.
    fn text_right(&mut self, right: Mp, y: Mp, style: Style, text: &[u8]) {
        self.text(right - width(text, style), y, style, text);
    }

    /// A horizontal line.
    fn rule(&mut self, x1: Mp, x2: Mp, y: Mp, thickness: Mp, gray: &str) {
        let _ = writeln!(
            self.ops,
            "q {gray} G {} w {} {} m {} {} l S Q",
            num(thickness),
            num(x1),
            num(y),
            num(x2),
            num(y)
        );
    }

    /// A filled rectangle, lower left corner at (`x`, `y`).
    fn fill(&mut self, x: Mp, y: Mp, w: Mp, h: Mp, gray: &str) {
        let _ = writeln!(
            self.ops,
            "q {gray} g {} {} {} {} re f Q",
            num(x),
            num(y),
            num(w),
            num(h)
        );
    }
}

// ---------------------------------------------------------------------------
// Layout.

struct Layout<'a> {
    doc: &'a InvoiceDocument,
    inv: &'a SignedInvoice,
    done: Vec<Canvas>,
    page: Canvas,
    /// Top of the free space on the current page.
    y: Mp,
    /// Whether nothing but the page header is on the current page.
    fresh: bool,
}

impl<'a> Layout<'a> {
    fn run(inv: &'a SignedInvoice) -> Vec<Canvas> {
        let mut l = Layout {
            doc: &inv.document,
            inv,
            done: Vec::new(),
            page: Canvas::default(),
            y: PAGE_H,
            fresh: true,
        };
        l.first_page_header();
        l.table();
        l.totals();
        l.verification();
        l.done.push(std::mem::take(&mut l.page));
        l.footers();
        l.done
    }

    /// Starts a new page unless `needed` still fits on this one (or this
    /// one is fresh: what does not fit on a fresh page overflows).
    fn ensure(&mut self, needed: Mp) -> bool {
        if self.y - needed >= BODY_BOTTOM || self.fresh {
            return false;
        }
        self.done.push(std::mem::take(&mut self.page));
        self.continued_header();
        true
    }

    fn title(&self) -> &'static str {
        if self.doc.number.is_empty() {
            "INVOICE (DRAFT)"
        } else {
            "INVOICE"
        }
    }

    fn first_page_header(&mut self) {
        let doc = self.doc;
        let title = self.title();
        let c = &mut self.page;
        c.text(LEFT, 790 * PT, TITLE, title.as_bytes());

        let mut y = 794 * PT;
        for line in wrap(&pdf_text(&doc.issuer.name), ISSUER, 250 * PT) {
            c.text_right(RIGHT, y, ISSUER, &line);
            y -= 14 * PT;
        }
        let issuer_id = pdf_text(&format!("Issuer ID: {}", doc.issuer.id));
        c.text_right(RIGHT, y, LABEL, &fit(&issuer_id, LABEL, 250 * PT));
        let rule_y = (y - 12 * PT).min(770 * PT);
        c.rule(LEFT, RIGHT, rule_y, PT, "0.2");

        // Billed to, on the left.
        let mut left_y = rule_y - 22 * PT;
        c.text(LEFT, left_y, CAPTION, b"BILLED TO");
        left_y -= 15 * PT;
        for line in wrap(&pdf_text(&doc.tenant_name), TENANT, 245 * PT) {
            c.text(LEFT, left_y, TENANT, &line);
            left_y -= 14 * PT;
        }
        for line in wrap(
            &pdf_text(&format!("Tenant ID: {}", doc.tenant_id)),
            BODY,
            245 * PT,
        ) {
            c.text(LEFT, left_y, BODY, &line);
            left_y -= 12 * PT;
        }

        // Invoice details, on the right.
        let details = [
            (
                "Invoice number",
                if doc.number.is_empty() {
                    "(draft)".to_owned()
                } else {
                    doc.number.clone()
                },
            ),
            (
                "Issued",
                if doc.issued_at.is_empty() {
                    "(not finalized)".to_owned()
                } else {
                    pretty_instant(&doc.issued_at)
                },
            ),
            ("Period", doc.period.clone()),
            ("Time zone", doc.time_zone.clone()),
            ("Period start", pretty_instant(&doc.period_start)),
            ("Period end", pretty_instant(&doc.period_end)),
            (
                "Price plan",
                format!("{} (version {})", doc.plan_id, doc.plan_version),
            ),
            ("Currency", doc.currency.clone()),
        ];
        let (label_x, value_x) = (318 * PT, 395 * PT);
        let mut right_y = rule_y - 22 * PT;
        for (label, value) in details {
            c.text(label_x, right_y, LABEL, label.as_bytes());
            for line in wrap(&pdf_text(&value), BODY, RIGHT - value_x) {
                c.text(value_x, right_y, BODY, &line);
                right_y -= 12 * PT;
            }
            right_y -= PT;
        }

        self.y = left_y.min(right_y) - 14 * PT;
        self.fresh = true;
    }

    fn continued_header(&mut self) {
        let title = pdf_text(&format!("{} {} (continued)", self.title(), self.doc.number));
        let c = &mut self.page;
        c.text(LEFT, 800 * PT, ISSUER, &fit(&title, ISSUER, 280 * PT));
        let issuer = pdf_text(&self.doc.issuer.name);
        c.text_right(RIGHT, 800 * PT, BODY, &fit(&issuer, BODY, 200 * PT));
        c.rule(LEFT, RIGHT, 790 * PT, PT / 2, "0.2");
        self.y = CONTINUED_TOP;
        self.fresh = true;
    }

    fn table_header(&mut self) {
        let c = &mut self.page;
        let h = 18 * PT;
        c.fill(LEFT, self.y - h, RIGHT - LEFT, h, "0.9");
        let base = self.y - 12 * PT;
        c.text_right(COL_NO_RIGHT, base, BODY_BOLD, b"No.");
        c.text(COL_DESC_X, base, BODY_BOLD, b"Description");
        c.text_right(COL_QTY_RIGHT, base, BODY_BOLD, b"Quantity");
        c.text_right(COL_PRICE_RIGHT, base, BODY_BOLD, b"Unit price");
        c.text_right(COL_AMOUNT_RIGHT, base, BODY_BOLD, b"Amount");
        self.y -= h;
    }

    fn table(&mut self) {
        let doc = self.doc;
        self.table_header();
        if doc.priced.lines.is_empty() {
            self.page
                .text(COL_DESC_X, self.y - 12 * PT, LABEL, b"(no lines)");
            self.y -= 17 * PT;
        }
        for (i, line) in doc.priced.lines.iter().enumerate() {
            let mut desc = wrap(&pdf_text(&line.description), BODY, COL_DESC_W);
            if desc.len() > MAX_DESC_LINES {
                desc.truncate(MAX_DESC_LINES);
                if let Some(last) = desc.last_mut() {
                    last.extend_from_slice(b" ...");
                }
            }
            let h = ROW_LEADING * row_count(desc.len()) + 5 * PT;
            if self.ensure(h) {
                self.table_header();
            }
            let base = self.y - 12 * PT;
            let c = &mut self.page;
            c.text_right(COL_NO_RIGHT, base, BODY, (i + 1).to_string().as_bytes());
            for (k, text) in desc.iter().enumerate() {
                c.text(COL_DESC_X, base - ROW_LEADING * row_count(k), BODY, text);
            }
            let quantity = group_thousands(&line.quantity.to_string());
            c.text_right(COL_QTY_RIGHT, base, BODY, quantity.as_bytes());
            let price = display_decimal(&price_string(line.unit_price));
            c.text_right(COL_PRICE_RIGHT, base, BODY, price.as_bytes());
            let amount = display_decimal(&amount_string(line.amount, doc.minor_units));
            c.text_right(COL_AMOUNT_RIGHT, base, BODY, amount.as_bytes());
            self.y -= h;
            c.rule(LEFT, RIGHT, self.y, PT / 2, "0.8");
            self.fresh = false;
        }
    }

    fn totals(&mut self) {
        let doc = self.doc;
        self.ensure(60 * PT);
        let label_x = 330 * PT;
        let amount = |d: Decimal| display_decimal(&amount_string(d, doc.minor_units));
        let c = &mut self.page;
        let mut y = self.y - 16 * PT;
        c.text(label_x, y, BODY, b"Subtotal");
        c.text_right(
            COL_AMOUNT_RIGHT,
            y,
            BODY,
            amount(doc.priced.subtotal).as_bytes(),
        );
        y -= 14 * PT;
        let percent = doc
            .tax_rate
            .checked_mul(Decimal::ONE_HUNDRED)
            .map(|p| format!("{}%", display_decimal(&price_string(p))))
            .unwrap_or_else(|| format!("rate {}", price_string(doc.tax_rate)));
        c.text(label_x, y, BODY, format!("Tax ({percent})").as_bytes());
        c.text_right(COL_AMOUNT_RIGHT, y, BODY, amount(doc.priced.tax).as_bytes());
        y -= 8 * PT;
        c.rule(label_x, RIGHT, y, PT, "0.2");
        y -= 16 * PT;
        let label = pdf_text(&format!("Total ({})", doc.currency));
        c.text(label_x, y, TOTAL, &fit(&label, TOTAL, 120 * PT));
        c.text_right(
            COL_AMOUNT_RIGHT,
            y,
            TOTAL,
            amount(doc.priced.total).as_bytes(),
        );
        self.y = y - 6 * PT;
        self.fresh = false;
    }

    fn verification(&mut self) {
        let doc = self.doc;
        let inv = self.inv;
        let leading = 11 * PT;
        let width_all = RIGHT - LEFT;
        // Visual lines, each a list of (x, style, text) segments.
        type Line = Vec<(Mp, Style, Vec<u8>)>;
        let mut lines: Vec<Line> = vec![vec![(LEFT, BODY_BOLD, b"Verification".to_vec())]];
        let mut field = |label: &str, value: &str| {
            let label = pdf_text(&format!("{label}: "));
            let value = pdf_text(value);
            let label_w = width(&label, SMALL_BOLD);
            if label_w + width(&value, SMALL) <= width_all {
                lines.push(vec![
                    (LEFT, SMALL_BOLD, label),
                    (LEFT + label_w, SMALL, value),
                ]);
            } else {
                lines.push(vec![(LEFT, SMALL_BOLD, label)]);
                let max = width_all - 10 * PT;
                // An unbroken value (hex) goes in even lines of 64
                // characters rather than one full line and a stub.
                let parts: Vec<Vec<u8>> = if value.contains(&b' ') {
                    wrap(&value, SMALL, max)
                } else {
                    value.chunks(64).flat_map(|c| wrap(c, SMALL, max)).collect()
                };
                for part in parts {
                    lines.push(vec![(LEFT + 10 * PT, SMALL, part)]);
                }
            }
        };
        field(
            "Usage events priced",
            &group_thousands(&doc.event_count.to_string()),
        );
        field("Events digest (SHA-256)", &doc.events_digest);
        field("Signing key", &inv.key_id);
        field("Signature (Ed25519, hex)", &hex::encode(&inv.signature));
        for part in wrap(VERIFY_NOTE.as_bytes(), SMALL, width_all) {
            lines.push(vec![(LEFT, SMALL, part)]);
        }
        self.ensure(leading * row_count(lines.len()) + 24 * PT);
        let c = &mut self.page;
        let mut y = self.y - 18 * PT;
        c.rule(LEFT, RIGHT, y + 11 * PT, PT / 2, "0.6");
        for line in &lines {
            for (x, style, text) in line {
                c.text(*x, y, *style, text);
            }
            y -= leading;
        }
        self.y = y;
        self.fresh = false;
    }

    fn footers(&mut self) {
        let total = self.done.len();
        let doc = self.doc;
        let left = if doc.number.is_empty() {
            format!("Draft invoice - {}", doc.tenant_name)
        } else {
            format!("Invoice {} - {}", doc.number, doc.tenant_name)
        };
        let left = fit(&pdf_text(&left), FOOTER, 380 * PT);
        for (i, page) in self.done.iter_mut().enumerate() {
            page.rule(LEFT, RIGHT, 50 * PT, PT / 2, "0.6");
            page.text(LEFT, 38 * PT, FOOTER, &left);
            let number = format!("Page {} of {total}", i + 1);
            page.text_right(RIGHT, 38 * PT, FOOTER, number.as_bytes());
        }
    }
}

/// A count of lines as a multiplier of a length.
fn row_count(n: usize) -> Mp {
    Mp::try_from(n).unwrap_or(Mp::MAX / (1000 * PT))
}

/// Word-wraps WinAnsi text to lines at most `max` wide; a word wider
/// than a line is broken between characters. Always at least one line.
fn wrap(text: &[u8], style: Style, max: Mp) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    for word in text.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        let joined = if line.is_empty() {
            width(word, style)
        } else {
            width(&line, style) + width(b" ", style) + width(word, style)
        };
        if joined <= max {
            if !line.is_empty() {
                line.push(b' ');
            }
            line.extend_from_slice(word);
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for &b in word {
            if !line.is_empty() && width(&line, style) + width(&[b], style) > max {
                lines.push(std::mem::take(&mut line));
            }
            line.push(b);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Cuts WinAnsi text to at most `max` wide, ending it with `...` if cut.
fn fit(text: &[u8], style: Style, max: Mp) -> Vec<u8> {
    if width(text, style) <= max {
        return text.to_vec();
    }
    let budget = max - width(b"...", style);
    let mut out = Vec::new();
    for &b in text {
        if width(&out, style) + width(&[b], style) > budget {
            break;
        }
        out.push(b);
    }
    out.extend_from_slice(b"...");
    out
}

/// `2026-02-01T00:05:00Z` as `2026-02-01 00:05:00 UTC`; anything else
/// as it is.
fn pretty_instant(s: &str) -> String {
    match utc_fields(s) {
        Some([y, mo, d, h, mi, se]) => format!("{y}-{mo}-{d} {h}:{mi}:{se} UTC"),
        None => s.to_owned(),
    }
}

/// The PDF date (`D:20260201000500Z`) of an RFC 3339 UTC instant.
fn pdf_date(s: &str) -> Option<String> {
    utc_fields(s).map(|f| format!("D:{}Z", f.concat()))
}

/// Year, month, day, hour, minute, second of `YYYY-MM-DDTHH:MM:SS[.f]Z`.
fn utc_fields(s: &str) -> Option<[&str; 6]> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && matches!(b[b.len() - 1], b'Z' | b'z')
        && (b.len() == 20 || (b[19] == b'.' && digits(20..b.len() - 1)));
    shape.then(|| {
        [
            &s[0..4],
            &s[5..7],
            &s[8..10],
            &s[11..13],
            &s[14..16],
            &s[17..19],
        ]
    })
}

/// Inserts `,` every three digits of an unsigned integer string.
fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A plain decimal string (`-1234567.50`) with thousands separators
/// (`-1,234,567.50`).
fn display_decimal(plain: &str) -> String {
    let (sign, rest) = match plain.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", plain),
    };
    match rest.split_once('.') {
        Some((int, frac)) => format!("{sign}{}.{frac}", group_thousands(int)),
        None => format!("{sign}{}", group_thousands(rest)),
    }
}

// ---------------------------------------------------------------------------
// Text encoding.

/// The WinAnsi code of a character, if it has one (controls have none).
fn winansi(c: char) -> Option<u8> {
    let code = u32::from(c);
    if (0x20..0x7f).contains(&code) || (0xa0..=0xff).contains(&code) {
        return u8::try_from(code).ok();
    }
    let b = match c {
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8a,
        '‹' => 0x8b,
        'Œ' => 0x8c,
        'Ž' => 0x8e,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9a,
        '›' => 0x9b,
        'œ' => 0x9c,
        'ž' => 0x9e,
        'Ÿ' => 0x9f,
        _ => return None,
    };
    Some(b)
}

/// Vietnamese letters with diacritics, by the base letter they fold to.
const VIETNAMESE: &[(char, &str)] = &[
    ('a', "àáảãạăằắẳẵặâầấẩẫậ"),
    ('A', "ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬ"),
    ('e', "èéẻẽẹêềếểễệ"),
    ('E', "ÈÉẺẼẸÊỀẾỂỄỆ"),
    ('i', "ìíỉĩị"),
    ('I', "ÌÍỈĨỊ"),
    ('o', "òóỏõọôồốổỗộơờớởỡợ"),
    ('O', "ÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢ"),
    ('u', "ùúủũụưừứửữự"),
    ('U', "ÙÚỦŨỤƯỪỨỬỮỰ"),
    ('y', "ỳýỷỹỵ"),
    ('Y', "ỲÝỶỸỴ"),
    ('d', "đ"),
    ('D', "Đ"),
];

/// The base letter of a Vietnamese letter with diacritics.
fn fold_vietnamese(c: char) -> Option<char> {
    VIETNAMESE
        .iter()
        .find(|(_, variants)| variants.contains(c))
        .map(|(base, _)| *base)
}

/// Combining diacritical marks (decomposed accents), dropped when folding.
fn is_combining(c: char) -> bool {
    ('\u{300}'..='\u{36f}').contains(&c)
}

/// Text as WinAnsi bytes for the page: controls become spaces; a string
/// with anything WinAnsi lacks is folded (see the module docs).
fn pdf_text(s: &str) -> Vec<u8> {
    let fold = s.chars().any(|c| !c.is_control() && winansi(c).is_none());
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push(b' ');
        } else if fold && is_combining(c) {
            continue;
        } else if let Some(base) = fold.then(|| fold_vietnamese(c)).flatten() {
            out.extend(winansi(base));
        } else {
            out.push(winansi(c).unwrap_or(b'?'));
        }
    }
    out
}

/// A PDF text string (UTF-16BE with BOM, hex) for the Info dictionary.
fn info_string(s: &str) -> String {
    let mut out = String::from("<FEFF");
    for unit in s.encode_utf16() {
        let _ = write!(out, "{unit:04X}");
    }
    out.push('>');
    out
}

// ---------------------------------------------------------------------------
// File structure.

/// Object numbers: 1 catalog, 2 page tree, 3 and 4 fonts, 5 info, then
/// per page a page object and its content stream.
fn write_file(inv: &SignedInvoice, pages: &[Canvas]) -> Vec<u8> {
    let doc = &inv.document;
    let page_obj = |i: usize| 6 + 2 * i;
    let object_count = 5 + 2 * pages.len();
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = vec![0usize; object_count + 1];
    let mut object = |out: &mut Vec<u8>, n: usize, body: &[u8]| {
        offsets[n] = out.len();
        out.extend_from_slice(format!("{n} 0 obj\n").as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    };

    object(&mut out, 1, b"<< /Type /Catalog /Pages 2 0 R >>");
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", page_obj(i)))
        .collect();
    let tree = format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        pages.len()
    );
    object(&mut out, 2, tree.as_bytes());
    for (n, name) in [(3, "Helvetica"), (4, "Helvetica-Bold")] {
        let font = format!(
            "<< /Type /Font /Subtype /Type1 /BaseFont /{name} /Encoding /WinAnsiEncoding >>"
        );
        object(&mut out, n, font.as_bytes());
    }

    let title = if doc.number.is_empty() {
        format!("Draft invoice {} {}", doc.tenant_id, doc.period)
    } else {
        format!("Invoice {}", doc.number)
    };
    let mut info = format!(
        "<< /Title {} /Author {} /Subject {} /Producer (ekyc-billing)",
        info_string(&title),
        info_string(&doc.issuer.name),
        info_string(&format!("{} - period {}", doc.tenant_name, doc.period)),
    );
    if let Some(date) = pdf_date(&doc.issued_at) {
        let _ = write!(info, " /CreationDate ({date}) /ModDate ({date})");
    }
    info.push_str(" >>");
    object(&mut out, 5, info.as_bytes());

    for (i, page) in pages.iter().enumerate() {
        let n = page_obj(i);
        let dict = format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] \
             /Resources << /Font << /F1 3 0 R /F2 4 0 R >> /ProcSet [/PDF /Text] >> \
             /Contents {} 0 R >>",
            num(PAGE_W),
            num(PAGE_H),
            n + 1
        );
        object(&mut out, n, dict.as_bytes());
        let data = page.ops.as_bytes();
        let mut stream = format!("<< /Length {} >>\nstream\n", data.len()).into_bytes();
        stream.extend_from_slice(data);
        stream.extend_from_slice(b"\nendstream");
        object(&mut out, n + 1, &stream);
    }

    let xref = out.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", object_count + 1);
    for offset in &offsets[1..] {
        let _ = writeln!(table, "{offset:010} 00000 n ");
    }
    let id = hex::encode(&Sha256::digest(&inv.bytes)[..16]);
    let _ = write!(
        table,
        "trailer\n<< /Size {} /Root 1 0 R /Info 5 0 R /ID [<{id}> <{id}>] >>\nstartxref\n{xref}\n%%EOF\n",
        object_count + 1
    );
    out.extend_from_slice(table.as_bytes());
    out
}

// ---------------------------------------------------------------------------
// Font metrics: advance widths (1/1000 em) of WinAnsi codes 32..=255, from
// Adobe's Helvetica and Helvetica-Bold AFM files (unused codes: bullet).

#[rustfmt::skip]
static HELVETICA_WIDTHS: [u16; 224] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, 350,
    556, 350, 222, 556, 333, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350,
    350, 222, 222, 333, 333, 350, 556, 1000, 333, 1000, 500, 333, 944, 350, 500, 667,
    278, 333, 556, 556, 556, 556, 260, 556, 333, 737, 370, 556, 584, 333, 737, 333,
    400, 584, 333, 333, 333, 578, 537, 278, 333, 333, 365, 556, 834, 834, 834, 611,
    667, 667, 667, 667, 667, 667, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
    556, 556, 556, 556, 556, 556, 889, 500, 556, 556, 556, 556, 278, 278, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 584, 611, 556, 556, 556, 556, 500, 556, 500,
];

#[rustfmt::skip]
static HELVETICA_BOLD_WIDTHS: [u16; 224] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, 350,
    556, 350, 278, 556, 500, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350,
    350, 278, 278, 500, 500, 350, 556, 1000, 333, 1000, 556, 333, 944, 350, 500, 667,
    278, 333, 556, 556, 556, 556, 280, 556, 333, 737, 370, 556, 584, 333, 737, 333,
    400, 584, 333, 333, 333, 611, 556, 278, 333, 333, 365, 556, 834, 834, 834, 611,
    722, 722, 722, 722, 722, 722, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
    556, 556, 556, 556, 556, 556, 889, 556, 556, 556, 556, 556, 278, 278, 278, 278,
    611, 611, 611, 611, 611, 611, 611, 584, 611, 611, 611, 611, 611, 556, 611, 556,
];

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::export::sample_invoice;

    fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        haystack
            .get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    }

    fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).rposition(|w| w == needle)
    }

    fn ascii_until(bytes: &[u8], from: usize, end: u8) -> &str {
        let len = bytes[from..]
            .iter()
            .position(|&b| b == end)
            .expect("terminator");
        std::str::from_utf8(&bytes[from..from + len]).expect("ASCII")
    }

    /// Parses the xref table and checks every entry; returns the offsets.
    fn xref_offsets(pdf: &[u8]) -> Vec<usize> {
        let sx = rfind(pdf, b"startxref\n").expect("startxref");
        let xref: usize = ascii_until(pdf, sx + 10, b'\n').parse().expect("offset");
        assert!(
            pdf[xref..].starts_with(b"xref\n0 "),
            "startxref points at xref"
        );
        let header = ascii_until(pdf, xref + 7, b'\n');
        let size: usize = header.parse().expect("size");
        let mut at = xref + 7 + header.len() + 1;
        assert_eq!(&pdf[at..at + 20], b"0000000000 65535 f \n");
        at += 20;
        let mut offsets = Vec::new();
        for n in 1..size {
            let entry = &pdf[at..at + 20];
            assert_eq!(&entry[10..], b" 00000 n \n", "entry {n}");
            let offset: usize = std::str::from_utf8(&entry[..10])
                .expect("ASCII")
                .parse()
                .expect("10 digits");
            let expected = format!("{n} 0 obj\n");
            assert!(
                pdf[offset..].starts_with(expected.as_bytes()),
                "xref entry {n} points at {:?}",
                String::from_utf8_lossy(&pdf[offset..offset + 12])
            );
            offsets.push(offset);
            at += 20;
        }
        assert!(pdf[at..].starts_with(b"trailer\n<< /Size "));
        assert!(find(pdf, format!("/Size {size} ").as_bytes(), at).is_some());
        offsets
    }

    fn page_count(pdf: &[u8]) -> usize {
        let at = find(pdf, b"/Type /Pages", 0).expect("page tree");
        let count = find(pdf, b"/Count ", at).expect("count");
        ascii_until(pdf, count + 7, b' ').parse().expect("count")
    }

    /// Runs `pdftotext file -`; `None` if pdftotext is not installed.
    fn pdftotext(pdf: &[u8], name: &str) -> Option<String> {
        if Command::new("pdftotext").arg("-v").output().is_err() {
            eprintln!("pdftotext not installed: skipping text extraction checks");
            return None;
        }
        let path =
            std::env::temp_dir().join(format!("ekyc-billing-{}-{name}.pdf", std::process::id()));
        std::fs::write(&path, pdf).expect("write temp PDF");
        let output = Command::new("pdftotext")
            .arg(&path)
            .arg("-")
            .output()
            .expect("run pdftotext");
        let _ = std::fs::remove_file(&path);
        assert!(
            output.status.success(),
            "pdftotext failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).expect("UTF-8 text");
        // Compare modulo layout: runs of whitespace become one space.
        Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    #[test]
    fn structure_is_valid_pdf_1_4() {
        let inv = sample_invoice(5);
        let pdf = invoice_pdf(&inv);
        assert!(pdf.starts_with(b"%PDF-1.4\n"));
        assert!(pdf.ends_with(b"%%EOF\n"));
        let offsets = xref_offsets(&pdf);
        assert_eq!(offsets.len(), 5 + 2 * page_count(&pdf));
        assert!(find(&pdf, b"/BaseFont /Helvetica /Encoding /WinAnsiEncoding", 0).is_some());
        assert!(
            find(
                &pdf,
                b"/BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding",
                0
            )
            .is_some()
        );
        assert!(find(&pdf, b"/MediaBox [0 0 595 842]", 0).is_some());
        assert!(find(&pdf, b"/CreationDate (D:20260201000500Z)", 0).is_some());
    }

    #[test]
    fn stream_lengths_are_exact() {
        let pdf = invoice_pdf(&sample_invoice(60));
        let mut at = 0;
        let mut streams = 0;
        while let Some(len_at) = find(&pdf, b"<< /Length ", at) {
            let len: usize = ascii_until(&pdf, len_at + 11, b' ')
                .parse()
                .expect("length");
            let start = find(&pdf, b">>\nstream\n", len_at).expect("stream") + 10;
            assert!(pdf[start + len..].starts_with(b"\nendstream\nendobj\n"));
            // Content streams are ASCII (non-ASCII is octal-escaped).
            assert!(pdf[start..start + len].is_ascii());
            streams += 1;
            at = start + len;
        }
        assert_eq!(streams, page_count(&pdf));
    }

    #[test]
    fn same_invoice_same_bytes() {
        let inv = sample_invoice(8);
        assert_eq!(invoice_pdf(&inv), invoice_pdf(&inv.clone()));
        assert_eq!(
            invoice_pdf(&sample_invoice(60)),
            invoice_pdf(&sample_invoice(60))
        );
    }

    #[test]
    fn pdftotext_shows_the_invoice() {
        let inv = sample_invoice(5);
        let pdf = invoice_pdf(&inv);
        assert_eq!(page_count(&pdf), 1);
        let Some(text) = pdftotext(&pdf, "one-page") else {
            return;
        };
        for needle in [
            "INVOICE",
            "EKYC-000042",
            "Cong ty Co phan eKYC Viet Nam",
            "Issuer ID: EKYC",
            "Ngan hang Thuong mai Co phan Dong A",
            "Tenant ID: tenant-dong-a",
            "2026-01",
            "Asia/Ho_Chi_Minh",
            "2025-12-31 17:00:00 UTC",
            "2026-01-31 17:00:00 UTC",
            "2026-02-01 00:05:00 UTC",
            "standard (version 3)",
            "VND",
            "Unit price",
            "1,514,511",
            "350.5",
            "Subtotal",
            "2,500,000",
            "Tax (10%)",
            "250,000",
            "Total (VND)",
            "2,750,000",
            "1,311",
            "billing-2026-01",
            "Verify: the Ed25519 signature covers the canonical JSON of this invoice \
             (export JSON, field document).",
            "Page 1 of 1",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
        for line in &inv.document.priced.lines {
            assert!(
                text.contains(&line.description),
                "{:?} missing from {text}",
                line.description
            );
        }
        // Wrapped hex still reads back in order.
        let joined: String = text.split(' ').collect();
        assert!(joined.contains(&inv.document.events_digest));
        assert!(joined.contains(&hex::encode(&inv.signature)));
    }

    #[test]
    fn long_invoices_paginate() {
        let inv = sample_invoice(60);
        let pdf = invoice_pdf(&inv);
        let pages = page_count(&pdf);
        assert!(pages > 1, "{pages} pages");
        xref_offsets(&pdf);
        // Every page repeats the table header.
        let headers = pdf
            .windows(b"(Description)".len())
            .filter(|w| w == b"(Description)")
            .count();
        assert!(headers >= 2, "{headers} table headers");
        let Some(text) = pdftotext(&pdf, "paginated") else {
            return;
        };
        assert!(text.contains(&format!("Page 1 of {pages}")));
        assert!(text.contains("Page 2 of"));
        assert!(text.contains("(continued)"));
        for line in &inv.document.priced.lines {
            assert!(text.contains(&line.description), "{:?}", line.description);
        }
        let total = display_decimal(&amount_string(inv.document.priced.total, 0));
        assert!(text.contains(&format!("Total (VND) {total}")) || text.contains(&total));
    }

    #[test]
    fn long_descriptions_wrap_within_their_column() {
        let mut inv = sample_invoice(3);
        let words: Vec<String> = (1..=40).map(|i| format!("word{i}")).collect();
        inv.document.priced.lines[1].description = words.join(" ");
        inv.document.priced.lines[2].description = "x".repeat(2000);
        let pdf = invoice_pdf(&inv);
        xref_offsets(&pdf);
        assert_eq!(page_count(&pdf), 1);
        // The 2000 x's are cut to MAX_DESC_LINES lines, the last marked.
        assert!(find(&pdf, b"xxx ...) Tj", 0).is_some());
        let Some(text) = pdftotext(&pdf, "wrapped") else {
            return;
        };
        for word in &words {
            assert!(text.split(' ').any(|w| w == word), "{word} missing");
        }
    }

    #[test]
    fn text_is_folded_to_winansi() {
        assert_eq!(
            pdf_text("Ngân hàng Thương mại Cổ phần Đông Á"),
            b"Ngan hang Thuong mai Co phan Dong A"
        );
        assert_eq!(pdf_text("ĐẶNG ỨNG Ỹ đường"), b"DANG UNG Y duong");
        // Decomposed accents: the marks are dropped.
        assert_eq!(pdf_text("Vie\u{302}\u{323}t"), b"Viet");
        // Text WinAnsi can show is kept, accents and all.
        assert_eq!(pdf_text("Société – 5 €"), b"Soci\xe9t\xe9 \x96 5 \x80");
        // Unknown characters become '?'; controls spaces.
        assert_eq!(pdf_text("Đà 漢字\tx"), b"Da ?? x");
        assert_eq!(pdf_text("Zürich 東"), b"Z\xfcrich ?");
    }

    #[test]
    fn strings_are_escaped() {
        let mut c = Canvas::default();
        c.text(PT, 2 * PT + 500, BODY, b"a(b)c\\d \xe9");
        assert_eq!(c.ops, "BT /F1 9 Tf 1 2.5 Td (a\\(b\\)c\\\\d \\351) Tj ET\n");
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(group_thousands("3702000"), "3,702,000");
        assert_eq!(group_thousands("100"), "100");
        assert_eq!(group_thousands("1000"), "1,000");
        assert_eq!(group_thousands("0"), "0");
        assert_eq!(display_decimal("-1234567.50"), "-1,234,567.50");
        assert_eq!(display_decimal("350.5"), "350.5");
        assert_eq!(display_decimal("12.50"), "12.50");
    }

    #[test]
    fn instants_and_wrapping() {
        assert_eq!(
            pretty_instant("2026-02-01T00:05:00Z"),
            "2026-02-01 00:05:00 UTC"
        );
        assert_eq!(
            pretty_instant("2026-02-01T00:05:00.123Z"),
            "2026-02-01 00:05:00 UTC"
        );
        assert_eq!(
            pretty_instant("2026-02-01T00:05:00+07:00"),
            "2026-02-01T00:05:00+07:00"
        );
        assert_eq!(
            pdf_date("2026-02-01T00:05:00Z").as_deref(),
            Some("D:20260201000500Z")
        );
        assert_eq!(pdf_date(""), None);
        let hex = "0123456789abcdef".repeat(8);
        let lines = wrap(hex.as_bytes(), SMALL, 200 * PT);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| width(l, SMALL) <= 200 * PT));
        assert_eq!(lines.concat(), hex.as_bytes());
        assert_eq!(wrap(b"", BODY, PT), vec![Vec::<u8>::new()]);
        assert_eq!(
            fit(b"abcdefghijklmnop", BODY, 40 * PT),
            b"abcdefg...".to_vec()
        );
    }

    #[test]
    fn empty_and_draft_invoices_render() {
        let mut inv = sample_invoice(0);
        inv.document.number.clear();
        inv.document.issued_at.clear();
        let pdf = invoice_pdf(&inv);
        xref_offsets(&pdf);
        assert!(find(&pdf, b"/CreationDate", 0).is_none());
        if let Some(text) = pdftotext(&pdf, "draft") {
            assert!(text.contains("INVOICE (DRAFT)"));
            assert!(text.contains("(no lines)"));
        }
    }
}
