//! The kinds of request the generator sends, their mix, and the requests
//! themselves.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use ekyc_client::v1 as pb;

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

    pub(crate) fn index(self) -> usize {
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
