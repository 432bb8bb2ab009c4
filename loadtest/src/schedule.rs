//! When open-loop requests are sent: constant or Poisson arrivals.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::SplitMix64;

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
