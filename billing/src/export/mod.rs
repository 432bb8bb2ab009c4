//! Invoice exports: CSV, JSON and PDF, byte-for-byte reproducible.
//!
//! Each exporter is a pure function of the invoice: no clock, no
//! randomness, no hash-map order, so exporting the same invoice twice
//! gives identical bytes.
//!
//! - [`csv::invoice_csv`]: the lines, totals and the parties' particulars
//!   as RFC 4180 CSV, columns [`csv::CSV_COLUMNS`] (version
//!   [`csv::CSV_FORMAT_VERSION`]; version 1, [`csv::CSV_COLUMNS_V1`], stays
//!   available).
//! - [`json::invoice_json`]: the document with its signature, key id and
//!   the SHA-256 of the signed bytes; [`json::document_from_json`] reads
//!   it back.
//! - [`pdf::invoice_pdf`]: a printable A4 invoice in Vietnamese and English,
//!   with an embedded Unicode font.

pub mod csv;
pub mod json;
pub mod pdf;

use rust_decimal::{Decimal, RoundingStrategy};

/// An amount with exactly `minor_units` decimals (`3702000` for VND,
/// `12.50` for two digits), rounded half away from zero if it had more.
pub(crate) fn amount_string(value: Decimal, minor_units: u32) -> String {
    let mut v = value.round_dp_with_strategy(minor_units, RoundingStrategy::MidpointAwayFromZero);
    v.rescale(minor_units);
    v.to_string()
}

/// A price as exact as it is, trailing zeros dropped (`350.5`, `0`).
pub(crate) fn price_string(value: Decimal) -> String {
    value.normalize().to_string()
}

/// A finalized sample invoice of a Vietnamese tenant with `lines` lines
/// (VND, 10 % tax) and a fake signature. With 5 lines its subtotal is
/// exactly 2,500,000 (the fifth line is a minimum top-up).
#[cfg(test)]
pub(crate) fn sample_invoice(lines: usize) -> crate::model::SignedInvoice {
    use sha2::{Digest, Sha256};

    use crate::model::{
        INVOICE_FORMAT, InvoiceDocument, Issuer, LineItem, LineKind, Party, Priced, SignedInvoice,
    };

    let line = |kind, description: &str, quantity: u64, unit_price: Decimal| LineItem {
        kind,
        description: description.to_owned(),
        quantity,
        unit_price,
        amount: (Decimal::from(quantity) * unit_price)
            .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero),
    };
    let items: Vec<LineItem> = (0..lines)
        .map(|i| match i {
            0 => line(
                LineKind::Calls,
                "Answered calls",
                1234,
                Decimal::new(500, 0),
            ),
            1 => line(
                LineKind::IncludedUnits,
                "Included field units 1-10,000",
                10_000,
                Decimal::ZERO,
            ),
            2 => line(
                LineKind::FieldUnits,
                "Field units 10,001-100,000",
                4321,
                Decimal::new(3505, 1),
            ),
            3 => line(
                LineKind::Adjustment,
                "Late events of 2025-12 (\"re-sent\")",
                77,
                Decimal::new(300, 0),
            ),
            4 => line(
                LineKind::MinimumTopUp,
                "Minimum top-up to 2,500,000",
                1,
                Decimal::new(345_389, 0),
            ),
            _ => line(
                LineKind::FieldUnits,
                &format!("Field units, batch {}", i + 1),
                100 + u64::try_from(i).unwrap_or(0),
                Decimal::new(250, 0),
            ),
        })
        .collect();
    let tax_rate = Decimal::new(10, 2);
    let subtotal: Decimal = items.iter().map(|l| l.amount).sum();
    let tax =
        (subtotal * tax_rate).round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    let document = InvoiceDocument {
        format: INVOICE_FORMAT.to_owned(),
        number: "EKYC-000042".to_owned(),
        issuer: Issuer {
            id: "EKYC".to_owned(),
            name: "eKYC Registry Verification Service".to_owned(),
            party: Some(Party {
                legal_name: "Trung tâm Dữ liệu quốc gia về dân cư".to_owned(),
                address: "Số 47 Phạm Văn Đồng, phường Cổ Nhuế 1, quận Bắc Từ Liêm, Hà Nội"
                    .to_owned(),
                tax_code: "0109876543".to_owned(),
            }),
        },
        tenant_id: "tenant-vcb".to_owned(),
        tenant_name: "Vietcombank".to_owned(),
        buyer: Some(Party {
            legal_name: "Ngân hàng TMCP Ngoại thương Việt Nam".to_owned(),
            address: "198 Trần Quang Khải, phường Lý Thái Tổ, quận Hoàn Kiếm, Hà Nội".to_owned(),
            tax_code: "0100112437-001".to_owned(),
        }),
        period: "2026-01".to_owned(),
        time_zone: "Asia/Ho_Chi_Minh".to_owned(),
        period_start: "2025-12-31T17:00:00Z".to_owned(),
        period_end: "2026-01-31T17:00:00Z".to_owned(),
        issued_at: "2026-02-01T00:05:00Z".to_owned(),
        plan_id: "standard".to_owned(),
        plan_version: 3,
        currency: "VND".to_owned(),
        minor_units: 0,
        priced: Priced {
            lines: items,
            subtotal,
            tax,
            total: subtotal + tax,
            marginal_unit_price: Decimal::new(3505, 1),
        },
        tax_rate,
        event_count: 1311,
        events_digest: hex::encode(Sha256::digest(b"sample usage events")),
    };
    let bytes = serde_json::to_vec(&document).expect("a document serialises");
    SignedInvoice {
        document,
        bytes,
        key_id: "billing-2026-01".to_owned(),
        signature: (0..64).collect(),
    }
}
