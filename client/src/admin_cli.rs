//! Agency administration: `ekyc tenants`, `ekyc keys`, `ekyc audit`,
//! `ekyc guard`.
//!
//! Every command sends one or a few TenantAdminService calls with the key
//! and deadline of `Client::request`. The service validates everything;
//! the CLI only refuses what it cannot express as a request (an update
//! with nothing to change), so that a bad value comes back as the
//! service's field violation and reads the same from every client.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ekyc_client::{Client, v1 as pb};

use crate::output::{
    AuditOut, KeyOut, TenantOut, dash, more, or_dash, print_secret, print_table, print_tenant,
    print_tenants, print_usage,
};

/// `ekyc tenants ...`.
#[derive(Args)]
pub(crate) struct TenantsArgs {
    /// Print JSON instead of a table or key: value lines.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: TenantsCommand,
}

#[derive(Subcommand)]
pub(crate) enum TenantsCommand {
    /// Create an active tenant with a policy.
    Create(Box<CreateTenantArgs>),
    /// List tenants by id.
    List {
        /// Tenants per page, 1 to 500 [default: the service's, 50].
        #[arg(long, allow_negative_numbers = true)]
        page_size: Option<i32>,
        /// Token of the page to show, from a previous listing.
        #[arg(long, conflicts_with = "all")]
        page_token: Option<String>,
        /// Follow the pages to the end and show every tenant.
        #[arg(long)]
        all: bool,
    },
    /// Show one tenant.
    Show {
        /// Tenant id ("tn_...").
        tenant_id: String,
    },
    /// Show a tenant's usage now against its rate limit and quotas.
    Usage {
        /// Tenant id ("tn_...").
        tenant_id: String,
    },
    /// Change the tenant fields named by the flags given, and only those.
    Update(Box<UpdateTenantArgs>),
    /// Suspend a tenant: every key of it is refused from the next call on.
    Suspend {
        /// Tenant id ("tn_...").
        tenant_id: String,
        /// Why, for the audit trail (no personal data).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a suspended tenant.
    Resume {
        /// Tenant id ("tn_...").
        tenant_id: String,
    },
}

#[derive(Args)]
pub(crate) struct CreateTenantArgs {
    /// Unique display name, 1 to 100 characters.
    #[arg(long)]
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) policy: PolicyFlags,
    #[command(flatten)]
    pub(crate) legal: LegalFlags,
}

#[derive(Args)]
pub(crate) struct UpdateTenantArgs {
    /// Tenant id ("tn_...").
    pub(crate) tenant_id: String,
    /// New display name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    #[command(flatten)]
    pub(crate) policy: PolicyFlags,
    #[command(flatten)]
    pub(crate) legal: LegalFlags,
}

/// The legal particulars printed on a tenant's invoices.
#[derive(Args, Default)]
pub(crate) struct LegalFlags {
    /// Legal name for invoices (tên đơn vị), e.g. "Ngân hàng TMCP Ngoại
    /// thương Việt Nam"; "" clears it.
    #[arg(long)]
    pub(crate) legal_name: Option<String>,
    /// Registered address for invoices; "" clears it.
    #[arg(long)]
    pub(crate) address: Option<String>,
    /// Tax code (mã số thuế): 10 digits, or 10 digits, "-" and a 3-digit
    /// branch suffix; "" clears it.
    #[arg(long)]
    pub(crate) tax_code: Option<String>,
}

impl LegalFlags {
    fn legal(&self) -> pb::LegalParticulars {
        pb::LegalParticulars {
            legal_name: self.legal_name.clone().unwrap_or_default(),
            address: self.address.clone().unwrap_or_default(),
            tax_code: self.tax_code.clone().unwrap_or_default(),
        }
    }

    /// The update mask paths of the flags given.
    fn paths(&self) -> Vec<&'static str> {
        [
            (self.legal_name.is_some(), "legal.legal_name"),
            (self.address.is_some(), "legal.address"),
            (self.tax_code.is_some(), "legal.tax_code"),
        ]
        .into_iter()
        .filter_map(|(set, path)| set.then_some(path))
        .collect()
    }
}

/// The policy flags shared by `tenants create` and `tenants update`. On
/// create an absent flag takes the service's default; on update it leaves
/// the field as it is. Numbers are signed so that a negative value reaches
/// the service and comes back as its field violation.
#[derive(Args, Default)]
pub(crate) struct PolicyFlags {
    /// Claim fields the tenant may ask about, comma-separated snake_case
    /// names (full_name,date_of_birth,...); "" for every field.
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    pub(crate) allowed_fields: Option<Vec<String>>,
    /// Purpose codes the tenant may declare, comma-separated; "" for any.
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub(crate) allowed_purposes: Option<Vec<String>>,
    /// Compute and report token-overlap scores.
    #[arg(long, overrides_with = "no_fuzzy")]
    pub(crate) fuzzy: bool,
    /// Do not compute fuzzy scores.
    #[arg(long, overrides_with = "fuzzy")]
    pub(crate) no_fuzzy: bool,
    /// Minimum score (0-100) for a fuzzy match; 0 for the default (85).
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub(crate) fuzzy_threshold: Option<i64>,
    /// Disclose that a subject is not in the registry.
    #[arg(long, overrides_with = "no_disclose_not_found")]
    pub(crate) disclose_not_found: bool,
    /// Do not disclose that a subject is not in the registry.
    #[arg(long, overrides_with = "disclose_not_found")]
    pub(crate) no_disclose_not_found: bool,
    /// Count a match without diacritics (MATCH_FOLDED) as a match.
    #[arg(long, overrides_with = "no_accept_folded")]
    pub(crate) accept_folded: bool,
    /// Do not count MATCH_FOLDED as a match.
    #[arg(long, overrides_with = "accept_folded")]
    pub(crate) no_accept_folded: bool,
    /// Sustained requests per second; 0 for no limit.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub(crate) rate: Option<i64>,
    /// Requests allowed in a burst above the rate.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub(crate) burst: Option<i64>,
    /// Billable units per day; 0 for no quota.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub(crate) daily_quota: Option<i64>,
    /// Billable units per billing month; 0 for no quota.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub(crate) monthly_quota: Option<i64>,
    /// Price plan id (a-z 0-9 _ -); "" for none.
    #[arg(long, value_name = "ID")]
    pub(crate) price_plan: Option<String>,
    /// IANA time zone of the tenant's quota and billing days and months
    /// (default Asia/Ho_Chi_Minh).
    #[arg(long, value_name = "ZONE")]
    pub(crate) time_zone: Option<String>,
    /// Subject common name of the tenant's mTLS client certificate; "" for none.
    #[arg(long, value_name = "CN")]
    pub(crate) mtls_subject: Option<String>,
}

/// A paired `--x` / `--no-x` flag: `None` when neither was given.
pub(crate) fn either(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// A comma-separated list flag without its empty items, so that `""`
/// means the empty list.
pub(crate) fn list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl PolicyFlags {
    /// The policy with every given flag applied over the defaults.
    fn policy(&self) -> pb::TenantPolicy {
        pb::TenantPolicy {
            allowed_fields: self.allowed_fields.as_deref().map(list).unwrap_or_default(),
            allowed_purposes: self
                .allowed_purposes
                .as_deref()
                .map(list)
                .unwrap_or_default(),
            fuzzy_matching: either(self.fuzzy, self.no_fuzzy).unwrap_or_default(),
            fuzzy_threshold: self.fuzzy_threshold.unwrap_or_default(),
            disclose_not_found: either(self.disclose_not_found, self.no_disclose_not_found)
                .unwrap_or_default(),
            accept_folded: either(self.accept_folded, self.no_accept_folded).unwrap_or_default(),
            limits: Some(pb::Limits {
                requests_per_second: self.rate.unwrap_or_default(),
                burst: self.burst.unwrap_or_default(),
                daily_quota_units: self.daily_quota.unwrap_or_default(),
                monthly_quota_units: self.monthly_quota.unwrap_or_default(),
            }),
            price_plan: self.price_plan.clone().unwrap_or_default(),
            time_zone: self.time_zone.clone().unwrap_or_default(),
        }
    }

    /// The update-mask paths of exactly the flags given.
    fn paths(&self) -> Vec<&'static str> {
        let given = [
            (self.mtls_subject.is_some(), "mtls_subject"),
            (self.allowed_fields.is_some(), "policy.allowed_fields"),
            (self.allowed_purposes.is_some(), "policy.allowed_purposes"),
            (
                either(self.fuzzy, self.no_fuzzy).is_some(),
                "policy.fuzzy_matching",
            ),
            (self.fuzzy_threshold.is_some(), "policy.fuzzy_threshold"),
            (
                either(self.disclose_not_found, self.no_disclose_not_found).is_some(),
                "policy.disclose_not_found",
            ),
            (
                either(self.accept_folded, self.no_accept_folded).is_some(),
                "policy.accept_folded",
            ),
            (self.price_plan.is_some(), "policy.price_plan"),
            (self.time_zone.is_some(), "policy.time_zone"),
            (self.rate.is_some(), "policy.limits.requests_per_second"),
            (self.burst.is_some(), "policy.limits.burst"),
            (
                self.daily_quota.is_some(),
                "policy.limits.daily_quota_units",
            ),
            (
                self.monthly_quota.is_some(),
                "policy.limits.monthly_quota_units",
            ),
        ];
        given
            .into_iter()
            .filter_map(|(set, path)| set.then_some(path))
            .collect()
    }
}

pub(crate) fn create_request(args: &CreateTenantArgs) -> pb::CreateTenantRequest {
    pb::CreateTenantRequest {
        tenant: Some(pb::Tenant {
            name: args.name.clone(),
            mtls_subject: args.policy.mtls_subject.clone().unwrap_or_default(),
            policy: Some(args.policy.policy()),
            legal: Some(args.legal.legal()),
            ..Default::default()
        }),
    }
}

/// An UpdateTenant request whose mask names exactly the flags given.
pub(crate) fn update_request(args: &UpdateTenantArgs) -> Result<pb::UpdateTenantRequest> {
    let mut paths = args.policy.paths();
    paths.extend(args.legal.paths());
    if args.name.is_some() {
        paths.insert(0, "name");
    }
    if paths.is_empty() {
        anyhow::bail!(
            "nothing to change: give at least one of --name, --allowed-fields, \
             --allowed-purposes, --fuzzy/--no-fuzzy, --fuzzy-threshold, \
             --disclose-not-found/--no-disclose-not-found, \
             --accept-folded/--no-accept-folded, --rate, --burst, --daily-quota, \
             --monthly-quota, --price-plan, --mtls-subject, --legal-name, --address, \
             --tax-code"
        );
    }
    Ok(pb::UpdateTenantRequest {
        tenant: Some(pb::Tenant {
            tenant_id: args.tenant_id.clone(),
            name: args.name.clone().unwrap_or_default(),
            mtls_subject: args.policy.mtls_subject.clone().unwrap_or_default(),
            policy: Some(args.policy.policy()),
            legal: Some(args.legal.legal()),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.into_iter().map(String::from).collect(),
        }),
    })
}

/// `ekyc keys ...`.
#[derive(Args)]
pub(crate) struct KeysArgs {
    /// Print JSON instead of a table or key: value lines.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: KeysCommand,
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Issue an API key; its secret is shown once.
    Issue {
        /// Owning tenant id ("tn_...").
        #[arg(long)]
        tenant: String,
        /// What the key may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Lifetime in days [default: no expiry].
        #[arg(long, allow_negative_numbers = true, value_name = "N")]
        ttl_days: Option<i64>,
        /// Issue an "ekyc_live_" key instead of an "ekyc_test_" one.
        #[arg(long)]
        live: bool,
    },
    /// List a tenant's keys (never their secrets).
    List {
        /// Owning tenant id ("tn_...").
        #[arg(long)]
        tenant: String,
    },
    /// Replace a key with a new one of the same tenant and role; the old one
    /// expires after the grace period. The new secret is shown once.
    Rotate {
        /// Key id of the key to replace.
        key_id: String,
        /// How long the old key keeps working, in seconds (0: stops at once).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        grace_seconds: i64,
    },
    /// Revoke a key: it is refused from the next call on.
    Revoke {
        /// Key id.
        key_id: String,
    },
}

/// A key's role as typed on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum RoleArg {
    /// Calls Verify.
    Verifier,
    /// Manages tenants and keys.
    AgencyAdmin,
    /// Reads its own tenant's usage and invoices.
    Finance,
    /// Imports and deletes registry records.
    RegistryOperator,
    /// Reads the decision log (agency only).
    Auditor,
    /// Lists the decisions about a citizen (agency only).
    PrivacyOfficer,
}

impl From<RoleArg> for pb::Role {
    fn from(r: RoleArg) -> pb::Role {
        match r {
            RoleArg::Verifier => pb::Role::Verifier,
            RoleArg::AgencyAdmin => pb::Role::AgencyAdmin,
            RoleArg::Finance => pb::Role::Finance,
            RoleArg::RegistryOperator => pb::Role::RegistryOperator,
            RoleArg::Auditor => pb::Role::Auditor,
            RoleArg::PrivacyOfficer => pb::Role::PrivacyOfficer,
        }
    }
}

/// `ekyc audit ...`.
#[derive(Args)]
pub(crate) struct AuditArgs {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: AuditCommand,
}

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// List administrative changes, newest first.
    List {
        /// Only changes about this tenant id.
        #[arg(long)]
        tenant: Option<String>,
        /// Events per page, 1 to 1000 [default: the service's, 100].
        #[arg(long, allow_negative_numbers = true)]
        page_size: Option<i32>,
        /// Token of the page to show, from a previous listing.
        #[arg(long)]
        page_token: Option<String>,
    },
    /// The decision log: checkpoints, proofs, entries.
    #[command(flatten)]
    Log(crate::log_cli::LogCommand),
}

#[derive(Args)]
pub(crate) struct GuardArgs {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: GuardCommand,
}

#[derive(Subcommand)]
pub(crate) enum GuardCommand {
    /// Forget a subject's unsuccessful answers, so it is answered again (a
    /// citizen locked out by someone else's wrong answers). Audited under a
    /// pseudonym, never the ID.
    Clear {
        /// The citizen's ID number; "-" reads it from standard input, so
        /// it stays out of the shell history and the process list.
        #[arg(long)]
        id_number: String,
        /// Why, for the audit trail (no personal data).
        #[arg(long)]
        reason: String,
    },
}

pub(crate) async fn guard(client: &Client, command: GuardCommand, json: bool) -> Result<()> {
    let GuardCommand::Clear { id_number, reason } = command;
    let id_number = if id_number == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the ID number from standard input")?;
        line.trim().to_string()
    } else {
        id_number
    };
    let cleared = client
        .admin()
        .clear_subject_guard(client.request(pb::ClearSubjectGuardRequest { id_number, reason }))
        .await?
        .into_inner();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "cleared_failures": cleared.cleared_failures,
                "audit_subject": cleared.audit_subject,
            })
        );
    } else {
        println!("cleared_failures: {}", cleared.cleared_failures);
        println!("audit_subject:    {}", cleared.audit_subject);
    }
    Ok(())
}

pub(crate) async fn tenants(client: &Client, command: TenantsCommand, json: bool) -> Result<()> {
    let mut admin = client.admin();
    let tenant = match command {
        TenantsCommand::Create(args) => {
            admin
                .create_tenant(client.request(create_request(&args)))
                .await?
                .into_inner()
                .tenant
        }
        TenantsCommand::Show { tenant_id } => {
            admin
                .get_tenant(client.request(pb::GetTenantRequest { tenant_id }))
                .await?
                .into_inner()
                .tenant
        }
        TenantsCommand::Usage { tenant_id } => {
            let usage = admin
                .get_tenant_usage(client.request(pb::GetTenantUsageRequest { tenant_id }))
                .await?
                .into_inner();
            return print_usage(&usage, json);
        }
        TenantsCommand::Update(args) => {
            let request = update_request(&args)?;
            admin
                .update_tenant(client.request(request))
                .await?
                .into_inner()
                .tenant
        }
        TenantsCommand::Suspend { tenant_id, reason } => {
            admin
                .suspend_tenant(client.request(pb::SuspendTenantRequest { tenant_id, reason }))
                .await?
                .into_inner()
                .tenant
        }
        TenantsCommand::Resume { tenant_id } => {
            admin
                .resume_tenant(client.request(pb::ResumeTenantRequest { tenant_id }))
                .await?
                .into_inner()
                .tenant
        }
        TenantsCommand::List {
            page_size,
            page_token,
            all,
        } => {
            let mut tenants = Vec::new();
            let mut token = page_token.unwrap_or_default();
            loop {
                let page = admin
                    .list_tenants(client.request(pb::ListTenantsRequest {
                        page_size: page_size.unwrap_or_default(),
                        page_token: token.clone(),
                    }))
                    .await?
                    .into_inner();
                tenants.extend(page.tenants.iter().map(TenantOut::from));
                // A token equal to the one just sent would loop forever.
                let done = page.next_page_token.is_empty() || page.next_page_token == token;
                token = page.next_page_token;
                if !all || done {
                    break;
                }
            }
            if all {
                token.clear();
            }
            print_tenants(&tenants, &token, json)?;
            return Ok(());
        }
    };
    let tenant = TenantOut::from(&tenant.unwrap_or_default());
    if json {
        println!("{}", serde_json::to_string_pretty(&tenant)?);
    } else {
        print_tenant(&tenant);
    }
    Ok(())
}

pub(crate) async fn keys(client: &Client, command: KeysCommand, json: bool) -> Result<()> {
    let mut admin = client.admin();
    match command {
        KeysCommand::Issue {
            tenant,
            role,
            ttl_days,
            live,
        } => {
            let issued = admin
                .issue_api_key(client.request(pb::IssueApiKeyRequest {
                    tenant_id: tenant,
                    role: pb::Role::from(role) as i32,
                    // Saturating: an absurd value still reaches the service
                    // and comes back as its ttl_seconds violation.
                    ttl_seconds: ttl_days.unwrap_or_default().saturating_mul(86_400),
                    live,
                }))
                .await?
                .into_inner();
            let key = KeyOut::from(&issued.api_key.unwrap_or_default());
            print_secret(&key, &issued.secret, None, json)?;
        }
        KeysCommand::List { tenant } => {
            let keys: Vec<KeyOut> = admin
                .list_api_keys(client.request(pb::ListApiKeysRequest { tenant_id: tenant }))
                .await?
                .into_inner()
                .api_keys
                .iter()
                .map(KeyOut::from)
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                print_table(
                    &[
                        "KEY_ID",
                        "ROLE",
                        "USABLE",
                        "CREATED",
                        "EXPIRES",
                        "REVOKED",
                        "LAST_USED",
                    ],
                    keys.iter().map(|k| {
                        vec![
                            k.key_id.clone(),
                            k.role.to_string(),
                            if k.usable { "yes" } else { "no" }.to_string(),
                            dash(&k.create_time),
                            dash(&k.expire_time),
                            dash(&k.revoke_time),
                            dash(&k.last_used_time),
                        ]
                    }),
                );
            }
        }
        KeysCommand::Rotate {
            key_id,
            grace_seconds,
        } => {
            let rotated = admin
                .rotate_api_key(client.request(pb::RotateApiKeyRequest {
                    key_id,
                    grace_seconds,
                }))
                .await?
                .into_inner();
            let key = KeyOut::from(&rotated.api_key.unwrap_or_default());
            let replaced = KeyOut::from(&rotated.replaced.unwrap_or_default());
            print_secret(&key, &rotated.secret, Some(&replaced), json)?;
        }
        KeysCommand::Revoke { key_id } => {
            let key = KeyOut::from(
                &admin
                    .revoke_api_key(client.request(pb::RevokeApiKeyRequest { key_id }))
                    .await?
                    .into_inner()
                    .api_key
                    .unwrap_or_default(),
            );
            if json {
                println!("{}", serde_json::to_string_pretty(&key)?);
            } else {
                println!(
                    "revoked key {} of tenant {} at {}",
                    key.key_id,
                    key.tenant_id,
                    dash(&key.revoke_time)
                );
            }
        }
    }
    Ok(())
}

pub(crate) async fn audit(client: &Client, command: AuditCommand, json: bool) -> Result<()> {
    let (tenant, page_size, page_token) = match command {
        AuditCommand::List {
            tenant,
            page_size,
            page_token,
        } => (tenant, page_size, page_token),
        AuditCommand::Log(command) => {
            return crate::log_cli::audit_log(client, command, json).await;
        }
    };
    let page = client
        .admin()
        .list_audit_events(client.request(pb::ListAuditEventsRequest {
            tenant_id: tenant.unwrap_or_default(),
            page_size: page_size.unwrap_or_default(),
            page_token: page_token.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    let events: Vec<AuditOut> = page.events.iter().map(AuditOut::from).collect();
    if json {
        let out = serde_json::json!({
            "events": events,
            "next_page_token": page.next_page_token,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_table(
        &[
            "SEQ", "TIME", "ACTOR", "ACTION", "TENANT", "FIELD", "CHANGE",
        ],
        events.iter().map(|e| {
            let change = match (e.old_value.as_str(), e.new_value.as_str()) {
                ("", "") => "-".to_string(),
                ("", new) => new.to_string(),
                (old, new) => format!("{old} -> {new}"),
            };
            vec![
                e.sequence.to_string(),
                dash(&e.time),
                or_dash(&e.actor_key_id),
                e.action.clone(),
                or_dash(&e.tenant_id),
                or_dash(&e.field),
                change,
            ]
        }),
    );
    more(&page.next_page_token);
    Ok(())
}
