//! `AuditLogService`: checkpoints, proofs and entries of the decision log,
//! and the citizen's access history (docs/decision-log.md).
//!
//! The entries themselves are written by the ledger's writer with each
//! answered call's usage event (`verify.rs`); this module signs the tree
//! heads, serves what a tenant, an auditor or a privacy officer may check,
//! and erases details past their retention.

use std::path::PathBuf;
use std::sync::Arc;

use ekyc_billing::{Decision, Ledger, StoredCheckpoint, StoredDecision};
use ekyc_domain::normalize::{Violation, normalize_id};
use ekyc_proto::v1 as pb;
use ekyc_transparency::{Checkpoint, DecisionEntry, NoteSigner, NoteVerifier};

use crate::App;
use crate::auth::{Caller, Credential};
use crate::authz::{Gate, Target};
use crate::clock;
use crate::error::{Reason, ServiceError};
use crate::hashing::{HashError, HashPool};
use crate::keyring::Keyring;
use crate::secrets::random_bytes;
use crate::store::Store;
use crate::tenants;

/// The key that signs checkpoints, with its published id. One key signs
/// both logs, each under a name of its own (the decision log's origin, and
/// that origin followed by `/admin-audit`), so a note of one can never
/// pass for the other.
pub struct CheckpointKey {
    signer: NoteSigner,
    admin: NoteSigner,
    key_id: String,
    public_key: [u8; 32],
}

/// The admin audit trail's checkpoint name for a decision-log origin.
pub fn admin_origin(origin: &str) -> String {
    format!("{origin}/admin-audit")
}

impl CheckpointKey {
    /// Wraps the checkpoint signing key under the log's origin (the
    /// signed note's key name).
    pub fn new(origin: &str, key: ed25519_dalek::SigningKey) -> Result<CheckpointKey, String> {
        let public_key = key.verifying_key().to_bytes();
        let key_id = crate::secrets::key_id_of(&public_key);
        let admin =
            NoteSigner::new(&admin_origin(origin), key.clone()).map_err(|e| e.to_string())?;
        let signer = NoteSigner::new(origin, key).map_err(|e| e.to_string())?;
        Ok(CheckpointKey {
            signer,
            admin,
            key_id,
            public_key,
        })
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The key id published with the public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The note verifier a reader checks checkpoints with.
    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointKey({}, <redacted>)", self.key_id)
    }
}

/// What the decision log's handle needs.
#[derive(Clone)]
pub struct AuditLogService {
    gate: Gate,
    store: Store,
    ledger: Arc<Ledger>,
    pool: Arc<HashPool>,
    keyring: Arc<Keyring>,
    key: Arc<CheckpointKey>,
    publish_dir: Option<PathBuf>,
}

/// Most entries one listing returns.
const MAX_LIST: u32 = 1000;

impl AuditLogService {
    /// The handle over `app`'s parts.
    pub fn new(app: &App) -> AuditLogService {
        AuditLogService {
            gate: Gate::new(app),
            store: app.store.clone(),
            ledger: Arc::clone(&app.ledger),
            pool: Arc::clone(&app.pool),
            keyring: Arc::clone(&app.keyring),
            key: Arc::clone(&app.checkpoint_key),
            publish_dir: app.decision_log.publish_dir.clone(),
        }
    }

    async fn caller(&self, credential: &Credential, method: &str) -> Result<Caller, ServiceError> {
        let caller = self.gate.authenticate(credential).await?;
        self.gate.authorize(&caller, method, Target::Caller).await?;
        Ok(caller)
    }

    /// Signs a checkpoint over the decision log as it is now and keeps it
    /// (and writes it to `publish_dir`, when configured). The
    /// housekeeping calls it periodically; `GetCheckpoint` with `refresh`
    /// on demand.
    pub async fn sign_checkpoint(&self) -> Result<StoredCheckpoint, ServiceError> {
        let size = self.ledger.log_size().await?;
        let root = self.ledger.log_root(size).await?;
        self.sign(Log::Decisions, size, root).await
    }

    /// Signs a checkpoint over the admin audit trail: its last sequence
    /// number and that entry's chain hash (zeros while it is empty), which
    /// covers every earlier entry; with the sequence numbers gapless from
    /// 1, cutting entries off or rewriting any is seen against it.
    pub async fn sign_admin_checkpoint(&self) -> Result<StoredCheckpoint, ServiceError> {
        let (size, root) = self.admin_head().await?;
        self.sign(Log::AdminAudit, size, root).await
    }

    /// The root of `log` at `size` as stored now (`None` if it has fewer
    /// entries): the decision tree's root over its first `size` leaves,
    /// or the trail's chain hash at sequence `size`.
    async fn root_at(&self, log: Log, size: u64) -> Result<Option<[u8; 32]>, ServiceError> {
        match log {
            Log::Decisions => {
                if self.ledger.log_size().await? < size {
                    return Ok(None);
                }
                Ok(Some(self.ledger.log_root(size).await?))
            }
            Log::AdminAudit if size == 0 => Ok(Some([0; 32])),
            Log::AdminAudit => {
                let before = i64::try_from(size + 1).map_err(|_| ServiceError::internal("size"))?;
                Ok(self
                    .store
                    .list_audit(None, Some(before), 1)
                    .await?
                    .first()
                    .filter(|e| e.sequence as u64 == size)
                    .map(|e| e.chain_hash))
            }
        }
    }

    async fn admin_head(&self) -> Result<(u64, [u8; 32]), ServiceError> {
        Ok(match self.store.list_audit(None, None, 1).await?.first() {
            Some(e) => (
                u64::try_from(e.sequence).map_err(|_| ServiceError::internal("audit sequence"))?,
                e.chain_hash,
            ),
            None => (0, [0; 32]),
        })
    }

    async fn sign(
        &self,
        log: Log,
        size: u64,
        root: [u8; 32],
    ) -> Result<StoredCheckpoint, ServiceError> {
        // Never sign a head that does not extend the newest one signed:
        // shorter (entries cut off), or with another hash at that size
        // (rewritten under it, whatever was appended since).
        if let Some(latest) = self.ledger.latest_checkpoint(log.name()).await? {
            let problem = if latest.size > size {
                Some("is shorter than its newest signed checkpoint: entries were cut off")
            } else if self.root_at(log, latest.size).await? != Some(latest.root) {
                Some("no longer extends its newest signed checkpoint: it was rewritten")
            } else {
                None
            };
            if let Some(problem) = problem {
                tracing::error!(
                    log = log.name(),
                    size,
                    signed = latest.size,
                    "the log {problem}"
                );
                return Err(ServiceError::refused(
                    Reason::LogInconsistent,
                    format!("the {} log {problem}", log.name()),
                ));
            }
        }
        let signer = match log {
            Log::Decisions => &self.key.signer,
            Log::AdminAudit => &self.key.admin,
        };
        let note = signer.sign(&Checkpoint {
            origin: signer.name().to_string(),
            size,
            root,
        });
        let checkpoint = StoredCheckpoint {
            size,
            root,
            note,
            signed_at_ms: clock::now_ms(),
        };
        self.ledger.save_checkpoint(log.name(), &checkpoint).await?;
        // The kept one of this size (another replica may have signed it
        // first): what every reader gets for it.
        let kept = self
            .ledger
            .checkpoint_at(log.name(), size)
            .await?
            .unwrap_or(checkpoint);
        if kept.root != root {
            // The log no longer has the root signed for its size: entries
            // were changed under the service. Say so loudly; the signed
            // checkpoints are the evidence.
            tracing::error!(
                log = log.name(),
                size,
                "the log no longer matches the checkpoint signed for its size: it was rewritten"
            );
            return Err(ServiceError::refused(
                Reason::LogInconsistent,
                format!(
                    "the {} log does not match its signed checkpoint",
                    log.name()
                ),
            ));
        }
        if let Some(dir) = &self.publish_dir {
            publish(dir, log, &kept).await;
        }
        Ok(kept)
    }

    /// Signs a checkpoint of each log that grew since its newest one.
    pub async fn checkpoint_if_grown(&self) -> Result<(), ServiceError> {
        let size = self.ledger.log_size().await?;
        let latest = self.ledger.latest_checkpoint(Log::Decisions.name()).await?;
        if latest.is_none_or(|c| c.size < size) {
            self.sign_checkpoint().await?;
        }
        let (size, _) = self.admin_head().await?;
        let latest = self
            .ledger
            .latest_checkpoint(Log::AdminAudit.name())
            .await?;
        if latest.is_none_or(|c| c.size < size) {
            self.sign_admin_checkpoint().await?;
        }
        Ok(())
    }

    fn to_proto(&self, log: Log, c: StoredCheckpoint) -> pb::Checkpoint {
        let signer = match log {
            Log::Decisions => &self.key.signer,
            Log::AdminAudit => &self.key.admin,
        };
        pb::Checkpoint {
            note: c.note,
            tree_size: c.size,
            root_hash: c.root.to_vec(),
            verifier_key: signer.verifier().to_vkey(),
            signed_at: Some(clock::timestamp(c.signed_at_ms)),
        }
    }

    /// GetCheckpoint.
    pub async fn get_checkpoint(
        &self,
        credential: &Credential,
        req: &pb::GetCheckpointRequest,
    ) -> Result<pb::GetCheckpointResponse, ServiceError> {
        let caller = self.caller(credential, "GetCheckpoint").await?;
        let checkpoint = if req.refresh {
            // Signing on demand is the agency's: a bank's key in a loop
            // would otherwise fill the table with checkpoints.
            self.gate
                .authorize(&caller, "ListLogEntries", Target::Caller)
                .await
                .map_err(|e| match e {
                    ServiceError::Refused { reason, .. } => ServiceError::refused(
                        reason,
                        "only the agency's auditors and admins may call GetCheckpoint with refresh",
                    ),
                    other => other,
                })?;
            self.sign_checkpoint().await?
        } else {
            match self.ledger.latest_checkpoint(Log::Decisions.name()).await? {
                Some(c) => c,
                None => self.sign_checkpoint().await?,
            }
        };
        Ok(pb::GetCheckpointResponse {
            checkpoint: Some(self.to_proto(Log::Decisions, checkpoint)),
        })
    }

    /// GetAdminAuditCheckpoint: the agency's auditors and admins, who
    /// also read the trail (`ListAuditEvents`) to check against it.
    pub async fn get_admin_checkpoint(
        &self,
        credential: &Credential,
        req: &pb::GetCheckpointRequest,
    ) -> Result<pb::GetCheckpointResponse, ServiceError> {
        self.caller(credential, "GetAdminAuditCheckpoint").await?;
        let checkpoint = match self
            .ledger
            .latest_checkpoint(Log::AdminAudit.name())
            .await?
        {
            Some(c) if !req.refresh => c,
            _ => self.sign_admin_checkpoint().await?,
        };
        Ok(pb::GetCheckpointResponse {
            checkpoint: Some(self.to_proto(Log::AdminAudit, checkpoint)),
        })
    }

    /// GetCheckpointAt.
    pub async fn get_checkpoint_at(
        &self,
        credential: &Credential,
        req: &pb::GetCheckpointAtRequest,
    ) -> Result<pb::GetCheckpointResponse, ServiceError> {
        self.caller(credential, "GetCheckpointAt").await?;
        let checkpoint = self.checkpoint_of(req.tree_size).await?;
        Ok(pb::GetCheckpointResponse {
            checkpoint: Some(self.to_proto(Log::Decisions, checkpoint)),
        })
    }

    async fn checkpoint_of(&self, size: u64) -> Result<StoredCheckpoint, ServiceError> {
        self.ledger
            .checkpoint_at(Log::Decisions.name(), size)
            .await?
            .ok_or(ServiceError::refused(
                Reason::CheckpointNotFound,
                "no checkpoint was signed for this tree_size",
            ))
    }

    /// GetInclusionProof: a tenant's keys for its own transactions, the
    /// agency's auditors for any.
    pub async fn get_inclusion_proof(
        &self,
        credential: &Credential,
        req: &pb::GetInclusionProofRequest,
    ) -> Result<pb::GetInclusionProofResponse, ServiceError> {
        let caller = self.caller(credential, "GetInclusionProof").await?;
        if !req.transaction_id.starts_with("tx_") || req.transaction_id.len() > 64 {
            return Err(ServiceError::invalid(
                "transaction_id",
                "format",
                "transaction_id must be the tx_... id of an answer",
            ));
        }
        let not_logged = || {
            ServiceError::refused(
                Reason::TransactionNotLogged,
                "no decision with this transaction_id is in the log",
            )
        };
        let entry = self
            .ledger
            .decision_by_transaction(&req.transaction_id)
            .await?
            .ok_or_else(not_logged)?;
        self.gate
            .authorize(
                &caller,
                "GetInclusionProof",
                Target::Tenant(&entry.tenant_id),
            )
            .await?;
        let checkpoint = if req.tree_size == 0 {
            match self.ledger.latest_checkpoint(Log::Decisions.name()).await? {
                Some(c) if c.size > entry.index => c,
                // Answered after the newest checkpoint: sign one that
                // holds it, so the proof has a head to verify against.
                _ => self.sign_checkpoint().await?,
            }
        } else {
            self.checkpoint_of(req.tree_size).await?
        };
        if checkpoint.size <= entry.index {
            return Err(ServiceError::invalid(
                "tree_size",
                "before_entry",
                "tree_size must be larger than the entry's index",
            ));
        }
        let proof = self
            .ledger
            .inclusion_proof(entry.index, checkpoint.size)
            .await?;
        Ok(pb::GetInclusionProofResponse {
            entry: Some(entry_to_proto(entry)),
            tree_size: checkpoint.size,
            proof: proof.iter().map(|h| h.to_vec()).collect(),
            checkpoint: Some(self.to_proto(Log::Decisions, checkpoint)),
        })
    }

    /// GetConsistencyProof.
    pub async fn get_consistency_proof(
        &self,
        credential: &Credential,
        req: &pb::GetConsistencyProofRequest,
    ) -> Result<pb::GetConsistencyProofResponse, ServiceError> {
        self.caller(credential, "GetConsistencyProof").await?;
        let size = self.ledger.log_size().await?;
        let mut violations = Vec::new();
        if req.first == 0 || req.first > req.second {
            violations.push(Violation {
                field: "first",
                rule: "range",
                description: "first must be at least 1 and at most second".into(),
            });
        }
        if req.second > size {
            violations.push(Violation {
                field: "second",
                rule: "beyond_log",
                description: "second must be at most the log's size".into(),
            });
        }
        if !violations.is_empty() {
            return Err(ServiceError::InvalidArgument(violations));
        }
        let proof = self.ledger.consistency_proof(req.first, req.second).await?;
        Ok(pb::GetConsistencyProofResponse {
            proof: proof.iter().map(|h| h.to_vec()).collect(),
        })
    }

    /// ListLogEntries: the agency's auditors.
    pub async fn list_entries(
        &self,
        credential: &Credential,
        req: &pb::ListLogEntriesRequest,
    ) -> Result<pb::ListLogEntriesResponse, ServiceError> {
        self.caller(credential, "ListLogEntries").await?;
        let limit = match req.limit {
            0 => 100,
            n if n <= MAX_LIST => n,
            _ => {
                return Err(ServiceError::invalid(
                    "limit",
                    "range",
                    "limit must be 1 to 1000 (0 means 100)",
                ));
            }
        };
        let tree_size = self.ledger.log_size().await?;
        let entries = self.ledger.decisions(req.start, limit).await?;
        Ok(pb::ListLogEntriesResponse {
            entries: entries
                .into_iter()
                .filter(|e| e.index < tree_size)
                .map(entry_to_proto)
                .collect(),
            tree_size,
        })
    }

    /// ListSubjectAccesses: the agency's privacy officers, for a citizen.
    /// The subject's key is derived on the pool like any Verify's (one
    /// evaluation, shed when the pool is full), and the lookup is logged
    /// as an entry of its own before the history is returned.
    pub async fn list_subject_accesses(
        &self,
        credential: &Credential,
        req: &pb::ListSubjectAccessesRequest,
    ) -> Result<pb::ListSubjectAccessesResponse, ServiceError> {
        let caller = self.caller(credential, "ListSubjectAccesses").await?;
        let mut violations = Vec::new();
        let id = normalize_id(&req.id_number)
            .map_err(|v| violations.push(v))
            .ok();
        if let Err(rule) = tenants::check_display_text(&req.reason, 500) {
            violations.push(Violation {
                field: "reason",
                rule,
                description: "reason must be 1 to 500 characters in Unicode NFC without control \
                              or invisible characters (and must not hold personal data)"
                    .into(),
            });
        }
        let (Some(id), true) = (id, violations.is_empty()) else {
            return Err(ServiceError::InvalidArgument(violations));
        };
        // The subject has a pseudonym per pepper: the serving one's first,
        // then any other held during a rotation (one evaluation each), so
        // entries made before the switch are found too. Entries under a
        // purged pepper can no longer be found, by anyone.
        let serving = self.keyring.serving();
        let mut peppers = vec![serving];
        peppers.extend(
            self.keyring
                .held_versions()
                .into_iter()
                .filter(|v| *v != serving),
        );
        let mut found = Vec::new();
        let mut subject = String::new();
        for pepper in peppers {
            let key = self
                .pool
                .derive(id.clone(), pepper, None)
                .await
                .map_err(|e| match e {
                    HashError::Saturated => ServiceError::Overloaded {
                        retry_after: self.pool.retry_hint(),
                    },
                    HashError::Closed => ServiceError::ShuttingDown,
                    HashError::DeadlinePassed => ServiceError::DeadlineExceeded,
                    e => ServiceError::internal(e),
                })?;
            let name = hex::encode(key.decision_log_subject());
            found.extend(self.ledger.decisions_about(&name).await?);
            if subject.is_empty() {
                subject = name;
            }
        }
        found.sort_by_key(|d| d.index);
        // The lookup is a processing of the person's data too.
        let now_ms = clock::now_ms();
        let transaction_id = format!("tx_{}", hex::encode(random_bytes::<16>()?));
        let entry = DecisionEntry {
            v: 1,
            time_ms: now_ms,
            tenant: caller.tenant.id.clone(),
            api_key: caller.key_id.clone(),
            purpose: "SUBJECT_ACCESS".into(),
            consent: hex::encode(ekyc_domain::attestation::consent_digest(&req.reason)),
            transaction: transaction_id.clone(),
            request: String::new(),
            registry_version: self.store.registry_version().await?,
            method: "ListSubjectAccesses".into(),
            fields: Vec::new(),
            decision: "LOOKUP".into(),
            subject: subject.clone(),
        };
        self.ledger
            .log_decision(Decision {
                tenant_id: caller.tenant.id.clone(),
                time_ms: now_ms,
                transaction_id: transaction_id.clone(),
                subject,
                entry: entry.encode(),
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "subject access lookup not logged; refused");
                ServiceError::LedgerUnavailable
            })?;
        let lookup = self
            .ledger
            .decision_by_transaction(&transaction_id)
            .await?
            .ok_or(ServiceError::internal("a logged lookup is not in the log"))?;
        let mut names = std::collections::HashMap::new();
        let mut accesses = Vec::with_capacity(found.len());
        for stored in found {
            let Some(bytes) = &stored.entry else { continue };
            let e = DecisionEntry::decode(bytes).map_err(|e| {
                ServiceError::internal(format!("a stored decision entry does not decode: {e}"))
            })?;
            if !names.contains_key(&e.tenant) {
                let name = self
                    .store
                    .get_tenant(&e.tenant)
                    .await?
                    .map(|t| t.name)
                    .unwrap_or_default();
                names.insert(e.tenant.clone(), name);
            }
            accesses.push(pb::SubjectAccess {
                time: Some(clock::timestamp(e.time_ms)),
                tenant_name: names.get(&e.tenant).cloned().unwrap_or_default(),
                tenant_id: e.tenant,
                purpose_code: e.purpose,
                method: e.method,
                decision: e.decision,
                fields: e.fields.into_iter().map(|(field, _)| field).collect(),
                transaction_id: e.transaction,
                log_index: stored.index,
            });
        }
        tracing::info!(
            actor = %caller.key_id,
            accesses = accesses.len(),
            lookup_index = lookup.index,
            "subject accesses listed"
        );
        Ok(pb::ListSubjectAccessesResponse {
            accesses,
            lookup_log_index: lookup.index,
        })
    }

    /// Erases the details of entries answered more than `retention_days`
    /// ago (their leaf hashes stay).
    pub async fn apply_retention(&self, retention_days: u32) -> Result<u64, ServiceError> {
        let before = clock::now_ms() - i64::from(retention_days) * 86_400_000;
        Ok(self.ledger.erase_decisions_before(before).await?)
    }
}

/// The signed-note verifier key of a published checkpoint key (empty if
/// the stored bytes are not an Ed25519 key, which publishing refuses).
pub fn verifier_key(origin: &str, public_key: &[u8; 32]) -> String {
    ed25519_dalek::VerifyingKey::from_bytes(public_key)
        .ok()
        .and_then(|key| NoteVerifier::new(origin, key).ok())
        .map(|v| v.to_vkey())
        .unwrap_or_default()
}

fn entry_to_proto(e: StoredDecision) -> pb::LogEntry {
    pb::LogEntry {
        index: e.index,
        erased: e.entry.is_none(),
        entry: e.entry.unwrap_or_default(),
        leaf_hash: e.leaf_hash.to_vec(),
    }
}

/// The two logs that get checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    /// The decision log (a Merkle tree in the ledger).
    Decisions,
    /// The admin audit trail (a hash chain in the store).
    AdminAudit,
}

impl Log {
    fn name(self) -> &'static str {
        match self {
            Log::Decisions => ekyc_billing::decision_log::DECISIONS,
            Log::AdminAudit => ekyc_billing::decision_log::ADMIN_AUDIT,
        }
    }
}

/// Writes a checkpoint to the operator's publication directory as
/// `<log>-<size>.checkpoint` (and `<log>-latest.checkpoint`), each by a
/// rename so a reader never sees half a note. A failure is logged, never
/// fatal: the checkpoint is kept in the ledger either way.
async fn publish(dir: &std::path::Path, log: Log, checkpoint: &StoredCheckpoint) {
    let write = async {
        tokio::fs::create_dir_all(dir).await?;
        let log = log.name();
        for name in [
            format!("{log}-{}.checkpoint", checkpoint.size),
            format!("{log}-latest.checkpoint"),
        ] {
            let tmp = dir.join(format!(".{name}.tmp"));
            tokio::fs::write(&tmp, checkpoint.note.as_bytes()).await?;
            tokio::fs::rename(&tmp, dir.join(name)).await?;
        }
        std::io::Result::Ok(())
    };
    if let Err(e) = write.await {
        tracing::warn!(error = %e, dir = %dir.display(), "could not publish a checkpoint");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_published_checkpoint_is_whole_under_both_names_and_replaced_by_the_next() {
        let dir = tempfile::tempdir().expect("temp dir");
        let publish_dir = dir.path().join("witness");
        let key = CheckpointKey::new(
            "ekyc.test/log",
            ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        )
        .expect("key");
        let signed = |size: u64| StoredCheckpoint {
            size,
            root: [size as u8; 32],
            note: key.signer.sign(&Checkpoint {
                origin: "ekyc.test/log".into(),
                size,
                root: [size as u8; 32],
            }),
            signed_at_ms: 0,
        };
        publish(&publish_dir, Log::Decisions, &signed(3)).await;
        publish(&publish_dir, Log::Decisions, &signed(5)).await;
        publish(&publish_dir, Log::AdminAudit, &signed(2)).await;
        let read = |name: &str| std::fs::read_to_string(publish_dir.join(name)).expect(name);
        let verifier = key.verifier();
        assert_eq!(
            verifier
                .open(&read("decisions-3.checkpoint"))
                .expect("3")
                .size,
            3
        );
        assert_eq!(
            verifier
                .open(&read("decisions-5.checkpoint"))
                .expect("5")
                .size,
            5
        );
        assert_eq!(
            verifier
                .open(&read("decisions-latest.checkpoint"))
                .expect("latest")
                .size,
            5
        );
        assert_eq!(read("admin-audit-latest.checkpoint"), signed(2).note);
        // No temporary file is left for a reader to pick up.
        let names: Vec<String> = std::fs::read_dir(&publish_dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        assert_eq!(names.len(), 5);
    }
}
