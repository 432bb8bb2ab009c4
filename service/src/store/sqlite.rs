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
    ApiKeyRecord, Result, Role, SigningKeyRecord, StoreError, StoredRecord, Tenant, TenantPolicy,
    TenantStatus, Upserted,
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

    pub(super) async fn get_record(&self, locator: &Locator) -> Result<Option<StoredRecord>> {
        let row = sqlx::query(
            "SELECT locator, pepper_version, kdf_params_id, normalization_version, registry_version, tags \
             FROM citizen_records WHERE locator = ?",
        )
        .bind(locator.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| record_from_row(&r)).transpose()
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

    pub(super) async fn insert_tenant(&self, t: &Tenant, now_ms: i64) -> Result<()> {
        let policy = serde_json::to_string(&t.policy)
            .map_err(|e| StoreError::Corrupt(format!("tenant policy: {e}")))?;
        sqlx::query(
            "INSERT INTO tenants (id, name, status, policy, created_at_ms) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(status_str(t.status))
        .bind(policy)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        sqlx::query("SELECT id, name, status, policy FROM tenants WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| tenant_from_row(&r))
            .transpose()
    }

    pub(super) async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        sqlx::query("SELECT id, name, status, policy FROM tenants WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| tenant_from_row(&r))
            .transpose()
    }

    pub(super) async fn insert_api_key(&self, k: &ApiKeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (key_id, tenant_id, role, secret_sha256, created_at_ms, expires_at_ms, revoked_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.key_id)
        .bind(&k.tenant_id)
        .bind(k.role.as_str())
        .bind(k.secret_sha256.as_slice())
        .bind(k.created_at_ms)
        .bind(k.expires_at_ms)
        .bind(k.revoked_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        let Some(r) = sqlx::query(
            "SELECT key_id, tenant_id, role, secret_sha256, created_at_ms, expires_at_ms, revoked_at_ms \
             FROM api_keys WHERE key_id = ?",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let role: String = r.try_get(2)?;
        Ok(Some(ApiKeyRecord {
            key_id: r.try_get(0)?,
            tenant_id: r.try_get(1)?,
            role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt("unknown role".into()))?,
            secret_sha256: fixed(&r.try_get::<Vec<u8>, _>(3)?, "api key digest")?,
            created_at_ms: r.try_get(4)?,
            expires_at_ms: r.try_get(5)?,
            revoked_at_ms: r.try_get(6)?,
        }))
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

fn tenant_from_row(r: &SqliteRow) -> Result<Tenant> {
    let status: String = r.try_get(2)?;
    let policy: String = r.try_get(3)?;
    Ok(Tenant {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        status: match status.as_str() {
            "active" => TenantStatus::Active,
            "suspended" => TenantStatus::Suspended,
            _ => return Err(StoreError::Corrupt("unknown tenant status".into())),
        },
        policy: serde_json::from_str::<TenantPolicy>(&policy)
            .map_err(|e| StoreError::Corrupt(format!("tenant policy: {e}")))?,
    })
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
