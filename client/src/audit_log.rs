//! Checking the decision log from the relying party's side
//! (docs/decision-log.md): that a signed checkpoint is the service's, that
//! an answer's entry is in the tree it signs, that a later checkpoint
//! extends an earlier one, and that the entry records what the answer's
//! attestation says.
//!
//! The formats are `ekyc-transparency`'s; this module only decides what to
//! compare and refuses anything that does not add up. It must never trust
//! a number the service sent beside a signed note over the note itself:
//! every size and root used in a check is the one the note signs.

use ekyc_domain::attestation::AttestationBody;
use ekyc_proto::v1 as pb;
use ekyc_transparency::{Hash, NoteError, ProofError, leaf_hash};

use crate::{Client, ClientError};

pub use ekyc_transparency::{Checkpoint, DecisionEntry, NoteVerifier};

/// The `purpose` of a published key that signs checkpoints.
pub const PURPOSE_CHECKPOINT: &str = "checkpoint";
/// The `purpose` of a published key that signs attestations (and
/// invoices); older servers publish these with no purpose.
pub const PURPOSE_ATTESTATION: &str = "attestation";

/// Why a piece of the decision log was refused. Each message names the
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
}
