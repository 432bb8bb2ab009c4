//! The one benchmark command for `ekycd`: every figure next to the baseline
//! it should be judged against, all measured in one run on the same cores.
//!
//! Baselines: raw Argon2id evaluations per second on all cores (R_raw, what
//! ekycd runs, next to the implementations it was chosen over, and
//! R_fastest, the fastest of them) and the unary throughput of a bare tonic
//! server that answers at once (E).
//! Against them: the real service's saturation throughput at the default
//! Argon2 cost (S / R_fastest, with R_fastest also measured right after S),
//! at the minimum cost (M / E), its rate-limit
//! refusals (Q / E), the same minimum-cost service with every store in
//! PostgreSQL and the limits in Redis (M_shared / M, and the core time that
//! sharing adds per call as a fraction of one default-cost evaluation),
//! open-loop p99 latency at 50 % and 70 % of S (as a
//! multiple of one evaluation's time), peak RSS growth under 2 x S
//! (against pool threads x Argon2 memory), the p99 latency of shed calls
//! under 10 x S (in evaluations), and the rate of `ekycd import` into a
//! fresh data dir (I / R_fastest, measured right after R_fastest, with the
//! import's peak RSS beside the size of the file it read), and bulk
//! verification through `ekyc verify-batch` on one stream (B / R_fastest,
//! with the client's and the server's peak RSS). Run it with
//! `bash loadtest/bench.sh [--out target/bench.md]`.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use ekyc_client::{Client, v1 as pb};
use ekyc_domain::keys::{KdfImplementation, KdfParams};
use ekyc_loadtest::kdf::{Implementation, compare, evaluations_per_sec};
use ekyc_loadtest::process::{
    ekycd, machine, output, output_with_peak, prepare, proc_kib, sample_rss, settled_rss,
    start_server,
};
use ekyc_loadtest::{Arrivals, Config, Mix, Mode, Report, SHED, run};
use ekyc_proto::v1::verification_service_server::{VerificationService, VerificationServiceServer};
use tonic::{Request, Response, Status};

/// Synthetic citizens in each registry (`ekycd demo --citizens`).
const CITIZENS: u64 = 1000;
/// Seed of the synthetic registry (`ekycd demo --seed`).
const SEED: u64 = 42;
/// Argon2 memory of one evaluation at the default cost, KiB.
const DEFAULT_KIB: i64 = KdfParams::DEFAULT.m_kib as i64;
/// The rate-limit refusal's ErrorInfo reason, as the generator keys it.
const RATE_LIMITED: &str = "RESOURCE_EXHAUSTED/RATE_LIMITED";

#[derive(Parser)]
#[command(about = "The ekycd benchmark: service figures against raw Argon2 and bare tonic")]
struct Args {
    /// The release ekycd binary.
    #[arg(long, default_value = "target/release/ekycd")]
    ekycd: PathBuf,
    /// Where to write the markdown table.
    #[arg(long, default_value = "target/bench.md")]
    out: PathBuf,
    /// Cores to use: Argon2 threads of the raw baseline and of the server's
    /// pool [default: available parallelism].
    #[arg(long)]
    cores: Option<usize>,
    /// Closed-loop callers for the echo server, the minimum-cost service
    /// and the rejection path.
    #[arg(long, default_value_t = 32)]
    fast_callers: usize,
    /// gRPC connections used round robin.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// PostgreSQL server for the shared-state row (a database of the run's
    /// own is created on it and dropped); empty skips the row.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Redis for the shared-state row.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Scale every phase's duration (e.g. 0.5 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Synthetic records for the import row (`ekycd import` into a fresh
    /// data dir; at the default cost each is one evaluation, so 100,000
    /// take minutes); 0 skips the row.
    #[arg(long, default_value_t = 100_000)]
    import_records: u64,
    /// The release ekyc CLI, for the bulk row.
    #[arg(long, default_value = "target/release/ekyc")]
    ekyc: PathBuf,
    /// Subscribers in the bulk row (`ekyc verify-batch` against the
    /// default-cost service; each is one evaluation, so 100,000 take
    /// minutes); 0 skips the row.
    #[arg(long, default_value_t = 100_000)]
    bulk_items: u64,
}

impl Args {
    fn secs(&self, s: f64) -> Duration {
        Duration::from_secs_f64((s * self.time_scale).max(0.5))
    }
}

/// Closed-loop answers/s of the minimum-cost service with its stores in a
/// fresh PostgreSQL database and its limits in Redis (`None` when no
/// PostgreSQL URL is given). The database is dropped afterwards.
async fn shared_state_rate(
    args: &Args,
    tmp: &tempfile::TempDir,
    min_env: &[(&'static str, String)],
    cores: usize,
    mode: Mode,
    details: &mut String,
) -> Result<Option<f64>> {
    if args.postgres_url.is_empty() {
        return Ok(None);
    }
    let name = format!("ekyc_bench_{}", std::process::id());
    let psql = |sql: String| -> Result<()> {
        let out = std::process::Command::new("psql")
            .args([args.postgres_url.as_str(), "-qAtc", sql.as_str()])
            .output()
            .context("run psql (PostgreSQL's client)")?;
        ensure!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    };
    psql(format!("CREATE DATABASE {name}"))?;
    let (server_part, _) = args
        .postgres_url
        .rsplit_once('/')
        .context("--postgres-url names a database")?;
    let mut env = min_env.to_vec();
    env.push(("EKYCD_DATABASE_URL", format!("{server_part}/{name}")));
    env.push(("EKYCD_LIMITS__REDIS_URL", args.redis_url.clone()));
    env.push(("EKYCD_LIMITS__REDIS_KEY_PREFIX", format!("{name}:")));
    let dir = tmp.path().join("shared");
    let run = async {
        let key = prepare(&args.ekycd, &dir, &env, CITIZENS, SEED)?;
        let server = start_server(&args.ekycd, &dir, &env, cores)?;
        let cfg = load(
            args,
            &server.endpoint,
            &key,
            mode,
            args.secs(5.0),
            "match=1",
        )?;
        let rep = measure(
            &cfg,
            "M_shared: minimum cost on PostgreSQL + Redis",
            details,
        )
        .await;
        server.stop()?;
        let rep = rep?;
        // As for M: what sheds is HASHING_OVERLOADED (32 callers, a queue
        // of 4 per thread); anything else is a failure of the run.
        let other = rep
            .total
            .errors
            .iter()
            .filter(|(reason, _)| reason.as_str() != SHED)
            .map(|(_, n)| *n)
            .sum::<u64>();
        ensure!(other == 0, "{other} calls failed other than by shedding");
        Ok(per_sec(&rep, rep.total.answered))
    };
    let rate = run.await;
    let dropped = psql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    let rate = rate?;
    dropped?;
    Ok(Some(rate))
}

/// How a row's note reads against its target.
fn verdict(met: bool) -> &'static str {
    if met { "target met" } else { "missed" }
}

/// The minimum Argon2 cost as server environment variables.
fn minimum_cost_env() -> Vec<(&'static str, String)> {
    let m = KdfParams::MINIMUM;
    vec![
        // A params id of its own: this data dir never saw another cost.
        ("EKYCD_ARGON2__PARAMS_ID", "2".to_string()),
        ("EKYCD_ARGON2__MEMORY_KIB", m.m_kib.to_string()),
        ("EKYCD_ARGON2__ITERATIONS", m.t.to_string()),
        ("EKYCD_ARGON2__PARALLELISM", m.p.to_string()),
    ]
}

/// What `ekycd import` of the synthetic registry took.
struct Import {
    /// Records imported (all of those in the file: none may be rejected).
    records: u64,
    /// Wall time of the whole command, start to exit, seconds.
    secs: f64,
    /// Peak resident memory of the import process (VmHWM), KiB.
    peak_kib: i64,
    /// Size of the CSV file it read, bytes.
    file_bytes: u64,
}

/// Times `ekycd import` of `n` synthetic citizens (CSV, as the registry
/// exports it) into a fresh data dir at the default cost on `cores`
/// hashing threads, in the environment the default-cost server gets.
fn import(args: &Args, tmp: &Path, cores: usize, n: u64) -> Result<Import> {
    let dir = tmp.join("import");
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join("registry.csv");
    let file =
        std::fs::File::create(&csv).with_context(|| format!("cannot create {}", csv.display()))?;
    ekyc_synth::write_csv(file, ekyc_synth::citizens(SEED, n))?;
    let file_bytes = std::fs::metadata(&csv)?.len();
    // The same hashing threads as the server's pool (start_server sets
    // them the same way); --quiet because a progress bar is not measured.
    let threads = [("EKYCD_ARGON2__POOL_THREADS", cores.to_string())];
    let mut cmd = ekycd(&args.ekycd, &dir, &threads);
    cmd.args(["import", "--quiet"]).arg(&csv);
    let started = Instant::now();
    let (out, peak_kib) = output_with_peak(cmd, "ekycd import", Duration::from_millis(10))?;
    let secs = started.elapsed().as_secs_f64();
    // Its first line is the import report as JSON.
    let report: serde_json::Value = out
        .lines()
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .context("no JSON report in the output of ekycd import")?;
    let count = |key: &str| report[key].as_u64().unwrap_or(0);
    ensure!(
        count("inserted") == n && count("rejected") == 0,
        "ekycd import of {n} synthetic records: {report}"
    );
    Ok(Import {
        records: n,
        secs,
        peak_kib,
        file_bytes,
    })
}

/// What `ekyc verify-batch` of a subscriber file took.
struct Bulk {
    /// Items with a result line, all answered YES (checked).
    items: u64,
    /// Wall time of the whole command, start to exit, seconds.
    secs: f64,
    /// Peak resident memory of the CLI (VmHWM), KiB.
    client_peak_kib: i64,
    /// Size of the subscriber file, bytes.
    file_bytes: u64,
}

/// Runs `ekyc verify-batch` over `n` subscribers (every registry citizen
/// in turn, all claims true, so every item is a YES that hashes once)
/// against `endpoint`, and checks that every item was answered.
fn bulk(args: &Args, tmp: &Path, endpoint: &str, key: &str, n: u64) -> Result<Bulk> {
    let dir = tmp.join("bulk");
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("subscribers.csv");
    let file = std::fs::File::create(&input)
        .with_context(|| format!("cannot create {}", input.display()))?;
    ekyc_synth::write_csv(
        file,
        (0..n).map(|i| ekyc_synth::citizen(SEED, i % CITIZENS)),
    )?;
    let file_bytes = std::fs::metadata(&input)?.len();
    let results = dir.join("results.jsonl");
    let mut cmd = std::process::Command::new(&args.ekyc);
    cmd.env_remove("EKYC_ENDPOINT")
        .env("EKYC_API_KEY", key)
        .args(["--endpoint", endpoint, "verify-batch", "--in"])
        .arg(&input)
        .arg("--out")
        .arg(&results)
        .args(["--no-echo", "--no-progress", "--summary-json", "-"]);
    let started = Instant::now();
    let (out, client_peak_kib) =
        output_with_peak(cmd, "ekyc verify-batch", Duration::from_millis(10))?;
    let secs = started.elapsed().as_secs_f64();
    let summary: serde_json::Value = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("no summary JSON from ekyc verify-batch")?;
    let yes = summary["yes"].as_u64().unwrap_or(0);
    ensure!(yes == n, "ekyc verify-batch of {n} subscribers: {summary}");
    Ok(Bulk {
        items: yes,
        secs,
        client_peak_kib,
        file_bytes,
    })
}

/// The agency-admin key of a fresh `ekycd admin bootstrap`.
fn bootstrap(bin: &Path, dir: &Path, env: &[(&'static str, String)]) -> Result<String> {
    let mut cmd = ekycd(bin, dir, env);
    cmd.args(["admin", "bootstrap"]);
    let out = output(cmd, "ekycd admin bootstrap")?;
    out.lines()
        .find_map(|l| l.split_once("store it now):").map(|(_, k)| k.trim()))
        .map(str::to_string)
        .context("no agency admin api key in the output of ekycd admin bootstrap")
}

/// A bare VerificationService that answers every call at once.
struct Echo;

#[tonic::async_trait]
impl VerificationService for Echo {
    async fn verify(
        &self,
        _request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        Ok(Response::new(pb::VerifyResponse::default()))
    }

    type VerifyBatchStream = tokio_stream::Empty<Result<pb::VerifyBatchResult, Status>>;

    async fn verify_batch(
        &self,
        _request: Request<tonic::Streaming<pb::VerifyRequest>>,
    ) -> Result<Response<Self::VerifyBatchStream>, Status> {
        Err(Status::unimplemented(
            "this baseline answers unary calls only",
        ))
    }

    async fn list_signing_keys(
        &self,
        _request: Request<pb::ListSigningKeysRequest>,
    ) -> Result<Response<pb::ListSigningKeysResponse>, Status> {
        Ok(Response::new(pb::ListSigningKeysResponse::default()))
    }
}

/// Starts the echo server on 127.0.0.1:0; its endpoint and task.
async fn echo_server() -> Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(VerificationServiceServer::new(Echo))
            .serve_with_incoming(incoming)
            .await;
    });
    Ok((format!("http://{addr}"), task))
}

/// A load run's configuration: matching claims only unless `mix` says
/// otherwise, one warm-up second.
fn load(
    args: &Args,
    endpoint: &str,
    api_key: &str,
    mode: Mode,
    duration: Duration,
    mix: &str,
) -> Result<Config> {
    Ok(Config {
        endpoint: endpoint.to_string(),
        api_key: api_key.to_string(),
        overlimit_key: None,
        mode,
        connections: args.connections,
        warmup: args.secs(1.0),
        duration,
        max_requests: None,
        timeout: Duration::from_secs(10),
        mix: mix.parse::<Mix>()?,
        citizens: CITIZENS,
        registry_seed: SEED,
        rng_seed: 1,
    })
}

/// Runs a load and keeps its table for the details section.
async fn measure(cfg: &Config, title: &str, details: &mut String) -> Result<Report> {
    eprintln!("bench: {title}");
    let report = run(cfg).await?;
    let _ = writeln!(details, "### {title}\n\n```text\n{}```\n", report.table());
    Ok(report)
}

fn per_sec(report: &Report, n: u64) -> f64 {
    if report.window_secs > 0.0 {
        n as f64 / report.window_secs
    } else {
        0.0
    }
}

/// Creates a tenant limited to 1 call/s with a burst of 1 and returns a
/// verifier key for it, through the agency-admin API.
async fn overlimit_key(endpoint: &str, agency_key: &str) -> Result<String> {
    let client = Client::connect(endpoint, Some(agency_key), Duration::from_secs(10)).await?;
    let mut admin = client.admin();
    let tenant = admin
        .create_tenant(client.request(pb::CreateTenantRequest {
            tenant: Some(pb::Tenant {
                name: "bench-overlimit".into(),
                policy: Some(pb::TenantPolicy {
                    limits: Some(pb::Limits {
                        requests_per_second: 1,
                        burst: 1,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }))
        .await
        .context("CreateTenant")?
        .into_inner()
        .tenant
        .context("CreateTenant returned no tenant")?;
    let issued = admin
        .issue_api_key(client.request(pb::IssueApiKeyRequest {
            tenant_id: tenant.tenant_id,
            role: pb::Role::Verifier as i32,
            ttl_seconds: 0,
            live: false,
        }))
        .await
        .context("IssueApiKey")?
        .into_inner();
    Ok(issued.secret)
}

/// One row of the table.
struct Row {
    name: &'static str,
    value: String,
    baseline: String,
    ratio: String,
    note: String,
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| # | measure | value | baseline | ratio | note |\n|---|---|---|---|---|---|\n",
    );
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            i + 1,
            r.name,
            r.value,
            r.baseline,
            r.ratio,
            r.note
        );
    }
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    let path = args.ekycd.display().to_string();
    args.ekycd = std::fs::canonicalize(&args.ekycd).context(path)?;
    if args.bulk_items > 0 {
        let path = args.ekyc.display().to_string();
        args.ekyc = std::fs::canonicalize(&args.ekyc).context(path)?;
    }
    let cores = args
        .cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let began = Instant::now();
    let machine = machine(cores);
    eprintln!("bench: {machine}");
    let tmp = tempfile::tempdir()?;
    let mut details = String::new();
    let mut rows = Vec::new();

    // 1. Raw Argon2, before any server runs: what ekycd runs (R_raw)
    // interleaved with the alternatives, and the fastest of them all
    // (R_fastest), which S is judged against.
    let backend = KdfImplementation::Argon2Rust.backend();
    eprintln!(
        "bench: raw Argon2id on {cores} thread(s), {} implementations ({backend})",
        Implementation::ALL.len()
    );
    let rates = compare(KdfParams::DEFAULT, cores, args.secs(3.0), 2)?;
    let r_raw = rates[0].1;
    let eval_ms = cores as f64 / r_raw * 1e3;
    let (fastest, r_fastest) = rates
        .iter()
        .copied()
        .fold(rates[0], |best, x| if x.1 > best.1 { x } else { best });
    rows.push(Row {
        name: "R_raw: raw Argon2id evaluations/s, what ekycd runs (default cost, all cores)",
        value: format!("{r_raw:.1}/s; one evaluation {eval_ms:.2} ms"),
        baseline: "-".into(),
        ratio: "1.00".into(),
        note: format!(
            "{} ({backend}); {cores} thread(s), 19 MiB, t=2, p=1",
            Implementation::Service.label()
        ),
    });
    for (imp, rate) in &rates[1..] {
        rows.push(Row {
            name: imp.label(),
            value: format!("{rate:.1}/s"),
            baseline: format!("R_raw {r_raw:.1}/s"),
            ratio: format!("{:.3}", rate / r_raw),
            note: match imp {
                Implementation::RustCrypto => "argon2.implementation = \"rustcrypto\"".into(),
                Implementation::FreshMemory => "what reusing the buffer saves".into(),
                _ => "C built with -march=native unless CFLAGS overrides it; \
                      not what ekycd runs (docs/argon2.md)"
                    .into(),
            },
        });
    }
    rows.push(Row {
        name: "R_fastest: the fastest implementation's raw rate (default cost, all cores)",
        value: format!("{r_fastest:.1}/s"),
        baseline: format!("R_raw {r_raw:.1}/s"),
        ratio: format!("{:.3}", r_fastest / r_raw),
        note: format!("{}, measured in the same rounds", fastest.label()),
    });

    // 1b. `ekycd import`, right after R_fastest on the same idle cores: an
    // import is one derivation per record, so its rate is judged against
    // the raw rate, and its peak RSS beside the file's size shows whether
    // memory grows with the file.
    if args.import_records > 0 {
        let n = args.import_records;
        eprintln!("bench: ekycd import of {n} synthetic records (default cost)");
        let imp = import(&args, tmp.path(), cores, n)?;
        let rate = imp.records as f64 / imp.secs;
        let ratio = rate / r_fastest;
        rows.push(Row {
            name: "I: ekycd import into a fresh data dir, default cost, all cores (records/s)",
            value: format!("{rate:.1}/s"),
            baseline: format!("R_fastest {r_fastest:.1}/s"),
            ratio: format!("{ratio:.3}"),
            note: format!(
                "target >= 0.95: {}; {n} records, {:.1} MiB of CSV, {:.1} s start to exit; \
                 peak RSS (VmHWM) {:.1} MiB (pool buffers {cores} x {DEFAULT_KIB} KiB = {:.1} MiB)",
                verdict(ratio >= 0.95),
                imp.file_bytes as f64 / (1024.0 * 1024.0),
                imp.secs,
                imp.peak_kib as f64 / 1024.0,
                (cores as i64 * DEFAULT_KIB) as f64 / 1024.0
            ),
        });
    }

    // 2. Bare tonic echo server.
    let (echo, echo_task) = echo_server().await?;
    let fast = Mode::Closed {
        callers: args.fast_callers,
    };
    let cfg = load(&args, &echo, "echo-key", fast, args.secs(5.0), "match=1")?;
    let rep = measure(&cfg, "E: bare tonic echo server, closed loop", &mut details).await?;
    echo_task.abort();
    let e = per_sec(&rep, rep.total.answered);
    rows.push(Row {
        name: "E: bare tonic echo server, unary answered/s",
        value: format!("{e:.0}/s"),
        baseline: "-".into(),
        ratio: "1.00".into(),
        note: format!(
            "{} callers over {} connections",
            args.fast_callers, args.connections
        ),
    });

    // Data dirs: the default cost, and the minimum cost with an agency key.
    eprintln!("bench: preparing the data dirs (ekycd demo --citizens {CITIZENS})");
    let (dflt_dir, min_dir) = (tmp.path().join("default"), tmp.path().join("minimum"));
    let dflt_key = prepare(&args.ekycd, &dflt_dir, &[], CITIZENS, SEED)?;
    let min_env = minimum_cost_env();
    let min_key = prepare(&args.ekycd, &min_dir, &min_env, CITIZENS, SEED)?;
    let agency_key = bootstrap(&args.ekycd, &min_dir, &min_env)?;

    // 3, 6, 7: the default-cost service.
    let server = start_server(&args.ekycd, &dflt_dir, &[], cores)?;
    let idle_kib = settled_rss(server.pid).await?;
    let sat = Mode::Closed { callers: 4 * cores };
    let cfg = load(
        &args,
        &server.endpoint,
        &dflt_key,
        sat,
        args.secs(8.0),
        "match=1",
    )?;
    let rep = measure(&cfg, "S: default-cost ekycd, closed loop", &mut details).await?;
    let s = per_sec(&rep, rep.total.yes);
    ensure!(s > 0.0, "the default-cost service answered nothing YES");
    // R_fastest again, right after S with the server idle: shared cores
    // drift (a host that has just built the binaries slows down over the
    // first minutes), so S is judged against the baseline on both sides.
    eprintln!("bench: the fastest raw Argon2id again, right after S");
    let r_after = evaluations_per_sec(fastest, KdfParams::DEFAULT, cores, args.secs(3.0))?;
    let r_around = (r_fastest + r_after) / 2.0;
    let ratio = s / r_around;
    rows.push(Row {
        name: "S: ekycd saturation, default cost (YES/s)",
        value: format!("{s:.1}/s"),
        baseline: format!("R_fastest {r_around:.1}/s (before {r_fastest:.1}, after {r_after:.1})"),
        ratio: format!("{ratio:.3}"),
        note: format!(
            "target >= 0.95: {}; {} callers, errors {}",
            verdict(ratio >= 0.95),
            4 * cores,
            rep.total.sent - rep.total.answered
        ),
    });
    // Poisson arrivals of matching claims at `rate` for `secs`.
    let open_loop = |rate: f64, secs: f64| {
        let arrivals = Arrivals::Poisson;
        let mode = Mode::Open { rate, arrivals };
        load(
            &args,
            &server.endpoint,
            &dflt_key,
            mode,
            args.secs(secs),
            "match=1",
        )
    };
    let mut open = Vec::new();
    for share in [0.5, 0.7] {
        let cfg = open_loop(share * s, 10.0)?;
        let title = format!("open loop at {:.0} % of S", share * 100.0);
        let rep = measure(&cfg, &title, &mut details).await?;
        open.push((share, rep));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(server.pid, Duration::from_millis(20), Arc::clone(&stop));
    let cfg = open_loop(2.0 * s, 8.0)?;
    let over = measure(&cfg, "open loop at 2 x S (memory)", &mut details).await;
    stop.store(true, Ordering::Relaxed);
    let (peak_kib, _samples) = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("sampler panicked"))?;
    let hwm_kib = proc_kib(server.pid, "VmHWM")?;
    let over = over?;
    // 10 x S on the same server: nearly every call finds the hashing queue
    // full and is shed, and a shed call should come back at once. After
    // the memory phase, so none of this load is in its peak.
    let cfg = open_loop(10.0 * s, 5.0)?;
    let flood = measure(&cfg, "open loop at 10 x S (shedding)", &mut details).await?;
    // B: bulk verification on the same server, one stream through the CLI:
    // a stream carries no per-call overhead beyond its items, so it is
    // judged against the raw rate, with both sides' memory beside it.
    if args.bulk_items > 0 {
        let n = args.bulk_items;
        eprintln!("bench: ekyc verify-batch of {n} subscribers (default cost)");
        let before_kib = settled_rss(server.pid).await?;
        // The raw rate right before and right after the run, the server
        // idle: the cores' speed drifts over a bench (S's own baseline
        // moved by a fifth between its two sides once), so B is judged
        // against the rate around it.
        let r_before = evaluations_per_sec(fastest, KdfParams::DEFAULT, cores, args.secs(3.0))?;
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_rss(server.pid, Duration::from_millis(20), Arc::clone(&stop));
        let run = bulk(&args, tmp.path(), &server.endpoint, &dflt_key, n);
        stop.store(true, Ordering::Relaxed);
        let (server_peak_kib, _) = sampler
            .join()
            .map_err(|_| anyhow::anyhow!("sampler panicked"))?;
        let b = run?;
        let r_after = evaluations_per_sec(fastest, KdfParams::DEFAULT, cores, args.secs(3.0))?;
        let r_bulk = (r_before + r_after) / 2.0;
        let rate = b.items as f64 / b.secs;
        let ratio = rate / r_bulk;
        rows.push(Row {
            name: "B: ekyc verify-batch, one stream, default cost (items/s)",
            value: format!("{rate:.1}/s"),
            baseline: format!("R_fastest {r_bulk:.1}/s (before {r_before:.1}, after {r_after:.1})"),
            ratio: format!("{ratio:.3}"),
            note: format!(
                "target >= 0.97: {}; {n} subscribers ({:.1} MiB of CSV), {:.1} s start to exit; \
                 client peak RSS (VmHWM) {:.1} MiB; server peak RSS {:.1} MiB, {:+.1} MiB over \
                 its {:.1} MiB before the run",
                verdict(ratio >= 0.97),
                b.file_bytes as f64 / (1024.0 * 1024.0),
                b.secs,
                b.client_peak_kib as f64 / 1024.0,
                server_peak_kib as f64 / 1024.0,
                (server_peak_kib - before_kib) as f64 / 1024.0,
                before_kib as f64 / 1024.0
            ),
        });
    }
    server.stop()?;

    // 4, 5: the minimum-cost service.
    let server = start_server(&args.ekycd, &min_dir, &min_env, cores)?;
    let cfg = load(
        &args,
        &server.endpoint,
        &min_key,
        fast,
        args.secs(5.0),
        "match=1",
    )?;
    let rep = measure(&cfg, "M: minimum-cost ekycd, closed loop", &mut details).await?;
    let m = per_sec(&rep, rep.total.answered);
    rows.push(Row {
        name: "M: ekycd saturation, minimum Argon2 cost (answered/s)",
        value: format!("{m:.0}/s"),
        baseline: format!("E {e:.0}/s"),
        ratio: format!("{:.3}", m / e),
        note: format!(
            "target >= 0.5: {}; m=8 KiB, t=1, p=1; {} callers, errors {}",
            verdict(m / e >= 0.5),
            args.fast_callers,
            rep.total.sent - rep.total.answered
        ),
    });
    let over_key = overlimit_key(&server.endpoint, &agency_key).await?;
    let mut cfg = load(
        &args,
        &server.endpoint,
        &min_key,
        fast,
        args.secs(5.0),
        "overlimit=1",
    )?;
    cfg.overlimit_key = Some(over_key);
    let rep = measure(&cfg, "Q: rate-limited tenant, closed loop", &mut details).await?;
    let limited = rep.total.errors.get(RATE_LIMITED).copied().unwrap_or(0);
    let q = per_sec(&rep, limited);
    rows.push(Row {
        name: "Q: RATE_LIMITED refusals/s (tenant at 1/s, burst 1)",
        value: format!("{q:.0}/s"),
        baseline: format!("E {e:.0}/s"),
        ratio: format!("{:.3}", q / e),
        note: format!(
            "target >= 0.8: {}; minimum-cost service; answered {}, other errors {}",
            verdict(q / e >= 0.8),
            rep.total.answered,
            rep.total.sent - rep.total.answered - limited
        ),
    });
    server.stop()?;

    // 4b: the minimum-cost service again with every store in PostgreSQL
    // and the limits in Redis, as replicas run. At minimum cost the call is
    // all overhead, so the difference in core time per call is what
    // sharing adds to a Verify; it is judged against one default-cost
    // evaluation: (cores / M_shared - cores / M) / (cores / R_raw).
    match shared_state_rate(&args, &tmp, &min_env, cores, fast, &mut details).await {
        Ok(Some(m_shared)) => {
            let extra = r_raw / m_shared - r_raw / m;
            rows.push(Row {
                name: "M_shared: minimum cost on PostgreSQL + Redis (answered/s)",
                value: format!("{m_shared:.0}/s"),
                baseline: format!("M {m:.0}/s"),
                ratio: format!("{:.3}", m_shared / m),
                note: "every store in PostgreSQL, limits and guard in Redis, both on this machine's cores".into(),
            });
            rows.push(Row {
                name: "cost of sharing per Verify, in default-cost evaluations",
                value: format!(
                    "{:.1} us of core time per call",
                    (cores as f64 / m_shared - cores as f64 / m) * 1e6
                ),
                baseline: format!("one evaluation {eval_ms:.2} ms"),
                ratio: format!("{extra:.4}"),
                note: format!("target < 0.05: {}", verdict(extra < 0.05)),
            });
        }
        Ok(None) => rows.push(Row {
            name: "M_shared: minimum cost on PostgreSQL + Redis",
            value: "skipped".into(),
            baseline: "-".into(),
            ratio: "-".into(),
            note: "--postgres-url is empty".into(),
        }),
        Err(e) => rows.push(Row {
            name: "M_shared: minimum cost on PostgreSQL + Redis",
            value: "failed".into(),
            baseline: "-".into(),
            ratio: "-".into(),
            note: format!("{e:#}"),
        }),
    }

    // The M/D/c model of the pool: Poisson arrivals at the offered rate,
    // `cores` hashing threads, each call taking its share of the cores at
    // saturation (cores / S, the evaluation and everything around it).
    let service_ms = cores as f64 / s * 1e3;
    for (share, rep) in &open {
        let p99 = rep.total.percentile_ms(99.0);
        let model = ekyc_loadtest::queueing::mdc_sojourn_quantile(
            share * s / 1e3,
            service_ms,
            cores,
            0.99,
            200_000,
            7,
        );
        rows.push(Row {
            name: if *share < 0.6 {
                "p99 latency, open loop (Poisson) at 50 % of S"
            } else {
                "p99 latency, open loop (Poisson) at 70 % of S"
            },
            value: format!("{p99:.1} ms"),
            baseline: format!("one evaluation {eval_ms:.2} ms"),
            ratio: format!("{:.2} x", p99 / eval_ms),
            note: format!(
                "M/D/{cores} model p99 {model:.1} ms (measured {:.2} x the model; target <= 1.1: {}); \
                 {:.1} calls/s offered; p50 {:.1} ms; answered {}/{}",
                p99 / model,
                verdict(p99 / model <= 1.1),
                share * s,
                rep.total.percentile_ms(50.0),
                rep.total.answered,
                rep.total.sent
            ),
        });
    }
    let bound = cores as i64 * DEFAULT_KIB;
    let growth = peak_kib - idle_kib;
    let shed = over.total.errors.get(SHED).copied().unwrap_or(0);
    rows.push(Row {
        name: "peak RSS growth under 2 x S open loop",
        value: format!("{:.1} MiB", growth as f64 / 1024.0),
        baseline: format!(
            "{cores} x {DEFAULT_KIB} KiB = {:.1} MiB",
            bound as f64 / 1024.0
        ),
        ratio: format!("{:.3}", growth as f64 / bound as f64),
        note: format!(
            "idle {:.1} MiB, peak {:.1} MiB, VmHWM {:.1} MiB; {} shed, {} answered of {}",
            idle_kib as f64 / 1024.0,
            peak_kib as f64 / 1024.0,
            hwm_kib as f64 / 1024.0,
            shed,
            over.total.answered,
            over.total.sent
        ),
    });
    // Measured from each call's scheduled send, as every open-loop figure
    // here: a generator falling behind on the shared cores shows in it, so
    // the note says how far behind it fell.
    let t = &flood.total;
    let flood_shed = t.errors.get(SHED).copied().unwrap_or(0);
    let shed_p99 = t.error_percentile_ms(SHED, 99.0);
    let ratio = shed_p99.map(|p| p / eval_ms);
    rows.push(Row {
        name: "shed p99 latency under 10 x S open loop (Poisson)",
        value: shed_p99.map_or("nothing shed".into(), |p| format!("{p:.2} ms")),
        baseline: format!("one evaluation {eval_ms:.2} ms"),
        ratio: ratio.map_or("-".into(), |r| format!("{r:.3} x")),
        note: format!(
            "target <= 0.1: {}; shed p50 {:.2} ms; {:.0} calls/s offered; {flood_shed} shed \
             (HASHING_OVERLOADED), {} answered, {} other errors of {}; latest send {:.1} ms \
             behind schedule",
            verdict(ratio.is_some_and(|r| r <= 0.1)),
            t.error_percentile_ms(SHED, 50.0).unwrap_or(0.0),
            10.0 * s,
            t.answered,
            t.sent - t.answered - flood_shed,
            t.sent,
            flood.max_send_lag_ms
        ),
    });

    let total = began.elapsed().as_secs_f64();
    let mut doc = String::new();
    let _ = writeln!(doc, "# ekycd benchmark\n\n{machine}\n");
    doc.push_str(&table(&rows));
    let _ = writeln!(doc, "\nTotal run time {total:.1} s.\n\n## Load runs\n");
    doc.push_str(&details);
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &doc)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("{machine}\n");
    print!("{}", table(&rows));
    println!(
        "\nTotal run time {total:.1} s; details in {}",
        args.out.display()
    );
    Ok(())
}
