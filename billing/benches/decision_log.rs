//! What the decision log adds to an answered call, as a fraction of one
//! Argon2id evaluation at the default cost timed in the same run.
//!
//! `cargo bench -p ekyc-billing --bench decision_log [-- postgres://...]`
//!
//! Method: 16 concurrent writers (the writer task batches them, as the
//! service's concurrent calls are) record usage events through the real
//! ledger, in rounds that alternate between plain events (`record`, what
//! a call cost before the log) and events with their decision-log entry
//! (`record_decided`: the entry's JSON, its leaf and node hashes and two
//! more inserts in the same transaction). Each round writes 2,000 events;
//! 5 rounds of each kind, the median of each kind taken. The log's cost
//! per call is the difference of the medians per event; the ratio is that
//! over one evaluation (median of 9 timed in the same run, after warm-up).
//! SQLite by default, in a temporary directory (`synchronous = FULL`, so
//! the disk's flush is in both kinds); a PostgreSQL URL as the argument
//! measures there instead (a fresh schema is not made: use a scratch
//! database).
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use ekyc_billing::{Decision, Ledger, UsageEvent};
use ekyc_domain::keys::{KdfMemory, KdfParams, Pepper, derive_key};
use ekyc_domain::normalize::normalize_id;
use ekyc_transparency::DecisionEntry;

const WRITERS: usize = 16;
const PER_ROUND: usize = 2_000;
const ROUNDS: usize = 5;

fn event(round: usize, n: usize) -> (UsageEvent, Decision) {
    let tx = format!("tx_{round:04}{n:028}");
    let event = UsageEvent {
        tenant_id: "tn_bench".into(),
        request_id: format!("bench-{round}-{n}-{}", std::process::id()),
        event_time_ms: 1_765_000_000_000 + n as i64,
        method: "Verify".into(),
        fields: vec!["full_name".into(), "date_of_birth".into()],
        units: 3,
        outcome: "yes".into(),
        fingerprint: format!("{:064x}", n),
        replay: Some(format!(
            "{{\"v\":1,\"tx\":\"{tx}\",\"at\":0,\"rv\":1,\"found\":null,\"fields\":[[1,1,null],[2,1,null]],\"yes\":true}}"
        )),
        invoice_number: None,
    };
    let subject = format!("{:064x}", n * 7919);
    let entry = DecisionEntry {
        v: 1,
        time_ms: event.event_time_ms,
        tenant: event.tenant_id.clone(),
        api_key: "k_0123456789abcdef".into(),
        purpose: "ACCOUNT_OPENING".into(),
        consent: format!("{:064x}", 42),
        transaction: tx.clone(),
        request: event.request_id.clone(),
        registry_version: 1,
        method: "Verify".into(),
        fields: vec![
            ("full_name".into(), "MATCH".into()),
            ("date_of_birth".into(), "MATCH".into()),
        ],
        decision: "YES".into(),
        subject: subject.clone(),
    };
    let decision = Decision {
        tenant_id: event.tenant_id.clone(),
        time_ms: event.event_time_ms,
        transaction_id: tx,
        subject,
        entry: entry.encode(),
    };
    (event, decision)
}

/// Seconds per event for one round of `PER_ROUND` events.
async fn round(ledger: &Arc<Ledger>, round: usize, logged: bool) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let ledger = Arc::clone(ledger);
        tasks.push(tokio::spawn(async move {
            for n in (w..PER_ROUND).step_by(WRITERS) {
                let (event, decision) = event(round, n);
                let done = if logged {
                    ledger.record_decided(event, decision).await
                } else {
                    ledger.record(event).await
                };
                done.expect("recorded");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    start.elapsed().as_secs_f64() / PER_ROUND as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn evaluation_secs() -> f64 {
    let params = KdfParams::DEFAULT;
    let pepper = Pepper::new(1, &[7; 32]);
    let mut memory = KdfMemory::new(&params);
    let id = normalize_id("001090012345").expect("a valid ID");
    let mut times = Vec::new();
    for i in 0..12u64 {
        let start = Instant::now();
        std::hint::black_box(derive_key(&pepper, &params, &id, &mut memory).ok());
        if i >= 3 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    median(times)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let dir = tempfile::tempdir().expect("temp dir");
    let url = url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("ledger.db").display()));
    let ledger = Arc::new(Ledger::open(&url).await.expect("ledger"));
    let eval = evaluation_secs();
    // Warm-up of both kinds, then alternating rounds.
    round(&ledger, 0, false).await;
    round(&ledger, 1, true).await;
    let (mut plain, mut logged) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        plain.push(round(&ledger, 2 + 2 * r, false).await);
        logged.push(round(&ledger, 3 + 2 * r, true).await);
    }
    let eval_after = evaluation_secs();
    let eval = (eval + eval_after) / 2.0;
    let (plain, logged) = (median(plain), median(logged));
    let cost = (logged - plain).max(0.0);
    let backend = if url.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!("| measure | value | baseline | ratio | note |");
    println!("|---|---|---|---|---|");
    println!(
        "| usage event alone, per call ({backend}) | {:.1} µs | one evaluation {:.2} ms | {:.4} | {WRITERS} writers, group commit |",
        plain * 1e6,
        eval * 1e3,
        plain / eval
    );
    println!(
        "| usage event + decision-log entry, per call | {:.1} µs | one evaluation {:.2} ms | {:.4} | same transaction |",
        logged * 1e6,
        eval * 1e3,
        logged / eval
    );
    println!(
        "| L: the decision log's cost per answered call | {:.1} µs | one evaluation {:.2} ms | {:.4} | target <= 0.02: {} |",
        cost * 1e6,
        eval * 1e3,
        cost / eval,
        if cost / eval <= 0.02 { "met" } else { "MISSED" }
    );
    ledger.close().await;
}
