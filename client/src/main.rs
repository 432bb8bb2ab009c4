//! `ekyc`: command-line client for the eKYC verification service.
//!
//! `ekyc verify` sends one subject's claims, checks the signed attestation
//! against the published keys and prints the per-field results;
//! `ekyc signing-keys` lists the signing keys. With an agency-admin key,
//! `ekyc tenants`, `ekyc keys` and `ekyc audit` manage tenants, their API
//! keys and read the audit trail through `TenantAdminService`.
//!
//! The API key comes from `--api-key`, `--api-key-file` or `EKYC_API_KEY`;
//! it is never printed. The only secret this tool ever prints is the one a
//! `keys issue` or `keys rotate` just created, because showing it once is
//! the point of those commands.

mod billing_cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ekyc_client::{Client, ClientError, field_name, result_name, v1 as pb};
use serde::{Deserialize, Serialize};
use tonic_types::StatusExt;

#[derive(Parser)]
#[command(name = "ekyc", version, about = "eKYC verification client")]
struct Cli {
    /// Service endpoint.
    #[arg(
        long,
        global = true,
        env = "EKYC_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// API key (prefer EKYC_API_KEY or --api-key-file: flags show in `ps`).
    #[arg(long, global = true, env = "EKYC_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// File holding the API key.
    #[arg(long, global = true)]
    api_key_file: Option<PathBuf>,
    /// Deadline of each call, in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    timeout_ms: u64,
    /// CA certificate (PEM) to trust for an https:// endpoint.
    #[arg(long, global = true, env = "EKYC_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --client-key.
    #[arg(long, global = true, env = "EKYC_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, global = true, env = "EKYC_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Server name to expect in its certificate [default: the endpoint's host].
    #[arg(long, global = true)]
    tls_server_name: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify one subject's claimed identity.
    Verify(Box<VerifyArgs>),
    /// List the service's attestation signing keys.
    SigningKeys {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Manage tenants (agency admins).
    Tenants(TenantsArgs),
    /// Manage tenants' API keys (agency admins).
    Keys(KeysArgs),
    /// Read the audit trail of administrative changes (agency admins).
    Audit(AuditArgs),
    /// The per-subject guard (agency admins).
    Guard(GuardArgs),
    /// Usage, price plans and invoices (finance and agency keys).
    Billing(billing_cli::BillingArgs),
}

#[derive(Args)]
struct VerifyArgs {
    /// The subject's ID number (12-digit citizen ID or 9-digit legacy ID).
    #[arg(long)]
    id: Option<String>,
    /// Claimed full name.
    #[arg(long)]
    name: Option<String>,
    /// Claimed date of birth (YYYY-MM-DD, YYYY-MM, YYYY or DD/MM/YYYY).
    #[arg(long)]
    dob: Option<String>,
    /// Claimed gender.
    #[arg(long)]
    gender: Option<String>,
    /// Claimed nationality (ISO 3166-1 alpha-2).
    #[arg(long)]
    nationality: Option<String>,
    /// Claimed place of origin.
    #[arg(long)]
    origin: Option<String>,
    /// Claimed place of residence.
    #[arg(long)]
    residence: Option<String>,
    /// Claimed ID card issue date.
    #[arg(long)]
    issue_date: Option<String>,
    /// Claimed ID card expiry date.
    #[arg(long)]
    expiry_date: Option<String>,
    /// Claimed phone number.
    #[arg(long)]
    phone: Option<String>,
    /// Take the claims from a demo samples file (`ekycd demo` writes one).
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Which sample of the file (0-based); explicit flags override its fields.
    #[arg(long, default_value_t = 0)]
    sample: usize,
    /// With --samples: send only these fields (comma-separated names),
    /// e.g. full_name,date_of_birth.
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// Purpose code recorded with the verification.
    #[arg(long, default_value = "ACCOUNT_OPENING")]
    purpose: String,
    /// Reference of the customer's consent record.
    #[arg(long, default_value = "cli-consent")]
    consent: String,
    /// Request id (idempotency key) [default: generated].
    #[arg(long)]
    request_id: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A sample in `ekycd demo`'s samples file.
#[derive(Deserialize)]
struct Sample {
    note: String,
    claims: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct FieldOut {
    field: String,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<u32>,
}

#[derive(Serialize)]
struct VerifyOut {
    decision: &'static str,
    transaction_id: String,
    request_id: String,
    registry_version: u64,
    subject_status: &'static str,
    results: Vec<FieldOut>,
    attestation: AttestationOut,
}

#[derive(Serialize)]
struct AttestationOut {
    verified: bool,
    key_id: String,
    payload_hex: String,
    signature_hex: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// TLS settings from the flags; `None` for plaintext (an http:// endpoint
/// without TLS flags).
fn tls_config(cli: &Cli) -> Result<Option<tonic::transport::ClientTlsConfig>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read =
        |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    if !cli.endpoint.starts_with("https://") && cli.ca_cert.is_none() && cli.client_cert.is_none() {
        return Ok(None);
    }
    let mut tls = ClientTlsConfig::new().with_enabled_roots();
    if let Some(ca) = &cli.ca_cert {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&cli.client_cert, &cli.client_key) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(name) = &cli.tls_server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(Some(tls))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let api_key = match (&cli.api_key, &cli.api_key_file) {
        (_, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (Some(k), None) => Some(k.trim().to_string()),
        (None, None) => None,
    };
    // An update without a change flag is refused before connecting: it is
    // a mistake on this side and needs no server to say so.
    if let Command::Tenants(TenantsArgs {
        command: TenantsCommand::Update(args),
        ..
    }) = &cli.command
    {
        update_request(args)?;
    }
    let client = Client::connect_with_tls(
        &cli.endpoint,
        api_key.as_deref(),
        Duration::from_millis(cli.timeout_ms),
        tls_config(&cli)?,
    )
    .await?;
    match cli.command {
        Command::SigningKeys { json } => {
            let keys = client.signing_keys().await?;
            if json {
                let out: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "key_id": k.key_id,
                            "algorithm": k.algorithm,
                            "public_key_hex": hex::encode(&k.public_key),
                            "not_before": k.not_before.map(|t| t.seconds),
                            "not_after": k.not_after.map(|t| t.seconds),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for k in keys {
                    println!(
                        "{}  {}  {}",
                        k.key_id,
                        k.algorithm,
                        hex::encode(&k.public_key)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => verify(&client, *args).await,
        Command::Tenants(args) => {
            finish(tenants(&client, args.command, args.json).await, args.json)
        }
        Command::Keys(args) => finish(keys(&client, args.command, args.json).await, args.json),
        Command::Audit(args) => finish(audit(&client, args.command, args.json).await, args.json),
        Command::Guard(args) => finish(guard(&client, args.command, args.json).await, args.json),
        Command::Billing(args) => finish(
            billing_cli::billing(&client, args.command, args.json).await,
            args.json,
        ),
    }
}

async fn verify(client: &Client, args: VerifyArgs) -> Result<ExitCode> {
    let request = build_request(&args)?;
    let request_id = request.request_id.clone();
    let answer = match client.verify(request).await {
        Ok(a) => a,
        Err(ClientError::Status(status)) => {
            print_status(&status, args.json);
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let r = &answer.response;
    let att = r.attestation.clone().unwrap_or_default();
    let out = VerifyOut {
        decision: if r.decision == pb::Decision::Yes as i32 {
            "YES"
        } else {
            "NO"
        },
        transaction_id: r.transaction_id.clone(),
        request_id,
        registry_version: r.registry_version,
        subject_status: match pb::SubjectStatus::try_from(r.subject_status) {
            Ok(pb::SubjectStatus::Found) => "FOUND",
            Ok(pb::SubjectStatus::NotFound) => "NOT_FOUND",
            _ => "UNDISCLOSED",
        },
        results: r
            .results
            .iter()
            .map(|f| FieldOut {
                field: field_name(f.field),
                result: result_name(f.result),
                score: f.score,
            })
            .collect(),
        attestation: AttestationOut {
            verified: true,
            key_id: att.key_id,
            payload_hex: hex::encode(&att.payload),
            signature_hex: hex::encode(&att.signature),
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("decision: {}", out.decision);
        for f in &out.results {
            match f.score {
                Some(s) => println!("  {:<20} {:<14} score {s}", f.field, f.result),
                None => println!("  {:<20} {}", f.field, f.result),
            }
        }
        println!(
            "transaction {} (request {}), registry version {}",
            out.transaction_id, out.request_id, out.registry_version
        );
        println!(
            "attestation: signature verified with key {}",
            out.attestation.key_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn build_request(args: &VerifyArgs) -> Result<pb::VerifyRequest> {
    let mut values: std::collections::BTreeMap<String, String> = Default::default();
    if let Some(path) = &args.samples {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let samples: Vec<Sample> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a samples file", path.display()))?;
        let sample = samples
            .into_iter()
            .nth(args.sample)
            .with_context(|| format!("{} has no sample {}", path.display(), args.sample))?;
        eprintln!("sample {}: {}", args.sample, sample.note);
        values = sample
            .claims
            .into_iter()
            .filter(|(k, v)| {
                !v.is_empty()
                    && (k == "id_number" || args.fields.is_empty() || args.fields.contains(k))
            })
            .collect();
    }
    let flags = [
        ("id_number", &args.id),
        ("full_name", &args.name),
        ("date_of_birth", &args.dob),
        ("gender", &args.gender),
        ("nationality", &args.nationality),
        ("place_of_origin", &args.origin),
        ("place_of_residence", &args.residence),
        ("id_issue_date", &args.issue_date),
        ("id_expiry_date", &args.expiry_date),
        ("phone_number", &args.phone),
    ];
    for (k, v) in flags {
        if let Some(v) = v {
            values.insert(k.to_string(), v.clone());
        }
    }
    let mut take = |k: &str| values.remove(k);
    let request_id = args.request_id.clone().unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("cli-{}-{nanos}", std::process::id())
    });
    Ok(pb::VerifyRequest {
        request_id,
        id_number: take("id_number").unwrap_or_default(),
        claims: Some(pb::Claims {
            full_name: take("full_name"),
            date_of_birth: take("date_of_birth"),
            gender: take("gender"),
            nationality: take("nationality"),
            place_of_origin: take("place_of_origin"),
            place_of_residence: take("place_of_residence"),
            id_issue_date: take("id_issue_date"),
            id_expiry_date: take("id_expiry_date"),
            phone_number: take("phone_number"),
        }),
        purpose_code: args.purpose.clone(),
        consent_reference: args.consent.clone(),
    })
}

fn print_status(status: &tonic::Status, json: bool) {
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

// ---------------------------------------------------------------------------
// Agency administration: `ekyc tenants`, `ekyc keys`, `ekyc audit`.
//
// Every command sends one or a few TenantAdminService calls with the key and
// deadline of `Client::request`. The service validates everything; the CLI
// only refuses what it cannot express as a request (an update with nothing
// to change), so that a bad value comes back as the service's field
// violation and reads the same from every client.
// ---------------------------------------------------------------------------

/// `ekyc tenants ...`.
#[derive(Args)]
struct TenantsArgs {
    /// Print JSON instead of a table or key: value lines.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Subcommand)]
enum TenantsCommand {
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
struct CreateTenantArgs {
    /// Unique display name, 1 to 100 characters.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    policy: PolicyFlags,
    #[command(flatten)]
    legal: LegalFlags,
}

#[derive(Args)]
struct UpdateTenantArgs {
    /// Tenant id ("tn_...").
    tenant_id: String,
    /// New display name.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    policy: PolicyFlags,
    #[command(flatten)]
    legal: LegalFlags,
}

/// The legal particulars printed on a tenant's invoices.
#[derive(Args, Default)]
struct LegalFlags {
    /// Legal name for invoices (tên đơn vị), e.g. "Ngân hàng TMCP Ngoại
    /// thương Việt Nam"; "" clears it.
    #[arg(long)]
    legal_name: Option<String>,
    /// Registered address for invoices; "" clears it.
    #[arg(long)]
    address: Option<String>,
    /// Tax code (mã số thuế): 10 digits, or 10 digits, "-" and a 3-digit
    /// branch suffix; "" clears it.
    #[arg(long)]
    tax_code: Option<String>,
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
struct PolicyFlags {
    /// Claim fields the tenant may ask about, comma-separated snake_case
    /// names (full_name,date_of_birth,...); "" for every field.
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    allowed_fields: Option<Vec<String>>,
    /// Purpose codes the tenant may declare, comma-separated; "" for any.
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    allowed_purposes: Option<Vec<String>>,
    /// Compute and report token-overlap scores.
    #[arg(long, overrides_with = "no_fuzzy")]
    fuzzy: bool,
    /// Do not compute fuzzy scores.
    #[arg(long, overrides_with = "fuzzy")]
    no_fuzzy: bool,
    /// Minimum score (0-100) for a fuzzy match; 0 for the default (85).
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    fuzzy_threshold: Option<i64>,
    /// Disclose that a subject is not in the registry.
    #[arg(long, overrides_with = "no_disclose_not_found")]
    disclose_not_found: bool,
    /// Do not disclose that a subject is not in the registry.
    #[arg(long, overrides_with = "disclose_not_found")]
    no_disclose_not_found: bool,
    /// Count a match without diacritics (MATCH_FOLDED) as a match.
    #[arg(long, overrides_with = "no_accept_folded")]
    accept_folded: bool,
    /// Do not count MATCH_FOLDED as a match.
    #[arg(long, overrides_with = "accept_folded")]
    no_accept_folded: bool,
    /// Sustained requests per second; 0 for no limit.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    rate: Option<i64>,
    /// Requests allowed in a burst above the rate.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    burst: Option<i64>,
    /// Billable units per day; 0 for no quota.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    daily_quota: Option<i64>,
    /// Billable units per billing month; 0 for no quota.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    monthly_quota: Option<i64>,
    /// Price plan id (a-z 0-9 _ -); "" for none.
    #[arg(long, value_name = "ID")]
    price_plan: Option<String>,
    /// IANA time zone of the tenant's quota and billing days and months
    /// (default Asia/Ho_Chi_Minh).
    #[arg(long, value_name = "ZONE")]
    time_zone: Option<String>,
    /// Subject common name of the tenant's mTLS client certificate; "" for none.
    #[arg(long, value_name = "CN")]
    mtls_subject: Option<String>,
}

/// A paired `--x` / `--no-x` flag: `None` when neither was given.
fn either(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// A comma-separated list flag without its empty items, so that `""`
/// means the empty list.
fn list(items: &[String]) -> Vec<String> {
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

fn create_request(args: &CreateTenantArgs) -> pb::CreateTenantRequest {
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
fn update_request(args: &UpdateTenantArgs) -> Result<pb::UpdateTenantRequest> {
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
struct KeysArgs {
    /// Print JSON instead of a table or key: value lines.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
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
enum RoleArg {
    /// Calls Verify.
    Verifier,
    /// Manages tenants and keys.
    AgencyAdmin,
    /// Reads its own tenant's usage and invoices.
    Finance,
    /// Imports and deletes registry records.
    RegistryOperator,
}

impl From<RoleArg> for pb::Role {
    fn from(r: RoleArg) -> pb::Role {
        match r {
            RoleArg::Verifier => pb::Role::Verifier,
            RoleArg::AgencyAdmin => pb::Role::AgencyAdmin,
            RoleArg::Finance => pb::Role::Finance,
            RoleArg::RegistryOperator => pb::Role::RegistryOperator,
        }
    }
}

/// `ekyc audit ...`.
#[derive(Args)]
struct AuditArgs {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
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
}

#[derive(Args)]
struct GuardArgs {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: GuardCommand,
}

#[derive(Subcommand)]
enum GuardCommand {
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

async fn guard(client: &Client, command: GuardCommand, json: bool) -> Result<()> {
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

/// Turns a refusal by the service into its printout and exit code 1; any
/// other error stays a local error (exit code 2).
fn finish(result: Result<()>, json: bool) -> Result<ExitCode> {
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

async fn tenants(client: &Client, command: TenantsCommand, json: bool) -> Result<()> {
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

async fn keys(client: &Client, command: KeysCommand, json: bool) -> Result<()> {
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

async fn audit(client: &Client, command: AuditCommand, json: bool) -> Result<()> {
    let AuditCommand::List {
        tenant,
        page_size,
        page_token,
    } = command;
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

/// Output form of a tenant (the generated types are not serialisable).
#[derive(Serialize)]
struct TenantOut {
    tenant_id: String,
    name: String,
    status: &'static str,
    mtls_subject: String,
    policy: PolicyOut,
    legal: LegalOut,
    create_time: Option<String>,
    update_time: Option<String>,
}

#[derive(Serialize)]
struct LegalOut {
    legal_name: String,
    address: String,
    tax_code: String,
}

#[derive(Serialize)]
struct PolicyOut {
    allowed_fields: Vec<String>,
    allowed_purposes: Vec<String>,
    fuzzy_matching: bool,
    fuzzy_threshold: i64,
    disclose_not_found: bool,
    accept_folded: bool,
    price_plan: String,
    time_zone: String,
    limits: LimitsOut,
}

#[derive(Serialize)]
struct LimitsOut {
    requests_per_second: i64,
    burst: i64,
    daily_quota_units: i64,
    monthly_quota_units: i64,
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
struct KeyOut {
    key_id: String,
    tenant_id: String,
    role: &'static str,
    usable: bool,
    create_time: Option<String>,
    expire_time: Option<String>,
    revoke_time: Option<String>,
    last_used_time: Option<String>,
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
struct AuditOut {
    sequence: i64,
    time: Option<String>,
    actor_key_id: String,
    actor_tenant_id: String,
    action: String,
    tenant_id: String,
    field: String,
    old_value: String,
    new_value: String,
    chain_hash: String,
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

fn print_tenant(t: &TenantOut) {
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
struct QuotaOut {
    period: String,
    used_units: i64,
    limit_units: i64,
    remaining_units: Option<i64>,
    resets_at: Option<String>,
}

fn print_usage(u: &pb::GetTenantUsageResponse, json: bool) -> Result<()> {
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

fn print_tenants(tenants: &[TenantOut], next_page_token: &str, json: bool) -> Result<()> {
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
fn print_secret(key: &KeyOut, secret: &str, replaced: Option<&KeyOut>, json: bool) -> Result<()> {
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
fn print_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
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
fn more(next_page_token: &str) {
    if !next_page_token.is_empty() {
        eprintln!("more: pass --page-token {next_page_token}");
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

fn dash(t: &Option<String>) -> String {
    t.clone().unwrap_or_else(|| "-".to_string())
}

/// A timestamp as RFC 3339 UTC to the second, `None` when unset (or
/// outside the years -9999 to 9999). It goes through jiff's civil date
/// and time, whose range is whole years: `jiff::Timestamp` stops a day
/// short of protobuf's largest timestamp, 9999-12-31T23:59:59Z.
fn rfc3339(t: Option<&prost_types::Timestamp>) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("ekyc").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn update(args: &[&str]) -> Result<pb::UpdateTenantRequest> {
        let mut all = vec!["tenants", "update", "tn_1"];
        all.extend_from_slice(args);
        match parse(&all).command {
            Command::Tenants(TenantsArgs {
                command: TenantsCommand::Update(u),
                ..
            }) => update_request(&u),
            _ => panic!("not an update"),
        }
    }

    fn paths(r: &pb::UpdateTenantRequest) -> Vec<&str> {
        r.update_mask
            .as_ref()
            .map(|m| m.paths.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn update_masks_name_exactly_the_flags_given() {
        let r = update(&["--burst", "20"]).expect("request");
        assert_eq!(paths(&r), vec!["policy.limits.burst"]);
        let limits = r.tenant.and_then(|t| t.policy?.limits).expect("limits");
        assert_eq!(limits.burst, 20);

        let r =
            update(&["--no-fuzzy", "--name", "Bank Two", "--allowed-fields", ""]).expect("request");
        assert_eq!(
            paths(&r),
            vec!["name", "policy.allowed_fields", "policy.fuzzy_matching"]
        );
        let t = r.tenant.expect("tenant");
        assert_eq!(t.name, "Bank Two");
        let p = t.policy.expect("policy");
        assert!(!p.fuzzy_matching);
        assert!(p.allowed_fields.is_empty(), "\"\" clears the list");

        // The later of a paired flag wins, as with any repeated flag.
        let r = update(&["--fuzzy", "--no-fuzzy", "--fuzzy"]).expect("request");
        assert!(
            r.tenant
                .and_then(|t| t.policy)
                .expect("policy")
                .fuzzy_matching
        );

        let err = update(&[]).expect_err("nothing to change");
        assert!(err.to_string().starts_with("nothing to change"), "{err}");
    }

    #[test]
    fn negative_numbers_reach_the_request() {
        let Command::Tenants(TenantsArgs {
            command: TenantsCommand::Create(c),
            ..
        }) = parse(&["tenants", "create", "--name", "x", "--rate", "-5", "--json"]).command
        else {
            panic!("not a create");
        };
        let limits = create_request(&c)
            .tenant
            .and_then(|t| t.policy?.limits)
            .expect("limits");
        assert_eq!(limits.requests_per_second, -5);
        assert_eq!(limits.burst, 0);
    }

    #[test]
    fn timestamps_print_as_rfc3339_utc() {
        let at = |seconds| {
            rfc3339(Some(&prost_types::Timestamp {
                seconds,
                nanos: 999_999_999,
            }))
        };
        assert_eq!(at(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(at(951_782_400).as_deref(), Some("2000-02-29T00:00:00Z"));
        assert_eq!(at(1_709_251_199).as_deref(), Some("2024-02-29T23:59:59Z"));
        assert_eq!(at(-1).as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(at(253_402_300_799).as_deref(), Some("9999-12-31T23:59:59Z"));
        assert_eq!(rfc3339(None), None);
    }
}
