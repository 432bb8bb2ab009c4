//! Argon2id implementations side by side on this machine: the service's
//! RustCrypto `argon2` with its reused buffer, the same with a fresh buffer
//! per evaluation, and the reference C implementation. Prints a markdown
//! table of evaluations/s with each as a ratio to the service's, measured
//! in interleaved rounds. `bash loadtest/bench.sh` prints the same rows at
//! the default cost; this one takes any cost, e.g. `--m-kib 65536`.
#![forbid(unsafe_code)]

use std::time::Duration;

use anyhow::{Result, ensure};
use clap::Parser;
use ekyc_domain::keys::KdfParams;
use ekyc_loadtest::kdf::compare;
use ekyc_loadtest::process::machine;

#[derive(Parser)]
#[command(about = "Argon2id implementations compared on this machine")]
struct Args {
    /// Memory cost, KiB.
    #[arg(long, default_value_t = KdfParams::DEFAULT.m_kib)]
    m_kib: u32,
    /// Passes.
    #[arg(long, default_value_t = KdfParams::DEFAULT.t)]
    t: u32,
    /// Lanes.
    #[arg(long, default_value_t = KdfParams::DEFAULT.p)]
    p: u32,
    /// Threads, one per core [default: available parallelism].
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds per implementation per round.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Interleaved rounds.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let params = KdfParams {
        id: 0,
        m_kib: args.m_kib,
        t: args.t,
        p: args.p,
    };
    ensure!(params.validate().is_ok(), "invalid Argon2 parameters");
    let rates = compare(
        params,
        threads,
        Duration::from_secs_f64(args.seconds),
        args.rounds,
    )?;
    println!("{}\n", machine(threads));
    println!(
        "argon2-rust runs its {} path on this CPU\n",
        ekyc_domain::keys::KdfImplementation::Argon2Rust.backend()
    );
    println!(
        "Argon2id m={} KiB, t={}, p={}; {threads} thread(s), {} round(s) of {} s each\n",
        args.m_kib, args.t, args.p, args.rounds, args.seconds
    );
    println!(
        "| implementation | evaluations/s | ms per evaluation per thread | ratio to ekycd's |"
    );
    println!("|---|---|---|---|");
    let service = rates[0].1;
    for (imp, rate) in &rates {
        println!(
            "| {} | {rate:.1} | {:.2} | {:.2} |",
            imp.label(),
            threads as f64 / rate * 1e3,
            rate / service
        );
    }
    Ok(())
}
