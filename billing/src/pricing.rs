//! Pricing a period's usage under a price plan.
//!
//! [`price`] turns a plan, one period's usage and the late events of
//! earlier periods into invoice lines and totals. It is a pure function:
//! the same inputs always give the same [`Priced`].
//!
//! # The rules
//!
//! These rules are the contract finance relies on; change them only with
//! a new plan version and finance's agreement.
//!
//! The plan is checked with [`validate`] first, and every adjustment's
//! `unit_price` must be non-negative with at most 6 decimal places;
//! otherwise `price` refuses with a [`PlanError`].
//!
//! ## Lines, in this fixed order
//!
//! 1. **Calls** ([`LineKind::Calls`], "Answered calls"): quantity = the
//!    answered calls, unit price = `per_call`. Emitted whenever `per_call`
//!    is not 0, even for 0 calls, so the invoice shows the rate; never
//!    emitted when `per_call` is 0.
//! 2. **Included units** ([`LineKind::IncludedUnits`], "Included field
//!    units (N free per month)"): quantity = min(units, `included_units`),
//!    unit price and amount 0. Emitted whenever `included_units > 0`, even
//!    if nothing was used.
//! 3. **Field units** ([`LineKind::FieldUnits`]), one line per tier that
//!    bills at least one unit, in tier order. The period's units are
//!    numbered from 1, included units included: units 1 to
//!    `included_units` are the free ones, and they use up the start of the
//!    first tier (or tiers). Tier *i* covers the units numbered
//!    `up_to[i-1] + 1` to `up_to[i]` (the first tier starts at 1, the last
//!    one is open-ended). A tier's line bills the period's units numbered
//!    inside the tier and above `included_units`; its description names
//!    exactly those unit numbers, with comma thousands separators and an
//!    ASCII hyphen: "Field units 101-10,000", "Field units
//!    100,001-250,000", or "Field unit 10,001" for a single unit.
//! 4. **Adjustments** ([`LineKind::Adjustment`]), for each adjustment with
//!    units or calls, in the order given:
//!    - "Adjustment: N late field units from PERIOD": quantity = its units
//!      (0 when it only has calls), unit price = the adjustment's own
//!      `unit_price` (the marginal unit price of its period's invoice);
//!    - then, if `per_call` is not 0 and it has calls, "Adjustment: N late
//!      calls from PERIOD" at `per_call`.
//!
//!    Included units and tiers do not apply to adjustments; an adjustment
//!    with neither units nor calls gives no line. (N has comma thousands
//!    separators; "unit"/"call" is singular for 1.)
//! 5. **Minimum top-up** ([`LineKind::MinimumTopUp`], "Monthly minimum
//!    top-up"): if the sum of the lines above (adjustments included) is
//!    below `monthly_minimum`, one line of quantity 1 whose unit price and
//!    amount are the shortfall.
//!
//! ## Money
//!
//! - A line's amount is quantity x unit price, computed exactly and rounded
//!   **once** to `minor_units` decimal places, half away from zero
//!   ([`RoundingStrategy::MidpointAwayFromZero`]: 0.5 -> 1, 2.5 -> 3, 1.005
//!   -> 1.01 at 2 places).
//! - subtotal = the sum of the rounded line amounts, not rounded again.
//! - tax = subtotal x `tax_rate`, rounded once the same way.
//! - total = subtotal + tax.
//! - Amounts, subtotal, tax and total are written with exactly
//!   `minor_units` decimal places (`1000.00`, not `1000`); unit prices are
//!   copied from the plan as they are.
//!
//! ## Marginal unit price
//!
//! [`Priced::marginal_unit_price`] is the unit price of the tier holding
//! unit number max(units, `included_units` + 1). Late units of the period
//! are billed at it, and they are never free: if the period stayed within
//! its included units, it is the price of the first paid unit.
//!
//! ## Overflow
//!
//! All arithmetic is checked. A product or sum that a `Decimal` cannot hold
//! exactly (28-29 significant digits) makes `price` return
//! [`PlanError::Overflow`]; it never panics and never rounds silently.
//!
//! # Valid plans
//!
//! See [`validate`]: id of 1 to 64 characters `a-z 0-9 _ -`; version from
//! 1; currency of 3 uppercase ASCII letters; `minor_units` at most 4;
//! `per_call` and tier prices non-negative with at most 6 decimal places
//! (fractional unit prices are legal, rounding happens per line);
//! `monthly_minimum` non-negative with at most `minor_units` decimal places
//! (it is an amount); `tax_rate` from 0 to 1 with at most 6 decimal places;
//! at least one tier, `up_to` strictly increasing from at least 1, every
//! tier bounded except the last, which must be open-ended. Decimal places
//! are counted without trailing zeros (`1.500000000` has one).

use rust_decimal::{Decimal, RoundingStrategy};

use crate::model::{Adjustment, LineItem, LineKind, PricePlan, Priced, Quantities, Tier};

/// Most decimal places of a unit price (`per_call`, a tier's or an
/// adjustment's `unit_price`) and of `tax_rate`.
pub const MAX_PRICE_DECIMALS: u32 = 6;

/// Most decimal places of a currency's minor unit (`minor_units`).
pub const MAX_MINOR_UNITS: u32 = 4;

/// Longest plan id, in characters.
pub const MAX_ID_LEN: usize = 64;

/// Why a plan (or an adjustment) cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The id is empty, too long or has a character outside `a-z 0-9 _ -`.
    #[error("id must be 1 to 64 characters of a-z, 0-9, _ and -")]
    Id,
    /// The version is 0.
    #[error("version must be at least 1")]
    Version,
    /// The currency is not three uppercase ASCII letters.
    #[error("currency must be three uppercase ascii letters (iso 4217)")]
    Currency,
    /// The minor unit has more than [`MAX_MINOR_UNITS`] digits.
    #[error("minor_units must be at most 4")]
    MinorUnits,
    /// The per-call price is negative or too precise.
    #[error("per_call must be non-negative with at most 6 decimal places")]
    PerCall,
    /// There is no tier.
    #[error("per_field_tiers must have at least one tier")]
    NoTiers,
    /// A tier's price is negative or too precise.
    #[error(
        "per_field_tiers[{index}].unit_price must be non-negative with at most 6 decimal places"
    )]
    TierPrice {
        /// Position of the tier, from 0.
        index: usize,
    },
    /// A tier's bound is 0 or not above the previous tier's.
    #[error(
        "per_field_tiers[{index}].up_to must be at least 1 and above the previous tier's up_to"
    )]
    TierOrder {
        /// Position of the tier, from 0.
        index: usize,
    },
    /// The last tier is bounded, or another one is open-ended.
    #[error("per_field_tiers must end with one open-ended tier")]
    OpenTier,
    /// The monthly minimum is negative or has more decimals than the
    /// currency.
    #[error("monthly_minimum must be non-negative with at most minor_units decimal places")]
    MonthlyMinimum,
    /// The tax rate is outside [0, 1] or too precise.
    #[error("tax_rate must be between 0 and 1 with at most 6 decimal places")]
    TaxRate,
    /// An adjustment's unit price is negative or too precise.
    #[error("adjustments[{index}].unit_price must be non-negative with at most 6 decimal places")]
    AdjustmentPrice {
        /// Position of the adjustment, from 0.
        index: usize,
    },
    /// An amount does not fit a `Decimal` exactly.
    #[error("overflow: an amount does not fit a decimal exactly")]
    Overflow,
}

/// Checks that `plan` can price usage (see the module documentation,
/// "Valid plans"). Reports the first rule broken, in field order.
pub fn validate(plan: &PricePlan) -> Result<(), PlanError> {
    let id_ok = (1..=MAX_ID_LEN).contains(&plan.id.len())
        && plan
            .id
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if !id_ok {
        return Err(PlanError::Id);
    }
    if plan.version < 1 {
        return Err(PlanError::Version);
    }
    if plan.currency.len() != 3 || !plan.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(PlanError::Currency);
    }
    if plan.minor_units > MAX_MINOR_UNITS {
        return Err(PlanError::MinorUnits);
    }
    if !non_negative_with_decimals(plan.per_call, MAX_PRICE_DECIMALS) {
        return Err(PlanError::PerCall);
    }
    validate_tiers(&plan.per_field_tiers)?;
    if !non_negative_with_decimals(plan.monthly_minimum, plan.minor_units) {
        return Err(PlanError::MonthlyMinimum);
    }
    if !non_negative_with_decimals(plan.tax_rate, MAX_PRICE_DECIMALS)
        || plan.tax_rate > Decimal::ONE
    {
        return Err(PlanError::TaxRate);
    }
    Ok(())
}

fn validate_tiers(tiers: &[Tier]) -> Result<(), PlanError> {
    let Some(last) = tiers.len().checked_sub(1) else {
        return Err(PlanError::NoTiers);
    };
    // Units count from 1, so the first bound must be at least 1.
    let mut previous = 0;
    for (index, tier) in tiers.iter().enumerate() {
        if !non_negative_with_decimals(tier.unit_price, MAX_PRICE_DECIMALS) {
            return Err(PlanError::TierPrice { index });
        }
        match (tier.up_to, index == last) {
            (Some(up_to), false) => {
                if up_to <= previous {
                    return Err(PlanError::TierOrder { index });
                }
                previous = up_to;
            }
            (None, true) => {}
            _ => return Err(PlanError::OpenTier),
        }
    }
    Ok(())
}

/// `value >= 0` with at most `decimals` significant decimal places.
fn non_negative_with_decimals(value: Decimal, decimals: u32) -> bool {
    value >= Decimal::ZERO && value.normalize().scale() <= decimals
}

/// Prices `usage` of one period, plus `adjustments` (late events of
/// earlier periods), under `plan`, by the rules of the module
/// documentation.
pub fn price(
    plan: &PricePlan,
    usage: Quantities,
    adjustments: &[Adjustment],
) -> Result<Priced, PlanError> {
    validate(plan)?;
    for (index, adjustment) in adjustments.iter().enumerate() {
        if !non_negative_with_decimals(adjustment.unit_price, MAX_PRICE_DECIMALS) {
            return Err(PlanError::AdjustmentPrice { index });
        }
    }
    let minor_units = plan.minor_units;
    let line = |kind: LineKind,
                description: String,
                quantity: u64,
                unit_price: Decimal|
     -> Result<LineItem, PlanError> {
        let amount = money(exact_mul(Decimal::from(quantity), unit_price)?, minor_units)?;
        Ok(LineItem {
            kind,
            description,
            quantity,
            unit_price,
            amount,
        })
    };
    let mut lines = Vec::new();

    // (1) Calls.
    if !plan.per_call.is_zero() {
        lines.push(line(
            LineKind::Calls,
            "Answered calls".to_owned(),
            usage.calls,
            plan.per_call,
        )?);
    }

    // (2) Included units.
    if plan.included_units > 0 {
        lines.push(line(
            LineKind::IncludedUnits,
            format!(
                "Included field units ({} free per month)",
                thousands(plan.included_units)
            ),
            usage.units.min(plan.included_units),
            Decimal::ZERO,
        )?);
    }

    // (3) Field units, tier by tier. `billed_through` is the number of the
    // last unit accounted for so far: the included ones first.
    let mut billed_through = plan.included_units;
    for tier in &plan.per_field_tiers {
        let end = tier
            .up_to
            .map_or(usage.units, |up_to| up_to.min(usage.units));
        if end <= billed_through {
            continue;
        }
        let first = billed_through + 1;
        let description = if first == end {
            format!("Field unit {}", thousands(first))
        } else {
            format!("Field units {}-{}", thousands(first), thousands(end))
        };
        lines.push(line(
            LineKind::FieldUnits,
            description,
            end - billed_through,
            tier.unit_price,
        )?);
        billed_through = end;
    }

    // (4) Adjustments.
    for adjustment in adjustments {
        let Quantities { calls, units } = adjustment.quantities;
        if calls == 0 && units == 0 {
            continue;
        }
        lines.push(line(
            LineKind::Adjustment,
            format!(
                "Adjustment: {} from {}",
                count(units, "late field unit", "late field units"),
                adjustment.period
            ),
            units,
            adjustment.unit_price,
        )?);
        if !plan.per_call.is_zero() && calls > 0 {
            lines.push(line(
                LineKind::AdjustmentCalls,
                format!(
                    "Adjustment: {} from {}",
                    count(calls, "late call", "late calls"),
                    adjustment.period
                ),
                calls,
                plan.per_call,
            )?);
        }
    }

    // (5) Minimum top-up.
    let before = sum(&lines, minor_units)?;
    if before < plan.monthly_minimum {
        let shortfall = plan
            .monthly_minimum
            .checked_sub(before)
            .ok_or(PlanError::Overflow)?;
        let shortfall = money(shortfall, minor_units)?;
        lines.push(line(
            LineKind::MinimumTopUp,
            "Monthly minimum top-up".to_owned(),
            1,
            shortfall,
        )?);
    }

    let subtotal = sum(&lines, minor_units)?;
    let tax = money(exact_mul(subtotal, plan.tax_rate)?, minor_units)?;
    let total = money(exact_add(subtotal, tax)?, minor_units)?;
    Ok(Priced {
        lines,
        subtotal,
        tax,
        total,
        marginal_unit_price: marginal_unit_price(plan, usage.units),
    })
}

/// The price of the tier holding unit number max(`units`,
/// `included_units` + 1): late units are never free.
fn marginal_unit_price(plan: &PricePlan, units: u64) -> Decimal {
    let unit = units.max(plan.included_units.saturating_add(1));
    plan.per_field_tiers
        .iter()
        .find(|tier| tier.up_to.is_none_or(|up_to| unit <= up_to))
        .map_or(Decimal::ZERO, |tier| tier.unit_price)
}

/// The public fee for citizen-data verification in Vietnam: 1,000 VND per
/// requested field, no calls fee, nothing included, no minimum, no tax.
pub fn demo_plan() -> PricePlan {
    PricePlan {
        id: "demo".to_owned(),
        version: 1,
        name: "Demo: public fee per field".to_owned(),
        currency: "VND".to_owned(),
        minor_units: 0,
        per_call: Decimal::ZERO,
        per_field_tiers: vec![Tier {
            up_to: None,
            unit_price: Decimal::from(1000),
        }],
        included_units: 0,
        monthly_minimum: Decimal::ZERO,
        // A public fee (phi) collected under the Law on Fees and Charges is
        // not subject to VAT, so this plan has no tax.
        tax_rate: Decimal::ZERO,
    }
}

/// `a x b`, exact or [`PlanError::Overflow`]. `rust_decimal` rounds a
/// product that does not fit rather than failing; that would be a second
/// rounding, so it is refused.
fn exact_mul(a: Decimal, b: Decimal) -> Result<Decimal, PlanError> {
    let (a, b) = (a.normalize(), b.normalize());
    let product = a.checked_mul(b).ok_or(PlanError::Overflow)?;
    if product.is_zero() || product.scale() == a.scale() + b.scale() {
        Ok(product)
    } else {
        Err(PlanError::Overflow)
    }
}

/// `a + b` for non-negative `a` and `b`, exact or [`PlanError::Overflow`].
fn exact_add(a: Decimal, b: Decimal) -> Result<Decimal, PlanError> {
    let total = a.checked_add(b).ok_or(PlanError::Overflow)?;
    if a.is_zero() || b.is_zero() || total.scale() == a.scale().max(b.scale()) {
        Ok(total)
    } else {
        Err(PlanError::Overflow)
    }
}

/// The sum of the lines' amounts, with `minor_units` decimal places.
fn sum(lines: &[LineItem], minor_units: u32) -> Result<Decimal, PlanError> {
    let total = lines
        .iter()
        .try_fold(Decimal::ZERO, |total, line| exact_add(total, line.amount))?;
    money(total, minor_units)
}

/// `value` rounded once, half away from zero, to `minor_units` decimal
/// places, and written with exactly that many.
fn money(value: Decimal, minor_units: u32) -> Result<Decimal, PlanError> {
    let mut rounded =
        value.round_dp_with_strategy(minor_units, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(minor_units);
    if rounded.scale() == minor_units {
        Ok(rounded)
    } else {
        Err(PlanError::Overflow)
    }
}

/// `n` with comma thousands separators: `1234567` -> `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `n` and the noun: `1 late call`, `1,200 late calls`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn usage(calls: u64, units: u64) -> Quantities {
        Quantities { calls, units }
    }

    fn item(
        kind: LineKind,
        description: &str,
        quantity: u64,
        unit_price: &str,
        amount: &str,
    ) -> LineItem {
        LineItem {
            kind,
            description: description.to_owned(),
            quantity,
            unit_price: d(unit_price),
            amount: d(amount),
        }
    }

    /// Included 100; units 1-10,000 at 1,000, 10,001-100,000 at 900, above
    /// at 800; 50 per call; 10 % tax; minimum 5,000,000 VND.
    fn tiered_plan() -> PricePlan {
        PricePlan {
            id: "tiered".to_owned(),
            version: 3,
            name: "Tiered".to_owned(),
            currency: "VND".to_owned(),
            minor_units: 0,
            per_call: d("50"),
            per_field_tiers: vec![
                Tier {
                    up_to: Some(10_000),
                    unit_price: d("1000"),
                },
                Tier {
                    up_to: Some(100_000),
                    unit_price: d("900"),
                },
                Tier {
                    up_to: None,
                    unit_price: d("800"),
                },
            ],
            included_units: 100,
            monthly_minimum: d("5000000"),
            tax_rate: d("0.1"),
        }
    }

    fn single_tier_plan(unit_price: &str, minor_units: u32) -> PricePlan {
        PricePlan {
            id: "flat".to_owned(),
            version: 1,
            name: "Flat".to_owned(),
            currency: "USD".to_owned(),
            minor_units,
            per_call: Decimal::ZERO,
            per_field_tiers: vec![Tier {
                up_to: None,
                unit_price: d(unit_price),
            }],
            included_units: 0,
            monthly_minimum: Decimal::ZERO,
            tax_rate: Decimal::ZERO,
        }
    }

    fn adjustment(period: &str, calls: u64, units: u64, unit_price: &str) -> Adjustment {
        Adjustment {
            period: period.to_owned(),
            quantities: usage(calls, units),
            unit_price: d(unit_price),
        }
    }

    fn assert_totals(priced: &Priced, subtotal: &str, tax: &str, total: &str, marginal: &str) {
        assert_eq!(priced.subtotal, d(subtotal), "subtotal");
        assert_eq!(priced.tax, d(tax), "tax");
        assert_eq!(priced.total, d(total), "total");
        assert_eq!(
            priced.marginal_unit_price,
            d(marginal),
            "marginal unit price"
        );
    }

    // ---- worked examples -------------------------------------------------

    #[test]
    fn demo_plan_is_valid() {
        assert_eq!(validate(&demo_plan()), Ok(()));
    }

    #[test]
    fn demo_plan_bills_1000_vnd_per_field() {
        // 1,234 calls asking 3,702 fields: 3,702 x 1,000 = 3,702,000 VND.
        let priced = price(&demo_plan(), usage(1_234, 3_702), &[]).unwrap();
        assert_eq!(
            priced.lines,
            [item(
                LineKind::FieldUnits,
                "Field units 1-3,702",
                3_702,
                "1000",
                "3702000"
            )]
        );
        assert_totals(&priced, "3702000", "0", "3702000", "1000");
    }

    #[test]
    fn demo_plan_without_usage_has_no_lines() {
        let priced = price(&demo_plan(), usage(0, 0), &[]).unwrap();
        assert!(priced.lines.is_empty());
        assert_totals(&priced, "0", "0", "0", "1000");
    }

    #[test]
    fn tiered_exactly_at_the_end_of_the_first_tier() {
        // Units 1-100 included, 101-10,000 at 1,000.
        // 4,000 x 50 + 9,900 x 1,000 = 200,000 + 9,900,000 = 10,100,000.
        let priced = price(&tiered_plan(), usage(4_000, 10_000), &[]).unwrap();
        assert_eq!(
            priced.lines,
            [
                item(LineKind::Calls, "Answered calls", 4_000, "50", "200000"),
                item(
                    LineKind::IncludedUnits,
                    "Included field units (100 free per month)",
                    100,
                    "0",
                    "0"
                ),
                item(
                    LineKind::FieldUnits,
                    "Field units 101-10,000",
                    9_900,
                    "1000",
                    "9900000"
                ),
            ]
        );
        assert_totals(&priced, "10100000", "1010000", "11110000", "1000");
    }

    #[test]
    fn tiered_first_unit_of_the_second_tier() {
        // One more unit, at 900: 10,100,900; tax 1,010,090.
        let priced = price(&tiered_plan(), usage(4_000, 10_001), &[]).unwrap();
        assert_eq!(priced.lines.len(), 4);
        assert_eq!(
            priced.lines[3],
            item(LineKind::FieldUnits, "Field unit 10,001", 1, "900", "900")
        );
        assert_totals(&priced, "10100900", "1010090", "11110990", "900");
    }

    #[test]
    fn tiered_exactly_at_the_end_of_the_second_tier() {
        // 30,000 x 50 + 9,900 x 1,000 + 90,000 x 900
        // = 1,500,000 + 9,900,000 + 81,000,000 = 92,400,000.
        let priced = price(&tiered_plan(), usage(30_000, 100_000), &[]).unwrap();
        assert_eq!(
            priced.lines,
            [
                item(LineKind::Calls, "Answered calls", 30_000, "50", "1500000"),
                item(
                    LineKind::IncludedUnits,
                    "Included field units (100 free per month)",
                    100,
                    "0",
                    "0"
                ),
                item(
                    LineKind::FieldUnits,
                    "Field units 101-10,000",
                    9_900,
                    "1000",
                    "9900000"
                ),
                item(
                    LineKind::FieldUnits,
                    "Field units 10,001-100,000",
                    90_000,
                    "900",
                    "81000000"
                ),
            ]
        );
        assert_totals(&priced, "92400000", "9240000", "101640000", "900");
    }

    #[test]
    fn tiered_into_the_open_tier() {
        // 92,400,000 + 150,000 x 800 = 212,400,000.
        let priced = price(&tiered_plan(), usage(30_000, 250_000), &[]).unwrap();
        assert_eq!(priced.lines.len(), 5);
        assert_eq!(
            priced.lines[4],
            item(
                LineKind::FieldUnits,
                "Field units 100,001-250,000",
                150_000,
                "800",
                "120000000"
            )
        );
        assert_totals(&priced, "212400000", "21240000", "233640000", "800");

        let priced = price(&tiered_plan(), usage(30_000, 100_001), &[]).unwrap();
        assert_eq!(
            priced.lines[4],
            item(LineKind::FieldUnits, "Field unit 100,001", 1, "800", "800")
        );
        assert_totals(&priced, "92400800", "9240080", "101640880", "800");
    }

    #[test]
    fn tiered_zero_usage_is_topped_up_to_the_minimum() {
        let priced = price(&tiered_plan(), usage(0, 0), &[]).unwrap();
        assert_eq!(
            priced.lines,
            [
                item(LineKind::Calls, "Answered calls", 0, "50", "0"),
                item(
                    LineKind::IncludedUnits,
                    "Included field units (100 free per month)",
                    0,
                    "0",
                    "0"
                ),
                item(
                    LineKind::MinimumTopUp,
                    "Monthly minimum top-up",
                    1,
                    "5000000",
                    "5000000"
                ),
            ]
        );
        // Late units of an unused period are billed at the first paid price.
        assert_totals(&priced, "5000000", "500000", "5500000", "1000");
    }

    #[test]
    fn tiered_below_the_minimum_tops_up_the_shortfall() {
        // 100 x 50 + 200 x 1,000 = 205,000; shortfall 4,795,000.
        let priced = price(&tiered_plan(), usage(100, 300), &[]).unwrap();
        assert_eq!(
            priced.lines[2..],
            [
                item(
                    LineKind::FieldUnits,
                    "Field units 101-300",
                    200,
                    "1000",
                    "200000"
                ),
                item(
                    LineKind::MinimumTopUp,
                    "Monthly minimum top-up",
                    1,
                    "4795000",
                    "4795000"
                ),
            ]
        );
        assert_totals(&priced, "5000000", "500000", "5500000", "1000");
    }

    #[test]
    fn tiered_within_included_units() {
        let priced = price(&tiered_plan(), usage(10, 60), &[]).unwrap();
        assert_eq!(
            priced.lines[1],
            item(
                LineKind::IncludedUnits,
                "Included field units (100 free per month)",
                60,
                "0",
                "0"
            )
        );
        assert!(priced.lines.iter().all(|l| l.kind != LineKind::FieldUnits));
        // 500 of calls, topped up to 5,000,000.
        assert_eq!(priced.lines[2].amount, d("4999500"));
        assert_totals(&priced, "5000000", "500000", "5500000", "1000");
    }

    #[test]
    fn included_units_can_span_tiers() {
        // Included 15,000: the first tier is all free, units 15,001-20,000
        // are billed at the second tier's 900.
        let plan = PricePlan {
            included_units: 15_000,
            ..tiered_plan()
        };
        let priced = price(&plan, usage(1_000, 20_000), &[]).unwrap();
        assert_eq!(
            priced.lines,
            [
                item(LineKind::Calls, "Answered calls", 1_000, "50", "50000"),
                item(
                    LineKind::IncludedUnits,
                    "Included field units (15,000 free per month)",
                    15_000,
                    "0",
                    "0"
                ),
                item(
                    LineKind::FieldUnits,
                    "Field units 15,001-20,000",
                    5_000,
                    "900",
                    "4500000"
                ),
                item(
                    LineKind::MinimumTopUp,
                    "Monthly minimum top-up",
                    1,
                    "450000",
                    "450000"
                ),
            ]
        );
        assert_totals(&priced, "5000000", "500000", "5500000", "900");
        // Within those included units, late units cost the first paid price.
        let priced = price(&plan, usage(0, 12_000), &[]).unwrap();
        assert_eq!(priced.marginal_unit_price, d("900"));
    }

    #[test]
    fn included_units_ending_on_a_tier_bound() {
        // Included 10,000 = the first tier: every paid unit is at 900, and
        // so are late units of a period that stayed within its allowance.
        let plan = PricePlan {
            included_units: 10_000,
            ..tiered_plan()
        };
        let priced = price(&plan, usage(0, 10_000), &[]).unwrap();
        assert!(priced.lines.iter().all(|l| l.kind != LineKind::FieldUnits));
        assert_eq!(priced.marginal_unit_price, d("900"));
        let priced = price(&plan, usage(0, 5_000), &[]).unwrap();
        assert_eq!(priced.marginal_unit_price, d("900"));
        let priced = price(&plan, usage(0, 10_001), &[]).unwrap();
        assert_eq!(
            priced.lines[2],
            item(LineKind::FieldUnits, "Field unit 10,001", 1, "900", "900")
        );
    }

    #[test]
    fn tiered_with_an_adjustment() {
        // 10,100,000 as above, plus 30 late units at 900 (27,000) and 12
        // late calls at 50 (600): 10,127,600; tax 1,012,760.
        let adjustments = [
            adjustment("2026-10", 12, 30, "900"),
            adjustment("2026-09", 0, 0, "1000"),
        ];
        let priced = price(&tiered_plan(), usage(4_000, 10_000), &adjustments).unwrap();
        assert_eq!(
            priced.lines[3..],
            [
                item(
                    LineKind::Adjustment,
                    "Adjustment: 30 late field units from 2026-10",
                    30,
                    "900",
                    "27000"
                ),
                item(
                    LineKind::AdjustmentCalls,
                    "Adjustment: 12 late calls from 2026-10",
                    12,
                    "50",
                    "600"
                ),
            ]
        );
        assert_totals(&priced, "10127600", "1012760", "11140360", "1000");
    }

    #[test]
    fn adjustments_count_toward_the_minimum() {
        // 1,000 late units at 1,000 = 1,000,000 and 1 late call at 50, so
        // the top-up is 5,000,000 - 1,000,050 = 3,999,950.
        let adjustments = [adjustment("2026-10", 1, 1_000, "1000")];
        let priced = price(&tiered_plan(), usage(0, 0), &adjustments).unwrap();
        assert_eq!(
            priced.lines[2..],
            [
                item(
                    LineKind::Adjustment,
                    "Adjustment: 1,000 late field units from 2026-10",
                    1_000,
                    "1000",
                    "1000000"
                ),
                item(
                    LineKind::AdjustmentCalls,
                    "Adjustment: 1 late call from 2026-10",
                    1,
                    "50",
                    "50"
                ),
                item(
                    LineKind::MinimumTopUp,
                    "Monthly minimum top-up",
                    1,
                    "3999950",
                    "3999950"
                ),
            ]
        );
        assert_totals(&priced, "5000000", "500000", "5500000", "1000");
    }

    #[test]
    fn adjustment_with_calls_only_and_no_call_price() {
        // Still one (zero) units line, so the late events show; no calls
        // line since the plan does not price calls.
        let adjustments = [adjustment("2026-10", 7, 0, "1000")];
        let priced = price(&demo_plan(), usage(1, 1), &adjustments).unwrap();
        assert_eq!(
            priced.lines[1..],
            [item(
                LineKind::Adjustment,
                "Adjustment: 0 late field units from 2026-10",
                0,
                "1000",
                "0"
            )]
        );
        assert_totals(&priced, "1000", "0", "1000", "1000");
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        let plan = single_tier_plan("0.5", 0);
        // 3 x 0.5 = 1.5 -> 2; 5 x 0.5 = 2.5 -> 3 (not 2, as banker's
        // rounding would give); 1 x 0.5 -> 1.
        for (units, amount) in [(3, "2"), (5, "3"), (1, "1"), (4, "2")] {
            let priced = price(&plan, usage(0, units), &[]).unwrap();
            assert_eq!(priced.lines[0].amount, d(amount), "{units} units");
            assert_eq!(priced.subtotal, d(amount));
        }
        // 1 x 1.005 = 1.005 -> 1.01 at 2 places (banker's: 1.00).
        let priced = price(&single_tier_plan("1.005", 2), usage(0, 1), &[]).unwrap();
        assert_eq!(priced.lines[0].amount, d("1.01"));
        assert_eq!(priced.lines[0].amount.to_string(), "1.01");
        // 7 x 1.005 = 7.035 -> 7.04.
        let priced = price(&single_tier_plan("1.005", 2), usage(0, 7), &[]).unwrap();
        assert_eq!(priced.lines[0].amount, d("7.04"));
    }

    #[test]
    fn rounding_happens_once_per_line() {
        // One call at 0.5 and one unit at 0.5: each line rounds to 1, so
        // the subtotal is 2, not round(0.5 + 0.5) = 1.
        let plan = PricePlan {
            per_call: d("0.5"),
            ..single_tier_plan("0.5", 0)
        };
        let priced = price(&plan, usage(1, 1), &[]).unwrap();
        assert_eq!(priced.lines[0].amount, d("1"));
        assert_eq!(priced.lines[1].amount, d("1"));
        assert_eq!(priced.subtotal, d("2"));
        // Tax is rounded once, on the subtotal: 1.01 x 0.5 = 0.505 -> 0.51.
        let plan = PricePlan {
            tax_rate: d("0.5"),
            ..single_tier_plan("1.005", 2)
        };
        let priced = price(&plan, usage(0, 1), &[]).unwrap();
        assert_totals(&priced, "1.01", "0.51", "1.52", "1.005");
    }

    #[test]
    fn amounts_have_exactly_minor_units_decimals() {
        let plan = PricePlan {
            tax_rate: d("0.1"),
            ..single_tier_plan("1000", 2)
        };
        let priced = price(&plan, usage(0, 3), &[]).unwrap();
        assert_eq!(priced.lines[0].amount.to_string(), "3000.00");
        assert_eq!(priced.subtotal.to_string(), "3000.00");
        assert_eq!(priced.tax.to_string(), "300.00");
        assert_eq!(priced.total.to_string(), "3300.00");
        // A zero amount too.
        let plan = PricePlan {
            per_call: d("0.5"),
            ..plan
        };
        let priced = price(&plan, usage(0, 0), &[]).unwrap();
        assert_eq!(priced.lines[0].amount.to_string(), "0.00");
        assert_eq!(priced.total.to_string(), "0.00");
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let plan = PricePlan {
            per_call: Decimal::MAX,
            ..demo_plan()
        };
        assert_eq!(price(&plan, usage(2, 0), &[]), Err(PlanError::Overflow));
        assert!(price(&plan, usage(1, 0), &[]).is_ok());
        // Two lines that fit but whose sum does not.
        assert_eq!(
            price(&plan, usage(1, u64::MAX), &[]),
            Err(PlanError::Overflow)
        );
        // A product that would need rounding to fit is refused too.
        let plan = single_tier_plan("123456.123457", 2);
        assert_eq!(
            price(&plan, usage(0, u64::MAX), &[]),
            Err(PlanError::Overflow)
        );
        assert!(price(&demo_plan(), usage(u64::MAX, u64::MAX), &[]).is_ok());
    }

    #[test]
    fn descriptions_are_ascii() {
        let adjustments = [adjustment("2026-10", 3, 4, "900")];
        let priced = price(&tiered_plan(), usage(5, 1_000_000), &adjustments).unwrap();
        assert!(priced.lines.iter().all(|l| l.description.is_ascii()));
    }

    #[test]
    fn thousands_separators() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (10_001, "10,001"),
            (1_234_567, "1,234,567"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(thousands(n), text);
        }
    }

    // ---- validation ------------------------------------------------------

    fn refused(change: impl FnOnce(&mut PricePlan)) -> PlanError {
        let mut plan = tiered_plan();
        change(&mut plan);
        let error = validate(&plan).unwrap_err();
        // `price` validates first.
        assert_eq!(price(&plan, usage(1, 1), &[]), Err(error.clone()));
        error
    }

    fn accepted(change: impl FnOnce(&mut PricePlan)) {
        let mut plan = tiered_plan();
        change(&mut plan);
        assert_eq!(validate(&plan), Ok(()));
    }

    #[test]
    fn validate_accepts_the_examples() {
        accepted(|_| {});
        assert_eq!(validate(&single_tier_plan("1.005", 2)), Ok(()));
    }

    #[test]
    fn validate_refuses_bad_ids() {
        for id in [
            "",
            "Demo",
            "demo plan",
            "demo.1",
            "d\u{e9}mo",
            &"a".repeat(65),
        ] {
            assert_eq!(refused(|p| p.id = id.to_owned()), PlanError::Id, "{id:?}");
        }
        accepted(|p| p.id = "a".repeat(64));
        accepted(|p| p.id = "z_0-9".to_owned());
    }

    #[test]
    fn validate_refuses_version_0() {
        assert_eq!(refused(|p| p.version = 0), PlanError::Version);
        accepted(|p| p.version = 1);
    }

    #[test]
    fn validate_refuses_bad_currencies() {
        for currency in ["", "vnd", "VN", "VNDX", "VN1", "V D"] {
            assert_eq!(
                refused(|p| p.currency = currency.to_owned()),
                PlanError::Currency
            );
        }
    }

    #[test]
    fn validate_refuses_more_than_4_minor_units() {
        assert_eq!(refused(|p| p.minor_units = 5), PlanError::MinorUnits);
        accepted(|p| p.minor_units = 4);
    }

    #[test]
    fn validate_refuses_bad_per_call_prices() {
        assert_eq!(refused(|p| p.per_call = d("-1")), PlanError::PerCall);
        assert_eq!(refused(|p| p.per_call = d("0.0000001")), PlanError::PerCall);
        accepted(|p| p.per_call = d("0.000001"));
        accepted(|p| p.per_call = d("1.500000000000"));
    }

    #[test]
    fn validate_refuses_bad_tier_prices() {
        assert_eq!(
            refused(|p| p.per_field_tiers[1].unit_price = d("-900")),
            PlanError::TierPrice { index: 1 }
        );
        assert_eq!(
            refused(|p| p.per_field_tiers[2].unit_price = d("0.1234567")),
            PlanError::TierPrice { index: 2 }
        );
        accepted(|p| p.per_field_tiers[0].unit_price = d("0.123456"));
    }

    #[test]
    fn validate_refuses_no_tiers() {
        assert_eq!(refused(|p| p.per_field_tiers.clear()), PlanError::NoTiers);
    }

    #[test]
    fn validate_refuses_unordered_tiers() {
        assert_eq!(
            refused(|p| p.per_field_tiers[1].up_to = Some(10_000)),
            PlanError::TierOrder { index: 1 }
        );
        assert_eq!(
            refused(|p| p.per_field_tiers[1].up_to = Some(5_000)),
            PlanError::TierOrder { index: 1 }
        );
        assert_eq!(
            refused(|p| p.per_field_tiers[0].up_to = Some(0)),
            PlanError::TierOrder { index: 0 }
        );
        accepted(|p| p.per_field_tiers[0].up_to = Some(1));
    }

    #[test]
    fn validate_refuses_tiers_not_ending_open() {
        assert_eq!(
            refused(|p| p.per_field_tiers[2].up_to = Some(1_000_000)),
            PlanError::OpenTier
        );
        assert_eq!(
            refused(|p| p.per_field_tiers[1].up_to = None),
            PlanError::OpenTier
        );
        assert_eq!(
            refused(|p| p.per_field_tiers = vec![Tier {
                up_to: Some(5),
                unit_price: d("1")
            }]),
            PlanError::OpenTier
        );
    }

    #[test]
    fn validate_refuses_bad_minimums() {
        assert_eq!(
            refused(|p| p.monthly_minimum = d("-1")),
            PlanError::MonthlyMinimum
        );
        // VND has no minor unit.
        assert_eq!(
            refused(|p| p.monthly_minimum = d("0.5")),
            PlanError::MonthlyMinimum
        );
        accepted(|p| p.monthly_minimum = d("5.000"));
        accepted(|p| {
            p.minor_units = 2;
            p.monthly_minimum = d("0.05");
        });
    }

    #[test]
    fn validate_refuses_bad_tax_rates() {
        for rate in ["-0.1", "1.01", "2", "0.0000001"] {
            assert_eq!(
                refused(|p| p.tax_rate = d(rate)),
                PlanError::TaxRate,
                "{rate}"
            );
        }
        accepted(|p| p.tax_rate = d("0"));
        accepted(|p| p.tax_rate = d("1"));
        accepted(|p| p.tax_rate = d("0.083333"));
    }

    #[test]
    fn price_refuses_bad_adjustment_prices() {
        let adjustments = [
            adjustment("2026-09", 1, 1, "1000"),
            adjustment("2026-10", 1, 1, "-1000"),
        ];
        assert_eq!(
            price(&tiered_plan(), usage(1, 1), &adjustments),
            Err(PlanError::AdjustmentPrice { index: 1 })
        );
        let adjustments = [adjustment("2026-10", 0, 0, "0.0000001")];
        assert_eq!(
            price(&tiered_plan(), usage(1, 1), &adjustments),
            Err(PlanError::AdjustmentPrice { index: 0 })
        );
    }

    #[test]
    fn error_messages_are_lowercase_and_name_the_field() {
        let cases = [
            (PlanError::Id, "id"),
            (PlanError::Version, "version"),
            (PlanError::Currency, "currency"),
            (PlanError::MinorUnits, "minor_units"),
            (PlanError::PerCall, "per_call"),
            (PlanError::NoTiers, "per_field_tiers"),
            (
                PlanError::TierPrice { index: 2 },
                "per_field_tiers[2].unit_price",
            ),
            (
                PlanError::TierOrder { index: 1 },
                "per_field_tiers[1].up_to",
            ),
            (PlanError::OpenTier, "per_field_tiers"),
            (PlanError::MonthlyMinimum, "monthly_minimum"),
            (PlanError::TaxRate, "tax_rate"),
            (
                PlanError::AdjustmentPrice { index: 0 },
                "adjustments[0].unit_price",
            ),
            (PlanError::Overflow, "overflow"),
        ];
        for (error, field) in cases {
            let message = error.to_string();
            assert!(message.starts_with(field), "{message}");
            assert_eq!(message, message.to_lowercase());
        }
        assert_eq!(
            PlanError::OpenTier.to_string(),
            "per_field_tiers must end with one open-ended tier"
        );
    }

    // ---- properties ------------------------------------------------------

    mod properties {
        use proptest::prelude::*;

        use super::*;

        const MAX_UNITS: u64 = 1_000_000_000;

        /// Prices with up to 3 decimals, sometimes 0.
        fn arb_price() -> impl Strategy<Value = Decimal> {
            prop_oneof![1 => Just(0i64), 9 => 0i64..=10_000_000].prop_map(|m| Decimal::new(m, 3))
        }

        /// Valid plans with 2 to 4 tiers.
        fn arb_plan() -> impl Strategy<Value = PricePlan> {
            let bound = prop_oneof![1u64..=1_000, 1u64..=1_000_000, 1u64..=MAX_UNITS];
            (
                prop::collection::btree_set(bound, 1..=3),
                prop::collection::vec(arb_price(), 4),
                prop_oneof![Just(0u64), 0u64..=1_000, 0u64..=1_000_000, 0u64..=MAX_UNITS],
                // Sometimes the included units end exactly on a tier bound.
                prop::option::weighted(0.25, any::<prop::sample::Index>()),
                prop_oneof![Just(0u32), Just(2u32)],
                prop_oneof![Just(Decimal::ZERO), arb_price()],
                0i64..=1_000_000_000,
                0i64..=1_000,
            )
                .prop_map(
                    |(bounds, prices, included, on_bound, minor_units, per_call, minimum, tax)| {
                        let bounds: Vec<u64> = bounds.into_iter().collect();
                        let included_units = on_bound.map_or(included, |i| *i.get(&bounds));
                        let mut per_field_tiers: Vec<Tier> = bounds
                            .iter()
                            .zip(&prices)
                            .map(|(&up_to, &unit_price)| Tier {
                                up_to: Some(up_to),
                                unit_price,
                            })
                            .collect();
                        per_field_tiers.push(Tier {
                            up_to: None,
                            unit_price: prices[bounds.len()],
                        });
                        PricePlan {
                            id: "prop".to_owned(),
                            version: 1,
                            name: "Property".to_owned(),
                            currency: "VND".to_owned(),
                            minor_units,
                            per_call,
                            per_field_tiers,
                            included_units,
                            monthly_minimum: Decimal::new(minimum, minor_units),
                            tax_rate: Decimal::new(tax, 3),
                        }
                    },
                )
        }

        /// A plan and a usage, the units often on or next to a tier bound
        /// or the end of the included units.
        fn arb_plan_and_usage() -> impl Strategy<Value = (PricePlan, Quantities)> {
            arb_plan().prop_flat_map(|plan| {
                let mut edges: Vec<u64> = plan
                    .per_field_tiers
                    .iter()
                    .filter_map(|t| t.up_to)
                    .collect();
                edges.push(plan.included_units);
                let units = prop_oneof![
                    0u64..=2_000,
                    0u64..=MAX_UNITS,
                    (prop::sample::select(edges), -1i64..=1).prop_map(|(edge, offset)| edge
                        .saturating_add_signed(offset)
                        .min(MAX_UNITS)),
                ];
                let calls = prop_oneof![Just(0u64), 0u64..=MAX_UNITS];
                (Just(plan), units, calls)
                    .prop_map(|(plan, units, calls)| (plan, Quantities { calls, units }))
            })
        }

        fn arb_adjustments() -> impl Strategy<Value = Vec<Adjustment>> {
            let adjustment = (0u64..=1_000_000, 0u64..=1_000_000, arb_price()).prop_map(
                |(calls, units, unit_price)| Adjustment {
                    period: "2026-10".to_owned(),
                    quantities: Quantities { calls, units },
                    unit_price,
                },
            );
            prop::collection::vec(adjustment, 0..=3)
        }

        /// Paid units per tier, computed by arithmetic on the bounds: every
        /// unit of the period per tier (clamped differences of bounds), the
        /// free units then taken off the front.
        fn reference_counts(plan: &PricePlan, units: u64) -> Vec<u64> {
            let mut previous = 0;
            let mut counts: Vec<u64> = plan
                .per_field_tiers
                .iter()
                .map(|tier| {
                    let up_to = tier.up_to.unwrap_or(u64::MAX);
                    let count = units.min(up_to).saturating_sub(previous);
                    previous = up_to;
                    count
                })
                .collect();
            let mut free = units.min(plan.included_units);
            for count in &mut counts {
                let taken = free.min(*count);
                *count -= taken;
                free -= taken;
            }
            counts
        }

        /// A price with at most 3 decimals in thousandths.
        fn thousandths(price: Decimal) -> u128 {
            let price = price.normalize();
            assert!(price.scale() <= 3);
            u128::try_from(price.mantissa()).unwrap() * 10u128.pow(3 - price.scale())
        }

        /// quantity x price in minor units, rounded half up (which is half
        /// away from zero for these non-negative amounts), in integers.
        fn reference_amount(quantity: u64, price: Decimal, minor_units: u32) -> u128 {
            (u128::from(quantity) * thousandths(price) * 10u128.pow(minor_units) + 500) / 1000
        }

        fn minor(amount: u128, minor_units: u32) -> Decimal {
            Decimal::from_i128_with_scale(i128::try_from(amount).unwrap(), minor_units)
        }

        /// The subtotal in minor units, priced independently of `price`.
        fn reference_subtotal(
            plan: &PricePlan,
            usage: Quantities,
            adjustments: &[Adjustment],
        ) -> u128 {
            let mu = plan.minor_units;
            let call_price = if plan.per_call.is_zero() {
                None
            } else {
                Some(plan.per_call)
            };
            let mut subtotal: u128 = call_price.map_or(0, |p| reference_amount(usage.calls, p, mu));
            subtotal += reference_counts(plan, usage.units)
                .into_iter()
                .zip(&plan.per_field_tiers)
                .map(|(count, tier)| reference_amount(count, tier.unit_price, mu))
                .sum::<u128>();
            for adjustment in adjustments {
                let q = adjustment.quantities;
                subtotal += reference_amount(q.units, adjustment.unit_price, mu);
                if let Some(p) = call_price {
                    subtotal += reference_amount(q.calls, p, mu);
                }
            }
            subtotal.max(thousandths(plan.monthly_minimum) * 10u128.pow(mu) / 1000)
        }

        /// (first, last) unit numbers named by a field-units description.
        fn described_range(description: &str) -> (u64, u64) {
            let number = |s: &str| s.replace(',', "").parse::<u64>().unwrap();
            if let Some(range) = description.strip_prefix("Field units ") {
                let (first, last) = range.split_once('-').unwrap();
                (number(first), number(last))
            } else {
                let unit = number(description.strip_prefix("Field unit ").unwrap());
                (unit, unit)
            }
        }

        proptest! {
            #[test]
            fn unit_lines_add_up_to_the_usage((plan, usage) in arb_plan_and_usage()) {
                let priced = price(&plan, usage, &[]).unwrap();
                let units: u64 = priced
                    .lines
                    .iter()
                    .filter(|l| matches!(l.kind, LineKind::FieldUnits | LineKind::IncludedUnits))
                    .map(|l| l.quantity)
                    .sum();
                prop_assert_eq!(units, usage.units);
            }

            #[test]
            fn field_unit_lines_stay_within_their_tier((plan, usage) in arb_plan_and_usage()) {
                let priced = price(&plan, usage, &[]).unwrap();
                let mut bands = Vec::new();
                let mut lower = 0;
                for (tier, count) in plan.per_field_tiers.iter().zip(reference_counts(&plan, usage.units)) {
                    let upper = tier.up_to.unwrap_or(u64::MAX);
                    if count > 0 {
                        bands.push((lower, upper, tier, count));
                    }
                    lower = upper;
                }
                let lines: Vec<&LineItem> =
                    priced.lines.iter().filter(|l| l.kind == LineKind::FieldUnits).collect();
                prop_assert_eq!(lines.len(), bands.len());
                for (line, (lower, upper, tier, count)) in lines.into_iter().zip(bands) {
                    prop_assert_eq!(line.quantity, count);
                    prop_assert!(line.quantity <= upper - lower);
                    prop_assert_eq!(line.unit_price, tier.unit_price);
                    let (first, last) = described_range(&line.description);
                    prop_assert!(lower < first && first <= last && last <= upper);
                    prop_assert!(first > plan.included_units && last <= usage.units);
                    prop_assert_eq!(last - first + 1, line.quantity);
                }
            }

            #[test]
            fn amounts_are_rounded_once_to_minor_units(
                (plan, usage) in arb_plan_and_usage(),
                adjustments in arb_adjustments(),
            ) {
                let priced = price(&plan, usage, &adjustments).unwrap();
                let mu = plan.minor_units;
                for line in &priced.lines {
                    prop_assert_eq!(line.amount.scale(), mu);
                    prop_assert_eq!(
                        line.amount,
                        minor(reference_amount(line.quantity, line.unit_price, mu), mu),
                        "{:?}", line
                    );
                }
                for value in [priced.subtotal, priced.tax, priced.total] {
                    prop_assert_eq!(value.scale(), mu);
                }
            }

            #[test]
            fn totals_add_up(
                (plan, usage) in arb_plan_and_usage(),
                adjustments in arb_adjustments(),
            ) {
                let priced = price(&plan, usage, &adjustments).unwrap();
                let sum: Decimal = priced.lines.iter().map(|l| l.amount).sum();
                prop_assert_eq!(priced.subtotal, sum);
                prop_assert_eq!(priced.total, priced.subtotal + priced.tax);
                prop_assert!(priced.subtotal >= plan.monthly_minimum);
                // Tax: subtotal x rate, rounded half up, in integers.
                let subtotal = u128::try_from(priced.subtotal.mantissa()).unwrap();
                let tax = (subtotal * thousandths(plan.tax_rate) + 500) / 1000;
                prop_assert_eq!(priced.tax, minor(tax, plan.minor_units));
            }

            #[test]
            fn more_units_never_cost_less(
                (plan, usage) in arb_plan_and_usage(),
                more in prop_oneof![1u64..=10, 1u64..=1_000_000],
            ) {
                let less = price(&plan, usage, &[]).unwrap();
                let units = usage.units + more;
                let more = price(&plan, Quantities { units, ..usage }, &[]).unwrap();
                prop_assert!(more.subtotal >= less.subtotal);
                prop_assert!(more.total >= less.total);
            }

            #[test]
            fn agrees_with_the_reference_computation(
                (plan, usage) in arb_plan_and_usage(),
                adjustments in arb_adjustments(),
            ) {
                let priced = price(&plan, usage, &adjustments).unwrap();
                let expected = reference_subtotal(&plan, usage, &adjustments);
                prop_assert_eq!(priced.subtotal, minor(expected, plan.minor_units));
            }

            #[test]
            fn marginal_price_is_the_tier_of_the_last_unit((plan, usage) in arb_plan_and_usage()) {
                let priced = price(&plan, usage, &[]).unwrap();
                // The last unit, or the first paid one: the tier whose
                // cumulative count of units reaches it.
                let unit = usage.units.max(plan.included_units + 1);
                let counts = reference_counts(&plan, unit);
                let tier = counts.iter().rposition(|&c| c > 0).unwrap();
                prop_assert_eq!(priced.marginal_unit_price, plan.per_field_tiers[tier].unit_price);
            }
        }
    }
}
