//! Load generation and benchmarks for `ekycd`.
//!
//! The reusable part of the `ekyc-load` gRPC load generator: arrival
//! schedules (constant or Poisson, from the seeded SplitMix64 generator), a
//! scenario mix of requests, the closed- and open-loop drivers, and the
//! report (text table, JSON, hand-written SVG percentile plot).
//!
//! In the open loop every request has a *scheduled* send time, computed
//! up front from the arrival process, and its latency is measured from that
//! time, not from when it was actually sent; each request is its own task,
//! so the sender never waits for an answer. A server that stalls therefore
//! shows in the tail (no coordinated omission). The closed loop measures
//! from the actual send, as a closed-loop caller sees it.
#![forbid(unsafe_code)]

pub mod kdf;
pub mod process;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use ekyc_client::{Client, v1 as pb};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::mpsc;
use tonic::Code;
use tonic_types::StatusExt;

/// The one pseudo-random generator of the load tools: SplitMix64, small,
/// fast and seeded. Not for cryptography: it only makes arrival times and
/// the scenario mix reproducible. Its `n`-th output can also be computed
/// directly ([`SplitMix64::nth`]), so a request's scenario depends on its
/// index alone, however the callers interleave.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// A generator started from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The `n`-th output (from 0) of the generator seeded with `seed`.
    pub fn nth(seed: u64, n: u64) -> u64 {
        mix(seed.wrapping_add(GOLDEN.wrapping_mul(n.wrapping_add(1))))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// A uniform number in (0, 1]: never 0, so its logarithm is finite.
    pub fn next_f64(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// An exponentially distributed number with the given mean (the gap
    /// between arrivals of a Poisson process of rate `1 / mean`).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.next_f64().ln()
    }
}

/// SplitMix64's output function: a bijective 64-bit mixer.
fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How open-loop requests are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// Exactly `1 / rate` apart.
    Constant,
    /// Exponential gaps of mean `1 / rate` (a Poisson process).
    Poisson,
}

impl FromStr for Arrivals {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(Arrivals::Constant),
            "poisson" => Ok(Arrivals::Poisson),
            _ => bail!("arrivals must be constant or poisson, not {s:?}"),
        }
    }
}

/// The scheduled send times of an open loop, as offsets from its start.
#[derive(Debug, Clone)]
pub struct Schedule {
    arrivals: Arrivals,
    mean_gap: f64,
    rng: SplitMix64,
    count: u64,
    at: f64,
}

impl Schedule {
    /// `rate` requests per second spaced by `arrivals`; `seed` drives the
    /// Poisson gaps.
    pub fn new(arrivals: Arrivals, rate: f64, seed: u64) -> Self {
        Schedule {
            arrivals,
            mean_gap: 1.0 / rate,
            rng: SplitMix64::new(seed),
            count: 0,
            at: 0.0,
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;
    /// The offset of the next request from the start of the run. The first
    /// request is sent at once in both modes.
    fn next(&mut self) -> Option<Duration> {
        let at = match self.arrivals {
            // Multiplied, not summed, so rounding errors do not drift.
            Arrivals::Constant => self.count as f64 * self.mean_gap,
            Arrivals::Poisson => {
                let at = self.at;
                self.at += self.rng.exponential(self.mean_gap);
                at
            }
        };
        self.count += 1;
        Some(Duration::from_secs_f64(at))
    }
}

/// The kinds of request the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// The correct name and date of birth of a registered citizen: YES.
    Match,
    /// A registered citizen with a wrong date of birth: NO. Counts towards
    /// the subject guard (5 per subject per UTC day by default).
    NoMatch,
    /// An ID that is not in the registry: NO.
    Unknown,
    /// An impossible date (1990-02-30): INVALID_ARGUMENT before hashing.
    Invalid,
    /// A matching claim sent with the over-limit tenant's key: mostly
    /// RESOURCE_EXHAUSTED / RATE_LIMITED.
    OverLimit,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 5] = [
        Scenario::Match,
        Scenario::NoMatch,
        Scenario::Unknown,
        Scenario::Invalid,
        Scenario::OverLimit,
    ];

    /// The name used in `--mix` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Match => "match",
            Scenario::NoMatch => "nomatch",
            Scenario::Unknown => "unknown",
            Scenario::Invalid => "invalid",
            Scenario::OverLimit => "overlimit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl FromStr for Scenario {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Scenario::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .with_context(|| {
                format!("unknown scenario {s:?} (match, nomatch, unknown, invalid, overlimit)")
            })
    }
}

/// Relative weights of the scenarios, e.g. `match=70,nomatch=15,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Scenario, u64)>,
    total: u64,
}

/// The default scenario mix.
pub const DEFAULT_MIX: &str = "match=70,nomatch=15,unknown=5,invalid=5,overlimit=5";

impl FromStr for Mix {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut weights: Vec<(Scenario, u64)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .split_once('=')
                .with_context(|| format!("mix entry {part:?} is not name=weight"))?;
            let scenario: Scenario = name.trim().parse()?;
            let w: u64 = w
                .trim()
                .parse()
                .with_context(|| format!("weight of {name:?} is not a whole number"))?;
            ensure!(
                weights.iter().all(|(s, _)| *s != scenario),
                "scenario {name:?} given twice"
            );
            if w > 0 {
                weights.push((scenario, w));
            }
        }
        Mix::new(weights)
    }
}

impl Mix {
    /// A mix of the given positive weights.
    pub fn new(mut weights: Vec<(Scenario, u64)>) -> Result<Self> {
        weights.retain(|(_, w)| *w > 0);
        weights.sort();
        let total = weights.iter().map(|(_, w)| w).sum();
        ensure!(total > 0, "the mix has no scenario with a positive weight");
        Ok(Mix { weights, total })
    }

    /// The same mix without `scenario` (e.g. overlimit without its key).
    pub fn without(&self, scenario: Scenario) -> Result<Self> {
        Mix::new(
            self.weights
                .iter()
                .copied()
                .filter(|(s, _)| *s != scenario)
                .collect(),
        )
    }

    /// Whether `scenario` has a positive weight.
    pub fn contains(&self, scenario: Scenario) -> bool {
        self.weights.iter().any(|(s, _)| *s == scenario)
    }

    /// The scenario chosen by the random number `r`, in proportion to the
    /// weights.
    pub fn pick(&self, r: u64) -> Scenario {
        let mut x = r % self.total;
        for (s, w) in &self.weights {
            if x < *w {
                return *s;
            }
            x -= w;
        }
        unreachable!("x < total")
    }

    /// The scenarios with a positive weight.
    pub fn scenarios(&self) -> Vec<Scenario> {
        self.weights.iter().map(|(s, _)| *s).collect()
    }
}

/// Builds the requests: which subject, which claims, a unique request id.
///
/// Each scenario walks its own subjects round robin, so with `citizens`
/// subjects and a few hundred calls in flight no subject sees more than a
/// few concurrent calls. Unknown IDs are never reused (indices from
/// `citizens` upwards, the synthetic generator's IDs being distinct below
/// [`ekyc_synth::UNIQUE_IDS_PER_SEED`]).
#[derive(Debug)]
pub struct RequestFactory {
    seed: u64,
    citizens: u64,
    run_id: String,
    next: [AtomicU64; 5],
}

impl RequestFactory {
    /// Requests about the synthetic registry `(seed, citizens)`; request ids
    /// start with `run_id`, which must differ between runs (the service
    /// treats request ids as idempotency keys, unique per tenant forever).
    pub fn new(seed: u64, citizens: u64, run_id: impl Into<String>) -> Self {
        RequestFactory {
            seed,
            citizens: citizens.max(1),
            run_id: run_id.into(),
            next: Default::default(),
        }
    }

    /// A run id unique to this process and moment.
    pub fn fresh_run_id() -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("ekyc-load-{nanos:x}-{}", std::process::id())
    }

    /// Request number `n` (unique in the run) of the given scenario.
    pub fn build(&self, scenario: Scenario, n: u64) -> pb::VerifyRequest {
        let k = self.next[scenario.index()].fetch_add(1, Ordering::Relaxed);
        let span = ekyc_synth::UNIQUE_IDS_PER_SEED
            .saturating_sub(self.citizens)
            .max(1);
        let index = match scenario {
            Scenario::Unknown => self.citizens + k % span,
            _ => k % self.citizens,
        };
        let c = ekyc_synth::citizen(self.seed, index);
        let dob = match scenario {
            Scenario::NoMatch => wrong_date_of_birth(&c.date_of_birth),
            Scenario::Invalid => "1990-02-30".to_string(),
            _ => c.date_of_birth,
        };
        pb::VerifyRequest {
            request_id: format!("{}-{n}", self.run_id),
            id_number: c.id_number,
            claims: Some(pb::Claims {
                full_name: Some(c.full_name),
                date_of_birth: Some(dob),
                ..Default::default()
            }),
            purpose_code: "ACCOUNT_OPENING".into(),
            consent_reference: format!("consent-{n}"),
        }
    }
}

/// A valid full date whose year differs from the one held (which may be
/// partial: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`), so it never matches.
pub fn wrong_date_of_birth(held: &str) -> String {
    let year: i32 = held.get(..4).and_then(|y| y.parse().ok()).unwrap_or(1980);
    format!("{:04}-01-15", year - 1)
}

/// The canonical gRPC name of a status code (`RESOURCE_EXHAUSTED`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered; `true` if the decision was YES.
    Answered(bool),
    /// Refused or failed, as `CODE/REASON` (`-` when the status carries no
    /// ErrorInfo; `CLIENT_TIMEOUT` when the generator's own timer fired).
    Error(String),
}

/// Sends one request with a client-side timer of `timeout` (the deadline
/// is also sent to the server as `grpc-timeout` by the client).
pub async fn call(client: &Client, request: pb::VerifyRequest, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, client.verify_unchecked(request)).await {
        Err(_) => Outcome::Error("DEADLINE_EXCEEDED/CLIENT_TIMEOUT".into()),
        Ok(Ok(r)) => Outcome::Answered(r.decision == pb::Decision::Yes as i32),
        Ok(Err(s)) => {
            let reason = s.get_error_details().error_info().map(|i| i.reason.clone());
            Outcome::Error(format!(
                "{}/{}",
                code_name(s.code()),
                reason.as_deref().unwrap_or("-")
            ))
        }
    }
}

/// Figures for one scenario (or the total).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Scenario name, or `total`.
    pub name: String,
    /// Requests sent (scheduled, in the open loop) in the measured window.
    pub sent: u64,
    /// Of those, answered (YES or NO).
    pub answered: u64,
    /// Answered YES.
    pub yes: u64,
    /// Answered NO.
    pub no: u64,
    /// Latency in microseconds of every completed call, answer or error.
    pub latency_us: Histogram<u64>,
    /// Errors by `CODE/REASON`.
    pub errors: BTreeMap<String, u64>,
}

impl Stats {
    /// Empty figures named `name`.
    pub fn new(name: &str) -> Self {
        Stats {
            name: name.to_string(),
            sent: 0,
            answered: 0,
            yes: 0,
            no: 0,
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
            errors: BTreeMap::new(),
        }
    }

    /// Adds one completed call.
    pub fn record(&mut self, outcome: &Outcome, latency: Duration) {
        self.sent += 1;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(us.max(1));
        match outcome {
            Outcome::Answered(yes) => {
                self.answered += 1;
                if *yes {
                    self.yes += 1;
                } else {
                    self.no += 1;
                }
            }
            Outcome::Error(key) => *self.errors.entry(key.clone()).or_default() += 1,
        }
    }

    /// Adds another scenario's figures (for the total).
    pub fn merge(&mut self, other: &Stats) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.yes += other.yes;
        self.no += other.no;
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms of equal bounds");
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// The latency at percentile `p` (0..=100) in milliseconds; 0 if empty.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        self.latency_us.value_at_quantile(p / 100.0) as f64 / 1e3
    }

    /// The largest latency in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1e3
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

/// The results of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was run.
    pub mode: Mode,
    /// Connections used.
    pub connections: usize,
    /// Measured window: from the end of the warm-up to the last measured
    /// completion, seconds.
    pub window_secs: f64,
    /// Warm-up requests (not in the figures).
    pub warmup_requests: u64,
    /// The largest delay of an actual send behind its schedule (open loop),
    /// milliseconds: if large, the generator itself could not keep up.
    pub max_send_lag_ms: f64,
    /// Per scenario, in [`Scenario::ALL`] order, only those in the mix.
    pub scenarios: Vec<Stats>,
    /// All scenarios together.
    pub total: Stats,
}

/// One completed call, as sent to the collector.
struct Done {
    scenario: Scenario,
    measured: bool,
    outcome: Outcome,
    latency: Duration,
    at: Instant,
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

/// Percentiles shown in the table and the JSON.
pub const PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

impl Report {
    fn rows(&self) -> impl Iterator<Item = &Stats> {
        self.scenarios.iter().chain(std::iter::once(&self.total))
    }

    fn throughput(&self, s: &Stats) -> f64 {
        if self.window_secs > 0.0 {
            s.answered as f64 / self.window_secs
        } else {
            0.0
        }
    }

    /// The report as a text table (plus the errors, one line each).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}, {} connection(s); measured window {:.2} s; {} warm-up calls excluded; \
             latest send behind schedule {:.1} ms",
            self.mode.describe(),
            self.connections,
            self.window_secs,
            self.warmup_requests,
            self.max_send_lag_ms
        );
        let _ = writeln!(
            out,
            "{:<10} {:>8} {:>8} {:>7} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "scenario",
            "sent",
            "answered",
            "yes",
            "no",
            "answered/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
        for s in self.rows() {
            let _ = write!(
                out,
                "{:<10} {:>8} {:>8} {:>7} {:>7} {:>10.1}",
                s.name,
                s.sent,
                s.answered,
                s.yes,
                s.no,
                self.throughput(s)
            );
            for p in PERCENTILES {
                let _ = write!(out, " {:>9.2}", s.percentile_ms(p));
            }
            let _ = writeln!(out, " {:>9.2}", s.max_ms());
        }
        let _ = writeln!(out, "errors (gRPC code / ErrorInfo reason):");
        let mut any = false;
        for s in self.rows() {
            for (k, v) in &s.errors {
                any = true;
                let _ = writeln!(out, "  {:<10} {k:<45} {v:>8}", s.name);
            }
        }
        if !any {
            let _ = writeln!(out, "  none");
        }
        out
    }

    /// The same figures as JSON.
    pub fn json(&self) -> serde_json::Value {
        let stats = |s: &Stats| {
            let pct: serde_json::Map<String, serde_json::Value> = PERCENTILES
                .iter()
                .map(|p| (format!("p{p}"), json!(s.percentile_ms(*p))))
                .collect();
            json!({
                "name": s.name, "sent": s.sent, "answered": s.answered,
                "yes": s.yes, "no": s.no,
                "answered_per_s": self.throughput(s),
                "latency_ms": {
                    "percentiles": pct, "max": s.max_ms(),
                    "mean": if s.latency_us.is_empty() { 0.0 } else { s.latency_us.mean() / 1e3 },
                },
                "errors": s.errors,
            })
        };
        let mode = match self.mode {
            Mode::Closed { callers } => json!({"kind": "closed", "callers": callers}),
            Mode::Open { rate, arrivals } => json!({
                "kind": "open", "rate": rate,
                "arrivals": format!("{arrivals:?}").to_lowercase(),
            }),
        };
        json!({
            "mode": mode,
            "connections": self.connections,
            "window_secs": self.window_secs,
            "warmup_requests": self.warmup_requests,
            "max_send_lag_ms": self.max_send_lag_ms,
            "latency_measured_from": match self.mode {
                Mode::Open { .. } => "scheduled send time",
                Mode::Closed { .. } => "actual send time",
            },
            "scenarios": self.scenarios.iter().map(stats).collect::<Vec<_>>(),
            "total": stats(&self.total),
        })
    }

    /// A latency-by-percentile plot as a standalone SVG document: x is the
    /// percentile on a log scale of `1 / (1 - p)` from 0 to 99.99, y the
    /// latency in milliseconds; one line per scenario and one for the total.
    pub fn svg(&self) -> String {
        percentile_svg(&self.mode.describe(), &self.rows().collect::<Vec<_>>())
    }
}

/// Where percentile `p` (0..=99.99) goes on the log axis: `log10(1 / (1 -
/// p/100))`, 0 for p = 0, 4 for p = 99.99.
pub fn percentile_x(p: f64) -> f64 {
    let p = p.clamp(0.0, 99.99);
    (1.0 / (1.0 - p / 100.0)).log10()
}

/// A round number at least `max` for the top of the y axis.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * mag)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG percentile plot of `series` (see [`Report::svg`]).
pub fn percentile_svg(title: &str, series: &[&Stats]) -> String {
    const W: f64 = 800.0;
    const H: f64 = 480.0;
    const L: f64 = 70.0;
    const R: f64 = 160.0;
    const T: f64 = 40.0;
    const B: f64 = 50.0;
    const COLORS: [&str; 6] = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#000000",
    ];
    const STEPS: usize = 400;
    const X_MAX: f64 = 4.0;
    let (pw, ph) = (W - L - R, H - T - B);
    let y_max = nice_ceiling(
        series
            .iter()
            .map(|s| s.percentile_ms(99.99))
            .fold(0.0, f64::max),
    );
    let sx = |x: f64| L + x / X_MAX * pw;
    let sy = |ms: f64| T + ph - (ms / y_max).min(1.0) * ph;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">Latency by percentile: {}</text>"#,
        L + pw / 2.0,
        escape(title)
    );
    // Grid and x ticks.
    for (p, label) in [
        (0.0, "0"),
        (90.0, "90"),
        (99.0, "99"),
        (99.9, "99.9"),
        (99.99, "99.99"),
    ] {
        let x = sx(percentile_x(p));
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            T + ph,
            T + ph + 16.0
        );
    }
    for i in 0..=5 {
        let ms = y_max * i as f64 / 5.0;
        let y = sy(ms);
        let _ = writeln!(
            out,
            r##"<line x1="{L}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            L + pw,
            L - 6.0,
            y + 4.0,
            trim_number(ms)
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of 1/(1-p))</text>"#,
        L + pw / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency (ms)</text>"#,
        T + ph / 2.0,
        T + ph / 2.0
    );
    for (i, s) in series.iter().enumerate() {
        let color = if s.name == "total" {
            COLORS[5]
        } else {
            COLORS[i % 5]
        };
        if !s.latency_us.is_empty() {
            let mut points = String::new();
            for k in 0..=STEPS {
                let x = X_MAX * k as f64 / STEPS as f64;
                let p = 100.0 * (1.0 - 10f64.powf(-x));
                let _ = write!(points, "{:.1},{:.1} ", sx(x), sy(s.percentile_ms(p)));
            }
            let dash = if s.name == "total" {
                r#" stroke-dasharray="6 3""#
            } else {
                ""
            };
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.8"{dash} points="{}"/>"#,
                points.trim_end()
            );
        }
        let ly = T + 14.0 + 20.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{} ({})</text>"#,
            L + pw + 12.0,
            L + pw + 36.0,
            L + pw + 42.0,
            ly + 4.0,
            escape(&s.name),
            s.sent
        );
    }
    out.push_str("</svg>\n");
    out
}

fn trim_number(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_seeded_and_uniform() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(SplitMix64::new(7).next_u64(), SplitMix64::new(8).next_u64());
        let mut s = SplitMix64::new(7);
        for n in 0..5 {
            assert_eq!(s.next_u64(), SplitMix64::nth(7, n), "output {n}");
        }
        let mut r = SplitMix64::new(0);
        let n = 100_000;
        let mean = (0..n).map(|_| r.next_f64()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert!((0..n).all(|_| {
            let x = r.next_f64();
            x > 0.0 && x <= 1.0
        }));
    }

    #[test]
    fn exponential_has_the_right_mean() {
        let mut r = SplitMix64::new(42);
        let n = 200_000;
        let mean = (0..n).map(|_| r.exponential(0.02)).sum::<f64>() / n as f64;
        assert!((mean - 0.02).abs() < 0.0005, "{mean}");
    }

    #[test]
    fn schedules_keep_the_rate() {
        let c: Vec<Duration> = Schedule::new(Arrivals::Constant, 200.0, 1)
            .take(201)
            .collect();
        assert_eq!(c[0], Duration::ZERO);
        assert!((c[200].as_secs_f64() - 1.0).abs() < 1e-9);
        assert!(c.windows(2).all(|w| w[1] > w[0]));
        let p: Vec<Duration> = Schedule::new(Arrivals::Poisson, 100.0, 1)
            .take(10_001)
            .collect();
        assert!(p.windows(2).all(|w| w[1] >= w[0]));
        let secs = p[10_000].as_secs_f64();
        assert!((secs - 100.0).abs() < 3.0, "{secs}");
        let gaps: Vec<f64> = p.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        // Exponential: about 1/e of the gaps are longer than the mean.
        let long = gaps.iter().filter(|g| **g > 0.01).count() as f64 / gaps.len() as f64;
        assert!((long - (-1f64).exp()).abs() < 0.02, "{long}");
    }

    #[test]
    fn mix_parses_and_picks_in_proportion() {
        let mix: Mix = DEFAULT_MIX.parse().unwrap();
        let mut counts = BTreeMap::new();
        for n in 0..100_000u64 {
            *counts
                .entry(mix.pick(SplitMix64::nth(0, n)))
                .or_insert(0u64) += 1;
        }
        let share = |s| counts[&s] as f64 / 100_000.0;
        assert!((share(Scenario::Match) - 0.70).abs() < 0.01);
        assert!((share(Scenario::NoMatch) - 0.15).abs() < 0.01);
        assert!((share(Scenario::OverLimit) - 0.05).abs() < 0.01);
        let without = mix.without(Scenario::OverLimit).unwrap();
        assert!(!without.contains(Scenario::OverLimit));
        assert!("match=0".parse::<Mix>().is_err());
        assert!("match=1,match=2".parse::<Mix>().is_err());
        assert!("bogus=1".parse::<Mix>().is_err());
        assert!("match".parse::<Mix>().is_err());
        assert_eq!(
            "match=1".parse::<Mix>().unwrap().pick(12345),
            Scenario::Match
        );
    }

    #[test]
    fn requests_follow_their_scenario() {
        let f = RequestFactory::new(42, 300, "t");
        let dob = |r: &pb::VerifyRequest| r.claims.as_ref().unwrap().date_of_birth.clone().unwrap();
        let m = f.build(Scenario::Match, 0);
        let c0 = ekyc_synth::citizen(42, 0);
        assert_eq!(m.id_number, c0.id_number);
        assert_eq!(dob(&m), c0.date_of_birth);
        let nm = f.build(Scenario::NoMatch, 1);
        assert_eq!(nm.id_number, c0.id_number);
        assert_ne!(dob(&nm)[..4], c0.date_of_birth[..4]);
        assert_eq!(dob(&f.build(Scenario::Invalid, 2)), "1990-02-30");
        let u = f.build(Scenario::Unknown, 3);
        let registered: Vec<String> = ekyc_synth::citizens(42, 300).map(|c| c.id_number).collect();
        assert!(!registered.contains(&u.id_number));
        // Round robin: the next match is about the next citizen; ids unique.
        assert_eq!(f.build(Scenario::Match, 4).id_number, registered[1]);
        let ids: std::collections::HashSet<String> = (5..50)
            .map(|n| f.build(Scenario::Match, n).request_id)
            .collect();
        assert_eq!(ids.len(), 45);
        assert_eq!(wrong_date_of_birth("1950"), "1949-01-15");
        assert_eq!(wrong_date_of_birth("2000-02-29"), "1999-01-15");
    }

    #[test]
    fn stats_percentiles_and_merge() {
        let mut a = Stats::new("a");
        for ms in 1..=100 {
            a.record(&Outcome::Answered(true), Duration::from_millis(ms));
        }
        a.record(
            &Outcome::Error("UNAVAILABLE/-".into()),
            Duration::from_millis(500),
        );
        assert_eq!((a.sent, a.answered, a.yes), (101, 100, 100));
        assert!((a.percentile_ms(50.0) - 51.0).abs() < 0.5);
        assert!((a.max_ms() - 500.0).abs() < 1.0);
        let mut t = Stats::new("total");
        t.merge(&a);
        t.merge(&a);
        assert_eq!(t.sent, 202);
        assert_eq!(t.errors["UNAVAILABLE/-"], 2);
    }

    #[test]
    fn svg_has_one_line_per_series() {
        assert_eq!(percentile_x(0.0), 0.0);
        assert!((percentile_x(99.0) - 2.0).abs() < 1e-9);
        assert!((percentile_x(99.99) - 4.0).abs() < 1e-6);
        assert_eq!(nice_ceiling(430.0), 500.0);
        assert!((nice_ceiling(0.7) - 0.8).abs() < 1e-9);
        assert_eq!(nice_ceiling(599.0), 600.0);
        let mut a = Stats::new("match");
        let mut b = Stats::new("nomatch");
        for ms in 1..=1000 {
            a.record(&Outcome::Answered(true), Duration::from_micros(ms * 100));
            b.record(&Outcome::Answered(false), Duration::from_micros(ms * 300));
        }
        let svg = percentile_svg("a <test>", &[&a, &b]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;test&gt;"));
    }
}
