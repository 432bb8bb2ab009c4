//! The billing vocabulary: price plans, line items, invoice documents.
//!
//! Money is `rust_decimal::Decimal`, never a float. Amounts are rounded
//! once, per line, to the currency's minor unit (VND has none), half away
//! from zero; totals are sums of rounded lines.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One graduated price band for field units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Last unit (counting all units of the period from 1, included units
    /// too) priced at this tier; `None` for the last, open-ended tier.
    pub up_to: Option<u64>,
    /// Price of one field unit in this band.
    pub unit_price: Decimal,
}

/// A versioned price plan. A version never changes once used; a new
/// price is a new version, and every invoice records the version that
/// priced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricePlan {
    /// Stable id tenants refer to (`TenantPolicy.price_plan`).
    pub id: String,
    /// Version, from 1.
    pub version: u32,
    /// Human name, shown on invoices.
    pub name: String,
    /// ISO 4217 code, e.g. `VND`.
    pub currency: String,
    /// Digits after the decimal point of the currency's minor unit (VND: 0).
    pub minor_units: u32,
    /// Price of one answered call, whatever it asked.
    pub per_call: Decimal,
    /// Graduated price of field units; tiers in increasing `up_to`, the
    /// last one open-ended.
    pub per_field_tiers: Vec<Tier>,
    /// Free field units per billing month: the first units of the month.
    pub included_units: u64,
    /// Least subtotal of a month's invoice; a shortfall is billed as its
    /// own line.
    pub monthly_minimum: Decimal,
    /// Tax on the subtotal, e.g. `0.1` for 10 %.
    pub tax_rate: Decimal,
}

/// What a line item bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Answered calls at the per-call price.
    Calls,
    /// Field units free under the plan's allowance.
    IncludedUnits,
    /// Field units in one price tier.
    FieldUnits,
    /// Field units of events of an earlier, already invoiced period that
    /// were recorded after its invoice was finalized.
    Adjustment,
    /// The calls of such late events, at the per-call price.
    AdjustmentCalls,
    /// The shortfall up to the plan's monthly minimum.
    MinimumTopUp,
}

/// One priced line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    /// What it bills.
    pub kind: LineKind,
    /// Human description, e.g. `Field units 10,001-100,000`.
    pub description: String,
    /// How many calls or units.
    pub quantity: u64,
    /// Price of one.
    pub unit_price: Decimal,
    /// `quantity x unit_price`, rounded once to the currency's minor unit.
    pub amount: Decimal,
}

/// Usage of one period, as the ledger counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantities {
    /// Answered (billable) calls.
    pub calls: u64,
    /// Field units those calls asked about.
    pub units: u64,
}

/// Late events of an earlier period, billed on this invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    /// The period they belong to, e.g. `2026-10`.
    pub period: String,
    /// Their calls and units.
    pub quantities: Quantities,
    /// The field unit price they are billed at: the marginal price of the
    /// invoice of their own period (the tier its last unit fell in).
    pub unit_price: Decimal,
}

/// A priced period: lines and totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Priced {
    /// The lines, in a fixed order: calls, included units, tiers,
    /// adjustments, minimum top-up.
    pub lines: Vec<LineItem>,
    /// Sum of the lines.
    pub subtotal: Decimal,
    /// `subtotal x tax_rate`, rounded once.
    pub tax: Decimal,
    /// `subtotal + tax`.
    pub total: Decimal,
    /// Price of the tier holding the period's last field unit (or the
    /// first unit after the included ones, so late units are never free);
    /// late events of this period are billed at it.
    pub marginal_unit_price: Decimal,
}

/// A party's legal particulars, as a Vietnamese invoice prints them.
/// Empty strings where they are not known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// Legal name (tên đơn vị), in Unicode NFC.
    pub legal_name: String,
    /// Registered address (địa chỉ).
    pub address: String,
    /// Tax code (mã số thuế): see [`valid_tax_code`].
    pub tax_code: String,
}

/// Whether `code` is a Vietnamese tax code: 10 digits, or 13 written as
/// the 10 digits, `-` and a 3-digit branch suffix (`0100112437-001`).
pub fn valid_tax_code(code: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match code.split_once('-') {
        None => digits(code, 10),
        Some((main, branch)) => digits(main, 10) && digits(branch, 3),
    }
}

/// Who issues invoices (numbers are gapless per issuer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    /// Short stable id, the prefix of invoice numbers (e.g. `EKYC`).
    pub id: String,
    /// Name printed on invoices when it has no legal name.
    pub name: String,
    /// Legal particulars (format v2; absent on v1 invoices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party: Option<Party>,
}

/// The canonical content of an invoice: what is signed, stored and
/// exported. Its JSON serialisation (field order as declared) is the
/// signed byte string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceDocument {
    /// Format tag, [`INVOICE_FORMAT`].
    pub format: String,
    /// Invoice number, e.g. `EKYC-000042`; empty on a draft.
    pub number: String,
    /// The issuer.
    pub issuer: Issuer,
    /// The billed tenant's id.
    pub tenant_id: String,
    /// The billed tenant's name.
    pub tenant_name: String,
    /// The billed tenant's legal particulars (format v2; absent on v1
    /// invoices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer: Option<Party>,
    /// Billing month in the tenant's zone, `YYYY-MM`.
    pub period: String,
    /// The tenant's zone.
    pub time_zone: String,
    /// First instant of the period (RFC 3339, UTC).
    pub period_start: String,
    /// First instant after the period (RFC 3339, UTC).
    pub period_end: String,
    /// When it was finalized (RFC 3339, UTC); empty on a draft.
    pub issued_at: String,
    /// The plan that priced it.
    pub plan_id: String,
    /// The plan version.
    pub plan_version: u32,
    /// ISO 4217 code.
    pub currency: String,
    /// Digits of the currency's minor unit.
    pub minor_units: u32,
    /// Lines and totals.
    pub priced: Priced,
    /// Tax rate applied.
    pub tax_rate: Decimal,
    /// Usage events priced (this period's and late ones).
    pub event_count: u64,
    /// SHA-256 over the priced events, see [`crate::events_digest`].
    pub events_digest: String,
}

/// Format tag of the [`InvoiceDocument`]s written now: version 2 adds the
/// issuer's and the buyer's legal particulars ([`Issuer::party`],
/// [`InvoiceDocument::buyer`]).
pub const INVOICE_FORMAT: &str = "ekyc.invoice.v2";

/// Format tag of invoices finalized before the particulars existed; they
/// keep it, and regenerate to their original bytes.
pub const INVOICE_FORMAT_V1: &str = "ekyc.invoice.v1";

impl InvoiceDocument {
    /// The seller as printed: the issuer's particulars, its name standing
    /// in for a legal name it lacks.
    pub fn seller(&self) -> Party {
        let mut p = self.issuer.party.clone().unwrap_or_default();
        if p.legal_name.is_empty() {
            p.legal_name = self.issuer.name.clone();
        }
        p
    }

    /// The buyer as printed: the tenant's particulars, its name standing
    /// in for a legal name it lacks.
    pub fn buyer(&self) -> Party {
        let mut p = self.buyer.clone().unwrap_or_default();
        if p.legal_name.is_empty() {
            p.legal_name = self.tenant_name.clone();
        }
        p
    }
}

/// A finalized invoice: the document's bytes and their signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInvoice {
    /// The document.
    pub document: InvoiceDocument,
    /// Its canonical bytes (`serde_json::to_vec(&document)`), as signed.
    pub bytes: Vec<u8>,
    /// Id of the Ed25519 key that signed it (published by ListSigningKeys).
    pub key_id: String,
    /// Ed25519 signature over `bytes`.
    pub signature: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tax_codes() {
        for ok in ["0100112437", "0100112437-001", "0109876543"] {
            assert!(valid_tax_code(ok), "{ok}");
        }
        for bad in [
            "",
            "010011243",
            "01001124370",
            "0100112437-01",
            "0100112437-0011",
            "0100112437001",
            "0100112437 001",
            "01001124a7",
            "０１００１１２４３７",
            "-001",
        ] {
            assert!(!valid_tax_code(bad), "{bad:?}");
        }
    }

    /// An invoice finalized before the particulars existed reads back and
    /// serialises to its original bytes, so its signature still verifies
    /// and it regenerates identically.
    #[test]
    fn a_version_1_document_keeps_its_bytes() {
        let mut v2 = crate::export::sample_invoice(3).document;
        assert_eq!(v2.format, INVOICE_FORMAT);
        let with_particulars = serde_json::to_string(&v2).expect("json");
        assert!(
            with_particulars.contains("\"buyer\":{") && with_particulars.contains("\"party\":{")
        );
        v2.format = INVOICE_FORMAT_V1.to_owned();
        v2.issuer.party = None;
        v2.buyer = None;
        let v1_bytes = serde_json::to_vec(&v2).expect("json");
        let text = std::str::from_utf8(&v1_bytes).expect("utf-8");
        assert!(!text.contains("party") && !text.contains("buyer"), "{text}");
        let back: InvoiceDocument = serde_json::from_slice(&v1_bytes).expect("a v1 document reads");
        assert_eq!(serde_json::to_vec(&back).expect("json"), v1_bytes);
        // Printed, it falls back to the names it has.
        assert_eq!(back.buyer().legal_name, back.tenant_name);
        assert_eq!(back.seller().legal_name, back.issuer.name);
        assert_eq!(back.buyer().tax_code, "");
    }
}
