//! `ekycd`: the eKYC verification server and its operator commands.
//!
//! With no configuration at all, `ekycd` serves on 127.0.0.1:50051 from
//! `./ekyc-data` (SQLite, generated development keys). `ekycd demo` adds a
//! synthetic registry and a demo tenant first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ekyc_service::config::{Config, LogFormat};
use ekyc_service::import::{self, Format, ProgressStyle};
use ekyc_service::store::{Role, Store};
use ekyc_service::{App, demo, tenants};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(name = "ekycd", version, about = "eKYC identity verification server")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args)]
struct GlobalArgs {
    /// TOML configuration file (lowest precedence; then EKYCD_* variables, then flags).
    #[arg(long, global = true, env = "EKYCD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Directory for the embedded database and development keys [default: ./ekyc-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, global = true)]
    log_format: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API (the default).
    Serve,
    /// Load a synthetic registry and a demo tenant, write a demo API key and
    /// sample claims, then serve.
    Demo {
        /// Synthetic citizens to load.
        #[arg(long, default_value_t = 1000)]
        citizens: u64,
        /// Generator seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where to write the API key and sample claims (outside the store).
        #[arg(long, default_value = "ekyc-demo")]
        out: PathBuf,
        /// Prepare and exit instead of serving.
        #[arg(long)]
        no_serve: bool,
    },
    /// Import a registry export (CSV or JSON Lines) and/or a delete list.
    Import {
        /// The export to import.
        input: Option<PathBuf>,
        /// Input format [default: from the extension].
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// A file of ID numbers (one per line) to delete.
        #[arg(long)]
        delete: Option<PathBuf>,
        /// Where to write the reject report [default: <input>.rejects.csv].
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
    },
    /// After a pepper rotation (the registry re-imported under the new
    /// pepper and every replica serving with it), delete every record
    /// derived under a retired pepper version, so the retired pepper's rows
    /// cannot be attacked if it leaked. Prints how many it removed.
    PurgePepper {
        /// The retired pepper version (never the configured `pepper.version`).
        #[arg(long)]
        pepper_version: u32,
    },
    /// Write a synthetic registry export (never real data).
    Synth {
        /// Number of citizens.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Generator seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file; the format follows the extension (.csv or .jsonl).
        #[arg(long)]
        out: PathBuf,
    },
    /// Agency administration run on the server's machine.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Billing operations run on the server's machine (the ledger only).
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
    /// Apply the database migrations of the store and the ledger, then exit
    /// (a deployment's init step; replicas starting together are safe too,
    /// each migration is applied once under the database's lock). Needs
    /// no secrets.
    Migrate,
    /// Sleep SECS seconds and exit 0, touching nothing: a Kubernetes preStop
    /// hook in an image without a shell, so endpoints stop sending new
    /// calls before SIGTERM starts the drain.
    Pause {
        /// Seconds to sleep (at most 300).
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=300))]
        secs: u64,
    },
    /// Create a tenant if needed and issue it a verifier API key (printed once).
    IssueKey {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Issue an `ekyc_live_` key instead of `ekyc_test_`.
        #[arg(long)]
        live: bool,
    },
}

/// `--format` of `ekycd import`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Csv => Format::Csv,
            FormatArg::Jsonl => Format::Jsonl,
        }
    }
}

#[derive(Subcommand)]
enum BillingCommand {
    /// Prove that a tenant's finalized invoices match the usage ledger, and
    /// list usage no invoice accounts for. Exits 1 if anything is off.
    Reconcile {
        /// Tenant id ("tn_...").
        #[arg(long)]
        tenant: String,
        /// Only the invoice of this month (YYYY-MM).
        #[arg(long)]
        period: Option<String>,
    },
    /// Add a price plan version from a JSON file (see docs/billing.md, "Price plans").
    /// Versions are immutable: a changed plan needs a new version.
    PutPlan {
        /// The plan, as JSON.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create the agency tenant and its first agency-admin key (printed once).
    /// Refuses if an agency-admin key already exists, unless --force.
    Bootstrap {
        /// Issue another agency-admin key even if one exists.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Pause { secs }) = cli.command {
        // Before the configuration: a preStop hook must not fail on it.
        std::thread::sleep(std::time::Duration::from_secs(secs));
        return Ok(());
    }
    let config = load_config(&cli.global)?;
    init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config))
}

fn load_config(g: &GlobalArgs) -> Result<Config> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut overrides = Vec::new();
    if let Some(l) = &g.listen {
        overrides.push(("listen", toml::Value::String(l.clone())));
    }
    if let Some(d) = &g.data_dir {
        overrides.push(("data_dir", toml::Value::String(d.display().to_string())));
    }
    if let Some(f) = &g.log_format {
        overrides.push(("log.format", toml::Value::String(f.clone())));
    }
    Ok(Config::load(g.config.as_deref(), &env, &overrides)?)
}

fn init_logging(config: &Config) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.filter)
        .with_context(|| format!("invalid configuration: log.filter {:?}", config.log.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only on a terminal, never in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

async fn run(command: Command, config: Config) -> Result<()> {
    match command {
        Command::Serve => serve(config, None).await,
        Command::Demo {
            citizens,
            seed,
            out,
            no_serve,
        } => {
            let app = App::open(&config).await?;
            let info = demo::prepare(
                &app,
                &demo::DemoOptions {
                    citizens,
                    seed,
                    out_dir: out.clone(),
                    progress: ProgressStyle::Auto,
                },
            )
            .await?;
            let banner = format!(
                "demo ready: tenant {}, API key in {}, sample claims in {}\n\
                 try:  export EKYC_API_KEY=$(cat {})\n      \
                 cargo run -q -p ekyc-client -- verify --samples {} --sample 0",
                demo::DEMO_TENANT,
                info.api_key_file.display(),
                info.samples_file.display(),
                info.api_key_file.display(),
                info.samples_file.display(),
            );
            if no_serve {
                println!("{banner}");
                app.close().await;
                return Ok(());
            }
            serve(config, Some((app, banner))).await
        }
        Command::Import {
            input,
            format,
            delete,
            rejects,
            quiet,
        } => {
            import_command(
                config,
                input,
                format.map(Format::from),
                delete,
                rejects,
                quiet,
            )
            .await
        }
        Command::PurgePepper { pepper_version } => {
            if pepper_version == config.pepper.version {
                anyhow::bail!(
                    "pepper version {pepper_version} is the one ekycd derives with (pepper.version); \
                     purge only a retired version"
                );
            }
            let store = Store::open(&config.database_url(), &config.database).await?;
            let actor = tenants::Actor::local("purge-pepper");
            let result = store
                .purge_pepper(pepper_version, ekyc_service::clock::now_ms(), &|removed| {
                    actor.entry(
                        "purge_pepper",
                        "",
                        "pepper_version",
                        pepper_version.to_string(),
                        format!("{removed} records removed"),
                    )
                })
                .await;
            store.close().await;
            let removed = result?;
            println!("{{\"pepper_version\":{pepper_version},\"removed\":{removed}}}");
            eprintln!("removed {removed} records derived under pepper version {pepper_version}");
            Ok(())
        }
        Command::Synth { count, seed, out } => {
            let format = Format::from_path(&out)
                .with_context(|| format!("{}: use a .csv or .jsonl file name", out.display()))?;
            let file = std::io::BufWriter::new(
                std::fs::File::create(&out)
                    .with_context(|| format!("cannot create {}", out.display()))?,
            );
            let citizens = ekyc_synth::citizens(seed, count);
            match format {
                Format::Csv => ekyc_synth::write_csv(file, citizens)?,
                Format::Jsonl => ekyc_synth::write_jsonl(file, citizens)?,
            }
            println!("wrote {count} synthetic citizens to {}", out.display());
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Bootstrap { force },
        } => {
            let (tenant, key) = with_app(&config, async |app| {
                Ok(tenants::bootstrap(&app.store, app.limiter.config(), force).await?)
            })
            .await?;
            println!("agency tenant {} ({})", tenant.name, tenant.id);
            println!(
                "agency admin api key (shown once, store it now): {}",
                key.token
            );
            Ok(())
        }
        Command::Billing { command } => billing_command(&config, command).await,
        Command::Migrate => {
            let store = Store::open(&config.database_url(), &config.database).await?;
            store.close().await;
            let ledger = ekyc_billing::Ledger::open_with(
                &config.billing_database_url(),
                config.ledger_pool(),
            )
            .await?;
            ledger.close().await;
            println!("migrated: the store and the ledger are at this build's schema");
            Ok(())
        }
        Command::Pause { .. } => unreachable!("handled before the configuration is read"),
        Command::IssueKey { tenant, live } => {
            with_app(&config, async |app| {
                let actor = tenants::Actor::local("issue-key");
                let t = tenants::ensure_tenant(&app.store, &tenant, app.limiter.config(), &actor)
                    .await?;
                let issued =
                    tenants::issue_key(&app.store, &t, Role::Verifier, live, None, &actor).await?;
                println!("tenant {} ({})", t.name, t.id);
                println!("api key (shown once, store it now): {}", issued.token);
                Ok(())
            })
            .await
        }
    }
}

async fn billing_command(config: &Config, command: BillingCommand) -> Result<()> {
    let ledger =
        ekyc_billing::Ledger::open_with(&config.billing_database_url(), config.ledger_pool())
            .await?;
    let result = match command {
        BillingCommand::Reconcile { tenant, period } => {
            let report = ledger.reconcile(&tenant, period.as_deref()).await?;
            for c in &report.invoices {
                let ok = c.reproducible && c.ledger == c.invoiced;
                println!(
                    "{} {} {}: ledger {} calls / {} units, invoice {} calls / {} units, {}",
                    if ok { "OK  " } else { "FAIL" },
                    c.number,
                    c.period,
                    c.ledger.calls,
                    c.ledger.units,
                    c.invoiced.calls,
                    c.invoiced.units,
                    if c.reproducible {
                        "reproducible"
                    } else {
                        "NOT reproducible"
                    }
                );
            }
            for e in &report.unaccounted {
                println!(
                    "UNACCOUNTED {} at {} ({} units){}",
                    e.request_id,
                    ekyc_billing::period::rfc3339(e.event_time_ms),
                    e.units,
                    e.invoice_number
                        .as_deref()
                        .map(|n| format!(", marked with unknown invoice {n}"))
                        .unwrap_or_else(|| ", late: billed on the next invoice".into())
                );
            }
            if report.invoices.is_empty() {
                println!("no finalized invoice for this tenant");
            }
            if report.is_clean() {
                println!("reconciled: every invoice equals the ledger");
                Ok(())
            } else {
                Err(anyhow::anyhow!("reconciliation found differences"))
            }
        }
        BillingCommand::PutPlan { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let plan: ekyc_billing::PricePlan = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a price plan", file.display()))?;
            ledger
                .put_plan(&plan, ekyc_service::clock::now_ms())
                .await?;
            println!("price plan {} version {} stored", plan.id, plan.version);
            Ok(())
        }
    };
    ledger.close().await;
    result
}

async fn serve(config: Config, prepared: Option<(App, String)>) -> Result<()> {
    let (app, banner) = match prepared {
        Some((app, banner)) => (app, Some(banner)),
        None => (App::open(&config).await?, None),
    };
    let listeners = match bind(&config).await {
        Ok(bound) => bound,
        Err(e) => {
            app.close().await;
            return Err(e);
        }
    };
    if let Some(b) = banner {
        println!("{b}");
    }
    ekyc_service::lifecycle::serve(Arc::new(app), listeners, shutdown_signal()).await?;
    Ok(())
}

/// The gRPC listener and, if configured, the metrics and health ones.
/// Their addresses go to stdout as machine-readable lines, so scripts and
/// tests can find the ports when listening on port 0.
async fn bind(config: &Config) -> Result<ekyc_service::lifecycle::Listeners> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "listening");
    println!("ekycd listening on {addr}");
    let metrics = match config.metrics_listen {
        Some(metrics_addr) => {
            let metrics = TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("cannot listen on {metrics_addr} (metrics_listen)"))?;
            println!("ekycd metrics on http://{}/metrics", metrics.local_addr()?);
            Some(metrics)
        }
        None => None,
    };
    let health = match config.health_listen {
        Some(health_addr) => {
            let health = TcpListener::bind(health_addr)
                .await
                .with_context(|| format!("cannot listen on {health_addr} (health_listen)"))?;
            println!("ekycd health on {}", health.local_addr()?);
            Some(health)
        }
        None => None,
    };
    Ok(ekyc_service::lifecycle::Listeners {
        grpc: listener,
        metrics,
        health,
    })
}

async fn import_command(
    config: Config,
    input: Option<PathBuf>,
    format: Option<Format>,
    delete: Option<PathBuf>,
    rejects_path: Option<PathBuf>,
    quiet: bool,
) -> Result<()> {
    anyhow::ensure!(
        input.is_some() || delete.is_some(),
        "nothing to do: give an input file and/or --delete FILE"
    );
    // Rows are read as they are hashed: memory does not grow with the file.
    let (rows, expected_rows): (import::Rows, u64) = match &input {
        Some(path) => {
            let format = format
                .or_else(|| Format::from_path(path))
                .ok_or_else(|| import::ImportError::UnknownFormat(path.clone()))?;
            import::open_rows(path, format)?
        }
        None => (Box::new(std::iter::empty()), 0),
    };
    let deletes = match &delete {
        Some(p) => import::read_delete_list(p)?,
        None => Vec::new(),
    };
    let rows = import::Input {
        rows,
        expected_rows,
        deletes,
        rejects: Vec::new(),
    };
    let style = if quiet {
        ProgressStyle::Quiet
    } else {
        ProgressStyle::Auto
    };
    let (report, rejects) = with_app(&config, async |app| {
        Ok(import::import_version(
            &app.store,
            Arc::clone(&app.pool),
            rows,
            style,
            &tenants::Actor::local("import"),
            import::Switch::AtEnd,
        )
        .await?)
    })
    .await?;
    let report_path =
        rejects_path.unwrap_or_else(|| default_rejects_path(input.as_deref(), delete.as_deref()));
    import::write_rejects(&report_path, &rejects)?;
    println!("{}", serde_json::to_string(&report)?);
    println!(
        "{} rows, {} rejected (see {}), {} inserted, {} updated, {} unchanged, {} deleted; registry version {}",
        report.rows,
        report.rejected,
        report_path.display(),
        report.inserted,
        report.updated,
        report.unchanged,
        report.deleted,
        report.registry_version
    );
    Ok(())
}

/// Runs `job` on the service's parts, then closes them whatever it
/// returned, so no command leaves the ledger unflushed.
async fn with_app<T>(config: &Config, job: impl AsyncFnOnce(&App) -> Result<T>) -> Result<T> {
    let app = App::open(config).await?;
    let result = job(&app).await;
    app.close().await;
    result
}

fn default_rejects_path(input: Option<&Path>, delete: Option<&Path>) -> PathBuf {
    let base = input.or(delete).unwrap_or(Path::new("import"));
    let mut name = base.as_os_str().to_owned();
    name.push(".rejects.csv");
    PathBuf::from(name)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
