//! Overload benchmark for `ekycd`: does memory stay bounded and are shed
//! calls answered at once when callers offer ten times what the Argon2 pool
//! can hash?
//!
//! It starts a real release `ekycd` on a throw-away data directory with a
//! 300-citizen demo registry at the default Argon2 cost, measures the
//! pool's saturation throughput R with a closed loop, then offers 10 x R
//! calls/s with an open loop while sampling the server's VmRSS. All ratios
//! are against baselines measured in the same run, on the same machine.
//! Run it with `bash loadtest/overload.sh [--json out.json]`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use ekyc_client::Client;
use ekyc_domain::keys::KdfParams;
use ekyc_loadtest::process::{machine, prepare, proc_kib, sample_rss, settled_rss, start_server};
use ekyc_loadtest::{Outcome as Ended, RequestFactory, SHED, Scenario};
use serde_json::json;

/// Synthetic citizens in the registry; calls go round robin over all of
/// them so the per-subject guard never sees one subject twice in flight.
const CITIZENS: u64 = 300;
const SEED: u64 = 42;
const SEQUENTIAL_CALLS: usize = 20;
/// Deadline of every call (and of the connections): long enough that no
/// answer under overload is cut off, so queueing shows in the latency.
const TIMEOUT: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// USER_HZ, the unit of /proc CPU times; 100 on every Linux ABI we run on
/// (reading it properly needs libc's sysconf, i.e. unsafe code).
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Parser)]
#[command(about = "Overload benchmark: memory bound and shedding latency of ekycd")]
struct Args {
    /// The release ekycd binary.
    #[arg(long, default_value = "target/release/ekycd")]
    ekycd: PathBuf,
    /// Argon2 hashing threads of the server (EKYCD_ARGON2__POOL_THREADS).
    #[arg(long, default_value_t = 2)]
    pool_threads: usize,
    /// Closed-loop callers measuring R [default: 4 x pool threads, the
    /// default queue capacity: enough to keep the pool busy, too few to
    /// ever be shed].
    #[arg(long)]
    callers: Option<usize>,
    /// Offered load as a multiple of the measured saturation throughput R.
    #[arg(long, default_value_t = 10.0)]
    factor: f64,
    /// Length of the closed-loop saturation phase, seconds.
    #[arg(long, default_value_t = 5)]
    saturation_secs: u64,
    /// Length of the open-loop overload phase, seconds.
    #[arg(long, default_value_t = 10)]
    overload_secs: u64,
    /// gRPC connections (Client instances) used round robin.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// utime + stime of a /proc/.../stat file, in ticks.
fn stat_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised name: state is the 3rd, utime the 14th.
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |s| s.1)
        .split_whitespace()
        .collect();
    f.get(11..13)
        .map_or(0, |v| v.iter().filter_map(|t| t.parse::<u64>().ok()).sum())
}

/// CPU time so far: the whole machine (busy, all processes), the server,
/// its Argon2 threads, and this load generator. Differences over a phase
/// tell whether the pool was really saturated and whether other processes
/// on the machine disturbed the timings.
#[derive(Clone, Copy)]
struct Cpu {
    machine: u64,
    server: u64,
    pool: u64,
    own: u64,
    at: Instant,
}

impl Cpu {
    fn now(pid: u32) -> Cpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let total: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq: busy leaves out idle,
        // iowait and steal (time the hypervisor gave to other guests).
        let machine = total
            .iter()
            .take(7)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, t)| t)
            .sum();
        let pool = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.starts_with("argon2-"))
            })
            .map(|t| stat_ticks(&t.path().join("stat").to_string_lossy()))
            .sum();
        Cpu {
            machine,
            server: stat_ticks(&format!("/proc/{pid}/stat")),
            pool,
            own: stat_ticks("/proc/self/stat"),
            at: Instant::now(),
        }
    }

    /// CPU use since `earlier`: the pool's share of its threads' time,
    /// and cores used by the server, by this generator and by anything
    /// else on the machine (which disturbs the timings).
    fn since(&self, earlier: &Cpu, threads: usize) -> CpuUse {
        let ticks = (self.at - earlier.at).as_secs_f64() * TICKS_PER_SEC;
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / ticks;
        let (server, generator) = (d(self.server, earlier.server), d(self.own, earlier.own));
        CpuUse {
            pool_busy: d(self.pool, earlier.pool) / threads as f64,
            server,
            generator,
            others: (d(self.machine, earlier.machine) - server - generator).max(0.0),
        }
    }
}

struct CpuUse {
    pool_busy: f64,
    server: f64,
    generator: f64,
    others: f64,
}

impl CpuUse {
    fn json(&self) -> serde_json::Value {
        json!({"pool_busy": self.pool_busy, "server_cores": self.server,
               "generator_cores": self.generator, "other_cores": self.others})
    }
}

/// Matching claims about the demo registry's citizens, in turn; a fresh
/// data dir per run keeps the request ids unique.
static REQUESTS: LazyLock<RequestFactory> =
    LazyLock::new(|| RequestFactory::new(SEED, CITIZENS, "overload"));

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Answered,
    /// Answered, but not YES: the claims were wrong, the figures are void.
    AnsweredNo,
    /// RESOURCE_EXHAUSTED with reason HASHING_OVERLOADED.
    Shed,
    /// Any other error, as `CODE/REASON`.
    Other(String),
}

/// One call's outcome and timing.
#[derive(Clone)]
struct Call {
    outcome: Outcome,
    /// From its scheduled send time (the open loop's schedule, so a late
    /// sender cannot hide queueing: what a caller would see).
    latency: Duration,
    /// From the moment it was actually sent: the server's share (plus the
    /// client library's), without this generator's own lateness.
    from_send: Duration,
    done: Instant,
}

type Results = Vec<Call>;

/// Sends one call scheduled at `since`.
async fn call(client: &Client, n: u64, since: Instant) -> Call {
    let sent = Instant::now();
    let request = REQUESTS.build(Scenario::Match, n);
    // The load generator's call, so this tool and the bench count the same
    // calls as shed.
    let outcome = match ekyc_loadtest::call(client, request, TIMEOUT).await {
        Ended::Answered(true) => Outcome::Answered,
        Ended::Answered(false) => Outcome::AnsweredNo,
        Ended::Error(key) if key == SHED => Outcome::Shed,
        Ended::Error(key) => Outcome::Other(key),
    };
    let done = Instant::now();
    let (latency, from_send) = (done - since, done - sent);
    Call {
        outcome,
        latency,
        from_send,
        done,
    }
}

/// Sorted latencies (by `pick`) of the calls with outcome `want`.
fn latencies(results: &Results, want: Outcome, pick: fn(&Call) -> Duration) -> Vec<Duration> {
    let mut v: Vec<Duration> = results
        .iter()
        .filter(|c| c.outcome == want)
        .map(pick)
        .collect();
    v.sort();
    v
}

/// Nearest-rank percentile of a sorted slice, in milliseconds.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .map_or(f64::NAN, |d| ms(*d))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}

fn counts(results: &Results) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for c in results {
        *m.entry(format!("{:?}", c.outcome)).or_default() += 1;
    }
    m
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    // The server runs in the temp dir, where a relative path means nothing.
    let path = args.ekycd.display().to_string();
    args.ekycd = std::fs::canonicalize(&args.ekycd).context(path)?;
    let (began, machine) = (Instant::now(), machine(args.pool_threads));
    let dir = tempfile::tempdir()?;
    let api_key = prepare(&args.ekycd, dir.path(), &[], CITIZENS, SEED)?;
    let server = start_server(&args.ekycd, dir.path(), &[], args.pool_threads)?;
    let (pid, threads) = (server.pid, args.pool_threads);
    // Before any connection or call, so everything after is caused by load.
    let at_listen = proc_kib(pid, "VmRSS")?;
    let idle = settled_rss(pid).await?;

    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let c = Client::connect(&server.endpoint, Some(&api_key), TIMEOUT);
        clients.push(Arc::new(c.await?));
    }
    let client = |i: u64| Arc::clone(&clients[i as usize % clients.len()]);
    let next = Arc::new(AtomicU64::new(0));
    let take = || next.fetch_add(1, Ordering::Relaxed);

    // Warm-up, then one evaluation's time: sequential calls on an idle
    // pool, so each is one Argon2 evaluation plus the request overhead.
    let mut seq = Results::new();
    for i in 0..2 * SEQUENTIAL_CALLS as u64 {
        seq.push(call(&client(i), take(), Instant::now()).await);
        if i + 1 == SEQUENTIAL_CALLS as u64 {
            seq.clear();
        }
    }
    let warm = proc_kib(pid, "VmRSS")?;
    let one_eval = pct(&latencies(&seq, Outcome::Answered, |c| c.latency), 50.0);
    let seq_counts = counts(&seq);
    ensure!(
        seq_counts.get("Answered") == Some(&SEQUENTIAL_CALLS),
        "sequential calls: {seq_counts:?}"
    );

    // Saturation: a closed loop whose callers keep the pool busy.
    let callers = args.callers.unwrap_or(4 * threads);
    let sat_for = Duration::from_secs(args.saturation_secs);
    let (cpu0, start) = (Cpu::now(pid), Instant::now());
    let mut tasks = Vec::new();
    for k in 0..callers as u64 {
        let (client, next) = (client(k), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut out = Results::new();
            while start.elapsed() < sat_for {
                let n = next.fetch_add(1, Ordering::Relaxed);
                out.push(call(&client, n, Instant::now()).await);
            }
            out
        }));
    }
    let mut sat = Results::new();
    for t in tasks {
        sat.extend(t.await?);
    }
    let sat_cpu = Cpu::now(pid).since(&cpu0, threads);
    let sat_lat = latencies(&sat, Outcome::Answered, |c| c.latency);
    let r = sat_lat.len() as f64 / start.elapsed().as_secs_f64();
    let sat_mean = sat_lat.iter().map(|d| ms(*d)).sum::<f64>() / sat_lat.len().max(1) as f64;
    let sat_rss = proc_kib(pid, "VmRSS")?;
    ensure!(r > 0.0, "nothing answered: {:?}", counts(&sat));

    // Overload: an open loop at factor x R; each call is its own task, so
    // slow answers never slow the sender down.
    let rate = args.factor * r;
    let window = Duration::from_secs(args.overload_secs);
    let total = (rate * window.as_secs_f64()).round() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pid, SAMPLE_EVERY, Arc::clone(&stop));
    let (cpu0, start) = (Cpu::now(pid), Instant::now());
    let mut lag = Duration::ZERO;
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        lag = lag.max(at.elapsed());
        let (client, n) = (client(i), take());
        tasks.push(tokio::spawn(async move { call(&client, n, at).await }));
    }
    let mut over = Results::with_capacity(tasks.len());
    for t in tasks {
        over.push(t.await?);
    }
    let over_cpu = Cpu::now(pid).since(&cpu0, threads);
    stop.store(true, Ordering::Relaxed);
    let (peak, samples) = sampler.join().expect("sampler thread");
    let (hwm, after) = (proc_kib(pid, "VmHWM")?, proc_kib(pid, "VmRSS")?);
    let server_log = std::fs::read_to_string(dir.path().join("ekycd.stderr"))?;
    server.stop()?;

    let ans = latencies(&over, Outcome::Answered, |c| c.latency);
    let shed = latencies(&over, Outcome::Shed, |c| c.latency);
    let shed_sent = latencies(&over, Outcome::Shed, |c| c.from_send);
    let deadline = start + window;
    let in_window = over
        .iter()
        .filter(|c| c.outcome == Outcome::Answered && c.done <= deadline)
        .count();
    let over_tput = in_window as f64 / window.as_secs_f64();
    let kdf = KdfParams::DEFAULT;
    let bound = threads as i64 * i64::from(kdf.m_kib);
    let shed_ratio = pct(&shed, 99.0) / one_eval;
    let bounded = peak - idle <= bound && hwm - idle <= bound;
    let prompt = shed_ratio < 0.1;

    println!("machine: {machine}");
    let (m_kib, sat_s, over_s) = (kdf.m_kib, args.saturation_secs, args.overload_secs);
    println!(
        "ekycd: {}, pool_threads={threads}, Argon2 m={m_kib} KiB t={} p={}, {CITIZENS} citizens",
        args.ekycd.display(),
        kdf.t,
        kdf.p
    );
    println!(
        "phases: {SEQUENTIAL_CALLS} warm-up + {SEQUENTIAL_CALLS} sequential calls; closed loop \
         {callers} callers {sat_s}s; open loop {over_s}s over {} connections, VmRSS sampled \
         every 20 ms ({samples} samples)",
        clients.len()
    );
    // Row makers: (figure, value, ratio against this run's baseline).
    let row = |name: &str, value: String, ratio: String| [name.to_string(), value, ratio];
    let mem = |name: &str, kib: i64| row(name, format!("{:.1} MiB", mib(kib)), String::new());
    let growth = |name: &str, kib: i64| {
        let ratio = format!("{:.2} x bound", kib as f64 / bound as f64);
        row(name, format!("{:+.1} MiB", mib(kib)), ratio)
    };
    let time = |name: &str, x: f64| {
        row(
            name,
            format!("{x:.1} ms"),
            format!("{:.2} x one eval", x / one_eval),
        )
    };
    let spread = |name: &str, v: &[Duration]| {
        let p = |q| pct(v, q);
        let ratio = format!("p99 {:.3} x one eval", p(99.0) / one_eval);
        row(
            name,
            format!("{:.2} / {:.2} / {:.2} ms", p(50.0), p(99.0), p(100.0)),
            ratio,
        )
    };
    let per_s =
        |name: &str, x: f64| row(name, format!("{x:.1} calls/s"), format!("{:.2} x R", x / r));
    let count = |name: &str, n: usize| row(name, n.to_string(), String::new());
    let cpu = |name: &str, c: &CpuUse| {
        let (s, g, o) = (c.server, c.generator, c.others);
        let cores = format!("cores: ekycd {s:.2}, generator {g:.2}, others {o:.2}");
        row(
            name,
            format!("pool busy {:.0}%", 100.0 * c.pool_busy),
            cores,
        )
    };
    let mut rows = vec![
        growth("pool memory bound (threads x m)", bound),
        mem("RSS when ekycd printed its address", at_listen),
        mem("idle RSS (settled after startup, no call yet)", idle),
        mem("RSS after warm-up", warm),
        mem("RSS after saturation phase", sat_rss),
        mem("peak RSS during overload", peak),
        mem("RSS after overload", after),
        mem("VmHWM at end (lifetime peak)", hwm),
        growth("peak RSS - idle", peak - idle),
        growth("VmHWM - idle", hwm - idle),
        growth("peak RSS - post-warm-up", peak - warm),
        time("one evaluation (median, sequential)", one_eval),
        row(
            "saturation R (closed loop)",
            format!("{r:.1} calls/s"),
            format!("{:.1} ms per call per thread", 1e3 * threads as f64 / r),
        ),
        time("saturation: mean answered latency", sat_mean),
        cpu("saturation: CPU", &sat_cpu),
        per_s("offered rate (open loop)", rate),
        count("calls sent", over.len()),
        count("answered", ans.len()),
        count("shed (HASHING_OVERLOADED)", shed.len()),
    ];
    for (outcome, n) in counts(&over) {
        if outcome != "Answered" && outcome != "Shed" {
            rows.push(count(&format!("other: {outcome}"), n));
        }
    }
    rows.extend([
        per_s("answered throughput under overload", over_tput),
        spread("answered latency p50 / p99 / max", &ans),
        spread("shed latency p50 / p99 / max", &shed),
        spread("shed, from actual send p50 / p99 / max", &shed_sent),
        cpu("overload: CPU", &over_cpu),
        time("load generator: latest send", ms(lag)),
    ]);
    println!("\n| figure | value | ratio |\n|---|---:|---:|");
    for [name, value, ratio] in rows {
        println!("| {name} | {value} | {ratio} |");
    }
    let verdict = |ok: bool| if ok { "yes" } else { "NO" };
    println!(
        "\nmemory bounded (peak RSS and VmHWM - idle <= bound): {}",
        verdict(bounded)
    );
    println!(
        "shed at once (shed p99 < 0.1 x one evaluation): {}",
        verdict(prompt)
    );
    if sat_cpu.others.max(over_cpu.others) > 0.2 {
        println!("WARNING: other processes used CPU during the run; timings are disturbed");
    }
    if let Some(first) = server_log.lines().next() {
        let n = server_log.lines().count();
        println!("ekycd wrote {n} lines on stderr; the first: {first}");
    }
    println!("run time: {:.1} s", began.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        let lat = |v: &[Duration]| json!({"count": v.len(), "p50": pct(v, 50.0), "p99": pct(v, 99.0), "max": pct(v, 100.0)});
        let doc = json!({
            "machine": machine, "pool_threads": threads,
            "argon2": {"m_kib": kdf.m_kib, "t": kdf.t, "p": kdf.p},
            "memory_kib": {
                "bound": bound, "at_listen": at_listen, "idle": idle, "after_warm_up": warm, "after_saturation": sat_rss,
                "overload_peak": peak, "after_overload": after, "vm_hwm": hwm, "rss_samples": samples,
            },
            "growth_over_bound": {
                "peak_minus_idle": (peak - idle) as f64 / bound as f64,
                "hwm_minus_idle": (hwm - idle) as f64 / bound as f64,
                "peak_minus_warm_up": (peak - warm) as f64 / bound as f64,
            },
            "one_eval_ms": one_eval,
            "saturation": {
                "callers": callers, "r_per_s": r, "mean_latency_ms": sat_mean,
                "cpu": sat_cpu.json(), "outcomes": counts(&sat),
            },
            "overload": {
                "offered_per_s": rate, "secs": args.overload_secs, "connections": clients.len(),
                "outcomes": counts(&over), "answered_per_s": over_tput,
                "answered_over_r": over_tput / r, "cpu": over_cpu.json(),
                "answered_latency_ms": lat(&ans), "shed_latency_ms": lat(&shed),
                "shed_latency_from_send_ms": lat(&shed_sent),
                "shed_p99_over_one_eval": shed_ratio, "latest_send_ms": ms(lag),
            },
            "memory_bounded": bounded, "shed_at_once": prompt,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
    }
    Ok(())
}
