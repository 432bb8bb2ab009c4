//! `ekyc billing ...`: usage, price plans and invoices for finance teams.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use ekyc_client::{Client, v1 as pb};

#[derive(Args)]
pub struct BillingArgs {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: BillingCommand,
}

#[derive(Subcommand)]
pub enum BillingCommand {
    /// Calls and billable units of a tenant in a month (YYYY-MM) or day
    /// (YYYY-MM-DD) of its time zone.
    Usage {
        /// Tenant id ("tn_...").
        tenant_id: String,
        /// YYYY-MM or YYYY-MM-DD.
        period: String,
    },
    /// Price plans (every version).
    Plans,
    /// Invoices: draft, finalize, list, export.
    #[command(subcommand)]
    Invoices(InvoicesCommand),
}

#[derive(Subcommand)]
pub enum InvoicesCommand {
    /// Compute the draft of a tenant's month.
    Draft {
        /// Tenant id.
        tenant_id: String,
        /// Month, YYYY-MM.
        period: String,
    },
    /// Number, sign and freeze the invoice of a tenant's ended month
    /// (agency only).
    Finalize {
        /// Tenant id.
        tenant_id: String,
        /// Month, YYYY-MM.
        period: String,
    },
    /// List invoices, newest first.
    List {
        /// Only this tenant's (required for a tenant's finance key).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write an invoice as CSV, JSON or PDF.
    Export {
        /// Invoice id (`tenant_id:YYYY-MM`, as listed).
        invoice_id: String,
        /// Format.
        #[arg(long, value_enum, default_value_t = Format::Pdf)]
        format: Format,
        /// CSV column layout: 2 (with the parties' particulars) or 1 (the
        /// original layout, for accounting imports built on it)
        /// [default: the latest].
        #[arg(long, value_name = "N")]
        csv_version: Option<u32>,
        /// File to write [default: the suggested name, in the current
        /// directory]; `-` for stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// One row per line item plus totals.
    Csv,
    /// The signed document and its signature.
    Json,
    /// A printable invoice.
    Pdf,
}

pub async fn billing(client: &Client, command: BillingCommand, json: bool) -> Result<()> {
    let mut b = client.billing();
    match command {
        BillingCommand::Usage { tenant_id, period } => {
            let u = b
                .get_usage_summary(client.request(pb::GetUsageSummaryRequest { tenant_id, period }))
                .await?
                .into_inner();
            if json {
                let methods: Vec<_> = u
                    .methods
                    .iter()
                    .map(|m| serde_json::json!({"method": m.method, "calls": m.calls, "units": m.units}))
                    .collect();
                let out = serde_json::json!({
                    "tenant_id": u.tenant_id, "period": u.period,
                    "time_zone": u.time_zone, "methods": methods,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "tenant {} period {} ({})",
                    u.tenant_id, u.period, u.time_zone
                );
                println!("{:<12} {:>12} {:>12}", "METHOD", "CALLS", "UNITS");
                for m in &u.methods {
                    println!("{:<12} {:>12} {:>12}", m.method, m.calls, m.units);
                }
            }
        }
        BillingCommand::Plans => {
            let plans = b
                .list_price_plans(client.request(pb::ListPricePlansRequest {}))
                .await?
                .into_inner()
                .plans;
            if json {
                let out: Vec<_> = plans.iter().map(plan_json).collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for p in &plans {
                    let tiers: Vec<String> = p
                        .per_field_tiers
                        .iter()
                        .map(|t| match t.up_to {
                            Some(u) => format!("{} up to {u}", t.unit_price),
                            None => format!("{} beyond", t.unit_price),
                        })
                        .collect();
                    println!(
                        "{} v{} \"{}\" {}: per call {}, per field {}; included {} units, minimum {}, tax {}",
                        p.plan_id,
                        p.version,
                        p.name,
                        p.currency,
                        p.per_call,
                        tiers.join(", "),
                        p.included_units,
                        p.monthly_minimum,
                        p.tax_rate
                    );
                }
            }
        }
        BillingCommand::Invoices(InvoicesCommand::Draft { tenant_id, period }) => {
            let inv = b
                .create_invoice(client.request(pb::CreateInvoiceRequest { tenant_id, period }))
                .await?
                .into_inner()
                .invoice
                .unwrap_or_default();
            print_invoices(&[inv], json)?;
        }
        BillingCommand::Invoices(InvoicesCommand::Finalize { tenant_id, period }) => {
            let inv = b
                .finalize_invoice(client.request(pb::FinalizeInvoiceRequest { tenant_id, period }))
                .await?
                .into_inner()
                .invoice
                .unwrap_or_default();
            print_invoices(&[inv], json)?;
        }
        BillingCommand::Invoices(InvoicesCommand::List { tenant }) => {
            let invoices = b
                .list_invoices(client.request(pb::ListInvoicesRequest {
                    tenant_id: tenant.unwrap_or_default(),
                }))
                .await?
                .into_inner()
                .invoices;
            print_invoices(&invoices, json)?;
        }
        BillingCommand::Invoices(InvoicesCommand::Export {
            invoice_id,
            format,
            csv_version,
            out,
        }) => {
            let format = match format {
                Format::Csv => pb::ExportFormat::Csv,
                Format::Json => pb::ExportFormat::Json,
                Format::Pdf => pb::ExportFormat::Pdf,
            };
            let file = b
                .export_invoice(client.request(pb::ExportInvoiceRequest {
                    invoice_id,
                    format: format as i32,
                    csv_version: csv_version.unwrap_or_default(),
                }))
                .await?
                .into_inner();
            let path = out.unwrap_or_else(|| PathBuf::from(&file.file_name));
            if path.as_os_str() == "-" {
                use std::io::Write;
                std::io::stdout().write_all(&file.content)?;
            } else {
                std::fs::write(&path, &file.content)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {} ({} bytes)", path.display(), file.content.len());
            }
        }
    }
    Ok(())
}

fn plan_json(p: &pb::PricePlan) -> serde_json::Value {
    serde_json::json!({
        "plan_id": p.plan_id, "version": p.version, "name": p.name,
        "currency": p.currency, "minor_units": p.minor_units, "per_call": p.per_call,
        "per_field_tiers": p.per_field_tiers.iter()
            .map(|t| serde_json::json!({"up_to": t.up_to, "unit_price": t.unit_price}))
            .collect::<Vec<_>>(),
        "included_units": p.included_units, "monthly_minimum": p.monthly_minimum,
        "tax_rate": p.tax_rate,
    })
}

fn status(s: i32) -> &'static str {
    match pb::InvoiceStatus::try_from(s) {
        Ok(pb::InvoiceStatus::Draft) => "DRAFT",
        Ok(pb::InvoiceStatus::Final) => "FINAL",
        _ => "UNSPECIFIED",
    }
}

fn print_invoices(invoices: &[pb::Invoice], json: bool) -> Result<()> {
    if json {
        let out: Vec<_> = invoices
            .iter()
            .map(|i| {
                serde_json::json!({
                    "invoice_id": i.invoice_id, "tenant_id": i.tenant_id, "period": i.period,
                    "status": status(i.status), "number": i.number, "currency": i.currency,
                    "subtotal": i.subtotal, "tax": i.tax, "total": i.total,
                    "key_id": i.key_id, "signature_hex": hex::encode(&i.signature),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:<32} {:<8} {:<7} {:<12} {:>16} {:>16}",
        "INVOICE_ID", "PERIOD", "STATUS", "NUMBER", "TOTAL", "TAX"
    );
    for i in invoices {
        println!(
            "{:<32} {:<8} {:<7} {:<12} {:>16} {:>16}",
            i.invoice_id,
            i.period,
            status(i.status),
            if i.number.is_empty() { "-" } else { &i.number },
            format!("{} {}", i.total, i.currency),
            i.tax
        );
    }
    Ok(())
}
