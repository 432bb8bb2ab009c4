//! Counters and the Prometheus scrape endpoint (`GET /metrics`).
//!
//! Metrics carry no personal data: labels are outcomes, reasons and limit
//! names, never a subject, a claim or a tenant's request. The endpoint is a
//! deliberately small HTTP/1.1 responder on its own port (usually not
//! exposed outside the cluster), so the gRPC port stays HTTP/2-only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ekyc_limits::LimitStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::App;

/// Verify outcomes, and the subject guard's work per tenant.
#[derive(Debug, Default)]
pub struct Counters {
    /// `answered`, or the refusal's `ErrorInfo` reason.
    verify: Mutex<BTreeMap<&'static str, u64>>,
    /// Per tenant id: what its calls did to subjects' guard allowances.
    /// Anyone with a verifier key can lock a citizen out of every bank by
    /// sending wrong answers; these show who does.
    guard: Mutex<BTreeMap<String, GuardCounts>>,
}

/// One tenant's effect on the subject guard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GuardCounts {
    /// Its unsuccessful answers, each of which used some subject's allowance.
    pub failures: u64,
    /// Its failures that used up a subject's allowance (locked it out).
    pub lockouts: u64,
    /// Its calls refused because the subject was locked out.
    pub refusals: u64,
}

impl Counters {
    /// Counts one Verify outcome.
    pub fn verify_outcome(&self, outcome: &'static str) {
        *self
            .verify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(outcome)
            .or_default() += 1;
    }

    /// Counts a settled guard attempt of `tenant`.
    pub fn guard_settled(&self, tenant: &str, failed: bool, locked_out: bool) {
        if failed || locked_out {
            let mut map = self.guard.lock().unwrap_or_else(|p| p.into_inner());
            let c = map.entry(tenant.to_string()).or_default();
            c.failures += u64::from(failed);
            c.lockouts += u64::from(locked_out);
        }
    }

    /// Counts a call of `tenant` refused by the guard.
    pub fn guard_refused(&self, tenant: &str) {
        let mut map = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(tenant.to_string()).or_default().refusals += 1;
    }

    /// What `tenant`'s calls did to the guard so far.
    pub fn guard_counts(&self, tenant: &str) -> GuardCounts {
        self.guard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .copied()
            .unwrap_or_default()
    }

    /// Verify calls with this outcome so far.
    pub fn verify_count(&self, outcome: &str) -> u64 {
        self.verify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(outcome)
            .copied()
            .unwrap_or(0)
    }
}

/// The Prometheus text exposition of everything the server counts.
pub fn render(app: &App) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let verify: Vec<(String, u64)> = app
        .counters
        .verify
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (format!("{{outcome=\"{k}\"}}"), *v))
        .collect();
    let verify: Vec<(&str, u64)> = verify.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    metric(
        "ekyc_verify_calls_total",
        "counter",
        "Verify calls by outcome: answered, or the refusal's ErrorInfo reason.",
        &verify,
    );
    let pool = app.pool.stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    metric(
        "ekyc_argon2_evaluations_total",
        "counter",
        "Argon2id evaluations completed.",
        &[("", load(&pool.evaluations))],
    );
    metric(
        "ekyc_argon2_in_flight",
        "gauge",
        "Argon2id evaluations running now.",
        &[("", pool.in_flight.load(Ordering::Relaxed) as u64)],
    );
    metric(
        "ekyc_argon2_shed_total",
        "counter",
        "Calls shed because every hashing thread was busy and the queue full.",
        &[("", load(&pool.shed))],
    );
    metric(
        "ekyc_argon2_expired_total",
        "counter",
        "Queued calls dropped because their deadline passed.",
        &[("", load(&pool.expired))],
    );
    let limits = app.limiter.stats();
    let get = LimitStats::get;
    metric(
        "ekyc_limit_rejections_total",
        "counter",
        "Calls refused by a limit.",
        &[
            ("{limit=\"rate\"}", get(&limits.rate_limited)),
            ("{limit=\"quota\"}", get(&limits.quota_exceeded)),
            ("{limit=\"subject_guard\"}", get(&limits.guard_tripped)),
        ],
    );
    metric(
        "ekyc_subject_guard_trips_total",
        "counter",
        "Calls refused because their subject had too many unsuccessful answers.",
        &[("", get(&limits.guard_tripped))],
    );
    let guard: Vec<(String, GuardCounts)> = app
        .counters
        .guard
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(t, c)| (format!("{{tenant=\"{t}\"}}"), *c))
        .collect();
    for (name, help, pick) in [
        (
            "ekyc_subject_guard_failures_total",
            "Unsuccessful answers counted against a subject's allowance, by tenant.",
            (|c: &GuardCounts| c.failures) as fn(&GuardCounts) -> u64,
        ),
        (
            "ekyc_subject_guard_lockouts_total",
            "Unsuccessful answers that used up a subject's allowance (locked it out), by tenant.",
            |c| c.lockouts,
        ),
        (
            "ekyc_subject_guard_refusals_total",
            "Calls refused because their subject was locked out, by tenant.",
            |c| c.refusals,
        ),
    ] {
        let samples: Vec<(&str, u64)> = guard.iter().map(|(l, c)| (l.as_str(), pick(c))).collect();
        metric(name, "counter", help, &samples);
    }
    let t = &app.transport_stats;
    metric(
        "ekyc_transport_refusals_total",
        "counter",
        "Requests or connections refused by a transport limit.",
        &[
            ("{reason=\"message_too_large\"}", load(&t.too_large)),
            ("{reason=\"request_buffers_full\"}", load(&t.buffers_full)),
            (
                "{reason=\"connection_limit\"}",
                load(&t.connections_refused),
            ),
        ],
    );
    metric(
        "ekyc_transport_connections",
        "gauge",
        "Open client connections.",
        &[("", t.connections.load(Ordering::Relaxed) as u64)],
    );
    metric(
        "ekyc_transport_buffered_request_bytes",
        "gauge",
        "Bytes reserved for partly received request messages, server-wide.",
        &[("", t.buffered_bytes.load(Ordering::Relaxed) as u64)],
    );
    metric(
        "ekyc_redis_errors_total",
        "counter",
        "Redis calls of the limits layer that failed or timed out.",
        &[("", get(&limits.redis_errors))],
    );
    metric(
        "ekyc_limit_fallbacks_total",
        "counter",
        "Limit checks decided by the failure policy because Redis was unreachable.",
        &[
            ("{limit=\"rate\"}", get(&limits.rate_fallbacks)),
            ("{limit=\"quota\"}", get(&limits.quota_fallbacks)),
            ("{limit=\"subject_guard\"}", get(&limits.guard_fallbacks)),
        ],
    );
    out
}

/// Serves `GET /metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, app: std::sync::Arc<App>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move {
            let answer = async {
                let mut buf = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                // Read the request head only; scrapes carry no body.
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    let n = stream.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let (status, body) =
                    if buf.starts_with(b"GET /metrics ") || buf.starts_with(b"GET /metrics?") {
                        ("200 OK", render(&app))
                    } else {
                        (
                            "404 Not Found",
                            "only GET /metrics is served here\n".to_string(),
                        )
                    };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(body.as_bytes()).await?;
                stream.shutdown().await
            };
            // A scraper that stalls must not hold a task forever.
            let _ = tokio::time::timeout(Duration::from_secs(10), answer).await;
        });
    }
}
