//! Argon2id evaluations per second, for every implementation of the same
//! function: the two `ekycd` can run through `ekyc_domain::keys::derive_key`
//! (argon2-rust, its default, and RustCrypto `argon2`, its fallback, each
//! with one reused memory per thread), RustCrypto with a fresh buffer per
//! evaluation, and the reference C implementation (`ekyc-argon2-ref`) with
//! its own allocation and with a reused buffer. All derive the same key
//! (argon2-ref/tests/same_key.rs); only the speed differs.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use ekyc_argon2_ref::{Memory, RefParams, argon2id};
use ekyc_domain::keys::{KdfImplementation, KdfMemory, KdfParams, Pepper, derive_key, derive_salt};
use ekyc_domain::normalize::{IdNumber, normalize_id};

/// One way of computing `K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// What `ekycd` runs by default: argon2-rust, its SIMD path chosen at
    /// run time, one `KdfMemory` per hashing thread.
    Service,
    /// `argon2.implementation = "rustcrypto"`: RustCrypto, one `KdfMemory`
    /// per hashing thread (what `ekycd` ran before).
    RustCrypto,
    /// RustCrypto with a new buffer for every evaluation (allocation and
    /// page faults included): what buffer reuse saves.
    FreshMemory,
    /// The reference C implementation, SIMD build (`-march=native` unless
    /// `CFLAGS` overrides it), with its own allocation per evaluation.
    Reference,
    /// The reference with one buffer per thread, like the service's.
    ReferenceReused,
}

impl Implementation {
    /// Every implementation, the service's first.
    pub const ALL: [Implementation; 5] = [
        Implementation::Service,
        Implementation::RustCrypto,
        Implementation::FreshMemory,
        Implementation::Reference,
        Implementation::ReferenceReused,
    ];

    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Implementation::Service => "argon2-rust, memory reused per thread (ekycd)",
            Implementation::RustCrypto => {
                "RustCrypto argon2, buffer reused per thread (ekycd's fallback)"
            }
            Implementation::FreshMemory => "RustCrypto argon2, fresh buffer per evaluation",
            Implementation::Reference => "reference C (argon2-sys opt.c), malloc per evaluation",
            Implementation::ReferenceReused => "reference C (argon2-sys opt.c), buffer reused",
        }
    }
}

/// A distinct valid 12-digit ID for thread `t`'s `n`th evaluation.
fn id(t: usize, n: u64) -> Result<IdNumber> {
    let serial = (t as u64 * 100_000 + n) % 1_000_000;
    normalize_id(&format!("079085{serial:06}")).map_err(|v| anyhow!("invalid ID: {v:?}"))
}

/// Evaluations per second of `imp` with `params` on `threads` OS threads
/// (one per core), each hashing distinct IDs for `duration`.
pub fn evaluations_per_sec(
    imp: Implementation,
    params: KdfParams,
    threads: usize,
    duration: Duration,
) -> Result<f64> {
    let pepper = Pepper::new(1, &[7u8; 32]);
    let start = Instant::now();
    let end = start + duration;
    let total = std::thread::scope(|s| -> Result<u64> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let pepper = &pepper;
                s.spawn(move || -> Result<u64> {
                    let mut memory = KdfMemory::with(&params, KdfImplementation::Argon2Rust);
                    let mut fallback = KdfMemory::with(&params, KdfImplementation::RustCrypto);
                    let mut n = 0u64;
                    while Instant::now() < end {
                        let id = id(t, n)?;
                        match imp {
                            Implementation::Service => {
                                derive_key(pepper, &params, &id, &mut memory)
                                    .map_err(|e| anyhow!("{e}"))?;
                            }
                            Implementation::RustCrypto => {
                                derive_key(pepper, &params, &id, &mut fallback)
                                    .map_err(|e| anyhow!("{e}"))?;
                            }
                            Implementation::FreshMemory => {
                                let mut fresh =
                                    KdfMemory::with(&params, KdfImplementation::RustCrypto);
                                derive_key(pepper, &params, &id, &mut fresh)
                                    .map_err(|e| anyhow!("{e}"))?;
                            }
                            Implementation::Reference | Implementation::ReferenceReused => {
                                let salt = derive_salt(pepper, &id);
                                let ref_params = RefParams {
                                    m_kib: params.m_kib,
                                    t: params.t,
                                    p: params.p,
                                };
                                std::hint::black_box(argon2id(
                                    id.as_str().as_bytes(),
                                    &salt,
                                    pepper.expose_secret(),
                                    ref_params,
                                    if imp == Implementation::Reference {
                                        Memory::Fresh
                                    } else {
                                        Memory::ThreadBuffer
                                    },
                                )?);
                            }
                        }
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        let mut total = 0;
        for w in workers {
            total += w.join().map_err(|_| anyhow!("argon2 thread panicked"))??;
        }
        Ok(total)
    })?;
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Each implementation's mean rate over `rounds` interleaved runs of
/// `duration` (interleaved so that a noisy neighbour or a warming CPU
/// affects them alike), in [`Implementation::ALL`]'s order.
pub fn compare(
    params: KdfParams,
    threads: usize,
    duration: Duration,
    rounds: usize,
) -> Result<Vec<(Implementation, f64)>> {
    let mut sums = [0.0; Implementation::ALL.len()];
    for _ in 0..rounds.max(1) {
        for (i, imp) in Implementation::ALL.into_iter().enumerate() {
            sums[i] += evaluations_per_sec(imp, params, threads, duration)?;
        }
    }
    Ok(Implementation::ALL
        .into_iter()
        .zip(sums)
        .map(|(imp, sum)| (imp, sum / rounds.max(1) as f64))
        .collect())
}
