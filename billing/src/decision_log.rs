//! The decision log's storage: entries appended in the transaction that
//! records their usage event, the tree's complete-subtree hashes, and the
//! signed checkpoints (docs/decision-log.md).
//!
//! It lives in the ledger's database because "no answer without its log
//! entry" is one transaction: the writer task that commits a batch of
//! usage events appends their entries to the log in the same commit, so
//! a call is answered only once both are durable, and a replayed call
//! (whose event already exists) appends nothing.
//!
//! Appending takes turns on the `log_heads` row: its `UPDATE ... RETURNING`
//! is the first thing the batch does to the log, so on PostgreSQL replicas
//! wait for each other there, and on SQLite the transaction already holds
//! the write lock. The indexes a batch gets are contiguous and gapless.

use std::collections::HashMap;

use ekyc_transparency::{Appender, Hash, NodeId};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::ledger::{Ledger, LedgerError, dynamic};

/// The name of the decision log in `log_heads`, `log_nodes` and
/// `log_checkpoints`.
pub const DECISIONS: &str = "decisions";

/// The name of the admin audit trail's checkpoints in `log_checkpoints`
/// (the trail itself is a hash chain in the store; a checkpoint signs its
/// last sequence number and chain hash).
pub const ADMIN_AUDIT: &str = "admin-audit";

/// What the log records of one answered call, handed to the ledger with
/// its usage event (or alone, for a lookup that bills nothing).
#[derive(Clone, PartialEq, Eq)]
pub struct Decision {
    /// The calling tenant.
    pub tenant_id: String,
    /// When it was answered, Unix milliseconds.
    pub time_ms: i64,
    /// The answer's transaction id: how a tenant finds its entry.
    pub transaction_id: String,
    /// The subject pseudonym, hex (how a privacy officer finds it).
    pub subject: String,
    /// The entry's bytes, hashed as they are.
    pub entry: Vec<u8>,
}

impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pseudonym and the results are not for log lines.
        f.debug_struct("Decision")
            .field("tenant_id", &self.tenant_id)
            .field("transaction_id", &self.transaction_id)
            .finish_non_exhaustive()
    }
}

/// An entry as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredDecision {
    /// Its index in the log.
    pub index: u64,
    /// When it was answered.
    pub time_ms: i64,
    /// The calling tenant.
    pub tenant_id: String,
    /// The transaction id.
    pub transaction_id: String,
    /// The entry's bytes; `None` once retention erased them.
    pub entry: Option<Vec<u8>>,
    /// Its leaf hash, kept forever.
    pub leaf_hash: Hash,
}

impl std::fmt::Debug for StoredDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredDecision")
            .field("index", &self.index)
            .field("transaction_id", &self.transaction_id)
            .field("erased", &self.entry.is_none())
            .finish_non_exhaustive()
    }
}

/// A signed checkpoint as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The tree size it signs.
    pub size: u64,
    /// The root hash it signs.
    pub root: Hash,
    /// The signed note.
    pub note: String,
    /// When it was signed.
    pub signed_at_ms: i64,
}

/// The compact range of the log as this process last appended it: the
/// writer's shortcut past one read per batch while no other replica has
/// appended since (checked against the size the head row returns).
#[derive(Default)]
pub(crate) struct TreeCache {
    size: u64,
    range: Option<Vec<Hash>>,
}

/// Appends `decisions` in the writer's open transaction and returns the
/// cache after it, to keep once the transaction commits.
pub(crate) async fn append(
    tx: &mut Transaction<'static, Any>,
    cache: &TreeCache,
    decisions: &[&Decision],
) -> Result<TreeCache, LedgerError> {
    let n = decisions.len() as i64;
    let size: i64 =
        sqlx::query("UPDATE log_heads SET size = size + $1 WHERE log = $2 RETURNING size")
            .bind(n)
            .bind(DECISIONS)
            .fetch_one(&mut **tx)
            .await?
            .try_get("size")?;
    let first = u64::try_from(size - n).map_err(|_| corrupt("negative log size"))?;
    let range = match &cache.range {
        Some(range) if cache.size == first => range.clone(),
        _ => {
            let ids = ekyc_transparency::compact_range(first);
            let nodes = read_nodes(tx, &ids).await?;
            ids.iter()
                .map(|id| nodes.get(id).copied().ok_or_else(|| missing(*id)))
                .collect::<Result<_, _>>()?
        }
    };
    let before: HashMap<NodeId, Hash> = ekyc_transparency::compact_range(first)
        .into_iter()
        .zip(range.iter().copied())
        .collect();
    let mut tree = Appender::new(first, range).map_err(|e| corrupt(&e.to_string()))?;
    let mut nodes = Vec::with_capacity(2 * decisions.len() + 1);
    for d in decisions {
        nodes.extend(tree.push(ekyc_transparency::leaf_hash(&d.entry)));
    }
    insert_entries(tx, first, decisions).await?;
    insert_nodes(tx, &nodes).await?;
    // The new compact range is made of nodes of the old one and nodes
    // this batch completed (docs/decision-log.md, section 2).
    let mut known = before;
    known.extend(nodes.iter().copied());
    let range = ekyc_transparency::compact_range(tree.size())
        .iter()
        .map(|id| known.get(id).copied().ok_or_else(|| missing(*id)))
        .collect::<Result<_, _>>()?;
    Ok(TreeCache {
        size: tree.size(),
        range: Some(range),
    })
}

/// Rows per multi-row insert: well under both databases' bind limits.
const INSERT_CHUNK: usize = 128;

async fn insert_entries(
    tx: &mut Transaction<'static, Any>,
    first: u64,
    decisions: &[&Decision],
) -> Result<(), LedgerError> {
    for (c, chunk) in decisions.chunks(INSERT_CHUNK).enumerate() {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 6 * i;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6
                )
            })
            .collect();
        let mut q = dynamic(format!(
            "INSERT INTO decision_entries (idx, time_ms, tenant_id, transaction_id, subject, entry) \
             VALUES {}",
            rows.join(", ")
        ));
        for (i, d) in chunk.iter().enumerate() {
            let entry = String::from_utf8(d.entry.clone())
                .map_err(|_| corrupt("a decision entry is not UTF-8"))?;
            q = q
                .bind((first + (c * INSERT_CHUNK + i) as u64) as i64)
                .bind(d.time_ms)
                .bind(d.tenant_id.clone())
                .bind(d.transaction_id.clone())
                .bind(d.subject.clone())
                .bind(entry);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_nodes(
    tx: &mut Transaction<'static, Any>,
    nodes: &[(NodeId, Hash)],
) -> Result<(), LedgerError> {
    for chunk in nodes.chunks(INSERT_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "(${}, ${}, ${}, ${})",
                    4 * i + 1,
                    4 * i + 2,
                    4 * i + 3,
                    4 * i + 4
                )
            })
            .collect();
        let mut q = dynamic(format!(
            "INSERT INTO log_nodes (log, level, idx, hash) VALUES {}",
            rows.join(", ")
        ));
        for (id, hash) in chunk {
            q = q
                .bind(DECISIONS)
                .bind(i64::from(id.level))
                .bind(id.index as i64)
                .bind(hex::encode(hash));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Reads stored nodes; a node not stored is absent from the map.
async fn read_nodes(
    conn: &mut sqlx::AnyConnection,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, LedgerError> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(INSERT_CHUNK) {
        let terms: Vec<String> = (0..chunk.len())
            .map(|i| format!("(level = ${} AND idx = ${})", 2 * i + 2, 2 * i + 3))
            .collect();
        let mut q = dynamic(format!(
            "SELECT level, idx, hash FROM log_nodes WHERE log = $1 AND ({})",
            terms.join(" OR ")
        ))
        .bind(DECISIONS);
        for id in chunk {
            q = q.bind(i64::from(id.level)).bind(id.index as i64);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let id = NodeId {
                level: u32::try_from(row.try_get::<i64, _>("level")?)
                    .map_err(|_| corrupt("node level"))?,
                index: u64::try_from(row.try_get::<i64, _>("idx")?)
                    .map_err(|_| corrupt("node index"))?,
            };
            out.insert(id, hash_of(&row.try_get::<String, _>("hash")?)?);
        }
    }
    Ok(out)
}

impl Ledger {
    /// Appends a decision that has no usage event (a lookup that bills
    /// nothing), durably, through the same writer.
    pub async fn log_decision(&self, decision: Decision) -> Result<(), LedgerError> {
        self.submit(None, Some(decision)).await.map(|_| ())
    }

    /// The log's size now.
    pub async fn log_size(&self) -> Result<u64, LedgerError> {
        let size: i64 = sqlx::query("SELECT size FROM log_heads WHERE log = $1")
            .bind(DECISIONS)
            .fetch_one(&self.pool)
            .await?
            .try_get("size")?;
        u64::try_from(size).map_err(|_| corrupt("negative log size"))
    }

    /// The root hash of the tree of the first `size` entries.
    pub async fn log_root(&self, size: u64) -> Result<Hash, LedgerError> {
        self.at_most(size).await?;
        let nodes = read_nodes(
            &mut *self.pool.acquire().await?,
            &ekyc_transparency::root_nodes(size),
        )
        .await?;
        ekyc_transparency::root_from(size, &nodes).map_err(|e| corrupt(&e.to_string()))
    }

    /// The audit path of entry `index` in the tree of `size` entries.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        self.at_most(size).await?;
        let ids = ekyc_transparency::inclusion_nodes(index, size)
            .map_err(|e| LedgerError::Proof(e.to_string()))?;
        let nodes = read_nodes(&mut *self.pool.acquire().await?, &ids).await?;
        ekyc_transparency::inclusion_proof(index, size, &nodes).map_err(|e| corrupt(&e.to_string()))
    }

    /// The consistency proof from the tree of `first` entries to that of
    /// `second`.
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, LedgerError> {
        self.at_most(second).await?;
        let ids = ekyc_transparency::consistency_nodes(first, second)
            .map_err(|e| LedgerError::Proof(e.to_string()))?;
        let nodes = read_nodes(&mut *self.pool.acquire().await?, &ids).await?;
        ekyc_transparency::consistency_proof(first, second, &nodes)
            .map_err(|e| corrupt(&e.to_string()))
    }

    /// Refuses a tree size the log has not reached.
    async fn at_most(&self, size: u64) -> Result<(), LedgerError> {
        let now = self.log_size().await?;
        if size > now {
            return Err(LedgerError::Proof(format!(
                "tree size {size} is larger than the log ({now} entries)"
            )));
        }
        Ok(())
    }

    /// The entry of a transaction.
    pub async fn decision_by_transaction(
        &self,
        transaction_id: &str,
    ) -> Result<Option<StoredDecision>, LedgerError> {
        let row = dynamic(format!("{SELECT_DECISIONS} WHERE d.transaction_id = $2"))
            .bind(DECISIONS)
            .bind(transaction_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decision_from_row(&r)).transpose()
    }

    /// Up to `limit` entries from index `start`, in index order.
    pub async fn decisions(
        &self,
        start: u64,
        limit: u32,
    ) -> Result<Vec<StoredDecision>, LedgerError> {
        let rows = dynamic(format!(
            "{SELECT_DECISIONS} WHERE d.idx >= $2 ORDER BY d.idx LIMIT $3"
        ))
        .bind(DECISIONS)
        .bind(start as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decision_from_row).collect()
    }

    /// Every retained entry about the subject with this pseudonym, oldest
    /// first.
    pub async fn decisions_about(&self, subject: &str) -> Result<Vec<StoredDecision>, LedgerError> {
        let rows = dynamic(format!(
            "{SELECT_DECISIONS} WHERE d.subject = $2 ORDER BY d.idx"
        ))
        .bind(DECISIONS)
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decision_from_row).collect()
    }

    /// Erases the details (entry bytes and subject pseudonym) of entries
    /// answered before `before_ms`; their leaf hashes stay, so every
    /// checkpoint and proof still verifies. Returns how many it erased.
    pub async fn erase_decisions_before(&self, before_ms: i64) -> Result<u64, LedgerError> {
        Ok(sqlx::query(
            "UPDATE decision_entries SET entry = NULL, subject = NULL
             WHERE time_ms < $1 AND entry IS NOT NULL",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Keeps a signed checkpoint of `log` ([`DECISIONS`] or
    /// [`ADMIN_AUDIT`]); a second one of the same size is not kept: the
    /// first stays the one of that size.
    pub async fn save_checkpoint(
        &self,
        log: &str,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO log_checkpoints (log, size, root, note, signed_at_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (log, size) DO NOTHING",
        )
        .bind(log)
        .bind(checkpoint.size as i64)
        .bind(hex::encode(checkpoint.root))
        .bind(checkpoint.note.clone())
        .bind(checkpoint.signed_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The checkpoint of `log`'s largest tree signed.
    pub async fn latest_checkpoint(
        &self,
        log: &str,
    ) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let row = sqlx::query(
            "SELECT size, root, note, signed_at_ms FROM log_checkpoints
             WHERE log = $1 ORDER BY size DESC LIMIT 1",
        )
        .bind(log)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| checkpoint_from_row(&r)).transpose()
    }

    /// The checkpoint of `log` signed for `size` entries, if any.
    pub async fn checkpoint_at(
        &self,
        log: &str,
        size: u64,
    ) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let row = sqlx::query(
            "SELECT size, root, note, signed_at_ms FROM log_checkpoints
             WHERE log = $1 AND size = $2",
        )
        .bind(log)
        .bind(size as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| checkpoint_from_row(&r)).transpose()
    }
}

const SELECT_DECISIONS: &str = "SELECT d.idx, d.time_ms, d.tenant_id, d.transaction_id, d.entry, n.hash \
     FROM decision_entries d JOIN log_nodes n ON n.log = $1 AND n.level = 0 AND n.idx = d.idx";

fn decision_from_row(r: &AnyRow) -> Result<StoredDecision, LedgerError> {
    Ok(StoredDecision {
        index: u64::try_from(r.try_get::<i64, _>("idx")?).map_err(|_| corrupt("entry index"))?,
        time_ms: r.try_get("time_ms")?,
        tenant_id: r.try_get("tenant_id")?,
        transaction_id: r.try_get("transaction_id")?,
        entry: r
            .try_get::<Option<String>, _>("entry")?
            .map(String::into_bytes),
        leaf_hash: hash_of(&r.try_get::<String, _>("hash")?)?,
    })
}

fn checkpoint_from_row(r: &AnyRow) -> Result<StoredCheckpoint, LedgerError> {
    Ok(StoredCheckpoint {
        size: u64::try_from(r.try_get::<i64, _>("size")?).map_err(|_| corrupt("size"))?,
        root: hash_of(&r.try_get::<String, _>("root")?)?,
        note: r.try_get("note")?,
        signed_at_ms: r.try_get("signed_at_ms")?,
    })
}

fn hash_of(text: &str) -> Result<Hash, LedgerError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| corrupt("a stored hash is not 32 bytes of hex"))?;
    Ok(out)
}

fn corrupt(what: &str) -> LedgerError {
    LedgerError::Corrupt(format!("decision log: {what}"))
}

fn missing(id: NodeId) -> LedgerError {
    corrupt(&format!(
        "node at level {} index {} is missing",
        id.level, id.index
    ))
}
