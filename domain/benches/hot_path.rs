//! Micro-benchmarks of the per-call work around the one Argon2id
//! evaluation: normalisation, tag derivation and matching, attestation
//! encoding and signing. Each is printed as a ratio to one Argon2id
//! evaluation at the default cost measured in the same run, because that
//! evaluation is the budget everything else should be a small fraction of.
//!
//! `cargo bench -p ekyc-domain --bench hot_path [-- FILTER]`
//!
//! Method: each operation runs in batches sized to take about 5 ms, after a
//! warm-up; 25 batches are timed and the median time per operation is
//! reported with the fastest and slowest batch. A hand-written harness
//! (rather than criterion) keeps the dependency tree lean and lets the
//! table carry the ratio to the baseline.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use ekyc_domain::Field;
use ekyc_domain::attestation::{AttestationBody, claims_digest, consent_digest, sign, verify};
use ekyc_domain::keys::{
    Form, KdfMemory, KdfParams, Pepper, SubjectKey, derive_key, derive_salt, subject_pseudonym,
};
use ekyc_domain::matching::{MatchPolicy, match_claims};
use ekyc_domain::normalize::{normalize_field, normalize_id};
use ekyc_domain::record::RecordTags;

const SAMPLES: usize = 25;
const BATCH_TARGET: Duration = Duration::from_millis(5);

struct Sample {
    median_ns: f64,
    fastest_ns: f64,
    slowest_ns: f64,
}

/// Times `op` as described in the module comment.
fn measure(mut op: impl FnMut()) -> Sample {
    // Warm-up, and a first estimate of one operation's time.
    let start = Instant::now();
    let mut warm = 0u64;
    while start.elapsed() < Duration::from_millis(50) || warm < 2 {
        op();
        warm += 1;
    }
    let per_op = start.elapsed().as_secs_f64() / warm as f64;
    let batch = ((BATCH_TARGET.as_secs_f64() / per_op) as u64).max(1);
    let mut times: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                op();
            }
            t.elapsed().as_secs_f64() * 1e9 / batch as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Sample {
        median_ns: times[SAMPLES / 2],
        fastest_ns: times[0],
        slowest_ns: times[SAMPLES - 1],
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is a name filter.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));

    let pepper = Pepper::new(1, &[7u8; 32]);
    let id = normalize_id("079085001234").expect("valid id");
    let key = SubjectKey::from_bytes_for_tests([9u8; 32]);
    let raw: [(Field, &str); 4] = [
        (Field::FullName, "Nguyễn Văn An"),
        (Field::DateOfBirth, "1985-02-17"),
        (Field::Gender, "nam"),
        (
            Field::PlaceOfResidence,
            "Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh",
        ),
    ];
    let claims: Vec<_> = raw
        .iter()
        .map(|(f, v)| (*f, normalize_field(*f, v).expect("valid claim")))
        .collect();
    let record = RecordTags::compute(&key, &claims);
    let signing = SigningKey::from_bytes(&[3u8; 32]);
    let outcome = match_claims(&key, &claims, Some(&record), &MatchPolicy::default());
    let body = AttestationBody {
        key_id: "k-2026-11".into(),
        tenant_id: "tnt_0123456789abcdef".into(),
        request_id: "0b7c6f2e-5d1a-4c3b-9e8f-123456789abc".into(),
        transaction_id: "txn_0123456789abcdef0123".into(),
        issued_at_ms: 1_795_000_000_000,
        registry_version: 42,
        claims_digest: claims_digest("079085001234", &raw).expect("digest"),
        purpose_code: "account_opening".into(),
        consent_digest: consent_digest("consent-7781"),
        subject_found: None,
        results: outcome.fields.clone(),
        decision: outcome.decision,
    };
    let payload = body.encode().expect("encode");
    let signature = sign(&signing, &payload);

    type Op<'a> = (&'static str, Box<dyn FnMut() + 'a>);
    let ops: Vec<Op> = vec![
        (
            "normalize_id",
            Box::new(|| {
                black_box(normalize_id(black_box("079085001234")).ok());
            }),
        ),
        (
            "normalize 4 claims (name, birth date, gender, residence)",
            Box::new(|| {
                for (f, v) in &raw {
                    black_box(normalize_field(*f, black_box(v)).ok());
                }
            }),
        ),
        (
            "derive_salt (HMAC-SHA256)",
            Box::new(|| {
                black_box(derive_salt(&pepper, black_box(&id)));
            }),
        ),
        (
            "subject_pseudonym (HMAC-SHA256)",
            Box::new(|| {
                black_box(subject_pseudonym(&pepper, black_box(&id)));
            }),
        ),
        (
            "locator (HMAC-SHA256 under K)",
            Box::new(|| {
                black_box(black_box(&key).locator());
            }),
        ),
        (
            "one tag (HMAC-SHA256 under K)",
            Box::new(|| {
                black_box(key.tag(Field::FullName, Form::Exact, black_box("nguyễn văn an")));
            }),
        ),
        (
            "match_claims, 4 claims (their tags + comparison)",
            Box::new(|| {
                black_box(match_claims(
                    &key,
                    black_box(&claims),
                    Some(&record),
                    &MatchPolicy::default(),
                ));
            }),
        ),
        (
            "claims_digest (SHA-256)",
            Box::new(|| {
                black_box(claims_digest("079085001234", black_box(&raw)).ok());
            }),
        ),
        (
            "attestation encode",
            Box::new(|| {
                black_box(black_box(&body).encode().ok());
            }),
        ),
        (
            "attestation sign (Ed25519)",
            Box::new(|| {
                black_box(sign(&signing, black_box(&payload)));
            }),
        ),
        (
            "attestation verify (Ed25519, strict) + decode",
            Box::new(|| {
                black_box(
                    verify(
                        &signing.verifying_key().to_bytes(),
                        black_box(&payload),
                        &signature,
                    )
                    .ok(),
                );
            }),
        ),
    ];

    // The baseline first, so every ratio below has it.
    let params = KdfParams::DEFAULT;
    let mut memory = KdfMemory::new(&params);
    let argon2 = measure(|| {
        black_box(derive_key(&pepper, &params, black_box(&id), &mut memory).ok());
    });
    println!(
        "baseline: one Argon2id evaluation (m=19456 KiB, t=2, p=1, one core): median {} (fastest {}, slowest {})\n",
        fmt_ns(argon2.median_ns),
        fmt_ns(argon2.fastest_ns),
        fmt_ns(argon2.slowest_ns)
    );
    println!(
        "| operation | median | fastest .. slowest batch | ratio to one Argon2id evaluation |"
    );
    println!("|---|---|---|---|");
    let mut per_call = 0.0;
    for (name, mut op) in ops {
        if !wanted(name) {
            continue;
        }
        let s = measure(&mut op);
        if !name.starts_with("attestation verify") {
            per_call += s.median_ns;
        }
        println!(
            "| {name} | {} | {} .. {} | {:.6} |",
            fmt_ns(s.median_ns),
            fmt_ns(s.fastest_ns),
            fmt_ns(s.slowest_ns),
            s.median_ns / argon2.median_ns
        );
    }
    if filter.is_empty() {
        println!(
            "| sum of the above but verify (about one Verify's domain work) | {} | | {:.6} |",
            fmt_ns(per_call),
            per_call / argon2.median_ns
        );
    }
}
