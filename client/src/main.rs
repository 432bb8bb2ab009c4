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
    let client = Client::connect(
        &cli.endpoint,
        api_key.as_deref(),
        Duration::from_millis(cli.timeout_ms),
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
        Command::Tenants(args) => finish(tenants(&client, args.command, args.json).await, args.json),
        Command::Keys(args) => finish(keys(&client, args.command, args.json).await, args.json),
        Command::Audit(args) => finish(audit(&client, args.command, args.json).await, args.json),
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
