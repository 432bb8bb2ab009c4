//! `ekyc-load`: a gRPC load generator for `ekycd`.
//!
//! Closed loop (`--closed N`: N callers, each sending its next request when
//! the previous answer arrives) or open loop (`--rate R`, constant or
//! Poisson arrivals: every request has a scheduled send time, is sent by
//! its own task, and its latency counts from the scheduled time, so a
//! stalled server shows in the tail instead of slowing the generator down).
//!
//! Requests follow a scenario mix (`--mix`): `match` (correct name and
//! date of birth of synthetic citizen i, round robin over `--citizens`),
//! `nomatch` (wrong date of birth), `unknown` (an ID not in the registry),
//! `invalid` (1990-02-30, refused before hashing) and `overlimit` (a
//! matching claim with `--overlimit-key-file`, a tenant with a tiny rate
//! limit; left out without that flag).
//!
//! The subject guard: every NO answer about a registered subject counts
//! against it, and after 5 in a UTC day (the default) the service refuses
//! further questions about that subject with RESOURCE_EXHAUSTED /
//! SUBJECT_GUARD_TRIPPED, matching ones included. `nomatch` spreads over
//! all `--citizens` subjects, so a run (or several runs on the same day and
//! registry) sending more than about 5 x citizens nomatch calls will see
//! SUBJECT_GUARD_TRIPPED, first for nomatch and then for match calls on the
//! same subjects. Unknown IDs are never reused, so they do not trip it.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use ekyc_loadtest::{Arrivals, Config, DEFAULT_MIX, Mix, Mode, run};

#[derive(Parser)]
#[command(about = "gRPC load generator for ekycd (open or closed loop, scenario mix)")]
struct Args {
    /// The service endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    endpoint: String,
    /// File holding the tenant's API key (`ekycd demo` writes ekyc-demo/api-key).
    #[arg(long, default_value = "ekyc-demo/api-key")]
    api_key_file: PathBuf,
    /// File holding the API key of a tenant with a tiny rate limit, for the
    /// overlimit scenario (skipped without it).
    #[arg(long)]
    overlimit_key_file: Option<PathBuf>,
    /// Closed loop with N concurrent callers.
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "rate",
        required_unless_present = "rate"
    )]
    closed: Option<usize>,
    /// Open loop at R requests per second.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Spacing of open-loop requests: constant or poisson.
    #[arg(long, default_value = "constant")]
    arrivals: Arrivals,
    /// gRPC connections (Client instances), used round robin.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Warm-up seconds, excluded from the results.
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Measured seconds after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Stop after this many measured requests (warm-up excluded).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Per-call deadline, milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Scenario weights.
    #[arg(long, default_value = DEFAULT_MIX)]
    mix: Mix,
    /// Citizens in the registry (`ekycd demo --citizens`); match and nomatch
    /// go round robin over them.
    #[arg(long, default_value_t = 1000)]
    citizens: u64,
    /// Seed of the synthetic registry (`ekycd demo --seed`).
    #[arg(long, default_value_t = 42)]
    registry_seed: u64,
    /// Seed of the arrival process and the scenario choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write a latency-by-percentile plot (SVG) to this file.
    #[arg(long)]
    svg: Option<PathBuf>,
}

fn read_key(path: &PathBuf) -> Result<String> {
    let key = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read API key file {}", path.display()))?;
    Ok(key.trim().to_string())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mode = match (args.closed, args.rate) {
        (Some(callers), _) => Mode::Closed { callers },
        (None, Some(rate)) => Mode::Open {
            rate,
            arrivals: args.arrivals,
        },
        (None, None) => unreachable!("clap requires --closed or --rate"),
    };
    ensure!(
        args.warmup_secs >= 0.0 && args.duration_secs > 0.0,
        "--warmup-secs must be >= 0 and --duration-secs > 0"
    );
    let overlimit_key = args.overlimit_key_file.as_ref().map(read_key).transpose()?;
    if overlimit_key.is_none() && args.mix.contains(ekyc_loadtest::Scenario::OverLimit) {
        eprintln!("note: no --overlimit-key-file, the overlimit scenario is skipped");
    }
    let cfg = Config {
        endpoint: args.endpoint.clone(),
        api_key: read_key(&args.api_key_file)?,
        overlimit_key,
        mode,
        connections: args.connections,
        warmup: Duration::from_secs_f64(args.warmup_secs),
        duration: Duration::from_secs_f64(args.duration_secs),
        max_requests: args.max_requests,
        timeout: Duration::from_millis(args.timeout_ms),
        mix: args.mix.clone(),
        citizens: args.citizens,
        registry_seed: args.registry_seed,
        rng_seed: args.seed,
    };
    let report = run(&cfg).await?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.json())? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, report.svg())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
