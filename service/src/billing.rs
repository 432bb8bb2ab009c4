//! The `BillingService` path: usage summaries, price plans, invoices and
//! exports, over `ekyc-billing`'s ledger.
//!
//! Access ([`crate::authz::RULES`]): the agency (agency-admin keys and
//! finance keys of the agency tenant) for every tenant, and only the agency
//! finalizes; a tenant's finance key for its own tenant's reads and drafts;
//! nobody else.

use std::sync::Arc;

use ekyc_billing::invoices::{InvoiceRecord, InvoiceRequest, InvoiceSigner, InvoiceStatus};
use ekyc_billing::ledger::LedgerError;
use ekyc_billing::period::Month;
use ekyc_billing::{Issuer, Party, PricePlan, export};
use ekyc_proto::v1 as pb;

use crate::App;
use crate::auth::{Caller, Credential};
use crate::authz::{Gate, Target};
use crate::clock;
use crate::config::BillingConfig;
use crate::error::{Reason, ServiceError};
use crate::secrets::Signer;
use crate::store::Tenant;

impl InvoiceSigner for Signer {
    fn key_id(&self) -> &str {
        Signer::key_id(self)
    }

    fn sign(&self, bytes: &[u8]) -> Vec<u8> {
        Signer::sign(self, bytes).to_vec()
    }
}

/// The `BillingService` handle: usage, price plans, invoices and exports.
#[derive(Clone)]
pub struct BillingService {
    gate: Gate,
    ledger: Arc<ekyc_billing::Ledger>,
    signer: Arc<Signer>,
    billing: BillingConfig,
}

impl BillingService {
    /// The handle over `app`'s parts.
    pub fn new(app: &App) -> BillingService {
        BillingService {
            gate: Gate::new(app),
            ledger: Arc::clone(&app.ledger),
            signer: Arc::clone(&app.signer),
            billing: app.billing.clone(),
        }
    }

    /// Authenticates a billing call and authorises it about `tenant_id`
    /// (see [`crate::authz::RULES`]).
    async fn billing_caller(
        &self,
        credential: &Credential,
        tenant_id: &str,
        method: &str,
    ) -> Result<Caller, ServiceError> {
        let caller = self.gate.authenticate(credential).await?;
        self.gate
            .authorize(&caller, method, Target::Tenant(tenant_id))
            .await?;
        Ok(caller)
    }

    /// Plans are public to every finance and agency key.
    async fn require_plan_reader(
        &self,
        credential: &Credential,
        method: &str,
    ) -> Result<(), ServiceError> {
        let caller = self.gate.authenticate(credential).await?;
        self.gate.authorize(&caller, method, Target::Caller).await
    }

    fn invoice_request(&self, tenant: &Tenant, period: &str) -> InvoiceRequest {
        InvoiceRequest {
            tenant_id: tenant.id.clone(),
            tenant_name: tenant.name.clone(),
            buyer: Party {
                legal_name: tenant.legal.legal_name.clone(),
                address: tenant.legal.address.clone(),
                tax_code: tenant.legal.tax_code.clone(),
            },
            period: period.to_string(),
            time_zone: tenant.policy.time_zone.clone(),
            plan_id: if tenant.policy.price_plan.is_empty() {
                self.billing.default_plan.clone()
            } else {
                tenant.policy.price_plan.clone()
            },
            issuer: Issuer {
                id: self.billing.issuer_id.clone(),
                name: self.billing.issuer_name.clone(),
                party: Some(Party {
                    legal_name: self.billing.issuer_legal_name.clone(),
                    address: self.billing.issuer_address.clone(),
                    tax_code: self.billing.issuer_tax_code.clone(),
                }),
            },
        }
    }

    /// GetUsageSummary.
    pub async fn usage_summary(
        &self,
        credential: &Credential,
        req: &pb::GetUsageSummaryRequest,
    ) -> Result<pb::GetUsageSummaryResponse, ServiceError> {
        self.billing_caller(credential, &req.tenant_id, "GetUsageSummary")
            .await?;
        let tenant = self.gate.load_tenant(&req.tenant_id).await?;
        let tz = &tenant.policy.time_zone;
        let (from, to) = if req.period.len() == 10 {
            day_range(&req.period, tz)?
        } else {
            let m = Month::parse(&req.period, tz).map_err(period_error)?;
            (m.start_ms, m.end_ms)
        };
        let methods = self
            .ledger
            .usage_by_method(&tenant.id, from, to)
            .await
            .map_err(ledger_error)?;
        Ok(pb::GetUsageSummaryResponse {
            tenant_id: tenant.id.clone(),
            period: req.period.clone(),
            time_zone: tz.clone(),
            methods: methods
                .into_iter()
                .map(|(method, q)| pb::MethodUsage {
                    method,
                    calls: q.calls as i64,
                    units: q.units as i64,
                })
                .collect(),
        })
    }

    /// ListPricePlans: any finance or agency key.
    pub async fn list_price_plans(
        &self,
        credential: &Credential,
    ) -> Result<pb::ListPricePlansResponse, ServiceError> {
        self.require_plan_reader(credential, "ListPricePlans")
            .await?;
        let plans = self.ledger.plans().await.map_err(ledger_error)?;
        Ok(pb::ListPricePlansResponse {
            plans: plans.iter().map(plan_to_proto).collect(),
        })
    }

    /// GetPricePlan.
    pub async fn get_price_plan(
        &self,
        credential: &Credential,
        req: &pb::GetPricePlanRequest,
    ) -> Result<pb::GetPricePlanResponse, ServiceError> {
        self.require_plan_reader(credential, "GetPricePlan").await?;
        let version = (req.version != 0).then_some(req.version);
        let plan = self
            .ledger
            .plan(&req.plan_id, version)
            .await
            .map_err(ledger_error)?
            .ok_or(ServiceError::refused(
                Reason::PricePlanNotFound,
                "price plan not found",
            ))?;
        Ok(pb::GetPricePlanResponse {
            plan: Some(plan_to_proto(&plan)),
        })
    }

    /// CreateInvoice: a draft of the tenant's month.
    pub async fn create_invoice(
        &self,
        credential: &Credential,
        req: &pb::CreateInvoiceRequest,
    ) -> Result<pb::CreateInvoiceResponse, ServiceError> {
        self.billing_caller(credential, &req.tenant_id, "CreateInvoice")
            .await?;
        let tenant = self.gate.load_tenant(&req.tenant_id).await?;
        let record = self
            .ledger
            .draft_invoice(&self.invoice_request(&tenant, &req.period), clock::now_ms())
            .await
            .map_err(ledger_error)?;
        Ok(pb::CreateInvoiceResponse {
            invoice: Some(invoice_to_proto(&record)),
        })
    }

    /// FinalizeInvoice: the agency numbers and signs an ended month.
    pub async fn finalize_invoice(
        &self,
        credential: &Credential,
        req: &pb::FinalizeInvoiceRequest,
    ) -> Result<pb::FinalizeInvoiceResponse, ServiceError> {
        let caller = self
            .billing_caller(credential, &req.tenant_id, "FinalizeInvoice")
            .await?;
        let tenant = self.gate.load_tenant(&req.tenant_id).await?;
        let record = self
            .ledger
            .finalize_invoice(
                &self.invoice_request(&tenant, &req.period),
                self.signer.as_ref(),
                clock::now_ms(),
            )
            .await
            .map_err(ledger_error)?;
        tracing::info!(
            tenant = %tenant.id,
            period = %req.period,
            number = %record.signed.document.number,
            by = %caller.key_id,
            "invoice finalized"
        );
        Ok(pb::FinalizeInvoiceResponse {
            invoice: Some(invoice_to_proto(&record)),
        })
    }

    /// ListInvoices.
    pub async fn list_invoices(
        &self,
        credential: &Credential,
        req: &pb::ListInvoicesRequest,
    ) -> Result<pb::ListInvoicesResponse, ServiceError> {
        self.billing_caller(credential, &req.tenant_id, "ListInvoices")
            .await?;
        // An empty tenant means "every tenant", which only the agency may
        // ask: the table lets a tenant's finance key through only for its
        // own id, and "" is not one.
        let tenant = (!req.tenant_id.is_empty()).then_some(req.tenant_id.as_str());
        let records = self.ledger.invoices(tenant).await.map_err(ledger_error)?;
        Ok(pb::ListInvoicesResponse {
            invoices: records.iter().map(invoice_to_proto).collect(),
        })
    }

    /// ExportInvoice.
    pub async fn export_invoice(
        &self,
        credential: &Credential,
        req: &pb::ExportInvoiceRequest,
    ) -> Result<pb::ExportInvoiceResponse, ServiceError> {
        let tenant_id = req.invoice_id.split(':').next().unwrap_or_default();
        self.billing_caller(credential, tenant_id, "ExportInvoice")
            .await?;
        let record = self
            .ledger
            .invoice(&req.invoice_id)
            .await
            .map_err(ledger_error)?;
        let signed = &record.signed;
        let name = if signed.document.number.is_empty() {
            format!(
                "draft-{}-{}",
                signed.document.tenant_id, signed.document.period
            )
        } else {
            signed.document.number.clone()
        };
        let (content, content_type, ext) = match pb::ExportFormat::try_from(req.format) {
            Ok(pb::ExportFormat::Csv) => {
                let version = match req.csv_version {
                    0 => export::csv::CsvVersion::V2,
                    n => export::csv::CsvVersion::from_number(n).ok_or_else(|| {
                        ServiceError::invalid(
                            "csv_version",
                            "out_of_range",
                            "csv_version must be 0 (the latest), 1 or 2",
                        )
                    })?,
                };
                (
                    export::csv::invoice_csv(&signed.document, version),
                    "text/csv",
                    "csv",
                )
            }
            Ok(pb::ExportFormat::Json) => (
                export::json::invoice_json(signed),
                "application/json",
                "json",
            ),
            Ok(pb::ExportFormat::Pdf) => {
                (export::pdf::invoice_pdf(signed), "application/pdf", "pdf")
            }
            _ => {
                return Err(ServiceError::invalid(
                    "format",
                    "required",
                    "format must be CSV, JSON or PDF",
                ));
            }
        };
        Ok(pb::ExportInvoiceResponse {
            content,
            content_type: content_type.to_string(),
            file_name: format!("{name}.{ext}"),
        })
    }
}

fn day_range(day: &str, tz: &str) -> Result<(i64, i64), ServiceError> {
    let bad = || {
        ServiceError::invalid(
            "period",
            "invalid_format",
            "period must be YYYY-MM or YYYY-MM-DD",
        )
    };
    let date: jiff::civil::Date = day.parse().map_err(|_| bad())?;
    let start = date.in_tz(tz).map_err(|_| bad())?;
    let end = date
        .tomorrow()
        .map_err(|_| bad())?
        .in_tz(tz)
        .map_err(|_| bad())?;
    Ok((
        start.timestamp().as_millisecond(),
        end.timestamp().as_millisecond(),
    ))
}

fn period_error(_: ekyc_billing::period::PeriodError) -> ServiceError {
    ServiceError::invalid(
        "period",
        "invalid_format",
        "period must be YYYY-MM or YYYY-MM-DD",
    )
}

/// Ledger errors as the caller should see them.
fn ledger_error(e: LedgerError) -> ServiceError {
    use ekyc_billing::invoices::InvoiceError as E;
    match e {
        LedgerError::Invoice(E::Period(p)) => period_error(p),
        LedgerError::Invoice(E::PlanNotFound) => ServiceError::refused(
            Reason::PricePlanMissing,
            "the tenant's price plan does not exist",
        ),
        LedgerError::Invoice(E::PeriodNotOver) => {
            ServiceError::refused(Reason::PeriodNotOver, "the billing month has not ended yet")
        }
        LedgerError::Invoice(E::AlreadyFinal) => ServiceError::refused(
            Reason::InvoiceFinalized,
            "the invoice for this tenant and month is already finalized",
        ),
        LedgerError::Invoice(E::NotFound) => {
            ServiceError::refused(Reason::InvoiceNotFound, "invoice not found")
        }
        other => ServiceError::Internal(Box::new(other)),
    }
}

fn plan_to_proto(p: &PricePlan) -> pb::PricePlan {
    pb::PricePlan {
        plan_id: p.id.clone(),
        version: p.version,
        name: p.name.clone(),
        currency: p.currency.clone(),
        minor_units: p.minor_units,
        per_call: p.per_call.to_string(),
        per_field_tiers: p
            .per_field_tiers
            .iter()
            .map(|t| pb::PriceTier {
                up_to: t.up_to.map(|u| u as i64),
                unit_price: t.unit_price.to_string(),
            })
            .collect(),
        included_units: p.included_units as i64,
        monthly_minimum: p.monthly_minimum.to_string(),
        tax_rate: p.tax_rate.to_string(),
    }
}

fn invoice_to_proto(r: &InvoiceRecord) -> pb::Invoice {
    let d = &r.signed.document;
    pb::Invoice {
        invoice_id: r.invoice_id.clone(),
        tenant_id: d.tenant_id.clone(),
        period: d.period.clone(),
        status: match r.status {
            InvoiceStatus::Draft => pb::InvoiceStatus::Draft,
            InvoiceStatus::Final => pb::InvoiceStatus::Final,
        } as i32,
        number: d.number.clone(),
        currency: d.currency.clone(),
        subtotal: d.priced.subtotal.to_string(),
        tax: d.priced.tax.to_string(),
        total: d.priced.total.to_string(),
        document: r.signed.bytes.clone(),
        key_id: r.signed.key_id.clone(),
        signature: r.signed.signature.clone(),
    }
}
