//! The eKYC domain: everything the service decides, with no I/O.
//!
//! Normalisation of claimed values, key derivation from a citizen ID
//! (Argon2id with a versioned pepper), field tags, matching and the
//! deterministic attestation bytes live here so they can be tested without a
//! server and reused by the client. This crate must never do I/O, log, or
//! know about gRPC; and no type in it may print personal data through
//! `Debug` or `Display`.
#![forbid(unsafe_code)]

pub mod attestation;
pub mod field;
pub mod keys;
pub mod matching;
pub mod normalize;
pub mod provinces;
pub mod record;

pub use field::Field;

/// Billable units of a Verify that asks about `requested_fields` claim
/// fields: one unit per field (the public fee is charged per field), so a
/// call always costs at least one. Quotas count these units and invoices
/// price them.
pub fn billable_units(requested_fields: usize) -> u64 {
    requested_fields.max(1) as u64
}
