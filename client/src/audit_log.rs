//! Checking the decision log from the relying party's side
//! (docs/decision-log.md): that a signed checkpoint is the service's, that
//! an answer's entry is in the tree it signs, that a later checkpoint
//! extends an earlier one, and that the entry records what the answer's
//! attestation says.
//!
//! It also checks the admin audit trail (`TenantAdminService.
//! ListAuditEvents`) against its own signed checkpoint: that the sequence
//! numbers run from 1 without a gap, that every entry's chain hash is the
//! one recomputed over it, and that the signed head is in the chain
//! ([`check_admin_trail`]).
//!
//! The formats are `ekyc-transparency`'s; this module only decides what to
//! compare and refuses anything that does not add up. It must never trust
//! a number the service sent beside a signed note over the note itself:
//! every size and root used in a check is the one the note signs.

use ekyc_domain::attestation::AttestationBody;
use ekyc_proto::v1 as pb;
use ekyc_transparency::{Hash, NoteError, ProofError, leaf_hash};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Client, ClientError};

pub use ekyc_transparency::{Checkpoint, DecisionEntry, NoteVerifier};

/// The `purpose` of a published key that signs checkpoints.
pub const PURPOSE_CHECKPOINT: &str = "checkpoint";
/// The `purpose` of a published key that signs attestations (and
/// invoices); older servers publish these with no purpose.
pub const PURPOSE_ATTESTATION: &str = "attestation";

/// What the admin audit trail's checkpoint key name adds to the decision
/// log's origin: one key signs both, each under a name of its own, so a
/// note of one log never passes for the other's.
pub const ADMIN_AUDIT_SUFFIX: &str = "/admin-audit";

/// Why a piece of the decision log (or of the admin audit trail) was
/// refused. Each message names the
/// check that failed; none holds personal data (entries hold none).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The service publishes no current checkpoint key.
    #[error("the service publishes no current checkpoint key")]
    NoCheckpointKey,
    /// The published (or pinned) verifier key does not parse.
    #[error("checkpoint verifier key is invalid: {0}")]
    BadVerifierKey(NoteError),
    /// The answer lacks a part the check needs.
    #[error("response has no {0}")]
    Missing(&'static str),
    /// The checkpoint's note does not verify under the trusted key (or is
    /// not a checkpoint of its log).
    #[error("checkpoint signature check failed: {0}")]
    Note(NoteError),
    /// A number or hash sent beside the note differs from the signed one.
    #[error("checkpoint {0} differs from the signed note")]
    CheckpointMismatch(&'static str),
    /// The proof is for another tree size than its checkpoint signs.
    #[error("proof is for tree size {proof}, its checkpoint signs {signed}")]
    TreeSizeMismatch {
        /// The response's `tree_size`.
        proof: u64,
        /// The size in the signed note.
        signed: u64,
    },
    /// A hash is not 32 bytes long.
    #[error("{what} {index} is {len} bytes long, not 32")]
    HashLength {
        /// Which list (`proof hash`, `leaf hash`).
        what: &'static str,
        /// Its position.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The entry's bytes do not hash to its leaf hash.
    #[error("entry {index} bytes do not hash to the leaf hash sent with them")]
    LeafHashMismatch {
        /// The entry's index.
        index: u64,
    },
    /// An entry marked erased still carries bytes.
    #[error("entry {index} is marked erased but has bytes")]
    ErasedWithBytes {
        /// The entry's index.
        index: u64,
    },
    /// The inclusion proof does not lead to the signed root.
    #[error("inclusion proof of entry {index} in tree size {size} does not verify: {reason}")]
    Inclusion {
        /// The entry's index.
        index: u64,
        /// The signed tree size.
        size: u64,
        /// What the verification found (not a `source`: it is in the
        /// message already).
        reason: ProofError,
    },
    /// The entry's bytes are not a decision entry.
    #[error("entry {index} does not decode: {message}")]
    EntryDecode {
        /// The entry's index.
        index: u64,
        /// The JSON error.
        message: String,
    },
    /// The proof is of another transaction's entry.
    #[error("entry {index} is of transaction {found}, not the one asked for")]
    WrongTransaction {
        /// The entry's index.
        index: u64,
        /// The transaction it records.
        found: String,
    },
    /// Two checkpoints are of different logs.
    #[error("checkpoints are of different logs ({first} and {second})")]
    OriginMismatch {
        /// The earlier checkpoint's origin.
        first: String,
        /// The later checkpoint's origin.
        second: String,
    },
    /// A later checkpoint is smaller than an earlier one: entries were cut off.
    #[error(
        "newer checkpoint has {second} entries, fewer than the {first} of the older one: \
         the log was truncated"
    )]
    Truncated {
        /// The older checkpoint's size.
        first: u64,
        /// The newer checkpoint's size.
        second: u64,
    },
    /// Two checkpoints of one size have different roots.
    #[error("two checkpoints of tree size {size} have different roots: the log was rewritten")]
    Forked {
        /// The size both sign.
        size: u64,
    },
    /// The consistency proof does not lead from the older root to the newer.
    #[error("consistency proof from tree size {first} to {second} does not verify: {reason}")]
    Consistency {
        /// The older size.
        first: u64,
        /// The newer size.
        second: u64,
        /// What the verification found (not a `source`: it is in the
        /// message already).
        reason: ProofError,
    },
    /// The entry's details were erased by retention, so they cannot be
    /// compared with anything (its inclusion still verifies).
    #[error("entry {index} was erased by retention; it cannot be compared with the attestation")]
    Erased {
        /// The entry's index.
        index: u64,
    },
    /// The entry and the attestation disagree.
    #[error("log entry and attestation differ in {0}")]
    Disagrees(&'static str),
    /// An admin audit sequence number below 1 (they start at 1).
    #[error("admin audit trail lists entry {sequence}, but sequence numbers start at 1")]
    TrailSequence {
        /// The sequence number listed.
        sequence: i64,
    },
    /// A sequence number of the admin audit trail is missing.
    #[error("admin audit trail has no entry {sequence}: entries were removed")]
    TrailGap {
        /// The first sequence number missing.
        sequence: i64,
    },
    /// A sequence number of the admin audit trail is listed twice.
    #[error("admin audit trail lists entry {sequence} twice")]
    TrailDuplicate {
        /// The sequence number listed more than once.
        sequence: i64,
    },
    /// An admin audit event lacks a part the chain hash covers, or its
    /// chain hash is not 32 bytes of hex.
    #[error("admin audit entry {sequence} has no valid {what}")]
    TrailMalformed {
        /// The entry's sequence number.
        sequence: i64,
        /// What is missing (`time`, `chain hash`).
        what: &'static str,
    },
    /// The chain hash recomputed over an entry differs from its own: it
    /// (or an earlier one) was edited, or an earlier one was removed.
    #[error("entry {sequence} was altered or an earlier one removed")]
    TrailAltered {
        /// The first entry whose hash differs.
        sequence: i64,
    },
    /// A checkpoint signs more entries than the trail lists.
    #[error("the trail was cut: {which} signs {signed} entries, the trail lists {listed}")]
    TrailCut {
        /// Which checkpoint (`the checkpoint`, `the saved checkpoint`).
        which: &'static str,
        /// The size it signs.
        signed: u64,
        /// The entries listed.
        listed: u64,
    },
    /// The chain hash at a checkpoint's size is not the root it signs.
    #[error(
        "the trail was rewritten: the chain hash of entry {size} is not the root {which} signs"
    )]
    TrailRewritten {
        /// Which checkpoint (`the checkpoint`, `the saved checkpoint`).
        which: &'static str,
        /// The size it signs.
        size: u64,
    },
}

/// An entry proven to be in a tree whose head the trusted key signed.
#[derive(Debug, Clone)]
pub struct VerifiedInclusion {
    /// The signed checkpoint the proof leads to.
    pub checkpoint: Checkpoint,
    /// The signed note of `checkpoint`, as received (to keep as evidence).
    pub note: String,
    /// The entry's index in the log.
    pub index: u64,
    /// The entry's leaf hash.
    pub leaf_hash: Hash,
    /// The decoded entry; `None` once retention erased its bytes.
    pub entry: Option<DecisionEntry>,
}

/// Opens a checkpoint with `verifier` and requires the size and root sent
/// beside the note to be the ones it signs.
pub fn check_checkpoint(
    checkpoint: &pb::Checkpoint,
    verifier: &NoteVerifier,
) -> Result<Checkpoint, ClientError> {
    let signed = verifier.open(&checkpoint.note).map_err(LogError::Note)?;
    if signed.size != checkpoint.tree_size {
        return Err(LogError::CheckpointMismatch("tree_size").into());
    }
    if signed.root.as_slice() != checkpoint.root_hash.as_slice() {
        return Err(LogError::CheckpointMismatch("root_hash").into());
    }
    Ok(signed)
}

/// Checks an inclusion proof against its checkpoint: the note verifies
/// under `verifier` and signs `resp.tree_size` and the root sent, the
/// entry's bytes (unless erased) hash to its leaf hash, and the audit path
/// leads from that leaf hash to the signed root.
pub fn check_inclusion(
    resp: &pb::GetInclusionProofResponse,
    verifier: &NoteVerifier,
) -> Result<VerifiedInclusion, ClientError> {
    let checkpoint = resp
        .checkpoint
        .as_ref()
        .ok_or(LogError::Missing("checkpoint"))?;
    let signed = check_checkpoint(checkpoint, verifier)?;
    if signed.size != resp.tree_size {
        return Err(LogError::TreeSizeMismatch {
            proof: resp.tree_size,
            signed: signed.size,
        }
        .into());
    }
    let entry = resp.entry.as_ref().ok_or(LogError::Missing("entry"))?;
    let index = entry.index;
    let leaf = hash_of(&entry.leaf_hash, "leaf hash", 0)?;
    let decoded = if entry.erased {
        if !entry.entry.is_empty() {
            return Err(LogError::ErasedWithBytes { index }.into());
        }
        None
    } else {
        if leaf_hash(&entry.entry) != leaf {
            return Err(LogError::LeafHashMismatch { index }.into());
        }
        Some(decode_entry(index, &entry.entry)?)
    };
    let proof = hashes(&resp.proof)?;
    ekyc_transparency::verify_inclusion(index, signed.size, &leaf, &proof, &signed.root).map_err(
        |reason| LogError::Inclusion {
            index,
            size: signed.size,
            reason,
        },
    )?;
    Ok(VerifiedInclusion {
        checkpoint: signed,
        note: checkpoint.note.clone(),
        index,
        leaf_hash: leaf,
        entry: decoded,
    })
}

/// Checks that `new` extends `old`: same log, no fewer entries, the same
/// root at the same size, and otherwise a consistency proof (RFC 6962
/// `PROOF(old.size, D[new.size])`) from one signed root to the other.
/// Both checkpoints must already be opened under the trusted key.
pub fn check_consistency(
    old: &Checkpoint,
    new: &Checkpoint,
    proof: &[Vec<u8>],
) -> Result<(), ClientError> {
    if old.origin != new.origin {
        return Err(LogError::OriginMismatch {
            first: old.origin.clone(),
            second: new.origin.clone(),
        }
        .into());
    }
    if new.size < old.size {
        return Err(LogError::Truncated {
            first: old.size,
            second: new.size,
        }
        .into());
    }
    if new.size == old.size {
        if new.root != old.root {
            return Err(LogError::Forked { size: new.size }.into());
        }
        return Ok(());
    }
    let proof = hashes(proof)?;
    ekyc_transparency::verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
        .map_err(|reason| LogError::Consistency {
            first: old.size,
            second: new.size,
            reason,
        })?;
    Ok(())
}

/// Checks that a proven entry records what a signed attestation says: the
/// same tenant, transaction, request, registry version, decision, issue
/// time, purpose, consent digest and per-field results. `body` must come
/// from a payload whose signature was checked
/// (`ekyc_domain::attestation::verify`), or the comparison proves nothing.
pub fn check_attestation_in_log(
    body: &AttestationBody,
    inclusion: &VerifiedInclusion,
) -> Result<(), ClientError> {
    let entry = inclusion.entry.as_ref().ok_or(LogError::Erased {
        index: inclusion.index,
    })?;
    let fields: Vec<(String, String)> = body
        .results
        .iter()
        .map(|r| (r.field.name().to_string(), r.result.name().to_string()))
        .collect();
    let decision = if body.decision { "YES" } else { "NO" };
    let checks = [
        (entry.tenant == body.tenant_id, "tenant"),
        (entry.transaction == body.transaction_id, "transaction id"),
        (entry.request == body.request_id, "request id"),
        (
            entry.registry_version == body.registry_version,
            "registry version",
        ),
        (entry.decision == decision, "decision"),
        (entry.time_ms == body.issued_at_ms, "issue time"),
        (entry.purpose == body.purpose_code, "purpose"),
        (
            entry.consent == hex::encode(body.consent_digest),
            "consent digest",
        ),
        (entry.fields == fields, "field results"),
    ];
    match checks.into_iter().find(|(same, _)| !same) {
        Some((_, what)) => Err(LogError::Disagrees(what).into()),
        None => Ok(()),
    }
}

/// Checks the leaf hash of a listed entry against its bytes, and decodes
/// them (`None` when erased).
pub fn check_listed_entry(entry: &pb::LogEntry) -> Result<Option<DecisionEntry>, ClientError> {
    let leaf = hash_of(&entry.leaf_hash, "leaf hash", 0)?;
    if entry.erased {
        if !entry.entry.is_empty() {
            return Err(LogError::ErasedWithBytes { index: entry.index }.into());
        }
        return Ok(None);
    }
    if leaf_hash(&entry.entry) != leaf {
        return Err(LogError::LeafHashMismatch { index: entry.index }.into());
    }
    Ok(Some(decode_entry(entry.index, &entry.entry)?))
}

/// Parses a verifier key (`<name>+<key hash>+<base64 key>`).
pub fn verifier_from_vkey(vkey: &str) -> Result<NoteVerifier, ClientError> {
    Ok(NoteVerifier::from_vkey(vkey.trim()).map_err(LogError::BadVerifierKey)?)
}

/// The verifier of the admin audit trail's checkpoints, derived from the
/// decision log's (pinned or published) checkpoint verifier: the same
/// public key under the name `<decision log origin>/admin-audit`.
///
/// Derive it from a key trusted for the decision log, never from the
/// `verifier_key` a `GetAdminAuditCheckpoint` answer carries: that one is
/// the service's word about itself.
pub fn admin_verifier(decision_log_verifier: &NoteVerifier) -> Result<NoteVerifier, ClientError> {
    let name = format!("{}{ADMIN_AUDIT_SUFFIX}", decision_log_verifier.name());
    decision_log_verifier
        .renamed(&name)
        .map_err(|e| LogError::BadVerifierKey(e).into())
}

/// What the chain hash of an admin audit event covers, in this order
/// (serde_json writes fields in declaration order, compactly): the
/// service's `AuditEntry`.
#[derive(Serialize)]
struct ChainedAuditEntry<'a> {
    at_ms: i64,
    actor_key_id: &'a str,
    actor_tenant_id: &'a str,
    action: &'a str,
    tenant_id: &'a str,
    field: &'a str,
    old_value: &'a str,
    new_value: &'a str,
}

/// The event's time in Unix milliseconds, as the chain hash covers it.
fn at_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos / 1_000_000))
}

/// The chain hash of admin audit event `e` after `previous` (32 zero bytes
/// before the first): `SHA-256(previous || JSON)`, the JSON being the
/// compact serialisation of `at_ms` (milliseconds), `actor_key_id`,
/// `actor_tenant_id`, `action`, `tenant_id`, `field`, `old_value`,
/// `new_value`, in that order. An event without a time counts as 0 ms
/// (and [`check_admin_trail`] refuses one).
pub fn admin_chain_hash(previous: &[u8; 32], e: &pb::AuditEvent) -> [u8; 32] {
    let entry = ChainedAuditEntry {
        at_ms: e.time.as_ref().map_or(0, at_ms),
        actor_key_id: &e.actor_key_id,
        actor_tenant_id: &e.actor_tenant_id,
        action: &e.action,
        tenant_id: &e.tenant_id,
        field: &e.field,
        old_value: &e.old_value,
        new_value: &e.new_value,
    };
    // Strings and an integer: serialising cannot fail.
    let json = serde_json::to_vec(&entry).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(previous);
    h.update(&json);
    h.finalize().into()
}

/// An admin audit trail whose chain checked out, and the signed checkpoint
/// its head was found in.
#[derive(Debug, Clone)]
pub struct VerifiedTrail {
    /// The signed checkpoint (origin `<decision log origin>/admin-audit`,
    /// size the last sequence number it covers, root that entry's chain
    /// hash).
    pub checkpoint: Checkpoint,
    /// The signed note of `checkpoint`, as received (to keep as evidence,
    /// or for a later `--since`).
    pub note: String,
    /// The events, in sequence order (1 to `len`).
    pub events: Vec<pb::AuditEvent>,
    /// `chain[k - 1]` is the chain hash after entry k, as recomputed.
    chain: Vec<Hash>,
}

impl VerifiedTrail {
    /// How many entries the trail lists.
    pub fn len(&self) -> u64 {
        self.chain.len() as u64
    }

    /// Whether the trail lists no entry.
    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }

    /// The recomputed chain hash after entry `size` (32 zero bytes for 0);
    /// `None` beyond the trail.
    pub fn chain_hash_at(&self, size: u64) -> Option<Hash> {
        match size {
            0 => Some([0; 32]),
            n => usize::try_from(n - 1)
                .ok()
                .and_then(|i| self.chain.get(i))
                .copied(),
        }
    }

    /// Checks that the trail still holds what `old`, an earlier checkpoint
    /// of it (opened under the admin verifier), signed: no more entries
    /// than the trail lists, and the chain hash at its size is its root.
    pub fn check_extends(&self, old: &Checkpoint) -> Result<(), ClientError> {
        covers(self, old, "the saved checkpoint")
    }
}

/// The trail holds the head `cp` signs.
fn covers(trail: &VerifiedTrail, cp: &Checkpoint, which: &'static str) -> Result<(), ClientError> {
    if cp.origin != trail.checkpoint.origin {
        return Err(LogError::OriginMismatch {
            first: cp.origin.clone(),
            second: trail.checkpoint.origin.clone(),
        }
        .into());
    }
    match trail.chain_hash_at(cp.size) {
        None => Err(LogError::TrailCut {
            which,
            signed: cp.size,
            listed: trail.len(),
        }
        .into()),
        Some(hash) if hash != cp.root => Err(LogError::TrailRewritten {
            which,
            size: cp.size,
        }
        .into()),
        Some(_) => Ok(()),
    }
}

/// Checks the admin audit trail against its signed checkpoint `note`:
///
/// 1. sorted by sequence, the events are 1 to n, none missing or twice;
/// 2. every event's chain hash is the one recomputed from the start
///    ([`admin_chain_hash`]), so none was edited and none before it removed;
/// 3. `note` verifies under `verifier` (see [`admin_verifier`]), signs at
///    most n entries (more: entries were cut off the end), and the chain
///    hash at its size is the root it signs (else the trail was rewritten).
///
/// The trail may be longer than the checkpoint: entries appended after it
/// was signed are checked by their chain, and covered by the next one.
pub fn check_admin_trail(
    events: &[pb::AuditEvent],
    note: &str,
    verifier: &NoteVerifier,
) -> Result<VerifiedTrail, ClientError> {
    let mut events = events.to_vec();
    events.sort_by_key(|e| e.sequence);
    let mut previous: Option<i64> = None;
    for (i, e) in events.iter().enumerate() {
        let expected = i64::try_from(i).map_or(i64::MAX, |i| i.saturating_add(1));
        if e.sequence == expected {
            previous = Some(e.sequence);
            continue;
        }
        return Err(if previous == Some(e.sequence) {
            LogError::TrailDuplicate {
                sequence: e.sequence,
            }
        } else if e.sequence < 1 {
            LogError::TrailSequence {
                sequence: e.sequence,
            }
        } else {
            LogError::TrailGap { sequence: expected }
        }
        .into());
    }
    let mut chain = Vec::with_capacity(events.len());
    let mut previous = [0u8; 32];
    for e in &events {
        let sequence = e.sequence;
        if e.time.is_none() {
            return Err(LogError::TrailMalformed {
                sequence,
                what: "time",
            }
            .into());
        }
        let listed = hex::decode(&e.chain_hash)
            .ok()
            .and_then(|b| Hash::try_from(b).ok())
            .ok_or(LogError::TrailMalformed {
                sequence,
                what: "chain hash",
            })?;
        let hash = admin_chain_hash(&previous, e);
        if hash != listed {
            return Err(LogError::TrailAltered { sequence }.into());
        }
        chain.push(hash);
        previous = hash;
    }
    let checkpoint = verifier.open(note).map_err(LogError::Note)?;
    let trail = VerifiedTrail {
        checkpoint,
        note: note.to_string(),
        events,
        chain,
    };
    covers(&trail, &trail.checkpoint, "the checkpoint")?;
    Ok(trail)
}

fn decode_entry(index: u64, bytes: &[u8]) -> Result<DecisionEntry, LogError> {
    DecisionEntry::decode(bytes).map_err(|e| LogError::EntryDecode {
        index,
        message: e.to_string(),
    })
}

fn hash_of(bytes: &[u8], what: &'static str, index: usize) -> Result<Hash, LogError> {
    Hash::try_from(bytes).map_err(|_| LogError::HashLength {
        what,
        index,
        len: bytes.len(),
    })
}

fn hashes(proof: &[Vec<u8>]) -> Result<Vec<Hash>, LogError> {
    proof
        .iter()
        .enumerate()
        .map(|(i, p)| hash_of(p, "proof hash", i))
        .collect()
}

impl Client {
    /// The verifier of the service's current checkpoint key, as
    /// `ListSigningKeys` publishes it (the first key of purpose
    /// `checkpoint` without an end of validity). Trusting it is trusting
    /// the service on first use: pin a verifier key obtained out of band
    /// with [`verifier_from_vkey`] instead where it matters.
    pub async fn checkpoint_verifier(&self) -> Result<NoteVerifier, ClientError> {
        let keys = self.signing_keys().await?;
        let key = keys
            .iter()
            .find(|k| k.purpose == PURPOSE_CHECKPOINT && k.not_after.is_none())
            .ok_or(LogError::NoCheckpointKey)?;
        verifier_from_vkey(&key.verifier_key)
    }

    /// Fetches and checks the inclusion proof of `transaction_id` in the
    /// checkpoint of `tree_size` (0: the newest one holding it).
    pub async fn inclusion_proof(
        &self,
        transaction_id: &str,
        tree_size: u64,
        verifier: &NoteVerifier,
    ) -> Result<VerifiedInclusion, ClientError> {
        let resp = self
            .audit_log()
            .get_inclusion_proof(self.request(pb::GetInclusionProofRequest {
                transaction_id: transaction_id.to_string(),
                tree_size,
            }))
            .await?
            .into_inner();
        let inclusion = check_inclusion(&resp, verifier)?;
        if let Some(entry) = &inclusion.entry
            && entry.transaction != transaction_id
        {
            return Err(LogError::WrongTransaction {
                index: inclusion.index,
                found: entry.transaction.clone(),
            }
            .into());
        }
        Ok(inclusion)
    }

    /// Every event of the admin audit trail (`ListAuditEvents` of all
    /// tenants, followed page by page to the end), newest first as the
    /// service lists them. Agency admins and auditors only.
    pub async fn admin_audit_events(&self) -> Result<Vec<pb::AuditEvent>, ClientError> {
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .admin()
                .list_audit_events(self.request(pb::ListAuditEventsRequest {
                    tenant_id: String::new(),
                    page_size: 1000,
                    page_token: page_token.clone(),
                }))
                .await?
                .into_inner();
            let empty = page.events.is_empty();
            events.extend(page.events);
            // A token that does not move on (or a page with nothing on
            // it) would otherwise loop for ever.
            if page.next_page_token.is_empty() || page.next_page_token == page_token || empty {
                return Ok(events);
            }
            page_token = page.next_page_token;
        }
    }

    /// The newest signed checkpoint of the admin audit trail (`refresh`:
    /// one signed now), its note opened under `verifier` (see
    /// [`admin_verifier`]) and the numbers beside it checked.
    pub async fn admin_checkpoint(
        &self,
        refresh: bool,
        verifier: &NoteVerifier,
    ) -> Result<(pb::Checkpoint, Checkpoint), ClientError> {
        let checkpoint = self
            .audit_log()
            .get_admin_audit_checkpoint(self.request(pb::GetCheckpointRequest { refresh }))
            .await?
            .into_inner()
            .checkpoint
            .ok_or(LogError::Missing("checkpoint"))?;
        let signed = check_checkpoint(&checkpoint, verifier)?;
        Ok((checkpoint, signed))
    }

    /// Fetches a consistency proof from `old` to `new` (when one is needed:
    /// not for an empty `old` or equal sizes) and checks it.
    pub async fn check_log_extends(
        &self,
        old: &Checkpoint,
        new: &Checkpoint,
    ) -> Result<(), ClientError> {
        let proof = if old.size == 0 || old.size >= new.size {
            Vec::new()
        } else {
            self.audit_log()
                .get_consistency_proof(self.request(pb::GetConsistencyProofRequest {
                    first: old.size,
                    second: new.size,
                }))
                .await?
                .into_inner()
                .proof
        };
        check_consistency(old, new, &proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use ekyc_domain::Field;
    use ekyc_domain::matching::{FieldOutcome, MatchResult};
    use ekyc_transparency::{Appender, NoteSigner};
    use std::collections::HashMap;

    const ORIGIN: &str = "ekyc.local/decision-log";

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[seed; 32])).expect("signer")
    }

    fn entry(i: u64) -> DecisionEntry {
        DecisionEntry {
            v: 1,
            time_ms: 1_767_225_600_000 + i as i64,
            tenant: "tn_bank".into(),
            api_key: "ak_1".into(),
            purpose: "ACCOUNT_OPENING".into(),
            consent: hex::encode(ekyc_domain::attestation::consent_digest("consent")),
            transaction: format!("tx_{i}"),
            request: format!("req-{i}"),
            registry_version: 3,
            method: "Verify".into(),
            fields: vec![
                ("full_name".into(), "MATCH".into()),
                ("date_of_birth".into(), "NO_MATCH".into()),
            ],
            decision: "NO".into(),
            subject: "ab".repeat(32),
        }
    }

    /// A tree of `size` entries and its stored nodes.
    struct Tree {
        entries: Vec<Vec<u8>>,
        nodes: HashMap<ekyc_transparency::NodeId, Hash>,
        roots: Vec<Hash>,
    }

    fn tree(size: u64) -> Tree {
        let mut appender = Appender::new(0, Vec::new()).expect("empty");
        let mut t = Tree {
            entries: Vec::new(),
            nodes: HashMap::new(),
            roots: vec![ekyc_transparency::empty_root()],
        };
        for i in 0..size {
            let bytes = entry(i).encode();
            t.nodes.extend(appender.push(leaf_hash(&bytes)));
            t.entries.push(bytes);
            t.roots.push(appender.root());
        }
        t
    }

    fn pb_checkpoint(signer: &NoteSigner, size: u64, root: Hash) -> pb::Checkpoint {
        let note = signer.sign(&Checkpoint {
            origin: ORIGIN.into(),
            size,
            root,
        });
        pb::Checkpoint {
            note,
            tree_size: size,
            root_hash: root.to_vec(),
            verifier_key: signer.verifier().to_vkey(),
            signed_at: None,
        }
    }

    fn proof_response(
        t: &Tree,
        index: u64,
        size: u64,
        signer: &NoteSigner,
    ) -> pb::GetInclusionProofResponse {
        let proof = ekyc_transparency::inclusion_proof(index, size, &t.nodes).expect("proof");
        let bytes = t.entries[index as usize].clone();
        pb::GetInclusionProofResponse {
            entry: Some(pb::LogEntry {
                index,
                leaf_hash: leaf_hash(&bytes).to_vec(),
                entry: bytes,
                erased: false,
            }),
            tree_size: size,
            proof: proof.iter().map(|h| h.to_vec()).collect(),
            checkpoint: Some(pb_checkpoint(signer, size, t.roots[size as usize])),
        }
    }

    fn log_error(r: Result<VerifiedInclusion, ClientError>) -> LogError {
        match r {
            Err(ClientError::Log(e)) => e,
            Err(e) => panic!("not a log error: {e}"),
            Ok(v) => panic!("accepted: {v:?}"),
        }
    }

    #[test]
    fn a_genuine_proof_verifies_and_decodes_the_entry() {
        let t = tree(7);
        let s = signer(1);
        let v = s.verifier();
        for index in 0..7 {
            let got = check_inclusion(&proof_response(&t, index, 7, &s), &v).expect("verifies");
            assert_eq!(got.index, index);
            assert_eq!(got.checkpoint.size, 7);
            assert_eq!(got.entry, Some(entry(index)));
        }
    }

    #[test]
    fn a_tampered_entry_is_refused() {
        let t = tree(5);
        let s = signer(1);
        let mut resp = proof_response(&t, 2, 5, &s);
        let e = resp.entry.as_mut().expect("entry");
        e.entry = String::from_utf8(e.entry.clone())
            .expect("utf-8")
            .replace("\"NO\"", "\"YES\"")
            .into_bytes();
        let err = log_error(check_inclusion(&resp, &s.verifier()));
        assert!(
            matches!(err, LogError::LeafHashMismatch { index: 2 }),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_leaf_hash_is_refused() {
        let t = tree(5);
        let s = signer(1);
        // Bytes and leaf hash agree, but they are another entry's: the
        // path no longer leads to the signed root.
        let mut resp = proof_response(&t, 2, 5, &s);
        let other = t.entries[3].clone();
        let e = resp.entry.as_mut().expect("entry");
        e.leaf_hash = leaf_hash(&other).to_vec();
        e.entry = other;
        let err = log_error(check_inclusion(&resp, &s.verifier()));
        assert!(
            matches!(
                err,
                LogError::Inclusion {
                    index: 2,
                    size: 5,
                    ..
                }
            ),
            "{err}"
        );
        // A leaf hash that is not the bytes' hash.
        let mut resp = proof_response(&t, 2, 5, &s);
        resp.entry.as_mut().expect("entry").leaf_hash = leaf_hash(b"other").to_vec();
        let err = log_error(check_inclusion(&resp, &s.verifier()));
        assert!(matches!(err, LogError::LeafHashMismatch { .. }), "{err}");
        // A proof hash of the wrong length.
        let mut resp = proof_response(&t, 2, 5, &s);
        resp.proof[0].pop();
        let err = log_error(check_inclusion(&resp, &s.verifier()));
        assert!(matches!(err, LogError::HashLength { len: 31, .. }), "{err}");
    }

    #[test]
    fn a_note_signed_by_another_key_is_refused() {
        let t = tree(5);
        let resp = proof_response(&t, 1, 5, &signer(2));
        let err = log_error(check_inclusion(&resp, &signer(1).verifier()));
        assert!(
            matches!(err, LogError::Note(NoteError::NoSignature { .. })),
            "{err}"
        );
    }

    #[test]
    fn numbers_beside_the_note_must_be_the_signed_ones() {
        let t = tree(6);
        let s = signer(1);
        let mut resp = proof_response(&t, 1, 6, &s);
        resp.checkpoint.as_mut().expect("checkpoint").root_hash = t.roots[5].to_vec();
        let err = log_error(check_inclusion(&resp, &s.verifier()));
        assert!(
            matches!(err, LogError::CheckpointMismatch("root_hash")),
            "{err}"
        );
        let mut resp = proof_response(&t, 1, 6, &s);
        resp.tree_size = 5;
        let err = log_error(check_inclusion(&resp, &s.verifier()));
        assert!(
            matches!(
                err,
                LogError::TreeSizeMismatch {
                    proof: 5,
                    signed: 6
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_erased_entry_still_proves_inclusion() {
        let t = tree(4);
        let s = signer(1);
        let mut resp = proof_response(&t, 3, 4, &s);
        let e = resp.entry.as_mut().expect("entry");
        e.entry.clear();
        e.erased = true;
        let got = check_inclusion(&resp, &s.verifier()).expect("verifies");
        assert_eq!(got.entry, None);
    }

    #[test]
    fn consistency_refuses_truncation_forks_and_bad_proofs() {
        let t = tree(9);
        let cp = |size: u64| Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: t.roots[size as usize],
        };
        let proof = |a, b| -> Vec<Vec<u8>> {
            ekyc_transparency::consistency_proof(a, b, &t.nodes)
                .expect("proof")
                .iter()
                .map(|h| h.to_vec())
                .collect()
        };
        check_consistency(&cp(3), &cp(9), &proof(3, 9)).expect("consistent");
        check_consistency(&cp(4), &cp(4), &[]).expect("same tree");
        let err = |r: Result<(), ClientError>| match r {
            Err(ClientError::Log(e)) => e,
            other => panic!("not a log error: {other:?}"),
        };
        assert!(matches!(
            err(check_consistency(&cp(9), &cp(3), &[])),
            LogError::Truncated {
                first: 9,
                second: 3
            }
        ));
        let forked = Checkpoint {
            root: t.roots[3],
            ..cp(4)
        };
        assert!(matches!(
            err(check_consistency(&cp(4), &forked, &[])),
            LogError::Forked { size: 4 }
        ));
        assert!(matches!(
            err(check_consistency(&cp(2), &cp(9), &proof(3, 9))),
            LogError::Consistency {
                first: 2,
                second: 9,
                ..
            }
        ));
    }

    #[test]
    fn an_entry_must_agree_with_its_attestation() {
        let t = tree(3);
        let s = signer(1);
        let inclusion = check_inclusion(&proof_response(&t, 1, 3, &s), &s.verifier()).expect("ok");
        let e = entry(1);
        let body = AttestationBody {
            key_id: "sk_1".into(),
            tenant_id: e.tenant.clone(),
            request_id: e.request.clone(),
            transaction_id: e.transaction.clone(),
            issued_at_ms: e.time_ms,
            registry_version: e.registry_version,
            claims_digest: [7; 32],
            purpose_code: e.purpose.clone(),
            consent_digest: ekyc_domain::attestation::consent_digest("consent"),
            subject_found: None,
            results: vec![
                FieldOutcome {
                    field: Field::FullName,
                    result: MatchResult::Match,
                    score: None,
                },
                FieldOutcome {
                    field: Field::DateOfBirth,
                    result: MatchResult::NoMatch,
                    score: None,
                },
            ],
            decision: false,
        };
        check_attestation_in_log(&body, &inclusion).expect("agrees");
        let differs = |body: AttestationBody| match check_attestation_in_log(&body, &inclusion) {
            Err(ClientError::Log(LogError::Disagrees(what))) => what,
            other => panic!("not a disagreement: {other:?}"),
        };
        assert_eq!(
            differs(AttestationBody {
                decision: true,
                ..body.clone()
            }),
            "decision"
        );
        assert_eq!(
            differs(AttestationBody {
                issued_at_ms: e.time_ms + 1,
                ..body.clone()
            }),
            "issue time"
        );
        let mut folded = body.clone();
        folded.results[0].result = MatchResult::MatchFolded;
        assert_eq!(differs(folded), "field results");
        assert_eq!(
            differs(AttestationBody {
                consent_digest: [0; 32],
                ..body
            }),
            "consent digest"
        );
    }

    const ADMIN_ORIGIN: &str = "ekyc.local/decision-log/admin-audit";

    fn admin_signer(seed: u8) -> NoteSigner {
        NoteSigner::new(ADMIN_ORIGIN, SigningKey::from_bytes(&[seed; 32])).expect("signer")
    }

    fn event(sequence: i64) -> pb::AuditEvent {
        pb::AuditEvent {
            sequence,
            time: Some(prost_types::Timestamp {
                seconds: 1_767_225_600 + sequence,
                nanos: 123_456_789,
            }),
            actor_key_id: "ak_admin".into(),
            actor_tenant_id: "tn_agency".into(),
            action: "tenant.create".into(),
            tenant_id: format!("tn_{sequence}"),
            field: "name".into(),
            old_value: String::new(),
            new_value: format!("\"Bank {sequence}\""),
            chain_hash: String::new(),
        }
    }

    /// A trail of `n` events with their chain hashes, and the head.
    fn trail(n: i64) -> (Vec<pb::AuditEvent>, Vec<Hash>) {
        let mut previous = [0u8; 32];
        let mut heads = Vec::new();
        let events = (1..=n)
            .map(|i| {
                let mut e = event(i);
                previous = admin_chain_hash(&previous, &e);
                e.chain_hash = hex::encode(previous);
                heads.push(previous);
                e
            })
            .collect();
        (events, heads)
    }

    fn admin_note(s: &NoteSigner, size: u64, root: Hash) -> String {
        s.sign(&Checkpoint {
            origin: ADMIN_ORIGIN.into(),
            size,
            root,
        })
    }

    fn trail_error(r: Result<VerifiedTrail, ClientError>) -> LogError {
        match r {
            Err(ClientError::Log(e)) => e,
            Err(e) => panic!("not a log error: {e}"),
            Ok(t) => panic!("accepted: {t:?}"),
        }
    }

    #[test]
    fn the_admin_chain_hash_is_sha256_over_the_previous_and_the_compact_json() {
        let e = pb::AuditEvent {
            sequence: 1,
            time: Some(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 123_999_999,
            }),
            actor_key_id: "ak_1".into(),
            actor_tenant_id: "tn_agency".into(),
            action: "tenant.update".into(),
            tenant_id: "tn_bank".into(),
            field: "legal.legal_name".into(),
            old_value: String::new(),
            new_value: "\"Ngân hàng \\\"A\\\"\"".into(),
            chain_hash: "not covered".into(),
        };
        let json = concat!(
            r#"{"at_ms":1767225600123,"actor_key_id":"ak_1","actor_tenant_id":"tn_agency","#,
            r#""action":"tenant.update","tenant_id":"tn_bank","field":"legal.legal_name","#,
            r#""old_value":"","new_value":"\"Ngân hàng \\\"A\\\"\""}"#,
        );
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(json.as_bytes());
        let first: [u8; 32] = h.finalize().into();
        assert_eq!(admin_chain_hash(&[0; 32], &e), first);
        // The next one chains on it; the sequence and the chain hash
        // itself are not covered.
        let mut h = Sha256::new();
        h.update(first);
        h.update(json.as_bytes());
        let second: [u8; 32] = h.finalize().into();
        let again = pb::AuditEvent {
            sequence: 2,
            chain_hash: String::new(),
            ..e.clone()
        };
        assert_eq!(admin_chain_hash(&first, &again), second);
        // A time before 1970 counts its milliseconds the same way.
        let early = pb::AuditEvent {
            time: Some(prost_types::Timestamp {
                seconds: -1,
                nanos: 500_000_000,
            }),
            ..e
        };
        let json = serde_json::to_string(&ChainedAuditEntry {
            at_ms: at_ms(early.time.as_ref().expect("time")),
            actor_key_id: "",
            actor_tenant_id: "",
            action: "",
            tenant_id: "",
            field: "",
            old_value: "",
            new_value: "",
        })
        .expect("json");
        assert!(json.starts_with(r#"{"at_ms":-500,"#), "{json}");
    }

    #[test]
    fn a_genuine_admin_trail_verifies_in_any_order() {
        let s = admin_signer(1);
        let v = admin_verifier(&signer(1).verifier()).expect("admin verifier");
        assert_eq!(v, s.verifier());
        let (mut events, heads) = trail(5);
        events.reverse();
        let got = check_admin_trail(&events, &admin_note(&s, 5, heads[4]), &v).expect("verifies");
        assert_eq!(got.len(), 5);
        assert_eq!(got.checkpoint.size, 5);
        assert_eq!(
            got.events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(got.chain_hash_at(0), Some([0; 32]));
        assert_eq!(got.chain_hash_at(3), Some(heads[2]));
        assert_eq!(got.chain_hash_at(6), None);
        // A checkpoint older than the trail's end is covered too, and so
        // is an empty trail's (zero root).
        check_admin_trail(&events, &admin_note(&s, 3, heads[2]), &v).expect("older checkpoint");
        let empty = check_admin_trail(&[], &admin_note(&s, 0, [0; 32]), &v).expect("empty");
        assert!(empty.is_empty());
        // An earlier checkpoint the trail extends, and ones it does not.
        got.check_extends(&Checkpoint {
            origin: ADMIN_ORIGIN.into(),
            size: 2,
            root: heads[1],
        })
        .expect("extends");
        let err = |r: Result<(), ClientError>| match r {
            Err(ClientError::Log(e)) => e,
            other => panic!("not a log error: {other:?}"),
        };
        let e = err(got.check_extends(&Checkpoint {
            origin: ADMIN_ORIGIN.into(),
            size: 7,
            root: [1; 32],
        }));
        assert!(
            matches!(
                e,
                LogError::TrailCut {
                    signed: 7,
                    listed: 5,
                    ..
                }
            ),
            "{e}"
        );
        let e = err(got.check_extends(&Checkpoint {
            origin: ADMIN_ORIGIN.into(),
            size: 2,
            root: heads[2],
        }));
        assert!(matches!(e, LogError::TrailRewritten { size: 2, .. }), "{e}");
    }

    #[test]
    fn gaps_duplicates_and_edits_are_named() {
        let s = admin_signer(1);
        let v = s.verifier();
        let (events, heads) = trail(5);
        let note = admin_note(&s, 5, heads[4]);
        let without = |seq: i64| -> Vec<pb::AuditEvent> {
            events
                .iter()
                .filter(|e| e.sequence != seq)
                .cloned()
                .collect()
        };
        let e = trail_error(check_admin_trail(&without(3), &note, &v));
        assert!(matches!(e, LogError::TrailGap { sequence: 3 }), "{e}");
        let e = trail_error(check_admin_trail(&without(1), &note, &v));
        assert!(matches!(e, LogError::TrailGap { sequence: 1 }), "{e}");
        let mut twice = events.clone();
        twice.push(events[1].clone());
        let e = trail_error(check_admin_trail(&twice, &note, &v));
        assert!(matches!(e, LogError::TrailDuplicate { sequence: 2 }), "{e}");
        let mut zero = events.clone();
        zero[0].sequence = 0;
        let e = trail_error(check_admin_trail(&zero, &note, &v));
        assert!(matches!(e, LogError::TrailSequence { sequence: 0 }), "{e}");

        let mut edited = events.clone();
        edited[1].new_value = "\"x\"".into();
        let e = trail_error(check_admin_trail(&edited, &note, &v));
        assert!(matches!(e, LogError::TrailAltered { sequence: 2 }), "{e}");
        assert_eq!(
            e.to_string(),
            "entry 2 was altered or an earlier one removed"
        );
        // Removed and renumbered: the next entry's hash no longer chains.
        let mut renumbered = without(2);
        for (i, e) in renumbered.iter_mut().enumerate() {
            e.sequence = i as i64 + 1;
        }
        let e = trail_error(check_admin_trail(&renumbered, &note, &v));
        assert!(matches!(e, LogError::TrailAltered { sequence: 2 }), "{e}");
        let mut moved = events.clone();
        moved[3].time.as_mut().expect("time").nanos += 1_000_000;
        let e = trail_error(check_admin_trail(&moved, &note, &v));
        assert!(matches!(e, LogError::TrailAltered { sequence: 4 }), "{e}");
        let mut bad = events.clone();
        bad[2].chain_hash.pop();
        let e = trail_error(check_admin_trail(&bad, &note, &v));
        assert!(
            matches!(
                e,
                LogError::TrailMalformed {
                    sequence: 3,
                    what: "chain hash"
                }
            ),
            "{e}"
        );
        let mut timeless = events.clone();
        timeless[0].time = None;
        let e = trail_error(check_admin_trail(&timeless, &note, &v));
        assert!(
            matches!(
                e,
                LogError::TrailMalformed {
                    sequence: 1,
                    what: "time"
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_cut_or_rewritten_trail_fails_against_its_checkpoint() {
        let s = admin_signer(1);
        let v = s.verifier();
        let (events, heads) = trail(5);
        let e = trail_error(check_admin_trail(
            &events[..4],
            &admin_note(&s, 5, heads[4]),
            &v,
        ));
        assert_eq!(
            e.to_string(),
            "the trail was cut: the checkpoint signs 5 entries, the trail lists 4"
        );
        // Every hash rewritten consistently: the chain checks, the signed
        // root does not.
        let mut rewritten = events.clone();
        rewritten[4].new_value = "\"y\"".into();
        rewritten[4].chain_hash = hex::encode(admin_chain_hash(&heads[3], &rewritten[4]));
        let e = trail_error(check_admin_trail(
            &rewritten,
            &admin_note(&s, 5, heads[4]),
            &v,
        ));
        assert!(matches!(e, LogError::TrailRewritten { size: 5, .. }), "{e}");
        let e = trail_error(check_admin_trail(&[], &admin_note(&s, 0, [1; 32]), &v));
        assert!(matches!(e, LogError::TrailRewritten { size: 0, .. }), "{e}");
    }

    #[test]
    fn only_the_admin_key_name_opens_an_admin_checkpoint() {
        let (events, heads) = trail(2);
        // The decision log's own name, same key: refused (no note of one
        // log passes for the other's).
        let decisions = signer(1).sign(&Checkpoint {
            origin: ORIGIN.into(),
            size: 2,
            root: heads[1],
        });
        let v = admin_verifier(&signer(1).verifier()).expect("admin verifier");
        let e = trail_error(check_admin_trail(&events, &decisions, &v));
        assert!(
            matches!(e, LogError::Note(NoteError::NoSignature { .. })),
            "{e}"
        );
        // Another key under the admin name: refused.
        let other = admin_note(&admin_signer(2), 2, heads[1]);
        let e = trail_error(check_admin_trail(&events, &other, &v));
        assert!(
            matches!(e, LogError::Note(NoteError::NoSignature { .. })),
            "{e}"
        );
    }
}
