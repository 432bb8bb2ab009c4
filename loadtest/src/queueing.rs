//! The M/D/c queue that the open-loop rows are judged against: Poisson
//! arrivals, `c` servers (the hashing threads), one fixed service time (a
//! call's share of the cores at saturation). Its sojourn-time quantiles
//! have no simple closed form, so they are simulated: exact for the model,
//! up to the sampling error of the number of arrivals.

use crate::rng::SplitMix64;

/// The `q`-quantile (0 < q < 1) of the time from arrival to departure, in
/// the service time's unit, of `arrivals` Poisson arrivals at `rate` per
/// unit into `servers` first-come-first-served servers that each take
/// `service` per job. Deterministic for a given `seed`.
pub fn mdc_sojourn_quantile(
    rate: f64,
    service: f64,
    servers: usize,
    q: f64,
    arrivals: usize,
    seed: u64,
) -> f64 {
    let times = sojourn_times(rate, service, servers, arrivals, seed);
    let index = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len().max(1)) - 1;
    times.get(index).copied().unwrap_or(service)
}

/// Every simulated job's sojourn time, sorted.
fn sojourn_times(rate: f64, service: f64, servers: usize, arrivals: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    // When each server is next free; a job takes the earliest.
    let mut free_at = vec![0.0f64; servers.max(1)];
    let mut now = 0.0;
    let mut sojourn = Vec::with_capacity(arrivals);
    for _ in 0..arrivals {
        now += rng.exponential(1.0 / rate);
        let (next, at) =
            free_at
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f64::INFINITY),
                    |best, (i, t)| if t < best.1 { (i, t) } else { best },
                );
        let start = at.max(now);
        free_at[next] = start + service;
        sojourn.push(start + service - now);
    }
    sojourn.sort_by(f64::total_cmp);
    sojourn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_queue_takes_one_service_time() {
        // Arrivals so rare that nobody ever waits.
        let p99 = mdc_sojourn_quantile(1e-6, 1.0, 2, 0.99, 10_000, 1);
        assert!((p99 - 1.0).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn one_server_matches_the_m_d_1_mean_wait() {
        // M/D/1 (Pollaczek-Khinchine): mean wait = rho / (2 mu (1 - rho)).
        // At rho = 0.5 and a unit service time: 0.5, so a mean sojourn of
        // 1.5; at rho = 0.8: 2.0, a sojourn of 3.0.
        for (rate, expected) in [(0.5, 1.5), (0.8, 3.0)] {
            let times = sojourn_times(rate, 1.0, 1, 400_000, 7);
            let mean = times.iter().sum::<f64>() / times.len() as f64;
            assert!(
                (mean - expected).abs() < 0.05 * expected,
                "rho {rate}: mean sojourn {mean}, want {expected}"
            );
        }
        // More servers at the same load per server wait less.
        let one = mdc_sojourn_quantile(0.5, 1.0, 1, 0.99, 200_000, 7);
        let two = mdc_sojourn_quantile(1.0, 1.0, 2, 0.99, 200_000, 7);
        assert!(two < one, "{two} vs {one}");
    }
}
