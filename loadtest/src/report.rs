//! Per-scenario statistics and the report: text table, JSON and the
//! hand-written SVG percentile plot.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use crate::{Mode, Outcome};

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
    /// Latency in microseconds of the calls that ended in each error, by
    /// `CODE/REASON`: a shed call should come back at once and a timeout
    /// after the deadline, and `latency_us` mixes both with the answers.
    pub error_latency_us: BTreeMap<String, Histogram<u64>>,
}

/// An empty latency histogram: 1 us to an hour, 3 significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// The latency at percentile `p` (0..=100) of `h` in milliseconds; 0 if
/// empty.
fn quantile_ms(h: &Histogram<u64>, p: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(p / 100.0) as f64 / 1e3
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
            latency_us: latency_histogram(),
            errors: BTreeMap::new(),
            error_latency_us: BTreeMap::new(),
        }
    }

    /// Adds one completed call.
    pub fn record(&mut self, outcome: &Outcome, latency: Duration) {
        self.sent += 1;
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency_us.saturating_record(us);
        match outcome {
            Outcome::Answered(yes) => {
                self.answered += 1;
                if *yes {
                    self.yes += 1;
                } else {
                    self.no += 1;
                }
            }
            Outcome::Error(key) => {
                *self.errors.entry(key.clone()).or_default() += 1;
                self.error_latency_us
                    .entry(key.clone())
                    .or_insert_with(latency_histogram)
                    .saturating_record(us);
            }
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
        for (k, h) in &other.error_latency_us {
            self.error_latency_us
                .entry(k.clone())
                .or_insert_with(latency_histogram)
                .add(h)
                .expect("histograms of equal bounds");
        }
    }

    /// The latency at percentile `p` (0..=100) in milliseconds; 0 if empty.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        quantile_ms(&self.latency_us, p)
    }

    /// The latency at percentile `p` (0..=100) in milliseconds of the
    /// calls that ended in error `key` (`CODE/REASON`); `None` if none did.
    pub fn error_percentile_ms(&self, key: &str, p: f64) -> Option<f64> {
        self.error_latency_us.get(key).map(|h| quantile_ms(h, p))
    }

    /// The largest latency in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1e3
    }
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
        let _ = writeln!(
            out,
            "errors (gRPC code / ErrorInfo reason), with their own latency:"
        );
        let mut any = false;
        for s in self.rows() {
            for (k, v) in &s.errors {
                any = true;
                let p = |q| s.error_percentile_ms(k, q).unwrap_or(0.0);
                let _ = writeln!(
                    out,
                    "  {:<10} {k:<45} {v:>8}   p50 {:.2} ms, p99 {:.2} ms",
                    s.name,
                    p(50.0),
                    p(99.0)
                );
            }
        }
        if !any {
            let _ = writeln!(out, "  none");
        }
        out
    }

    /// The same figures as JSON.
    pub fn json(&self) -> serde_json::Value {
        // The percentiles, largest value and mean of one histogram.
        let latency = |h: &Histogram<u64>| {
            let pct: serde_json::Map<String, serde_json::Value> = PERCENTILES
                .iter()
                .map(|p| (format!("p{p}"), json!(quantile_ms(h, *p))))
                .collect();
            json!({
                "percentiles": pct, "max": h.max() as f64 / 1e3,
                "mean": if h.is_empty() { 0.0 } else { h.mean() / 1e3 },
            })
        };
        let stats = |s: &Stats| {
            let by_error: serde_json::Map<String, serde_json::Value> = s
                .error_latency_us
                .iter()
                .map(|(k, h)| (k.clone(), latency(h)))
                .collect();
            json!({
                "name": s.name, "sent": s.sent, "answered": s.answered,
                "yes": s.yes, "no": s.no,
                "answered_per_s": self.throughput(s),
                "latency_ms": latency(&s.latency_us),
                "errors": s.errors,
                "error_latency_ms": by_error,
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
pub(crate) fn nice_ceiling(max: f64) -> f64 {
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
