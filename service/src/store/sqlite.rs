//! The embedded SQLite backend (WAL mode, one writer, many readers).

use std::str::FromStr;
use std::time::Duration;

use ekyc_domain::keys::{KdfParams, Locator};
use ekyc_domain::record::RecordTags;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::{
    ApiKeyRecord, AuditEntry, AuditEvent, KeyWrite, Result, Role, SigningKeyRecord, StoreError,
    StoredRecord, Tenant, TenantPolicy, TenantStatus, Upserted, audit_chain_hash,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone)]
pub(super) struct SqliteStore {
    pool: SqlitePool,
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

impl SqliteStore {
    pub(super) async fn open(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // WAL lets Verify read while an import writes; NORMAL sync is
            // durable across process crashes, which is what a registry
            // that can be re-imported needs.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    pub(super) async fn register_kdf_params(&self, p: &KdfParams) -> Result<()> {
        sqlx::query("INSERT OR IGNORE INTO kdf_params (id, m_kib, t, p) VALUES (?, ?, ?, ?)")
            .bind(i64::from(p.id))
            .bind(i64::from(p.m_kib))
            .bind(i64::from(p.t))
            .bind(i64::from(p.p))
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT m_kib, t, p FROM kdf_params WHERE id = ?")
            .bind(i64::from(p.id))
            .fetch_one(&self.pool)
            .await?;
        let stored = (
            row.try_get::<i64, _>(0)?,
            row.try_get::<i64, _>(1)?,
            row.try_get::<i64, _>(2)?,
        );
        if stored != (i64::from(p.m_kib), i64::from(p.t), i64::from(p.p)) {
            return Err(StoreError::ParamsConflict(p.id));
        }
        Ok(())
    }

    /// The record at `locator`, if any, and the registry version, read in
    /// one statement: one round trip, and one snapshot, so an import that
    /// commits meanwhile cannot pair a record with another version.
    pub(super) async fn get_record_and_version(
        &self,
        locator: &Locator,
    ) -> Result<(Option<StoredRecord>, u64)> {
        let row = sqlx::query(
            "SELECT r.locator, r.pepper_version, r.kdf_params_id, r.normalization_version, \
             r.registry_version, r.tags, (SELECT value FROM registry_meta WHERE key = ?) \
             FROM (SELECT 1) LEFT JOIN citizen_records r ON r.locator = ?",
        )
        .bind(super::META_REGISTRY_VERSION)
        .bind(locator.as_slice())
        .fetch_one(&self.pool)
        .await?;
        let version = row
            .try_get::<Option<String>, _>(6)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let record = match row.try_get::<Option<Vec<u8>>, _>(0)? {
            Some(_) => Some(record_from_row(&row)?),
            None => None,
        };
        Ok((record, version))
    }

    pub(super) async fn upsert_records(&self, batch: &[StoredRecord]) -> Result<Vec<Upserted>> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(batch.len());
        let now = now_ms();
        for rec in batch {
            let existing = sqlx::query(
                "SELECT pepper_version, kdf_params_id, normalization_version, tags \
                 FROM citizen_records WHERE locator = ?",
            )
            .bind(rec.locator.as_slice())
            .fetch_optional(&mut *tx)
            .await?;
            let tags = rec.tags.encode();
            let outcome = match existing {
                None => Upserted::Inserted,
                Some(row) => {
                    let same = row.try_get::<i64, _>(0)? == i64::from(rec.pepper_version)
                        && row.try_get::<i64, _>(1)? == i64::from(rec.kdf_params_id)
                        && row.try_get::<i64, _>(2)? == i64::from(rec.normalization_version)
                        && row.try_get::<Vec<u8>, _>(3)? == tags;
                    if same {
                        Upserted::Unchanged
                    } else {
                        Upserted::Updated
                    }
                }
            };
            if outcome != Upserted::Unchanged {
                sqlx::query(
                    "INSERT INTO citizen_records \
                     (locator, pepper_version, kdf_params_id, normalization_version, registry_version, tags, updated_at_ms) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT(locator) DO UPDATE SET pepper_version = excluded.pepper_version, \
                     kdf_params_id = excluded.kdf_params_id, normalization_version = excluded.normalization_version, \
                     registry_version = excluded.registry_version, tags = excluded.tags, updated_at_ms = excluded.updated_at_ms",
                )
                .bind(rec.locator.as_slice())
                .bind(i64::from(rec.pepper_version))
                .bind(i64::from(rec.kdf_params_id))
                .bind(i64::from(rec.normalization_version))
                .bind(rec.registry_version as i64)
                .bind(tags)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            out.push(outcome);
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(super) async fn delete_records(&self, locators: &[Locator]) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let mut n = 0;
        for l in locators {
            n += sqlx::query("DELETE FROM citizen_records WHERE locator = ?")
                .bind(l.as_slice())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    pub(super) async fn count_records(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM citizen_records")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    pub(super) async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM registry_meta WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub(super) async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO registry_meta (key, value) VALUES (?, ?) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn write_tenant(
        &self,
        t: &Tenant,
        read_updated_at_ms: Option<i64>,
        audit: &[AuditEntry],
    ) -> Result<()> {
        let insert = read_updated_at_ms.is_none();
        let policy = serde_json::to_string(&t.policy)
            .map_err(|e| StoreError::Corrupt(format!("tenant policy: {e}")))?;
        let mut tx = self.pool.begin().await?;
        let query = if insert {
            "INSERT INTO tenants (name, status, policy, mtls_subject, legal, created_at_ms, \
             updated_at_ms, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        } else {
            "UPDATE tenants SET name = ?, status = ?, policy = ?, mtls_subject = ?, legal = ?, \
             created_at_ms = ?, updated_at_ms = ? WHERE id = ? AND updated_at_ms = ?"
        };
        let legal = serde_json::to_string(&t.legal)
            .map_err(|e| StoreError::Corrupt(format!("tenant legal particulars: {e}")))?;
        let done = sqlx::query(query)
            .bind(&t.name)
            .bind(status_str(t.status))
            .bind(policy)
            .bind(&t.mtls_subject)
            .bind(legal)
            .bind(t.created_at_ms)
            .bind(t.updated_at_ms)
            .bind(&t.id)
            .bind(read_updated_at_ms.unwrap_or_default())
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Stale);
        }
        append_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        sqlx::query(concat!(tenant_select!(), " WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| tenant_from_row(&r))
            .transpose()
    }

    pub(super) async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        sqlx::query(concat!(tenant_select!(), " WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| tenant_from_row(&r))
            .transpose()
    }

    pub(super) async fn find_tenant_by_mtls_subject(
        &self,
        subject: &str,
    ) -> Result<Option<Tenant>> {
        sqlx::query(concat!(tenant_select!(), " WHERE mtls_subject = ?"))
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| tenant_from_row(&r))
            .transpose()
    }

    pub(super) async fn list_tenants(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Tenant>> {
        sqlx::query(concat!(
            tenant_select!(),
            " WHERE id > ? ORDER BY id LIMIT ?"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(tenant_from_row)
        .collect()
    }

    pub(super) async fn append_audit(&self, audit: &[AuditEntry]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn write_api_keys(
        &self,
        keys: &[KeyWrite<'_>],
        audit: &[AuditEntry],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for write in keys {
            match write {
                KeyWrite::Insert(k) => {
                    sqlx::query(
                        "INSERT INTO api_keys (key_id, tenant_id, role, secret_sha256, created_at_ms, \
                         expires_at_ms, revoked_at_ms, last_used_at_ms, label) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(&k.key_id)
                    .bind(&k.tenant_id)
                    .bind(k.role.as_str())
                    .bind(k.secret_sha256.as_slice())
                    .bind(k.created_at_ms)
                    .bind(k.expires_at_ms)
                    .bind(k.revoked_at_ms)
                    .bind(k.last_used_at_ms)
                    .bind(if k.live { "live" } else { "test" })
                    .execute(&mut *tx)
                    .await
                    .map_err(conflict)?;
                }
                KeyWrite::Update { old, new } => {
                    // Only the lifecycle changes, and only from the state
                    // that was read: a revocation is never undone by a
                    // rotation that read the key before it.
                    let done = sqlx::query(
                        "UPDATE api_keys SET expires_at_ms = ?, revoked_at_ms = ? \
                         WHERE key_id = ? AND expires_at_ms IS ? AND revoked_at_ms IS ?",
                    )
                    .bind(new.expires_at_ms)
                    .bind(new.revoked_at_ms)
                    .bind(&old.key_id)
                    .bind(old.expires_at_ms)
                    .bind(old.revoked_at_ms)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Err(StoreError::Stale);
                    }
                }
            }
        }
        append_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        sqlx::query(concat!(key_select!(), " WHERE key_id = ?"))
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| key_from_row(&r))
            .transpose()
    }

    /// The key and its tenant in one statement: authentication reads
    /// once per call, not twice (each statement is a round trip to the
    /// connection's worker thread).
    pub(super) async fn get_api_key_with_tenant(
        &self,
        key_id: &str,
    ) -> Result<Option<(ApiKeyRecord, Option<Tenant>)>> {
        let Some(row) = sqlx::query(
            "SELECT k.key_id, k.tenant_id, k.role, k.secret_sha256, k.created_at_ms, \
             k.expires_at_ms, k.revoked_at_ms, k.last_used_at_ms, k.label, \
             t.id, t.name, t.status, t.policy, t.mtls_subject, t.created_at_ms, t.updated_at_ms, \
             t.legal \
             FROM api_keys k LEFT JOIN tenants t ON t.id = k.tenant_id WHERE k.key_id = ?",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let key = key_from_row(&row)?;
        let tenant = match row.try_get::<Option<String>, _>(KEY_COLUMNS)? {
            Some(_) => Some(tenant_from_row_at(&row, KEY_COLUMNS)?),
            None => None,
        };
        Ok(Some((key, tenant)))
    }

    pub(super) async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRecord>> {
        sqlx::query(concat!(
            key_select!(),
            " WHERE tenant_id = ? ORDER BY created_at_ms DESC, key_id"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    pub(super) async fn touch_api_key(&self, key_id: &str, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at_ms = ? WHERE key_id = ?")
            .bind(now_ms)
            .bind(key_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn count_usable_keys_with_role(&self, role: Role, now_ms: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE role = ? AND revoked_at_ms IS NULL \
             AND (expires_at_ms IS NULL OR expires_at_ms > ?)",
        )
        .bind(role.as_str())
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    pub(super) async fn list_audit(
        &self,
        tenant_id: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT sequence, at_ms, actor_key_id, actor_tenant_id, action, tenant_id, field, \
             old_value, new_value, chain_hash FROM admin_audit \
             WHERE (? IS NULL OR tenant_id = ?) AND sequence < ? ORDER BY sequence DESC LIMIT ?",
        )
        .bind(tenant_id)
        .bind(tenant_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    sequence: r.try_get(0)?,
                    entry: AuditEntry {
                        at_ms: r.try_get(1)?,
                        actor_key_id: r.try_get(2)?,
                        actor_tenant_id: r.try_get(3)?,
                        action: r.try_get(4)?,
                        tenant_id: r.try_get(5)?,
                        field: r.try_get(6)?,
                        old_value: r.try_get(7)?,
                        new_value: r.try_get(8)?,
                    },
                    chain_hash: fixed(&r.try_get::<Vec<u8>, _>(9)?, "audit chain hash")?,
                })
            })
            .collect()
    }

    pub(super) async fn publish_signing_key(
        &self,
        key_id: &str,
        public_key: &[u8; 32],
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT OR IGNORE INTO signing_keys (key_id, public_key, not_before_ms) VALUES (?, ?, ?)",
        )
        .bind(key_id)
        .bind(public_key.as_slice())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        // A key that signs again after a rollback is current again.
        sqlx::query("UPDATE signing_keys SET retired_at_ms = NULL WHERE key_id = ?")
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE signing_keys SET retired_at_ms = ? WHERE key_id <> ? AND retired_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT key_id, public_key, not_before_ms, retired_at_ms FROM signing_keys \
             ORDER BY retired_at_ms IS NOT NULL, not_before_ms DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRecord {
                    key_id: r.try_get(0)?,
                    public_key: fixed(&r.try_get::<Vec<u8>, _>(1)?, "public key")?,
                    not_before_ms: r.try_get(2)?,
                    retired_at_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

fn record_from_row(r: &SqliteRow) -> Result<StoredRecord> {
    let tags: Vec<u8> = r.try_get(5)?;
    Ok(StoredRecord {
        locator: fixed(&r.try_get::<Vec<u8>, _>(0)?, "locator")?,
        pepper_version: r.try_get::<i64, _>(1)? as u32,
        kdf_params_id: r.try_get::<i64, _>(2)? as u32,
        normalization_version: r.try_get::<i64, _>(3)? as u16,
        registry_version: r.try_get::<i64, _>(4)? as u64,
        tags: RecordTags::decode(&tags).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

/// Columns of a tenant row, in `tenant_from_row` order.
macro_rules! tenant_select {
    () => {
        "SELECT id, name, status, policy, mtls_subject, created_at_ms, updated_at_ms, legal FROM tenants"
    };
}
use tenant_select;

/// Columns of a key row, in `key_from_row` order.
macro_rules! key_select {
    () => {
        "SELECT key_id, tenant_id, role, secret_sha256, created_at_ms, expires_at_ms, \
         revoked_at_ms, last_used_at_ms, label FROM api_keys"
    };
}
use key_select;

fn tenant_from_row(r: &SqliteRow) -> Result<Tenant> {
    tenant_from_row_at(r, 0)
}

/// A tenant from `tenant_select!`'s columns starting at column `at`.
fn tenant_from_row_at(r: &SqliteRow, at: usize) -> Result<Tenant> {
    let status: String = r.try_get(at + 2)?;
    let policy: String = r.try_get(at + 3)?;
    Ok(Tenant {
        id: r.try_get(at)?,
        name: r.try_get(at + 1)?,
        status: match status.as_str() {
            "active" => TenantStatus::Active,
            "suspended" => TenantStatus::Suspended,
            _ => return Err(StoreError::Corrupt("unknown tenant status".into())),
        },
        policy: serde_json::from_str::<TenantPolicy>(&policy)
            .map_err(|e| StoreError::Corrupt(format!("tenant policy: {e}")))?,
        mtls_subject: r.try_get(at + 4)?,
        created_at_ms: r.try_get(at + 5)?,
        updated_at_ms: r.try_get(at + 6)?,
        legal: serde_json::from_str(&r.try_get::<String, _>(at + 7)?)
            .map_err(|e| StoreError::Corrupt(format!("tenant legal particulars: {e}")))?,
    })
}

/// The number of columns `key_select!` reads.
const KEY_COLUMNS: usize = 9;

fn key_from_row(r: &SqliteRow) -> Result<ApiKeyRecord> {
    let role: String = r.try_get(2)?;
    Ok(ApiKeyRecord {
        key_id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt("unknown role".into()))?,
        secret_sha256: fixed(&r.try_get::<Vec<u8>, _>(3)?, "api key digest")?,
        created_at_ms: r.try_get(4)?,
        expires_at_ms: r.try_get(5)?,
        revoked_at_ms: r.try_get(6)?,
        last_used_at_ms: r.try_get(7)?,
        live: r.try_get::<String, _>(8)? == "live",
    })
}

/// Appends entries to the audit chain inside the caller's transaction:
/// sequence numbers and hashes continue from the last row, so they stay
/// gapless and chained even when writers race (SQLite serialises them).
async fn append_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    entries: &[AuditEntry],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let last =
        sqlx::query("SELECT sequence, chain_hash FROM admin_audit ORDER BY sequence DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let (mut sequence, mut previous) = match last {
        Some(r) => (
            r.try_get::<i64, _>(0)?,
            fixed::<32>(&r.try_get::<Vec<u8>, _>(1)?, "audit chain hash")?,
        ),
        None => (0, [0u8; 32]),
    };
    for e in entries {
        sequence += 1;
        previous = audit_chain_hash(&previous, e);
        sqlx::query(
            "INSERT INTO admin_audit (sequence, at_ms, actor_key_id, actor_tenant_id, action, tenant_id, \
             field, old_value, new_value, chain_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(sequence)
        .bind(e.at_ms)
        .bind(&e.actor_key_id)
        .bind(&e.actor_tenant_id)
        .bind(&e.action)
        .bind(&e.tenant_id)
        .bind(&e.field)
        .bind(&e.old_value)
        .bind(&e.new_value)
        .bind(previous.as_slice())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Turns a unique-constraint failure into `Conflict` naming the column.
fn conflict(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        let msg = db.message();
        return StoreError::Conflict(if msg.contains("tenants.name") {
            "name"
        } else if msg.contains("mtls_subject") {
            "mtls_subject"
        } else {
            "id"
        });
    }
    StoreError::Database(e)
}

fn status_str(s: TenantStatus) -> &'static str {
    match s {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    }
}

fn fixed<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} has the wrong length")))
}
