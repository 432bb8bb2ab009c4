//! What the CLI prints: refusals with their details, and the output forms
//! of tenants, keys, usage and audit events (tables, key: value lines or
//! JSON).

use std::process::ExitCode;

use anyhow::Result;
use ekyc_client::v1 as pb;
use serde::Serialize;
use tonic_types::StatusExt;

pub(crate) fn print_status(status: &tonic::Status, json: bool) {
    let details = status.get_error_details();
    let reason = details
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default();
    let violations: Vec<(String, String, String)> = details
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.reason.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default();
    if json {
        let out = serde_json::json!({
            "error": format!("{:?}", status.code()),
            "message": status.message(),
            "reason": reason,
            "field_violations": violations.iter().map(|(f, r, d)| serde_json::json!({"field": f, "rule": r, "description": d})).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        eprintln!(
            "refused: {:?} ({reason}): {}",
            status.code(),
            status.message()
        );
        for (f, r, d) in violations {
            eprintln!("  {f}: {r}: {d}");
        }
    }
}

/// Turns a refusal by the service into its printout and exit code 1; any
/// other error stays a local error (exit code 2).
pub(crate) fn finish(result: Result<()>, json: bool) -> Result<ExitCode> {
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => match e.downcast::<tonic::Status>() {
            Ok(status) => {
                print_status(&status, json);
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(e),
        },
    }
}

/// Output form of a tenant (the generated types are not serialisable).
#[derive(Serialize)]
pub(crate) struct TenantOut {
    pub(crate) tenant_id: String,
    pub(crate) name: String,
    pub(crate) status: &'static str,
    pub(crate) mtls_subject: String,
    pub(crate) policy: PolicyOut,
    pub(crate) legal: LegalOut,
    pub(crate) create_time: Option<String>,
    pub(crate) update_time: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct LegalOut {
    pub(crate) legal_name: String,
    pub(crate) address: String,
    pub(crate) tax_code: String,
}

#[derive(Serialize)]
pub(crate) struct PolicyOut {
    pub(crate) allowed_fields: Vec<String>,
    pub(crate) allowed_purposes: Vec<String>,
    pub(crate) fuzzy_matching: bool,
    pub(crate) fuzzy_threshold: i64,
    pub(crate) disclose_not_found: bool,
    pub(crate) accept_folded: bool,
    pub(crate) price_plan: String,
    pub(crate) time_zone: String,
    pub(crate) limits: LimitsOut,
}

#[derive(Serialize)]
pub(crate) struct LimitsOut {
    pub(crate) requests_per_second: i64,
    pub(crate) burst: i64,
    pub(crate) daily_quota_units: i64,
    pub(crate) monthly_quota_units: i64,
}

impl From<&pb::Tenant> for TenantOut {
    fn from(t: &pb::Tenant) -> TenantOut {
        let p = t.policy.clone().unwrap_or_default();
        let l = p.limits.unwrap_or_default();
        let legal = t.legal.clone().unwrap_or_default();
        TenantOut {
            tenant_id: t.tenant_id.clone(),
            name: t.name.clone(),
            status: match pb::TenantStatus::try_from(t.status) {
                Ok(pb::TenantStatus::Active) => "ACTIVE",
                Ok(pb::TenantStatus::Suspended) => "SUSPENDED",
                _ => "UNSPECIFIED",
            },
            mtls_subject: t.mtls_subject.clone(),
            policy: PolicyOut {
                allowed_fields: p.allowed_fields,
                allowed_purposes: p.allowed_purposes,
                fuzzy_matching: p.fuzzy_matching,
                fuzzy_threshold: p.fuzzy_threshold,
                disclose_not_found: p.disclose_not_found,
                accept_folded: p.accept_folded,
                price_plan: p.price_plan,
                time_zone: p.time_zone,
                limits: LimitsOut {
                    requests_per_second: l.requests_per_second,
                    burst: l.burst,
                    daily_quota_units: l.daily_quota_units,
                    monthly_quota_units: l.monthly_quota_units,
                },
            },
            legal: LegalOut {
                legal_name: legal.legal_name,
                address: legal.address,
                tax_code: legal.tax_code,
            },
            create_time: rfc3339(t.create_time.as_ref()),
            update_time: rfc3339(t.update_time.as_ref()),
        }
    }
}

/// Output form of an API key's description (never its secret).
#[derive(Serialize)]
pub(crate) struct KeyOut {
    pub(crate) key_id: String,
    pub(crate) tenant_id: String,
    pub(crate) role: &'static str,
    pub(crate) usable: bool,
    pub(crate) create_time: Option<String>,
    pub(crate) expire_time: Option<String>,
    pub(crate) revoke_time: Option<String>,
    pub(crate) last_used_time: Option<String>,
}

impl From<&pb::ApiKey> for KeyOut {
    fn from(k: &pb::ApiKey) -> KeyOut {
        KeyOut {
            key_id: k.key_id.clone(),
            tenant_id: k.tenant_id.clone(),
            // The names `--role` takes.
            role: match pb::Role::try_from(k.role) {
                Ok(pb::Role::Verifier) => "verifier",
                Ok(pb::Role::AgencyAdmin) => "agency-admin",
                Ok(pb::Role::Finance) => "finance",
                Ok(pb::Role::RegistryOperator) => "registry-operator",
                Ok(pb::Role::Auditor) => "auditor",
                Ok(pb::Role::PrivacyOfficer) => "privacy-officer",
                _ => "unspecified",
            },
            usable: k.usable,
            create_time: rfc3339(k.create_time.as_ref()),
            expire_time: rfc3339(k.expire_time.as_ref()),
            revoke_time: rfc3339(k.revoke_time.as_ref()),
            last_used_time: rfc3339(k.last_used_time.as_ref()),
        }
    }
}

/// Output form of an audit event.
#[derive(Serialize)]
pub(crate) struct AuditOut {
    pub(crate) sequence: i64,
    pub(crate) time: Option<String>,
    pub(crate) actor_key_id: String,
    pub(crate) actor_tenant_id: String,
    pub(crate) action: String,
    pub(crate) tenant_id: String,
    pub(crate) field: String,
    pub(crate) old_value: String,
    pub(crate) new_value: String,
    pub(crate) chain_hash: String,
}

impl From<&pb::AuditEvent> for AuditOut {
    fn from(e: &pb::AuditEvent) -> AuditOut {
        AuditOut {
            sequence: e.sequence,
            time: rfc3339(e.time.as_ref()),
            actor_key_id: e.actor_key_id.clone(),
            actor_tenant_id: e.actor_tenant_id.clone(),
            action: e.action.clone(),
            tenant_id: e.tenant_id.clone(),
            field: e.field.clone(),
            old_value: e.old_value.clone(),
            new_value: e.new_value.clone(),
            chain_hash: e.chain_hash.clone(),
        }
    }
}

pub(crate) fn print_tenant(t: &TenantOut) {
    let p = &t.policy;
    let l = &p.limits;
    let joined = |items: &[String], none: &str| {
        if items.is_empty() {
            none.to_string()
        } else {
            items.join(",")
        }
    };
    let limit = |n: i64| {
        if n == 0 {
            "0 (no limit)".to_string()
        } else {
            n.to_string()
        }
    };
    let lines = [
        ("tenant_id", t.tenant_id.clone()),
        ("name", t.name.clone()),
        ("status", t.status.to_string()),
        ("mtls_subject", or_dash(&t.mtls_subject)),
        ("allowed_fields", joined(&p.allowed_fields, "(every field)")),
        (
            "allowed_purposes",
            joined(&p.allowed_purposes, "(any purpose)"),
        ),
        ("fuzzy_matching", p.fuzzy_matching.to_string()),
        ("fuzzy_threshold", p.fuzzy_threshold.to_string()),
        ("disclose_not_found", p.disclose_not_found.to_string()),
        ("accept_folded", p.accept_folded.to_string()),
        ("price_plan", or_dash(&p.price_plan)),
        ("time_zone", p.time_zone.clone()),
        ("requests_per_second", limit(l.requests_per_second)),
        ("burst", l.burst.to_string()),
        ("daily_quota_units", limit(l.daily_quota_units)),
        ("monthly_quota_units", limit(l.monthly_quota_units)),
        ("legal_name", or_dash(&t.legal.legal_name)),
        ("address", or_dash(&t.legal.address)),
        ("tax_code", or_dash(&t.legal.tax_code)),
        ("create_time", dash(&t.create_time)),
        ("update_time", dash(&t.update_time)),
    ];
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in lines {
        println!("{:<width$} {v}", format!("{k}:"));
    }
}

#[derive(Serialize)]
pub(crate) struct QuotaOut {
    pub(crate) period: String,
    pub(crate) used_units: i64,
    pub(crate) limit_units: i64,
    pub(crate) remaining_units: Option<i64>,
    pub(crate) resets_at: Option<String>,
}

pub(crate) fn print_usage(u: &pb::GetTenantUsageResponse, json: bool) -> Result<()> {
    let quota = |q: &Option<pb::QuotaUsage>| {
        let q = q.clone().unwrap_or_default();
        QuotaOut {
            period: q.period,
            used_units: q.used_units,
            limit_units: q.limit_units,
            remaining_units: q.remaining_units,
            resets_at: rfc3339(q.resets_at.as_ref()),
        }
    };
    let (daily, monthly) = (quota(&u.daily), quota(&u.monthly));
    let l = u.limits.unwrap_or_default();
    if json {
        let out = serde_json::json!({
            "tenant_id": u.tenant_id,
            "time_zone": u.time_zone,
            "shared": u.shared,
            "requests_per_second": l.requests_per_second,
            "burst": l.burst,
            "rate_remaining": u.rate_remaining,
            "daily": daily,
            "monthly": monthly,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let of = |q: &QuotaOut| {
        let limit = if q.limit_units == 0 {
            "no quota".to_string()
        } else {
            format!(
                "of {} ({} left)",
                q.limit_units,
                q.remaining_units.unwrap_or(0)
            )
        };
        format!(
            "{} units used {limit}; resets {}",
            q.used_units,
            dash(&q.resets_at)
        )
    };
    let rate = if l.requests_per_second == 0 {
        "no limit".to_string()
    } else {
        let now = u
            .rate_remaining
            .map(|r| format!(", {r} available now"))
            .unwrap_or_default();
        format!("{}/s, burst {}{now}", l.requests_per_second, l.burst)
    };
    let lines = [
        ("tenant_id", u.tenant_id.clone()),
        ("time_zone", u.time_zone.clone()),
        (
            "counters",
            if u.shared {
                "shared (Redis)"
            } else {
                "this replica only"
            }
            .to_string(),
        ),
        ("rate", rate),
        (&format!("day {}", daily.period), of(&daily)),
        (&format!("month {}", monthly.period), of(&monthly)),
    ];
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in lines {
        println!("{:<width$} {v}", format!("{k}:"));
    }
    Ok(())
}

pub(crate) fn print_tenants(
    tenants: &[TenantOut],
    next_page_token: &str,
    json: bool,
) -> Result<()> {
    if json {
        let out = serde_json::json!({
            "tenants": tenants,
            "next_page_token": next_page_token,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_table(
        &[
            "TENANT_ID",
            "NAME",
            "STATUS",
            "PRICE_PLAN",
            "RATE",
            "BURST",
            "DAILY_QUOTA",
            "MONTHLY_QUOTA",
            "CREATED",
        ],
        tenants.iter().map(|t| {
            let l = &t.policy.limits;
            vec![
                t.tenant_id.clone(),
                t.name.clone(),
                t.status.to_string(),
                or_dash(&t.policy.price_plan),
                l.requests_per_second.to_string(),
                l.burst.to_string(),
                l.daily_quota_units.to_string(),
                l.monthly_quota_units.to_string(),
                dash(&t.create_time),
            ]
        }),
    );
    more(next_page_token);
    Ok(())
}

/// Prints a freshly issued key with its secret, the one time it exists
/// outside the service; `replaced` is the old key of a rotation.
pub(crate) fn print_secret(
    key: &KeyOut,
    secret: &str,
    replaced: Option<&KeyOut>,
    json: bool,
) -> Result<()> {
    if json {
        let mut out = serde_json::json!({
            "api_key": key,
            "secret": secret,
            "note": "the secret is shown once: the service keeps only a hash of it",
        });
        if let Some(old) = replaced {
            out["replaced"] = serde_json::to_value(old)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "issued key {} (role {}) for tenant {}, expires {}",
        key.key_id,
        key.role,
        key.tenant_id,
        key.expire_time.as_deref().unwrap_or("never"),
    );
    if let Some(old) = replaced {
        println!(
            "replaced key {} now expires {}",
            old.key_id,
            old.expire_time.as_deref().unwrap_or("never"),
        );
    }
    println!("secret (shown once; the service keeps only a hash, store it now):");
    println!("{secret}");
    Ok(())
}

/// Prints rows under a header, each column as wide as its widest cell.
pub(crate) fn print_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Tells the reader, on stderr so JSON-free pipes stay clean, how to get
/// the next page.
pub(crate) fn more(next_page_token: &str) {
    if !next_page_token.is_empty() {
        eprintln!("more: pass --page-token {next_page_token}");
    }
}

pub(crate) fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

pub(crate) fn dash(t: &Option<String>) -> String {
    t.clone().unwrap_or_else(|| "-".to_string())
}

/// A timestamp as RFC 3339 UTC to the second, `None` when unset (or
/// outside the years -9999 to 9999). It goes through jiff's civil date
/// and time, whose range is whole years: `jiff::Timestamp` stops a day
/// short of protobuf's largest timestamp, 9999-12-31T23:59:59Z.
pub(crate) fn rfc3339(t: Option<&prost_types::Timestamp>) -> Option<String> {
    let secs = t?.seconds;
    let day = jiff::civil::date(1970, 1, 1)
        .checked_add(jiff::Span::new().try_days(secs.div_euclid(86_400)).ok()?)
        .ok()?;
    let at = day
        .to_datetime(jiff::civil::Time::midnight())
        .checked_add(jiff::Span::new().seconds(secs.rem_euclid(86_400)))
        .ok()?;
    Some(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}
