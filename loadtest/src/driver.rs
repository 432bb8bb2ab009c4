//! The closed- and open-loop drivers: one call, its outcome, and a whole
//! run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ekyc_client::{Client, v1 as pb};
use tokio::sync::mpsc;
use tonic_types::StatusExt;

use crate::{Arrivals, Mix, Report, RequestFactory, Scenario, Schedule, SplitMix64, Stats};

pub use ekyc_proto::code_name;

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered; `true` if the decision was YES.
    Answered(bool),
    /// Refused or failed, as `CODE/REASON` (`-` when the status carries no
    /// ErrorInfo; `CLIENT_TIMEOUT` when the generator's own timer fired).
    Error(String),
}

/// The outcome key of a call the server shed because its hashing queue
/// was full (RESOURCE_EXHAUSTED with ErrorInfo reason HASHING_OVERLOADED):
/// a refusal that should come back at once, long before an evaluation.
pub const SHED: &str = "RESOURCE_EXHAUSTED/HASHING_OVERLOADED";

/// The outcome key of an error status: `CODE/REASON`, `-` for a status
/// without ErrorInfo.
pub fn error_key(code: tonic::Code, reason: Option<&str>) -> String {
    format!("{}/{}", code_name(code), reason.unwrap_or("-"))
}

/// Sends one request with a client-side timer of `timeout` (the deadline
/// is also sent to the server as `grpc-timeout` by the client).
pub async fn call(client: &Client, request: pb::VerifyRequest, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, client.verify_unchecked(request)).await {
        Err(_) => Outcome::Error("DEADLINE_EXCEEDED/CLIENT_TIMEOUT".into()),
        Ok(Ok(r)) => Outcome::Answered(r.decision == pb::Decision::Yes as i32),
        Ok(Err(s)) => {
            let reason = s.get_error_details().error_info().map(|i| i.reason.clone());
            Outcome::Error(error_key(s.code(), reason.as_deref()))
        }
    }
}

/// Open or closed loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// `callers` concurrent callers, each sending its next request when the
    /// previous answer arrives; latency from the actual send.
    Closed {
        /// Concurrent callers.
        callers: usize,
    },
    /// `rate` requests per second on a fixed schedule; latency from the
    /// scheduled send time.
    Open {
        /// Requests per second.
        rate: f64,
        /// Spacing of the requests.
        arrivals: Arrivals,
    },
}

impl Mode {
    /// A short description for the report.
    pub fn describe(&self) -> String {
        match self {
            Mode::Closed { callers } => format!("closed loop, {callers} callers"),
            Mode::Open { rate, arrivals } => {
                format!("open loop, {rate} calls/s, {arrivals:?} arrivals")
            }
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The service, e.g. `http://127.0.0.1:50051`.
    pub endpoint: String,
    /// The main tenant's API key.
    pub api_key: String,
    /// The over-limit tenant's API key; without it the overlimit scenario
    /// is left out of the mix.
    pub overlimit_key: Option<String>,
    /// Open or closed loop.
    pub mode: Mode,
    /// gRPC connections (one `Client` each), used round robin.
    pub connections: usize,
    /// Warm-up, excluded from the results.
    pub warmup: Duration,
    /// Measured time after the warm-up.
    pub duration: Duration,
    /// Stop after this many measured requests (warm-up excluded).
    pub max_requests: Option<u64>,
    /// Per-call deadline.
    pub timeout: Duration,
    /// Scenario weights.
    pub mix: Mix,
    /// Citizens in the registry (`ekycd demo --citizens`).
    pub citizens: u64,
    /// Seed of the synthetic registry (`ekycd demo --seed`).
    pub registry_seed: u64,
    /// Seed of the arrival process and the scenario choice.
    pub rng_seed: u64,
}

/// Runs the load described by `cfg` and collects the figures.
pub async fn run(cfg: &Config) -> Result<Report> {
    let mut mix = cfg.mix.clone();
    if cfg.overlimit_key.is_none() && mix.contains(Scenario::OverLimit) {
        mix = mix.without(Scenario::OverLimit)?;
    }
    let mut clients = Vec::new();
    for _ in 0..cfg.connections.max(1) {
        let c = Client::connect(&cfg.endpoint, Some(&cfg.api_key), cfg.timeout)
            .await
            .with_context(|| format!("cannot connect to {}", cfg.endpoint))?;
        clients.push(Arc::new(c));
    }
    let over = match &cfg.overlimit_key {
        Some(k) if mix.contains(Scenario::OverLimit) => Some(Arc::new(
            Client::connect(&cfg.endpoint, Some(k), cfg.timeout).await?,
        )),
        _ => None,
    };
    let shared = Arc::new(Shared {
        clients,
        over,
        mix: mix.clone(),
        factory: RequestFactory::new(
            cfg.registry_seed,
            cfg.citizens,
            RequestFactory::fresh_run_id(),
        ),
        rng_seed: cfg.rng_seed,
        timeout: cfg.timeout,
    });

    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let collector = tokio::spawn(async move {
        let mut stats: Vec<Stats> = Scenario::ALL.iter().map(|s| Stats::new(s.name())).collect();
        let (mut warm, mut last) = (0u64, None::<Instant>);
        while let Some(d) = rx.recv().await {
            if d.measured {
                stats[d.scenario.index()].record(&d.outcome, d.latency);
                last = Some(last.map_or(d.at, |l| l.max(d.at)));
            } else {
                warm += 1;
            }
        }
        (stats, warm, last)
    });

    let measured = Arc::new(AtomicU64::new(0));
    let max = cfg.max_requests.unwrap_or(u64::MAX);
    let mut max_lag = Duration::ZERO;
    match cfg.mode {
        Mode::Open { rate, arrivals } => {
            ensure!(rate > 0.0, "--rate must be positive");
            let schedule = Schedule::new(arrivals, rate, cfg.rng_seed);
            for (n, offset) in (0u64..).zip(schedule) {
                let at = start + offset;
                let is_measured = at >= measure_from;
                if at >= end || (is_measured && measured.load(Ordering::Relaxed) >= max) {
                    break;
                }
                if is_measured {
                    measured.fetch_add(1, Ordering::Relaxed);
                }
                let (scenario, request, client) = shared.next(n);
                tokio::time::sleep_until(at.into()).await;
                max_lag = max_lag.max(at.elapsed());
                let (tx, timeout) = (tx.clone(), shared.timeout);
                tokio::spawn(async move {
                    let outcome = call(&client, request, timeout).await;
                    let now = Instant::now();
                    // From the scheduled time: a stalled server (or a late
                    // sender) shows in the latency.
                    let _ = tx.send(Done {
                        scenario,
                        measured: is_measured,
                        outcome,
                        latency: now - at,
                        at: now,
                    });
                });
            }
        }
        Mode::Closed { callers } => {
            ensure!(callers > 0, "--closed needs at least one caller");
            let next = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..callers {
                let (shared, next, measured, tx) = (
                    Arc::clone(&shared),
                    Arc::clone(&next),
                    Arc::clone(&measured),
                    tx.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    loop {
                        let sent = Instant::now();
                        let is_measured = sent >= measure_from;
                        if sent >= end
                            || (is_measured && measured.fetch_add(1, Ordering::Relaxed) >= max)
                        {
                            break;
                        }
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let (scenario, request, client) = shared.next(n);
                        let sent = Instant::now();
                        let outcome = call(&client, request, shared.timeout).await;
                        let now = Instant::now();
                        let _ = tx.send(Done {
                            scenario,
                            measured: is_measured,
                            outcome,
                            latency: now - sent,
                            at: now,
                        });
                    }
                }));
            }
            for t in tasks {
                t.await?;
            }
        }
    }
    drop(tx);
    let (stats, warmup_requests, last) = collector.await?;
    let scenarios: Vec<Stats> = stats
        .into_iter()
        .filter(|s| mix.scenarios().iter().any(|m| m.name() == s.name))
        .collect();
    let mut total = Stats::new("total");
    for s in &scenarios {
        total.merge(s);
    }
    let window_secs = last.map_or(0.0, |l| {
        l.saturating_duration_since(measure_from).as_secs_f64()
    });
    Ok(Report {
        mode: cfg.mode,
        connections: cfg.connections.max(1),
        window_secs,
        warmup_requests,
        max_send_lag_ms: max_lag.as_secs_f64() * 1e3,
        scenarios,
        total,
    })
}

/// One completed call, as sent to the collector.
struct Done {
    scenario: Scenario,
    measured: bool,
    outcome: Outcome,
    latency: Duration,
    at: Instant,
}

/// What the sending tasks share.
struct Shared {
    clients: Vec<Arc<Client>>,
    over: Option<Arc<Client>>,
    mix: Mix,
    factory: RequestFactory,
    rng_seed: u64,
    timeout: Duration,
}

impl Shared {
    /// Request `n`: its scenario (a hash of the seed and `n`, so reproducible
    /// whatever the order tasks run in), the request and its connection.
    fn next(&self, n: u64) -> (Scenario, pb::VerifyRequest, Arc<Client>) {
        let scenario = self.mix.pick(SplitMix64::nth(self.rng_seed, n));
        let request = self.factory.build(scenario, n);
        let client = match (scenario, &self.over) {
            (Scenario::OverLimit, Some(c)) => c,
            _ => &self.clients[(n % self.clients.len() as u64) as usize],
        };
        (scenario, request, Arc::clone(client))
    }
}
