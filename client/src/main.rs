//! `ekyc`: command-line client for the eKYC verification service.
//!
//! `ekyc verify` sends one subject's claims, checks the signed attestation
//! against the published keys and prints the per-field results;
//! `ekyc verify-batch` verifies every row of a file through one stream,
//! resumably; `ekyc signing-keys` lists the signing keys. With an agency-admin key,
//! `ekyc tenants`, `ekyc keys` and `ekyc audit` manage tenants, their API
//! keys and read the audit trail through `TenantAdminService`. `ekyc audit
//! checkpoint|proof|verify|entries` check the decision log, and `ekyc
//! subjects history` lists a citizen's decisions (privacy officers).
//!
//! The API key comes from `--api-key`, `--api-key-file` or `EKYC_API_KEY`;
//! it is never printed. The only secret this tool ever prints is the one a
//! `keys issue` or `keys rotate` just created, because showing it once is
//! the point of those commands.

mod admin_cli;
mod batch_cli;
mod billing_cli;
mod log_cli;
mod output;
mod registry_cli;
mod verify_cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ekyc_client::Client;

use crate::admin_cli::{
    AuditArgs, GuardArgs, KeysArgs, TenantsArgs, TenantsCommand, audit, guard, keys, tenants,
    update_request,
};
use crate::output::finish;
use crate::verify_cli::{VerifyArgs, verify};

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
    /// Verify every row of a CSV or JSON Lines file through one stream,
    /// one JSON line of result per row; run again to resume.
    VerifyBatch(Box<batch_cli::BatchArgs>),
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
    /// Read the audit trail of administrative changes (agency admins), and
    /// check the decision log's checkpoints, proofs and entries.
    Audit(AuditArgs),
    /// A citizen's access history from the decision log (agency privacy
    /// officers).
    Subjects(log_cli::SubjectsArgs),
    /// The per-subject guard (agency admins).
    Guard(GuardArgs),
    /// Usage, price plans and invoices (finance and agency keys).
    Billing(billing_cli::BillingArgs),
    /// Load the registry and purge retired peppers (the agency's registry
    /// operators).
    Registry(registry_cli::RegistryArgs),
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
                            "purpose": k.purpose,
                            "verifier_key": k.verifier_key,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for k in keys {
                    // Servers before key purposes sent none: attestation.
                    let purpose = Some(k.purpose.as_str())
                        .filter(|p| !p.is_empty())
                        .unwrap_or("attestation");
                    println!(
                        "{}  {}  {:<11}  {}",
                        k.key_id,
                        k.algorithm,
                        purpose,
                        hex::encode(&k.public_key)
                    );
                    if !k.verifier_key.is_empty() {
                        println!("    verifier key: {}", k.verifier_key);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => verify(&client, *args).await,
        Command::VerifyBatch(args) => batch_cli::verify_batch(&client, *args).await,
        Command::Tenants(args) => {
            finish(tenants(&client, args.command, args.json).await, args.json)
        }
        Command::Keys(args) => finish(keys(&client, args.command, args.json).await, args.json),
        // `log_cli::finish`: a failed log check exits 1 too.
        Command::Audit(args) => {
            log_cli::finish(audit(&client, args.command, args.json).await, args.json)
        }
        Command::Subjects(args) => log_cli::finish(
            log_cli::subjects(&client, args.command, args.json).await,
            args.json,
        ),
        Command::Guard(args) => finish(guard(&client, args.command, args.json).await, args.json),
        Command::Billing(args) => finish(
            billing_cli::billing(&client, args.command, args.json).await,
            args.json,
        ),
        Command::Registry(args) => finish(
            registry_cli::registry(&client, args.command, args.json).await,
            args.json,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_cli::create_request;
    use crate::output::rfc3339;
    use clap::CommandFactory;
    use ekyc_client::v1 as pb;

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
