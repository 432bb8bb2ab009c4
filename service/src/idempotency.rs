//! Idempotent retries: the client's `request_id` is the idempotency key.
//!
//! - A request id already in the ledger with the same fingerprint, within
//!   the window, is answered again from the ledger: the same transaction
//!   id, time, registry version and results, signed again. Ed25519
//!   signatures are deterministic, so the answer is byte-identical (unless
//!   the signing key was rotated in between: then it is signed by the new
//!   key). No hashing, no quota, no new usage.
//! - The same id with a different request is refused (`REQUEST_ID_REUSED`);
//!   after the window the id is refused (`REQUEST_ID_EXPIRED`): ids are
//!   unique per tenant forever.
//! - Concurrent duplicates in one process wait for the first one
//!   ([`InFlight`]); across replicas the ledger's primary key decides, and
//!   the loser answers with the winner's answer.
//!
//! The replay material stored with a usage event holds no personal data:
//! ids, times and per-field result codes. The claims digest is recomputed
//! from the retried request, whose fingerprint proves it is the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ekyc_domain::Field;
use ekyc_domain::matching::{FieldOutcome, MatchResult};
use ekyc_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::keyring::Keyring;

/// An answer as stored for replay (and as signed when fresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `tx_...`.
    pub transaction_id: String,
    /// When it was answered.
    pub issued_at_ms: i64,
    /// Registry version it was answered from.
    pub registry_version: u64,
    /// `Some` only when the tenant's policy discloses existence.
    pub subject_found: Option<bool>,
    /// Per-field results.
    pub fields: Vec<FieldOutcome>,
    /// The decision.
    pub decision: bool,
}

/// The JSON form stored in the ledger (`replay` column).
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u8,
    tx: String,
    at: i64,
    rv: u64,
    found: Option<bool>,
    /// (field code, result code, score)
    fields: Vec<(u8, u8, Option<u8>)>,
    yes: bool,
}

impl Outcome {
    /// The replay material.
    pub fn to_replay(&self) -> String {
        let stored = Stored {
            v: 1,
            tx: self.transaction_id.clone(),
            at: self.issued_at_ms,
            rv: self.registry_version,
            found: self.subject_found,
            fields: self
                .fields
                .iter()
                .map(|f| (f.field.code(), f.result.code(), f.score))
                .collect(),
            yes: self.decision,
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Reads replay material back; `None` if it is not ours.
    pub fn from_replay(json: &str) -> Option<Outcome> {
        let s: Stored = serde_json::from_str(json).ok()?;
        if s.v != 1 {
            return None;
        }
        let fields = s
            .fields
            .iter()
            .map(|&(f, r, score)| {
                Some(FieldOutcome {
                    field: Field::from_code(f)?,
                    result: MatchResult::from_code(r)?,
                    score,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Outcome {
            transaction_id: s.tx,
            issued_at_ms: s.at,
            registry_version: s.rv,
            subject_found: s.found,
            fields,
            decision: s.yes,
        })
    }
}

/// The keyed fingerprint of a Verify request: every field as sent, under
/// the serving pepper.
pub fn fingerprint(keyring: &Keyring, req: &pb::VerifyRequest) -> String {
    with_parts(req, |parts| keyring.fingerprint(parts))
}

/// Whether `stored` is the fingerprint of `req`; `None` when it was taken
/// under a pepper this replica no longer holds.
pub fn fingerprint_matches(
    keyring: &Keyring,
    stored: &str,
    req: &pb::VerifyRequest,
) -> Option<bool> {
    with_parts(req, |parts| keyring.fingerprint_matches(stored, parts))
}

/// Calls `f` with the fingerprinted parts of `req`.
fn with_parts<R>(req: &pb::VerifyRequest, f: impl FnOnce(&[&[u8]]) -> R) -> R {
    let claims: Vec<(u8, &str)> = req
        .claims
        .as_ref()
        .map(|c| c.present())
        .unwrap_or_default()
        .into_iter()
        .map(|(f, v)| (f as u8, v))
        .collect();
    let codes: Vec<[u8; 1]> = claims.iter().map(|(f, _)| [*f]).collect();
    let mut parts: Vec<&[u8]> = vec![
        b"Verify",
        req.request_id.as_bytes(),
        req.id_number.as_bytes(),
        req.purpose_code.as_bytes(),
        req.consent_reference.as_bytes(),
    ];
    for ((_, value), code) in claims.iter().zip(&codes) {
        parts.push(code);
        parts.push(value.as_bytes());
    }
    f(&parts)
}

/// Calls in flight by (tenant, request id).
#[derive(Default)]
pub struct InFlight {
    calls: Mutex<HashMap<(String, String), watch::Receiver<()>>>,
}

/// What [`InFlight::claim`] decided.
pub enum Claim {
    /// Run the call; others with the same key wait until this is dropped.
    Leader(Leader),
    /// Another call with the same key is running: wait for it (until
    /// `changed()` fails), then look again.
    Follower(watch::Receiver<()>),
}

/// Held by the one call running a (tenant, request id); dropping it wakes
/// the duplicates waiting for it.
pub struct Leader {
    key: (String, String),
    in_flight: Arc<InFlight>,
    _done: watch::Sender<()>,
}

impl InFlight {
    /// Claims `(tenant, request_id)`.
    pub fn claim(self: &Arc<Self>, tenant: &str, request_id: &str) -> Claim {
        let key = (tenant.to_string(), request_id.to_string());
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = calls.get(&key) {
            return Claim::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        calls.insert(key.clone(), rx);
        Claim::Leader(Leader {
            key,
            in_flight: Arc::clone(self),
            _done: tx,
        })
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // Removed before the sender drops (after this body), so a waiter
        // woken by the drop finds the key free.
        self.in_flight
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}
