//! PDF export of a signed invoice: a printable A4 invoice in Vietnamese with
//! English beneath or beside every label, laid out as Vietnamese business
//! invoices are (seller, buyer with their tax codes, the table, the VAT
//! line, the total in words).
//!
//! Written with `krilla` (typst's PDF backend). The text is set in DejaVu
//! Sans and DejaVu Sans Bold, shipped in `billing/fonts/` with their
//! licence, embedded as subsets: every Vietnamese letter prints as it is,
//! and the output never depends on the host's fonts. Text is shaped with
//! `rustybuzz` (the shaper krilla uses), so widths used for alignment and
//! wrapping are the widths drawn.
//!
//! The same invoice always gives the same bytes: no creation date is
//! written, the document id is the SHA-256 of the signed bytes, and
//! nothing depends on a clock, the host or hash-map order.
//!
//! Layout: the seller (left) and the title and invoice particulars
//! (right); the buyer; the table of lines (STT, description, quantity,
//! unit price, amount; numbers right-aligned with Vietnamese digit
//! grouping `1.234.567` and a decimal comma); subtotal, VAT rate and
//! amount, total and the total in words; then a verification block (event
//! count, events digest, signing key, signature). Pages that overflow
//! continue on a new page that repeats the table header; every page has a
//! footer `Trang i/n · Page i of n`.

use krilla::Document;
use krilla::color::luma;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, GlyphId, KrillaGlyph};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use sha2::{Digest, Sha256};

use super::{amount_string, price_string};
use crate::model::{InvoiceDocument, LineKind, Party, SignedInvoice};
use crate::words::vnd_in_words;

static REGULAR: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../fonts/DejaVuSans-Bold.ttf");

/// The invoice as a PDF file (see the module docs). Pure: the same
/// invoice always gives the same bytes.
pub fn invoice_pdf(inv: &SignedInvoice) -> Vec<u8> {
    let fonts = Fonts::load();
    let pages = Layout::run(inv, &fonts);
    render(inv, &fonts, &pages)
}

// ---------------------------------------------------------------------------
// Geometry, in points from the top left corner of an A4 page.

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const LEFT: f32 = 48.0;
const RIGHT: f32 = 547.0;
/// Lowest point body content may reach; the footer is below it.
const BODY_BOTTOM: f32 = 790.0;
/// Top of the body on continuation pages.
const CONTINUED_TOP: f32 = 84.0;

/// Table columns: left edges of text columns, right edges of number ones.
const COL_NO_RIGHT: f32 = 72.0;
const COL_DESC_X: f32 = 82.0;
const COL_DESC_W: f32 = 218.0;
const COL_QTY_RIGHT: f32 = 362.0;
const COL_PRICE_RIGHT: f32 = 446.0;
const COL_AMOUNT_RIGHT: f32 = RIGHT - 4.0;

// ---------------------------------------------------------------------------
// Fonts and text.

/// One face: krilla's font to draw with, rustybuzz's face to shape with.
struct Face {
    font: Font,
    shaper: rustybuzz::Face<'static>,
    units_per_em: f32,
}

impl Face {
    fn load(data: &'static [u8]) -> Face {
        // Both parse a font compiled into the binary, so failing here is
        // a build defect, caught by every test that renders.
        let font = Font::new(data.into(), 0).expect("the embedded font parses");
        let shaper = rustybuzz::Face::from_slice(data, 0).expect("the embedded font shapes");
        let units_per_em = shaper.units_per_em() as f32;
        Face {
            font,
            shaper,
            units_per_em,
        }
    }

    /// Shapes `text`: glyphs with advances in ems, as krilla draws them.
    fn shape(&self, text: &str) -> Vec<KrillaGlyph> {
        let mut buffer = rustybuzz::UnicodeBuffer::new();
        buffer.push_str(text);
        buffer.set_direction(rustybuzz::Direction::LeftToRight);
        let output = rustybuzz::shape(&self.shaper, &[], buffer);
        let infos = output.glyph_infos();
        let positions = output.glyph_positions();
        let em = self.units_per_em;
        (0..output.len())
            .map(|i| {
                let start = infos[i].cluster as usize;
                let end = infos[i + 1..]
                    .iter()
                    .find(|g| g.cluster as usize != start)
                    .map_or(text.len(), |g| g.cluster as usize);
                let p = positions[i];
                KrillaGlyph::new(
                    GlyphId::new(infos[i].glyph_id),
                    p.x_advance as f32 / em,
                    p.x_offset as f32 / em,
                    p.y_offset as f32 / em,
                    p.y_advance as f32 / em,
                    start..end,
                    None,
                )
            })
            .collect()
    }

    /// Width of `text` at `size` points.
    fn width(&self, text: &str, size: f32) -> f32 {
        self.shape(text).iter().map(|g| g.x_advance).sum::<f32>() * size
    }
}

struct Fonts {
    regular: Face,
    bold: Face,
}

impl Fonts {
    fn load() -> Fonts {
        Fonts {
            regular: Face::load(REGULAR),
            bold: Face::load(BOLD),
        }
    }

    fn face(&self, style: Style) -> &Face {
        if style.bold {
            &self.bold
        } else {
            &self.regular
        }
    }

    fn width(&self, text: &str, style: Style) -> f32 {
        self.face(style).width(text, style.size)
    }

    /// Greedy word wrap to `max` points; a word longer than a line is cut
    /// by characters.
    fn wrap(&self, text: &str, style: Style, max: f32) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in text.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if self.width(&candidate, style) <= max {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // The word alone: cut it if it is wider than a line.
            let mut piece = String::new();
            for c in word.chars() {
                piece.push(c);
                if self.width(&piece, style) > max && piece.chars().count() > 1 {
                    piece.pop();
                    lines.push(std::mem::take(&mut piece));
                    piece.push(c);
                }
            }
            line = piece;
        }
        if !line.is_empty() || lines.is_empty() {
            lines.push(line);
        }
        lines
    }
}

/// Bold or not, size in points, gray level (0 black, 255 white).
#[derive(Clone, Copy)]
struct Style {
    bold: bool,
    size: f32,
    gray: u8,
}

const fn style(bold: bool, size: f32, gray: u8) -> Style {
    Style { bold, size, gray }
}

const TITLE: Style = style(true, 20.0, 0);
const SUBTITLE: Style = style(false, 11.0, 90);
const NAME: Style = style(true, 10.5, 0);
const BODY: Style = style(false, 8.5, 0);
const BODY_BOLD: Style = style(true, 8.5, 0);
const LABEL: Style = style(false, 8.5, 90);
const CAPTION: Style = style(true, 8.0, 90);
const ENGLISH: Style = style(false, 7.0, 90);
const TOTAL: Style = style(true, 10.5, 0);
const SMALL: Style = style(false, 7.5, 0);
const SMALL_BOLD: Style = style(true, 7.5, 0);
const FOOTER: Style = style(false, 7.5, 90);

// ---------------------------------------------------------------------------
// Pages as lists of drawing operations.

enum Op {
    /// Text with its baseline starting at (x, y).
    Text {
        x: f32,
        y: f32,
        style: Style,
        text: String,
    },
    /// A horizontal line.
    Rule {
        x1: f32,
        x2: f32,
        y: f32,
        width: f32,
        gray: u8,
    },
    /// A filled rectangle.
    Fill {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        gray: u8,
    },
}

#[derive(Default)]
struct Page {
    ops: Vec<Op>,
}

impl Page {
    fn text(&mut self, x: f32, y: f32, style: Style, text: &str) {
        if !text.is_empty() {
            self.ops.push(Op::Text {
                x,
                y,
                style,
                text: text.to_owned(),
            });
        }
    }

    fn text_right(&mut self, fonts: &Fonts, right: f32, y: f32, style: Style, text: &str) {
        self.text(right - fonts.width(text, style), y, style, text);
    }

    fn rule(&mut self, x1: f32, x2: f32, y: f32, width: f32, gray: u8) {
        self.ops.push(Op::Rule {
            x1,
            x2,
            y,
            width,
            gray,
        });
    }

    fn fill(&mut self, x: f32, y: f32, w: f32, h: f32, gray: u8) {
        self.ops.push(Op::Fill { x, y, w, h, gray });
    }
}

fn render(inv: &SignedInvoice, fonts: &Fonts, pages: &[Page]) -> Vec<u8> {
    let doc = &inv.document;
    let mut document = Document::new();
    let number = if doc.number.is_empty() {
        "bản nháp / draft".to_owned()
    } else {
        doc.number.clone()
    };
    document.set_metadata(
        Metadata::new()
            .title(format!("Hóa đơn / Invoice {number}"))
            .authors(vec![doc.seller().legal_name])
            .language("vi".to_owned())
            // Fixed by the content, so two exports are the same file.
            .document_id(hex::encode(Sha256::digest(&inv.bytes))),
    );
    let settings = PageSettings::from_wh(PAGE_W, PAGE_H).expect("A4 is a valid page size");
    for page in pages {
        let mut p = document.start_page_with(settings.clone());
        let mut s = p.surface();
        for op in &page.ops {
            match op {
                Op::Text { x, y, style, text } => {
                    s.set_fill(Some(gray_fill(style.gray)));
                    let face = fonts.face(*style);
                    let glyphs = face.shape(text);
                    s.draw_glyphs(
                        Point::from_xy(*x, *y),
                        &glyphs,
                        face.font.clone(),
                        text,
                        style.size,
                        false,
                    );
                }
                Op::Rule {
                    x1,
                    x2,
                    y,
                    width,
                    gray,
                } => {
                    let mut pb = PathBuilder::new();
                    pb.move_to(*x1, *y);
                    pb.line_to(*x2, *y);
                    if let Some(path) = pb.finish() {
                        s.set_fill(None);
                        s.set_stroke(Some(Stroke {
                            paint: luma::Color::new(*gray).into(),
                            width: *width,
                            ..Stroke::default()
                        }));
                        s.draw_path(&path);
                        s.set_stroke(None);
                    }
                }
                Op::Fill { x, y, w, h, gray } => {
                    let mut pb = PathBuilder::new();
                    if let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) {
                        pb.push_rect(rect);
                    }
                    if let Some(path) = pb.finish() {
                        s.set_fill(Some(gray_fill(*gray)));
                        s.draw_path(&path);
                    }
                }
            }
        }
        s.finish();
        p.finish();
    }
    // Serialising pages, fonts and metadata built above cannot fail; a
    // failure would be a krilla bug, and an empty file is refused by
    // every reader rather than mistaken for an invoice.
    document.finish().unwrap_or_default()
}

fn gray_fill(gray: u8) -> Fill {
    Fill {
        paint: luma::Color::new(gray).into(),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }
}

// ---------------------------------------------------------------------------
// Layout.

struct Layout<'a> {
    doc: &'a InvoiceDocument,
    inv: &'a SignedInvoice,
    fonts: &'a Fonts,
    done: Vec<Page>,
    page: Page,
    /// Top of the free space on the current page.
    y: f32,
    /// Whether nothing but the page header is on the current page.
    fresh: bool,
}

impl<'a> Layout<'a> {
    fn run(inv: &'a SignedInvoice, fonts: &'a Fonts) -> Vec<Page> {
        let mut l = Layout {
            doc: &inv.document,
            inv,
            fonts,
            done: Vec::new(),
            page: Page::default(),
            y: 0.0,
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
    fn ensure(&mut self, needed: f32) -> bool {
        if self.y + needed <= BODY_BOTTOM || self.fresh {
            return false;
        }
        self.done.push(std::mem::take(&mut self.page));
        self.continued_header();
        true
    }

    fn number(&self) -> String {
        if self.doc.number.is_empty() {
            "BẢN NHÁP / DRAFT".to_owned()
        } else {
            self.doc.number.clone()
        }
    }

    /// A `label / English: value` line pair at (x, y), the value wrapped to
    /// `width`; returns the y below it.
    fn labelled(&mut self, x: f32, y: f32, width: f32, label: &str, value: &str) -> f32 {
        let f = self.fonts;
        let label = format!("{label}: ");
        let label_w = f.width(&label, LABEL);
        let value = if value.is_empty() { "—" } else { value };
        let mut y = y;
        if label_w < width * 0.55 {
            let lines = f.wrap(value, BODY, width - label_w);
            self.page.text(x, y, LABEL, &label);
            for line in lines {
                self.page.text(x + label_w, y, BODY, &line);
                y += 11.0;
            }
        } else {
            self.page.text(x, y, LABEL, &label);
            y += 11.0;
            for line in f.wrap(value, BODY, width - 8.0) {
                self.page.text(x + 8.0, y, BODY, &line);
                y += 11.0;
            }
        }
        y
    }

    /// A party block (seller or buyer) at (x, y) within `width`.
    fn party(&mut self, x: f32, y: f32, width: f32, caption: &str, party: &Party) -> f32 {
        let f = self.fonts;
        self.page.text(x, y, CAPTION, caption);
        let mut y = y + 15.0;
        for line in f.wrap(&party.legal_name, NAME, width) {
            self.page.text(x, y, NAME, &line);
            y += 13.0;
        }
        y += 2.0;
        y = self.labelled(x, y, width, "Mã số thuế / Tax code", &party.tax_code);
        self.labelled(x, y, width, "Địa chỉ / Address", &party.address)
    }

    fn first_page_header(&mut self) {
        let doc = self.doc;
        // Title and particulars, on the right.
        let right_x = 330.0;
        self.page.text(right_x, 62.0, TITLE, "HÓA ĐƠN");
        self.page.text(right_x, 78.0, SUBTITLE, "INVOICE");
        let mut ry = 98.0;
        let period = vietnamese_month(&doc.period);
        let particulars = [
            ("Số / No.", self.number()),
            (
                "Ngày lập / Date",
                if doc.issued_at.is_empty() {
                    "chưa lập / not finalized".to_owned()
                } else {
                    local_date(&doc.issued_at, &doc.time_zone)
                },
            ),
            (
                "Kỳ / Period",
                format!(
                    "{period} ({} – {})",
                    local_date(&doc.period_start, &doc.time_zone),
                    last_day(&doc.period_end, &doc.time_zone)
                ),
            ),
            ("Múi giờ / Time zone", doc.time_zone.clone()),
            (
                "Bảng giá / Price plan",
                format!("{} (v{})", doc.plan_id, doc.plan_version),
            ),
            ("Tiền tệ / Currency", doc.currency.clone()),
        ];
        for (label, value) in particulars {
            ry = self.labelled(right_x, ry, RIGHT - right_x, label, &value);
        }
        // The seller, on the left.
        let seller = doc.seller();
        let mut ly = self.party(LEFT, 48.0, 262.0, "ĐƠN VỊ BÁN / SELLER", &seller);
        ly = self.labelled(
            LEFT,
            ly,
            262.0,
            "Mã đơn vị phát hành / Issuer ID",
            &doc.issuer.id,
        );
        let rule_y = ly.max(ry) + 6.0;
        self.page.rule(LEFT, RIGHT, rule_y, 1.0, 50);

        // The buyer.
        let buyer = doc.buyer();
        let mut y = self.party(LEFT, rule_y + 18.0, 420.0, "ĐƠN VỊ MUA / BUYER", &buyer);
        y = self.labelled(
            LEFT,
            y,
            420.0,
            "Mã khách hàng / Customer ID",
            &doc.tenant_id,
        );
        if doc.tenant_name != buyer.legal_name {
            y = self.labelled(
                LEFT,
                y,
                420.0,
                "Tên giao dịch / Trading name",
                &doc.tenant_name,
            );
        }
        self.y = y + 10.0;
        self.fresh = true;
    }

    fn continued_header(&mut self) {
        let f = self.fonts;
        let title = format!(
            "HÓA ĐƠN / INVOICE {} (tiếp theo / continued)",
            self.number()
        );
        self.page.text(LEFT, 50.0, NAME, &title);
        let seller = self.doc.seller().legal_name;
        let seller = f.wrap(&seller, BODY, 180.0).swap_remove(0);
        self.page.text_right(f, RIGHT, 50.0, BODY, &seller);
        self.page.rule(LEFT, RIGHT, 60.0, 0.5, 50);
        self.y = CONTINUED_TOP;
        self.fresh = true;
    }

    fn table_header(&mut self) {
        let f = self.fonts;
        let h = 28.0;
        let top = self.y;
        self.page.fill(LEFT, top, RIGHT - LEFT, h, 230);
        let (vi, en) = (top + 12.0, top + 22.0);
        let p = &mut self.page;
        p.text_right(f, COL_NO_RIGHT, vi, BODY_BOLD, "STT");
        p.text_right(f, COL_NO_RIGHT, en, ENGLISH, "No.");
        p.text(COL_DESC_X, vi, BODY_BOLD, "Tên dịch vụ");
        p.text(COL_DESC_X, en, ENGLISH, "Description");
        p.text_right(f, COL_QTY_RIGHT, vi, BODY_BOLD, "Số lượng");
        p.text_right(f, COL_QTY_RIGHT, en, ENGLISH, "Quantity");
        p.text_right(f, COL_PRICE_RIGHT, vi, BODY_BOLD, "Đơn giá");
        p.text_right(f, COL_PRICE_RIGHT, en, ENGLISH, "Unit price");
        p.text_right(f, COL_AMOUNT_RIGHT, vi, BODY_BOLD, "Thành tiền");
        p.text_right(f, COL_AMOUNT_RIGHT, en, ENGLISH, "Amount");
        self.y += h;
    }

    fn table(&mut self) {
        let doc = self.doc;
        let f = self.fonts;
        self.table_header();
        if doc.priced.lines.is_empty() {
            self.page.text(
                COL_DESC_X,
                self.y + 12.0,
                LABEL,
                "(không có dòng nào / no lines)",
            );
            self.y += 18.0;
        }
        for (i, line) in doc.priced.lines.iter().enumerate() {
            let vi = f.wrap(kind_vi(line.kind), BODY, COL_DESC_W);
            let mut en = f.wrap(&line.description, ENGLISH, COL_DESC_W);
            en.truncate(12);
            let h = 11.0 * vi.len() as f32 + 9.0 * en.len() as f32 + 8.0;
            if self.ensure(h) {
                self.table_header();
            }
            let base = self.y + 12.0;
            let p = &mut self.page;
            p.text_right(f, COL_NO_RIGHT, base, BODY, &(i + 1).to_string());
            let mut ly = base;
            for text in &vi {
                p.text(COL_DESC_X, ly, BODY, text);
                ly += 11.0;
            }
            for text in &en {
                p.text(COL_DESC_X, ly - 1.5, ENGLISH, text);
                ly += 9.0;
            }
            p.text_right(f, COL_QTY_RIGHT, base, BODY, &group(line.quantity));
            p.text_right(
                f,
                COL_PRICE_RIGHT,
                base,
                BODY,
                &vietnamese_decimal(&price_string(line.unit_price)),
            );
            p.text_right(
                f,
                COL_AMOUNT_RIGHT,
                base,
                BODY,
                &vietnamese_decimal(&amount_string(line.amount, doc.minor_units)),
            );
            self.y += h;
            p.rule(LEFT, RIGHT, self.y, 0.5, 200);
            self.fresh = false;
        }
    }

    fn totals(&mut self) {
        let doc = self.doc;
        let f = self.fonts;
        // In words for đồng, the currency Vietnamese invoices are in.
        let words = (doc.currency == "VND")
            .then(|| doc.priced.total.to_u64().map(vnd_in_words))
            .flatten();
        let words_lines = words
            .as_deref()
            .map(|w| f.wrap(w, BODY_BOLD, RIGHT - LEFT - 150.0))
            .unwrap_or_default();
        self.ensure(86.0 + 11.0 * words_lines.len() as f32);
        let amount = |d: Decimal| vietnamese_decimal(&amount_string(d, doc.minor_units));
        let label_x = 250.0;
        let mut y = self.y + 16.0;
        let p = &mut self.page;
        p.text(label_x, y, BODY, "Cộng tiền dịch vụ / Subtotal");
        p.text_right(f, COL_AMOUNT_RIGHT, y, BODY, &amount(doc.priced.subtotal));
        y += 14.0;
        let percent = doc
            .tax_rate
            .checked_mul(Decimal::ONE_HUNDRED)
            .map(|p| format!("{}%", vietnamese_decimal(&price_string(p))))
            .unwrap_or_else(|| price_string(doc.tax_rate));
        p.text(
            label_x,
            y,
            BODY,
            &format!("Thuế suất GTGT / VAT rate: {percent}"),
        );
        y += 12.0;
        p.text(label_x, y, BODY, "Tiền thuế GTGT / VAT amount");
        p.text_right(f, COL_AMOUNT_RIGHT, y, BODY, &amount(doc.priced.tax));
        y += 7.0;
        p.rule(label_x, RIGHT, y, 1.0, 50);
        y += 15.0;
        p.text(label_x, y, TOTAL, "Tổng cộng / Total");
        let total = format!("{} {}", amount(doc.priced.total), doc.currency);
        p.text_right(f, COL_AMOUNT_RIGHT, y, TOTAL, &total);
        y += 10.0;
        p.text(label_x, y, ENGLISH, "Tổng tiền thanh toán / Amount due");
        if !words_lines.is_empty() {
            y += 18.0;
            p.text(LEFT, y, LABEL, "Số tiền viết bằng chữ /");
            p.text(LEFT, y + 9.5, ENGLISH, "Amount in words:");
            for line in &words_lines {
                p.text(LEFT + 150.0, y, BODY_BOLD, line);
                y += 11.0;
            }
        }
        self.y = y + 8.0;
        self.fresh = false;
    }

    fn verification(&mut self) {
        let doc = self.doc;
        let inv = self.inv;
        let f = self.fonts;
        let width_all = RIGHT - LEFT;
        // Visual lines, each a list of (x, style, text) segments.
        type Line = Vec<(f32, Style, String)>;
        let mut lines: Vec<Line> = vec![vec![(
            LEFT,
            BODY_BOLD,
            "Xác thực / Verification".to_owned(),
        )]];
        let mut field = |label: &str, value: &str| {
            let label = format!("{label}: ");
            let label_w = f.width(&label, SMALL_BOLD);
            if label_w + f.width(value, SMALL) <= width_all {
                lines.push(vec![
                    (LEFT, SMALL_BOLD, label),
                    (LEFT + label_w, SMALL, value.to_owned()),
                ]);
            } else {
                lines.push(vec![(LEFT, SMALL_BOLD, label)]);
                let max = width_all - 10.0;
                // An unbroken value (hex) goes in even lines of 64
                // characters rather than one full line and a stub.
                let parts: Vec<String> = if value.contains(' ') {
                    f.wrap(value, SMALL, max)
                } else {
                    value
                        .as_bytes()
                        .chunks(64)
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect()
                };
                for part in parts {
                    lines.push(vec![(LEFT + 10.0, SMALL, part)]);
                }
            }
        };
        field(
            "Số sự kiện sử dụng / Usage events priced",
            &group(doc.event_count),
        );
        field(
            "Mã băm sự kiện / Events digest (SHA-256)",
            &doc.events_digest,
        );
        field("Khóa ký / Signing key", &inv.key_id);
        field(
            "Chữ ký / Signature (Ed25519, hex)",
            &hex::encode(&inv.signature),
        );
        for part in f.wrap(VERIFY_NOTE_VI, SMALL, width_all) {
            lines.push(vec![(LEFT, SMALL, part)]);
        }
        for part in f.wrap(VERIFY_NOTE_EN, SMALL, width_all) {
            lines.push(vec![(LEFT, SMALL, part)]);
        }
        let leading = 10.0;
        // Kept together on one page when it fits on one.
        self.ensure(leading * lines.len() as f32 + 26.0);
        self.y += 14.0;
        self.page.rule(LEFT, RIGHT, self.y, 0.5, 200);
        self.y += 14.0;
        for line in lines {
            if self.ensure(leading) {
                self.y += 6.0;
            }
            for (x, style, text) in line {
                self.page.text(x, self.y, style, &text);
            }
            self.y += leading;
            self.fresh = false;
        }
    }

    fn footers(&mut self) {
        let f = self.fonts;
        let n = self.done.len();
        let number = self.number();
        for (i, page) in self.done.iter_mut().enumerate() {
            let footer = format!("Trang {}/{n} · Page {} of {n}", i + 1, i + 1);
            page.rule(LEFT, RIGHT, 806.0, 0.5, 200);
            page.text(LEFT, 818.0, FOOTER, &number);
            page.text_right(f, RIGHT, 818.0, FOOTER, &footer);
        }
    }
}

/// The closing notes of the verification block.
const VERIFY_NOTE_VI: &str = "Chữ ký Ed25519 bao trùm JSON chuẩn của hóa đơn này (bản xuất JSON, \
                              trường document).";
const VERIFY_NOTE_EN: &str = "Verify: the Ed25519 signature covers the canonical JSON of this \
                              invoice (export JSON, field document).";

/// What a line bills, in Vietnamese (its English description, which names
/// tiers and periods, is printed below).
fn kind_vi(kind: LineKind) -> &'static str {
    match kind {
        LineKind::Calls => "Lượt tra cứu đã trả lời",
        LineKind::IncludedUnits => "Trường thông tin miễn phí theo gói",
        LineKind::FieldUnits => "Trường thông tin tra cứu",
        LineKind::Adjustment => "Điều chỉnh kỳ trước: trường thông tin",
        LineKind::AdjustmentCalls => "Điều chỉnh kỳ trước: lượt tra cứu",
        LineKind::MinimumTopUp => "Phí bù mức tối thiểu hằng tháng",
    }
}

/// Digits grouped by threes with dots, as Vietnamese writes numbers:
/// `1.234.567`.
fn group(n: u64) -> String {
    group_digits(&n.to_string())
}

fn group_digits(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out
}

/// A plain decimal (`-1234567.5`) in Vietnamese notation: grouping dots and
/// a decimal comma (`-1.234.567,5`).
fn vietnamese_decimal(plain: &str) -> String {
    let (sign, unsigned) = match plain.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", plain),
    };
    let (whole, frac) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let mut out = format!("{sign}{}", group_digits(whole));
    if let Some(frac) = frac {
        out.push(',');
        out.push_str(frac);
    }
    out
}

/// `YYYY-MM` as `MM/YYYY`.
fn vietnamese_month(period: &str) -> String {
    match period.split_once('-') {
        Some((y, m)) => format!("{m}/{y}"),
        None => period.to_owned(),
    }
}

/// The local date (DD/MM/YYYY) of an RFC 3339 instant in `zone`.
fn local_date(instant: &str, zone: &str) -> String {
    zoned(instant, zone).map_or_else(
        || instant.to_owned(),
        |z| z.date().strftime("%d/%m/%Y").to_string(),
    )
}

/// The last local day before an RFC 3339 instant (a period's end is the
/// first instant after it).
fn last_day(instant: &str, zone: &str) -> String {
    zoned(instant, zone)
        .and_then(|z| z.date().yesterday().ok())
        .map_or_else(
            || instant.to_owned(),
            |d| d.strftime("%d/%m/%Y").to_string(),
        )
}

fn zoned(instant: &str, zone: &str) -> Option<jiff::ZonedDateTime> {
    let ts: jiff::Timestamp = instant.parse().ok()?;
    let tz = jiff::tz::TimeZone::get(zone).ok()?;
    Some(ts.to_zoned_datetime(tz))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::export::sample_invoice;

    fn find(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// Runs a poppler tool on `pdf`; panics if it is missing, since
    /// scripts/services.sh installs poppler-utils for the tests.
    fn poppler(tool: &str, pdf: &[u8], name: &str, args: &[&str], after: &[&str]) -> Vec<u8> {
        let path =
            std::env::temp_dir().join(format!("ekyc-billing-{}-{name}.pdf", std::process::id()));
        std::fs::write(&path, pdf).expect("write temp PDF");
        let output = Command::new(tool)
            .args(args)
            .arg(&path)
            .args(after)
            .output()
            .unwrap_or_else(|e| panic!("{tool} must be installed (poppler-utils): {e}"));
        let _ = std::fs::remove_file(&path);
        assert!(
            output.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// The text `pdftotext` reads, runs of whitespace folded to one space.
    fn text_of(pdf: &[u8], name: &str) -> String {
        let raw = poppler("pdftotext", pdf, name, &[], &["-"]);
        let text = String::from_utf8(raw).expect("UTF-8 text");
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn page_count(pdf: &[u8], name: &str) -> usize {
        let info = String::from_utf8(poppler("pdfinfo", pdf, name, &[], &[])).expect("UTF-8");
        info.lines()
            .find_map(|l| l.strip_prefix("Pages:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("Pages: line")
    }

    #[test]
    fn fonts_are_embedded_and_no_date_is_written() {
        let pdf = invoice_pdf(&sample_invoice(5));
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(
            find(&pdf, b"/FontFile2"),
            "a TrueType font program is embedded"
        );
        assert!(find(&pdf, b"DejaVuSans"));
        assert!(!find(&pdf, b"/CreationDate"));
        assert!(!find(&pdf, b"/ModDate"));
        assert!(!find(&pdf, b"/Helvetica"), "no unembedded standard font");
    }

    #[test]
    fn same_invoice_same_bytes() {
        let inv = sample_invoice(8);
        assert_eq!(invoice_pdf(&inv), invoice_pdf(&inv.clone()));
        assert_eq!(
            invoice_pdf(&sample_invoice(60)),
            invoice_pdf(&sample_invoice(60))
        );
        // Another invoice is another file id.
        assert_ne!(
            invoice_pdf(&sample_invoice(5)),
            invoice_pdf(&sample_invoice(6))
        );
    }

    #[test]
    fn pdftotext_reads_vietnamese_exactly() {
        let inv = sample_invoice(5);
        let pdf = invoice_pdf(&inv);
        assert_eq!(page_count(&pdf, "pages"), 1);
        let text = text_of(&pdf, "one-page");
        for needle in [
            "HÓA ĐƠN",
            "INVOICE",
            "EKYC-000042",
            "ĐƠN VỊ BÁN / SELLER",
            "Trung tâm Dữ liệu quốc gia về dân cư",
            "Mã số thuế / Tax code: 0109876543",
            "ĐƠN VỊ MUA / BUYER",
            "Ngân hàng TMCP Ngoại thương Việt Nam",
            "Mã số thuế / Tax code: 0100112437-001",
            "198 Trần Quang Khải",
            "Mã khách hàng / Customer ID: tenant-vcb",
            "Tên giao dịch / Trading name: Vietcombank",
            "01/02/2026",
            "01/2026 (01/01/2026 – 31/01/2026)",
            "Bảng giá / Price plan: standard (v3)",
            "Thành tiền",
            "Amount",
            "1.514.511",
            "350,5",
            "Cộng tiền dịch vụ / Subtotal",
            "2.500.000",
            "Thuế suất GTGT / VAT rate: 10%",
            "250.000",
            "Tổng cộng / Total",
            "2.750.000 VND",
            "Hai triệu bảy trăm năm mươi nghìn đồng",
            "Lượt tra cứu đã trả lời",
            "1.311",
            "billing-2026-01",
            "Verify: the Ed25519 signature covers the canonical JSON of this invoice \
             (export JSON, field document).",
            "Trang 1/1 · Page 1 of 1",
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
    fn long_invoices_paginate_and_a_page_renders() {
        let inv = sample_invoice(60);
        let pdf = invoice_pdf(&inv);
        let pages = page_count(&pdf, "long");
        assert!(pages > 1, "{pages} pages");
        let text = text_of(&pdf, "long");
        assert!(text.contains(&format!("Trang {pages}/{pages} · Page {pages} of {pages}")));
        assert!(text.contains("(tiếp theo / continued)"));
        let words = vnd_in_words(inv.document.priced.total.to_u64().expect("whole đồng"));
        assert!(text.contains(&words), "{words:?} on the last page: {text}");
        // A page rasterises to a real image.
        let png = poppler(
            "pdftoppm",
            &pdf,
            "png",
            &["-png", "-r", "50", "-f", "1", "-l", "1"],
            &[],
        );
        assert!(png.starts_with(b"\x89PNG"), "pdftoppm renders page 1");
        assert!(png.len() > 5_000);
    }

    /// Writes the sample invoice's first page as target/sample-invoice.png
    /// (the picture in docs/billing.md is made this way).
    #[test]
    fn the_sample_invoice_renders_to_png() {
        let pdf = invoice_pdf(&sample_invoice(5));
        let png = poppler(
            "pdftoppm",
            &pdf,
            "sample",
            &["-png", "-r", "110", "-singlefile"],
            &[],
        );
        assert!(png.starts_with(b"\x89PNG"));
        let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        std::fs::write(target.join("sample-invoice.png"), png).expect("write the sample PNG");
        // A long one too, to look at a continuation page.
        let long = invoice_pdf(&sample_invoice(60));
        std::fs::write(target.join("sample-invoice-long.pdf"), long).expect("write the long PDF");
    }

    #[test]
    fn numbers_read_as_vietnamese_writes_them() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1.000");
        assert_eq!(group(26_000), "26.000");
        assert_eq!(group(1_234_567), "1.234.567");
        assert_eq!(vietnamese_decimal("3702000"), "3.702.000");
        assert_eq!(vietnamese_decimal("-1234.50"), "-1.234,50");
        assert_eq!(vietnamese_decimal("350.5"), "350,5");
        assert_eq!(vietnamese_month("2026-01"), "01/2026");
        assert_eq!(
            local_date("2026-01-31T17:00:00Z", "Asia/Ho_Chi_Minh"),
            "01/02/2026"
        );
        assert_eq!(
            last_day("2026-01-31T17:00:00Z", "Asia/Ho_Chi_Minh"),
            "31/01/2026"
        );
    }
}
