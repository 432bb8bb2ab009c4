//! Load generation and benchmarks for `ekycd`.
//!
//! The reusable part of the `ekyc-load` gRPC load generator, one module
//! each: `rng` (SplitMix64, the one seeded generator), `schedule`
//! (constant or Poisson arrivals), `scenario` (the kinds of request, their
//! mix and the requests), `driver` (one call, the closed- and open-loop
//! runs) and `report` (statistics, text table, JSON, hand-written SVG
//! percentile plot). `kdf` compares Argon2 implementations and `process`
//! starts real `ekycd` processes.
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
pub mod queueing;

mod driver;
mod report;
mod rng;
mod scenario;
mod schedule;

pub use driver::*;
pub use report::*;
pub use rng::*;
pub use scenario::*;
pub use schedule::*;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use ekyc_client::v1 as pb;

    use crate::report::nice_ceiling;

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
        // Errors keep a latency of their own, apart from the answers'.
        let key = "UNAVAILABLE/-";
        assert!((a.error_percentile_ms(key, 99.0).unwrap() - 500.0).abs() < 1.0);
        assert_eq!(a.error_percentile_ms(SHED, 99.0), None);
        let mut t = Stats::new("total");
        t.merge(&a);
        t.merge(&a);
        assert_eq!(t.sent, 202);
        assert_eq!(t.errors[key], 2);
        assert_eq!(t.error_latency_us[key].len(), 2);
    }

    #[test]
    fn shed_calls_have_the_key_call_gives_them() {
        let key = error_key(tonic::Code::ResourceExhausted, Some("HASHING_OVERLOADED"));
        assert_eq!(key, SHED);
        assert_eq!(error_key(tonic::Code::Unavailable, None), "UNAVAILABLE/-");
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
