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

/// Who issues invoices (numbers are gapless per issuer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    /// Short stable id, the prefix of invoice numbers (e.g. `EKYC`).
    pub id: String,
    /// Legal name printed on invoices.
    pub name: String,
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

/// Format tag of [`InvoiceDocument`].
pub const INVOICE_FORMAT: &str = "ekyc.invoice.v1";

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
