//! Price plans and invoices on top of the ledger.
//!
//! An invoice covers one tenant and one billing month in the tenant's
//! zone. A draft can be computed at any time; finalizing it (only once the
//! month is over) in one transaction
//! - takes the next number of the issuer (gapless: the counter moves in
//!   the same transaction, so a failed finalization uses no number),
//! - prices the tenant's uninvoiced events of the month, plus *late*
//!   events (recorded after their own month's invoice was finalized) as
//!   labelled adjustments,
//! - marks exactly those events with the invoice number,
//! - stores the signed canonical document.
//!
//! While it runs, new ledger writes wait (PostgreSQL: a table lock;
//! SQLite: the single writer lock), so the events priced and the events
//! marked are the same set. A finalized invoice is never changed; it can
//! be regenerated from the events it marked and its plan version, byte
//! for byte.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::ledger::{
    Backend, EVENT_COLUMNS, Ledger, LedgerError, UsageEvent, dynamic, event_from_row,
};
use crate::period::{Month, PeriodError, rfc3339};
use crate::{
    Adjustment, INVOICE_FORMAT, InvoiceDocument, Issuer, Party, PricePlan, Quantities,
    SignedInvoice, pricing,
};

/// Signs finalized invoices (the service's Ed25519 attestation key).
pub trait InvoiceSigner: Send + Sync {
    /// Id of the key, as ListSigningKeys publishes it.
    fn key_id(&self) -> &str;
    /// Ed25519 signature of `bytes`.
    fn sign(&self, bytes: &[u8]) -> Vec<u8>;
}

/// Why an invoice operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum InvoiceError {
    /// The period or zone is malformed.
    #[error(transparent)]
    Period(#[from] PeriodError),
    /// No such plan (or version).
    #[error("price plan not found")]
    PlanNotFound,
    /// The plan is invalid or pricing overflowed.
    #[error(transparent)]
    Plan(#[from] pricing::PlanError),
    /// A plan version is immutable once stored.
    #[error("price plan version already exists with a different definition")]
    PlanVersionExists,
    /// The month has not ended yet.
    #[error("the billing month has not ended yet")]
    PeriodNotOver,
    /// It is already finalized.
    #[error("the invoice for this tenant and month is already finalized")]
    AlreadyFinal,
    /// No such invoice.
    #[error("invoice not found")]
    NotFound,
}

/// Draft or final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    /// Computed, not numbered, may change.
    Draft,
    /// Numbered, signed, immutable.
    Final,
}

/// What to invoice.
#[derive(Debug, Clone)]
pub struct InvoiceRequest {
    /// The tenant.
    pub tenant_id: String,
    /// Its name, printed on the invoice.
    pub tenant_name: String,
    /// Its legal particulars, printed on the invoice.
    pub buyer: Party,
    /// `YYYY-MM`.
    pub period: String,
    /// The tenant's zone.
    pub time_zone: String,
    /// The plan (its latest version prices it).
    pub plan_id: String,
    /// The issuer.
    pub issuer: Issuer,
}

/// A stored invoice.
#[derive(Debug, Clone)]
pub struct InvoiceRecord {
    /// `tenant_id:period`.
    pub invoice_id: String,
    /// Draft or final.
    pub status: InvoiceStatus,
    /// The document (and, when final, its signature).
    pub signed: SignedInvoice,
}

/// One invoice checked against the ledger.
#[derive(Debug, Clone)]
pub struct InvoiceCheck {
    /// Its number.
    pub number: String,
    /// Its month.
    pub period: String,
    /// Calls and units of the events marked with it.
    pub ledger: Quantities,
    /// Calls and units its lines bill (regular and adjustments).
    pub invoiced: Quantities,
    /// Whether regenerating it gives the stored bytes.
    pub reproducible: bool,
}

/// Result of `reconcile`.
#[derive(Debug, Clone, Default)]
pub struct ReconcileReport {
    /// Every final invoice of the tenant (in the period, when given).
    pub invoices: Vec<InvoiceCheck>,
    /// Events not on any invoice although their month is invoiced (late
    /// events waiting for the next invoice), or marked with a number that
    /// is no final invoice.
    pub unaccounted: Vec<UsageEvent>,
}

impl ReconcileReport {
    /// Whether every invoice matches the ledger and nothing is
    /// unaccounted for.
    pub fn is_clean(&self) -> bool {
        self.unaccounted.is_empty()
            && self
                .invoices
                .iter()
                .all(|c| c.reproducible && c.ledger == c.invoiced)
    }
}

/// Uninvoiced events of the month, and late events of invoiced months.
const CANDIDATES: &str = "tenant_id = $1 AND invoice_number IS NULL AND event_time_ms < $3
     AND (event_time_ms >= $2 OR EXISTS (
         SELECT 1 FROM invoices i WHERE i.tenant_id = usage_events.tenant_id
           AND i.status = 'final'
           AND usage_events.event_time_ms >= i.period_start_ms
           AND usage_events.event_time_ms < i.period_end_ms))";

/// SHA-256 over the priced events, one line each
/// (`request_id TAB event_time_ms TAB method TAB units TAB fields LF`) in
/// (time, request id) order; hex.
pub fn events_digest(events: &[UsageEvent]) -> String {
    let mut sorted: Vec<&UsageEvent> = events.iter().collect();
    sorted.sort_by(|a, b| (a.event_time_ms, &a.request_id).cmp(&(b.event_time_ms, &b.request_id)));
    let mut h = Sha256::new();
    for e in sorted {
        h.update(format!(
            "{}\t{}\t{}\t{}\t{}\n",
            e.request_id,
            e.event_time_ms,
            e.method,
            e.units,
            e.fields.join(",")
        ));
    }
    hex::encode(h.finalize())
}

impl Ledger {
    /// Stores a plan version. Storing the same definition again is a
    /// no-op; a different definition under an existing version is refused.
    pub async fn put_plan(&self, plan: &PricePlan, now_ms: i64) -> Result<(), LedgerError> {
        pricing::validate(plan).map_err(InvoiceError::from)?;
        let definition =
            serde_json::to_string(plan).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
        if let Some(existing) = self.plan(&plan.id, Some(plan.version)).await? {
            return if &existing == plan {
                Ok(())
            } else {
                Err(InvoiceError::PlanVersionExists.into())
            };
        }
        sqlx::query(
            "INSERT INTO price_plans (plan_id, version, definition, created_at_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT (plan_id, version) DO NOTHING",
        )
        .bind(&plan.id)
        .bind(i64::from(plan.version))
        .bind(definition)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A plan version, or its latest version when `version` is `None`.
    pub async fn plan(
        &self,
        plan_id: &str,
        version: Option<u32>,
    ) -> Result<Option<PricePlan>, LedgerError> {
        let row = match version {
            Some(v) => {
                sqlx::query(
                    "SELECT definition FROM price_plans WHERE plan_id = $1 AND version = $2",
                )
                .bind(plan_id)
                .bind(i64::from(v))
                .fetch_optional(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT definition FROM price_plans WHERE plan_id = $1
                     ORDER BY version DESC LIMIT 1",
                )
                .bind(plan_id)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        row.map(|r| parse_plan(&r.try_get::<String, _>("definition")?))
            .transpose()
    }

    /// Every version of every plan, by id then version.
    pub async fn plans(&self) -> Result<Vec<PricePlan>, LedgerError> {
        let rows = sqlx::query("SELECT definition FROM price_plans ORDER BY plan_id, version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| parse_plan(&r.try_get::<String, _>("definition")?))
            .collect()
    }

    /// Computes (and stores, replacing any earlier draft) the draft of a
    /// tenant's month. Refused once the month is finalized.
    pub async fn draft_invoice(
        &self,
        req: &InvoiceRequest,
        now_ms: i64,
    ) -> Result<InvoiceRecord, LedgerError> {
        let month = Month::parse(&req.period, &req.time_zone).map_err(InvoiceError::from)?;
        if self
            .final_invoice(&req.tenant_id, &month.label)
            .await?
            .is_some()
        {
            return Err(InvoiceError::AlreadyFinal.into());
        }
        let plan = self
            .plan(&req.plan_id, None)
            .await?
            .ok_or(InvoiceError::PlanNotFound)?;
        let rows = dynamic(format!(
            "SELECT {EVENT_COLUMNS} FROM usage_events WHERE {CANDIDATES}"
        ))
        .bind(&req.tenant_id)
        .bind(month.start_ms)
        .bind(month.end_ms)
        .fetch_all(&self.pool)
        .await?;
        let events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let earlier = self.final_periods(&req.tenant_id).await?;
        let document = build(req, &month, &plan, &events, &earlier, "", "")?;
        let bytes = canonical(&document)?;
        let invoice_id = format!("{}:{}", req.tenant_id, month.label);
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM invoices WHERE invoice_id = $1 AND status = 'draft'")
            .bind(&invoice_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO invoices (invoice_id, tenant_id, period, period_start_ms, period_end_ms,
                 status, number, document, key_id, signature, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, 'draft', NULL, $6, NULL, NULL, $7)",
        )
        .bind(&invoice_id)
        .bind(&req.tenant_id)
        .bind(&month.label)
        .bind(month.start_ms)
        .bind(month.end_ms)
        .bind(String::from_utf8_lossy(&bytes).into_owned())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(InvoiceRecord {
            invoice_id,
            status: InvoiceStatus::Draft,
            signed: SignedInvoice {
                document,
                bytes,
                key_id: String::new(),
                signature: Vec::new(),
            },
        })
    }

    /// Finalizes a tenant's month (see the module documentation).
    pub async fn finalize_invoice(
        &self,
        req: &InvoiceRequest,
        signer: &(dyn InvoiceSigner + Sync),
        now_ms: i64,
    ) -> Result<InvoiceRecord, LedgerError> {
        let month = Month::parse(&req.period, &req.time_zone).map_err(InvoiceError::from)?;
        if now_ms < month.end_ms {
            return Err(InvoiceError::PeriodNotOver.into());
        }
        let plan = self
            .plan(&req.plan_id, None)
            .await?
            .ok_or(InvoiceError::PlanNotFound)?;
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // Ledger inserts wait until this commits; reads go on.
            sqlx::query("LOCK TABLE usage_events IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        // The first write: on SQLite it takes the writer lock, so nothing
        // can insert between the read of the events and their marking.
        sqlx::query(
            "INSERT INTO invoice_numbers (issuer, last_number) VALUES ($1, 0)
             ON CONFLICT (issuer) DO NOTHING",
        )
        .bind(&req.issuer.id)
        .execute(&mut *tx)
        .await?;
        let already = sqlx::query(
            "SELECT number FROM invoices WHERE tenant_id = $1 AND period = $2 AND status = 'final'",
        )
        .bind(&req.tenant_id)
        .bind(&month.label)
        .fetch_optional(&mut *tx)
        .await?;
        if already.is_some() {
            return Err(InvoiceError::AlreadyFinal.into());
        }
        let seq: i64 = sqlx::query(
            "UPDATE invoice_numbers SET last_number = last_number + 1 WHERE issuer = $1
             RETURNING last_number",
        )
        .bind(&req.issuer.id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("last_number")?;
        let number = format!("{}-{seq:06}", req.issuer.id);
        let rows = dynamic(format!(
            "SELECT {EVENT_COLUMNS} FROM usage_events WHERE {CANDIDATES}"
        ))
        .bind(&req.tenant_id)
        .bind(month.start_ms)
        .bind(month.end_ms)
        .fetch_all(&mut *tx)
        .await?;
        let events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let earlier = final_periods(&mut tx, &req.tenant_id).await?;
        let document = build(
            req,
            &month,
            &plan,
            &events,
            &earlier,
            &number,
            &rfc3339(now_ms),
        )?;
        let bytes = canonical(&document)?;
        let signature = signer.sign(&bytes);
        let marked = dynamic(format!(
            "UPDATE usage_events SET invoice_number = $4 WHERE {CANDIDATES}"
        ))
        .bind(&req.tenant_id)
        .bind(month.start_ms)
        .bind(month.end_ms)
        .bind(&number)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked != events.len() as u64 {
            // Cannot happen under the lock; refuse rather than bill a set
            // that differs from the one marked.
            return Err(LedgerError::Corrupt(format!(
                "priced {} events but marked {marked}",
                events.len()
            )));
        }
        let invoice_id = format!("{}:{}", req.tenant_id, month.label);
        sqlx::query("DELETE FROM invoices WHERE invoice_id = $1")
            .bind(&invoice_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO invoices (invoice_id, tenant_id, period, period_start_ms, period_end_ms,
                 status, number, document, key_id, signature, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, 'final', $6, $7, $8, $9, $10)",
        )
        .bind(&invoice_id)
        .bind(&req.tenant_id)
        .bind(&month.label)
        .bind(month.start_ms)
        .bind(month.end_ms)
        .bind(&number)
        .bind(String::from_utf8_lossy(&bytes).into_owned())
        .bind(signer.key_id())
        .bind(hex::encode(&signature))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(InvoiceRecord {
            invoice_id,
            status: InvoiceStatus::Final,
            signed: SignedInvoice {
                document,
                bytes,
                key_id: signer.key_id().to_string(),
                signature,
            },
        })
    }

    async fn final_invoice(
        &self,
        tenant_id: &str,
        period: &str,
    ) -> Result<Option<InvoiceRecord>, LedgerError> {
        let row = dynamic(format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices
             WHERE tenant_id = $1 AND period = $2 AND status = 'final'"
        ))
        .bind(tenant_id)
        .bind(period)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| invoice_from_row(&r)).transpose()
    }

    async fn final_periods(&self, tenant_id: &str) -> Result<Vec<FinalPeriod>, LedgerError> {
        let mut conn = self.pool.acquire().await?;
        final_periods(&mut conn, tenant_id).await
    }

    /// One invoice by id (`tenant_id:YYYY-MM`).
    pub async fn invoice(&self, invoice_id: &str) -> Result<InvoiceRecord, LedgerError> {
        let row = dynamic(format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices WHERE invoice_id = $1"
        ))
        .bind(invoice_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(InvoiceError::NotFound)?;
        invoice_from_row(&row)
    }

    /// Invoices of a tenant (every tenant when `None`), newest month first.
    pub async fn invoices(
        &self,
        tenant_id: Option<&str>,
    ) -> Result<Vec<InvoiceRecord>, LedgerError> {
        let rows = dynamic(format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices
             WHERE ($1 = '' OR tenant_id = $1) ORDER BY period DESC, tenant_id"
        ))
        .bind(tenant_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invoice_from_row).collect()
    }

    /// Rebuilds a final invoice's document from the events it marked, its
    /// plan version and the invoices its adjustments refer to.
    pub async fn regenerate(&self, invoice_id: &str) -> Result<Vec<u8>, LedgerError> {
        let stored = self.invoice(invoice_id).await?;
        let doc = &stored.signed.document;
        let plan = self
            .plan(&doc.plan_id, Some(doc.plan_version))
            .await?
            .ok_or(InvoiceError::PlanNotFound)?;
        let rows = dynamic(format!(
            "SELECT {EVENT_COLUMNS} FROM usage_events WHERE invoice_number = $1"
        ))
        .bind(&doc.number)
        .fetch_all(&self.pool)
        .await?;
        let events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let earlier = self.final_periods(&doc.tenant_id).await?;
        let month = Month::parse(&doc.period, &doc.time_zone).map_err(InvoiceError::from)?;
        let req = InvoiceRequest {
            tenant_id: doc.tenant_id.clone(),
            tenant_name: doc.tenant_name.clone(),
            buyer: doc.buyer.clone().unwrap_or_default(),
            period: doc.period.clone(),
            time_zone: doc.time_zone.clone(),
            plan_id: doc.plan_id.clone(),
            issuer: doc.issuer.clone(),
        };
        let mut rebuilt = build(
            &req,
            &month,
            &plan,
            &events,
            &earlier,
            &doc.number,
            &doc.issued_at,
        )?;
        // What it was finalized as: a v1 invoice has no particulars and
        // keeps its tag, so it regenerates to its original bytes.
        rebuilt.format = doc.format.clone();
        rebuilt.buyer = doc.buyer.clone();
        canonical(&rebuilt)
    }

    /// Checks every final invoice of a tenant (of one month, when given)
    /// against the ledger, and lists events no invoice accounts for.
    pub async fn reconcile(
        &self,
        tenant_id: &str,
        period: Option<&str>,
    ) -> Result<ReconcileReport, LedgerError> {
        let mut report = ReconcileReport::default();
        for inv in self.invoices(Some(tenant_id)).await? {
            if inv.status != InvoiceStatus::Final
                || period.is_some_and(|p| p != inv.signed.document.period)
            {
                continue;
            }
            let doc = &inv.signed.document;
            let row = sqlx::query(
                "SELECT CAST(COUNT(*) AS BIGINT) AS calls,
                        CAST(COALESCE(SUM(units), 0) AS BIGINT) AS units
                 FROM usage_events WHERE invoice_number = $1",
            )
            .bind(&doc.number)
            .fetch_one(&self.pool)
            .await?;
            let ledger = Quantities {
                calls: row.try_get::<i64, _>("calls")? as u64,
                units: row.try_get::<i64, _>("units")? as u64,
            };
            report.invoices.push(InvoiceCheck {
                number: doc.number.clone(),
                period: doc.period.clone(),
                ledger,
                invoiced: invoiced_quantities(doc),
                reproducible: self.regenerate(&inv.invoice_id).await? == inv.signed.bytes,
            });
        }
        let rows = dynamic(format!(
            "SELECT {EVENT_COLUMNS} FROM usage_events e WHERE e.tenant_id = $1 AND (
                 (e.invoice_number IS NULL AND EXISTS (
                     SELECT 1 FROM invoices i WHERE i.tenant_id = e.tenant_id
                       AND i.status = 'final'
                       AND e.event_time_ms >= i.period_start_ms
                       AND e.event_time_ms < i.period_end_ms))
              OR (e.invoice_number IS NOT NULL AND NOT EXISTS (
                     SELECT 1 FROM invoices i WHERE i.number = e.invoice_number
                       AND i.status = 'final')))
             ORDER BY e.event_time_ms, e.request_id"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        report.unaccounted = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(report)
    }
}

/// A finalized month of a tenant, for pricing its late events.
struct FinalPeriod {
    period: String,
    start_ms: i64,
    end_ms: i64,
    marginal_unit_price: Decimal,
}

async fn final_periods(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &str,
) -> Result<Vec<FinalPeriod>, LedgerError> {
    let rows = sqlx::query(
        "SELECT period, period_start_ms, period_end_ms, document FROM invoices
         WHERE tenant_id = $1 AND status = 'final' ORDER BY period",
    )
    .bind(tenant_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let doc = parse_document(&r.try_get::<String, _>("document")?)?;
            Ok(FinalPeriod {
                period: r.try_get("period")?,
                start_ms: r.try_get("period_start_ms")?,
                end_ms: r.try_get("period_end_ms")?,
                marginal_unit_price: doc.priced.marginal_unit_price,
            })
        })
        .collect()
}

/// The document for `events`: this month's as regular usage, earlier
/// months' as adjustments at their invoices' marginal price.
fn build(
    req: &InvoiceRequest,
    month: &Month,
    plan: &PricePlan,
    events: &[UsageEvent],
    earlier: &[FinalPeriod],
    number: &str,
    issued_at: &str,
) -> Result<InvoiceDocument, LedgerError> {
    let mut usage = Quantities::default();
    let mut late: BTreeMap<&str, (Quantities, Decimal)> = BTreeMap::new();
    for e in events {
        let q = if e.event_time_ms >= month.start_ms {
            &mut usage
        } else {
            let p = earlier
                .iter()
                .find(|p| e.event_time_ms >= p.start_ms && e.event_time_ms < p.end_ms)
                .ok_or_else(|| {
                    LedgerError::Corrupt("a late event belongs to no finalized month".into())
                })?;
            &mut late
                .entry(p.period.as_str())
                .or_insert((Quantities::default(), p.marginal_unit_price))
                .0
        };
        q.calls += 1;
        q.units += e.units;
    }
    let adjustments: Vec<Adjustment> = late
        .into_iter()
        .map(|(period, (quantities, unit_price))| Adjustment {
            period: period.to_string(),
            quantities,
            unit_price,
        })
        .collect();
    let priced = pricing::price(plan, usage, &adjustments).map_err(InvoiceError::from)?;
    Ok(InvoiceDocument {
        format: INVOICE_FORMAT.to_string(),
        number: number.to_string(),
        issuer: req.issuer.clone(),
        tenant_id: req.tenant_id.clone(),
        tenant_name: req.tenant_name.clone(),
        buyer: Some(req.buyer.clone()),
        period: month.label.clone(),
        time_zone: req.time_zone.clone(),
        period_start: rfc3339(month.start_ms),
        period_end: rfc3339(month.end_ms),
        issued_at: issued_at.to_string(),
        plan_id: plan.id.clone(),
        plan_version: plan.version,
        currency: plan.currency.clone(),
        minor_units: plan.minor_units,
        priced,
        tax_rate: plan.tax_rate,
        event_count: events.len() as u64,
        events_digest: events_digest(events),
    })
}

/// Calls and units an invoice bills, from its lines.
pub fn invoiced_quantities(doc: &InvoiceDocument) -> Quantities {
    use crate::LineKind;
    let mut q = Quantities::default();
    for line in &doc.priced.lines {
        match line.kind {
            LineKind::Calls | LineKind::AdjustmentCalls => q.calls += line.quantity,
            LineKind::IncludedUnits | LineKind::FieldUnits | LineKind::Adjustment => {
                q.units += line.quantity
            }
            LineKind::MinimumTopUp => {}
        }
    }
    // A plan without a per-call price has no call lines: the calls are the
    // events the document counts.
    if !doc.priced.lines.iter().any(|l| l.kind == LineKind::Calls) {
        q.calls = doc.event_count;
    }
    q
}

fn canonical(doc: &InvoiceDocument) -> Result<Vec<u8>, LedgerError> {
    serde_json::to_vec(doc).map_err(|e| LedgerError::Corrupt(e.to_string()))
}

fn parse_plan(json: &str) -> Result<PricePlan, LedgerError> {
    serde_json::from_str(json).map_err(|e| LedgerError::Corrupt(format!("price plan: {e}")))
}

fn parse_document(json: &str) -> Result<InvoiceDocument, LedgerError> {
    serde_json::from_str(json).map_err(|e| LedgerError::Corrupt(format!("invoice: {e}")))
}

const INVOICE_COLUMNS: &str = "invoice_id, status, document, key_id, signature";

fn invoice_from_row(r: &sqlx::any::AnyRow) -> Result<InvoiceRecord, LedgerError> {
    let document: String = r.try_get("document")?;
    let status: String = r.try_get("status")?;
    let signature: Option<String> = r.try_get("signature")?;
    Ok(InvoiceRecord {
        invoice_id: r.try_get("invoice_id")?,
        status: if status == "final" {
            InvoiceStatus::Final
        } else {
            InvoiceStatus::Draft
        },
        signed: SignedInvoice {
            document: parse_document(&document)?,
            bytes: document.into_bytes(),
            key_id: r
                .try_get::<Option<String>, _>("key_id")?
                .unwrap_or_default(),
            signature: signature
                .map(|s| hex::decode(s).map_err(|e| LedgerError::Corrupt(e.to_string())))
                .transpose()?
                .unwrap_or_default(),
        },
    })
}
