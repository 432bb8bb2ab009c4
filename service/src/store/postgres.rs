//! The PostgreSQL backend: what replicas share. Every statement is written
//! for PostgreSQL (`$n` parameters, `ON CONFLICT ... RETURNING`, arrays,
//! `IS NOT DISTINCT FROM`); writers that must not interleave across
//! replicas take a table lock inside their transaction.

use std::str::FromStr;
use std::time::Duration;

use ekyc_domain::keys::{KdfParams, Locator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};

use super::credentials::KeyWithTenant;
use super::rows::{
    AUDIT_COLUMNS, KEY_COLUMN_COUNT, KEY_COLUMNS, SIGNING_KEY_COLUMNS, TENANT_COLUMN_COUNT,
    TENANT_COLUMNS, audit_from_row, chain_head, key_from_row, key_label, record_from_row,
    signing_key_from_row, status_str, tenant_from_row, tenant_json,
};
use super::{
    ApiKeyRecord, AuditEntry, AuditEvent, AuditStore, DatabaseConfig, KeyWrite, Lookup,
    META_STAGING, MetaStore, RegistryRead, RegistryWrite, Result, Role, SigningKeyRecord,
    SigningKeyStore, Staging, StoreError, StoredRecord, Tenant, TenantStore, Upserted,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone)]
pub(super) struct PgStore {
    pool: PgPool,
}

/// Connection options from the URL (host, database, TLS through `sslmode`
/// and `sslrootcert`) plus the configured statement timeout.
pub(crate) fn connect_options(url: &str, config: &DatabaseConfig) -> Result<PgConnectOptions> {
    let mut options = PgConnectOptions::from_str(url)?.application_name("ekycd");
    if config.statement_timeout_ms > 0 {
        options = options.options([("statement_timeout", config.statement_timeout_ms.to_string())]);
    }
    Ok(options)
}

impl PgStore {
    pub(super) async fn open(url: &str, config: &DatabaseConfig) -> Result<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
            .connect_with(connect_options(url, config)?)
            .await?;
        // sqlx holds a PostgreSQL advisory lock while it migrates, so
        // replicas starting together apply each migration once, in turn.
        super::migrate(&MIGRATOR, "store", &pool).await?;
        Ok(PgStore { pool })
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    async fn tenant_where(&self, column: &str, value: &str) -> Result<Option<Tenant>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE {column} = $1"
        )))
        .bind(value)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| tenant_from_row(&r, 0))
        .transpose()
    }
}

impl RegistryRead for PgStore {
    /// One statement, so one snapshot: a record is never paired with the
    /// version of a switch that committed while it was read.
    async fn lookup(&self, locator: &Locator) -> Result<Lookup> {
        // The joined record (`record_from_row` order), then the version and
        // its pepper.
        let row = sqlx::query(
            "WITH cur(v, p) AS (SELECT \
             COALESCE((SELECT CAST(value AS BIGINT) FROM registry_meta WHERE key = $1), 0), \
             COALESCE((SELECT CAST(value AS BIGINT) FROM registry_meta WHERE key = $3), 0)) \
             SELECT r.locator, r.pepper_version, r.kdf_params_id, r.normalization_version, \
             r.registry_version, r.tags, cur.v, cur.p FROM cur LEFT JOIN citizen_records r \
             ON r.locator = $2 AND r.registry_version <= cur.v \
             AND (r.until_version IS NULL OR r.until_version > cur.v)",
        )
        .bind(super::META_REGISTRY_VERSION)
        .bind(locator.as_slice())
        .bind(super::META_REGISTRY_PEPPER)
        .fetch_one(&self.pool)
        .await?;
        let record = match row.try_get::<Option<Vec<u8>>, _>(0)? {
            Some(_) => Some(record_from_row(&row, 0)?),
            None => None,
        };
        Ok(Lookup {
            record,
            registry_version: row.try_get::<i64, _>(6)?.max(0) as u64,
            pepper_version: u32::try_from(row.try_get::<i64, _>(7)?).unwrap_or(0),
        })
    }
}

impl RegistryWrite for PgStore {
    async fn register_kdf_params(&self, p: &KdfParams) -> Result<()> {
        sqlx::query(
            "INSERT INTO kdf_params (id, m_kib, t, p) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(i64::from(p.id))
        .bind(i64::from(p.m_kib))
        .bind(i64::from(p.t))
        .bind(i64::from(p.p))
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT m_kib, t, p FROM kdf_params WHERE id = $1")
            .bind(i64::from(p.id))
            .fetch_one(&self.pool)
            .await?;
        let stored: (i64, i64, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if stored != (i64::from(p.m_kib), i64::from(p.t), i64::from(p.p)) {
            return Err(StoreError::ParamsConflict(p.id));
        }
        Ok(())
    }

    async fn begin_version(&self, now_ms: i64, pepper: u32) -> Result<Staging> {
        let mut tx = self.pool.begin().await?;
        // Imports starting on two replicas at once take turns here.
        lock_meta(&mut tx).await?;
        unbounded(&mut tx).await?;
        let stored = meta_in(&mut tx, META_STAGING).await?;
        let current = current_version(&mut tx).await?;
        // Refused while another import is active. Otherwise whatever is
        // staged beyond the current version is abandoned (an idle claim's
        // rows, or rows whose claim is gone) and goes.
        Staging::refuse_if_active(stored.as_deref(), now_ms)?;
        remove_staged_from(&mut tx, current + 1).await?;
        // Rows the current version no longer sees: calls that read an
        // older version finished long ago (a whole import has passed). A
        // retired pepper's rows are left to `purge_pepper`, which counts
        // them in the audit trail.
        let current_pepper = current_pepper(&mut tx).await?;
        sqlx::query(
            "DELETE FROM citizen_records WHERE until_version IS NOT NULL AND until_version <= $1 \
             AND ($2 = 0 OR pepper_version = $2)",
        )
        .bind(current as i64)
        .bind(i64::from(current_pepper))
        .execute(&mut *tx)
        .await?;
        let staging = Staging::new(current + 1, pepper, current_pepper)?;
        set_meta_in(&mut tx, META_STAGING, &staging.encode(now_ms)).await?;
        tx.commit().await?;
        Ok(staging)
    }

    /// Per record: close the newest row if it differs and insert the
    /// staged one; an identical newest row is left alone.
    async fn upsert_records(
        &self,
        staging: &Staging,
        batch: &[StoredRecord],
        now_ms: i64,
    ) -> Result<Vec<Upserted>> {
        let mut tx = self.pool.begin().await?;
        claim(&mut tx, staging, now_ms).await?;
        let version = staging.version as i64;
        let mut out = Vec::with_capacity(batch.len());
        for rec in batch {
            let tags = rec.tags.encode();
            let open = sqlx::query(
                "SELECT registry_version, (pepper_version, kdf_params_id, normalization_version, tags) \
                 IS NOT DISTINCT FROM ($2, $3, $4, $5) FROM citizen_records \
                 WHERE locator = $1 AND until_version IS NULL",
            )
            .bind(rec.locator.as_slice())
            .bind(i64::from(rec.pepper_version))
            .bind(i64::from(rec.kdf_params_id))
            .bind(i64::from(rec.normalization_version))
            .bind(&tags)
            .fetch_optional(&mut *tx)
            .await?;
            let outcome = match &open {
                None => Upserted::Inserted,
                Some(row) if row.try_get::<bool, _>(1)? => {
                    out.push(Upserted::Unchanged);
                    continue;
                }
                Some(row) => {
                    let from: i64 = row.try_get(0)?;
                    // A row staged by this import is replaced; an older one
                    // ends where the staged version begins.
                    if from == version {
                        sqlx::query(
                            "DELETE FROM citizen_records WHERE locator = $1 AND registry_version = $2",
                        )
                        .bind(rec.locator.as_slice())
                        .bind(from)
                        .execute(&mut *tx)
                        .await?;
                    } else {
                        sqlx::query(
                            "UPDATE citizen_records SET until_version = $3 \
                             WHERE locator = $1 AND registry_version = $2",
                        )
                        .bind(rec.locator.as_slice())
                        .bind(from)
                        .bind(version)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Upserted::Updated
                }
            };
            sqlx::query(
                "INSERT INTO citizen_records (locator, registry_version, until_version, \
                 pepper_version, kdf_params_id, normalization_version, tags, updated_at_ms) \
                 VALUES ($1, $2, NULL, $3, $4, $5, $6, $7)",
            )
            .bind(rec.locator.as_slice())
            .bind(version)
            .bind(i64::from(rec.pepper_version))
            .bind(i64::from(rec.kdf_params_id))
            .bind(i64::from(rec.normalization_version))
            .bind(tags)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            out.push(outcome);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// A staged row goes and an older newest row ends at the staged
    /// version, for every locator in two statements.
    async fn delete_records(
        &self,
        staging: &Staging,
        locators: &[Locator],
        now_ms: i64,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        claim(&mut tx, staging, now_ms).await?;
        let keys: Vec<Vec<u8>> = locators.iter().map(|l| l.to_vec()).collect();
        let version = staging.version as i64;
        let n: i64 = sqlx::query_scalar(
            "WITH staged AS (DELETE FROM citizen_records WHERE locator = ANY($1) \
             AND registry_version = $2 AND until_version IS NULL RETURNING locator), \
             older AS (UPDATE citizen_records SET until_version = $2 WHERE locator = ANY($1) \
             AND registry_version < $2 AND until_version IS NULL RETURNING locator) \
             SELECT COUNT(DISTINCT locator) FROM (SELECT locator FROM staged \
             UNION ALL SELECT locator FROM older) AS gone",
        )
        .bind(keys)
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n as u64)
    }

    async fn publish_version(&self, staging: &Staging, audit: &[AuditEntry]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        lock_meta(&mut tx).await?;
        staging.check(meta_in(&mut tx, META_STAGING).await?.as_deref())?;
        let current_pepper = current_pepper(&mut tx).await?;
        if staging.rotates(current_pepper) {
            // Every row of the old pepper: no statement timeout.
            unbounded(&mut tx).await?;
            // A version under a new pepper is a full re-import: the other
            // peppers' rows are not part of it (they stay visible to the
            // version before until purged, or removed by the next import).
            sqlx::query(
                "UPDATE citizen_records SET until_version = $1 \
                 WHERE pepper_version <> $2 AND until_version IS NULL",
            )
            .bind(staging.version as i64)
            .bind(i64::from(staging.pepper))
            .execute(&mut *tx)
            .await?;
        }
        set_meta_in(
            &mut tx,
            super::META_REGISTRY_PEPPER,
            &staging.pepper.to_string(),
        )
        .await?;
        append_audit(&mut tx, audit).await?;
        set_meta_in(
            &mut tx,
            super::META_REGISTRY_VERSION,
            &staging.version.to_string(),
        )
        .await?;
        sqlx::query("DELETE FROM registry_meta WHERE key = $1")
            .bind(META_STAGING)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn discard_version(&self, staging: &Staging) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        lock_meta(&mut tx).await?;
        unbounded(&mut tx).await?;
        staging.check(meta_in(&mut tx, META_STAGING).await?.as_deref())?;
        remove_staged_from(&mut tx, staging.version).await?;
        sqlx::query("DELETE FROM registry_meta WHERE key = $1")
            .bind(META_STAGING)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn keep_staged(
        &self,
        staging: &Staging,
        now_ms: i64,
        audit: &[AuditEntry],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        lock_meta(&mut tx).await?;
        let ready = Staging {
            ready: true,
            ..staging.clone()
        };
        claim(&mut tx, &ready, now_ms).await?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn count_staged(&self, staging: &Staging) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let current_pepper = current_pepper(&mut tx).await?;
        // A rotating version will not hold the other peppers' rows.
        let only = staging.rotates(current_pepper);
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM citizen_records WHERE registry_version <= $1 \
             AND (until_version IS NULL OR until_version > $1) \
             AND (NOT $3 OR pepper_version = $2)",
        )
        .bind(staging.version as i64)
        .bind(i64::from(staging.pepper))
        .bind(only)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n as u64)
    }

    async fn count_records(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "WITH cur(v) AS (SELECT COALESCE((SELECT CAST(value AS BIGINT) FROM registry_meta \
             WHERE key = $1), 0)) \
             SELECT COUNT(*) FROM citizen_records, cur WHERE registry_version <= cur.v \
             AND (until_version IS NULL OR until_version > cur.v)",
        )
        .bind(super::META_REGISTRY_VERSION)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }
    async fn purge_pepper(
        &self,
        pepper_version: u32,
        now_ms: i64,
        audit: &(dyn Fn(u64) -> AuditEntry + Sync),
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        lock_meta(&mut tx).await?;
        unbounded(&mut tx).await?;
        // An import running now may be writing rows of that pepper.
        Staging::refuse_if_active(meta_in(&mut tx, META_STAGING).await?.as_deref(), now_ms)?;
        if pepper_version == current_pepper(&mut tx).await? {
            return Err(StoreError::PepperInUse(pepper_version));
        }
        let removed = sqlx::query("DELETE FROM citizen_records WHERE pepper_version = $1")
            .bind(i64::from(pepper_version))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        append_audit(&mut tx, &[audit(removed)]).await?;
        tx.commit().await?;
        Ok(removed)
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Serialises claim changes across replicas; lookups (plain reads) do not
/// wait for it.
async fn lock_meta(tx: &mut Tx) -> Result<()> {
    sqlx::query("LOCK TABLE registry_meta IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn meta_in(tx: &mut Tx, key: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM registry_meta WHERE key = $1 FOR UPDATE")
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?,
    )
}

async fn set_meta_in(tx: &mut Tx, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO registry_meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(key)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn current_version(tx: &mut Tx) -> Result<u64> {
    Ok(meta_in(tx, super::META_REGISTRY_VERSION)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// The pepper of the current version (0: none recorded).
async fn current_pepper(tx: &mut Tx) -> Result<u32> {
    Ok(meta_in(tx, super::META_REGISTRY_PEPPER)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Checks the import still holds its claim (the row stays locked until
/// the write commits) and records this write.
async fn claim(tx: &mut Tx, staging: &Staging, now_ms: i64) -> Result<()> {
    // The table lock first, as every claim change takes it: locks taken
    // in one order cannot deadlock.
    lock_meta(tx).await?;
    staging.check(meta_in(tx, META_STAGING).await?.as_deref())?;
    set_meta_in(tx, META_STAGING, &staging.encode(now_ms)).await
}

/// Removes every row staged for `version` or later and reopens those
/// such versions closed: nothing beyond the current version survives.
async fn remove_staged_from(tx: &mut Tx, version: u64) -> Result<()> {
    sqlx::query("DELETE FROM citizen_records WHERE registry_version >= $1")
        .bind(version as i64)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE citizen_records SET until_version = NULL WHERE until_version >= $1")
        .bind(version as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Maintenance statements (history purges, discards, pepper purges) may
/// touch millions of rows: the per-statement timeout, meant for calls,
/// does not apply to them.
async fn unbounded(tx: &mut Tx) -> Result<()> {
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl MetaStore for PgStore {
    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM registry_meta WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO registry_meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl TenantStore for PgStore {
    async fn write_tenant(
        &self,
        t: &Tenant,
        read_updated_at_ms: Option<i64>,
        audit: &[AuditEntry],
    ) -> Result<()> {
        let (policy, legal) = tenant_json(t)?;
        let mut tx = self.pool.begin().await?;
        let query = match read_updated_at_ms {
            None => {
                "INSERT INTO tenants (name, status, policy, mtls_subject, legal, created_at_ms, \
                 updated_at_ms, id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            }
            Some(_) => {
                "UPDATE tenants SET name = $1, status = $2, policy = $3, mtls_subject = $4, \
                 legal = $5, created_at_ms = $6, updated_at_ms = $7 \
                 WHERE id = $8 AND updated_at_ms = $9"
            }
        };
        let mut q = sqlx::query(query)
            .bind(&t.name)
            .bind(status_str(t.status))
            .bind(policy)
            .bind(&t.mtls_subject)
            .bind(legal)
            .bind(t.created_at_ms)
            .bind(t.updated_at_ms)
            .bind(&t.id);
        // PostgreSQL refuses a parameter the statement does not use.
        if let Some(read) = read_updated_at_ms {
            q = q.bind(read);
        }
        let done = q.execute(&mut *tx).await.map_err(conflict)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Stale);
        }
        append_audit(&mut tx, audit).await?;
        raise_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        self.tenant_where("id", id).await
    }

    async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        self.tenant_where("name", name).await
    }

    async fn find_tenant_by_mtls_subject(&self, subject: &str) -> Result<Option<Tenant>> {
        self.tenant_where("mtls_subject", subject).await
    }

    async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id > $1 ORDER BY id LIMIT $2"
        )))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| tenant_from_row(r, 0))
        .collect()
    }

    async fn write_api_keys(&self, keys: &[KeyWrite<'_>], audit: &[AuditEntry]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for write in keys {
            match write {
                KeyWrite::Insert(k) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO api_keys ({KEY_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    )))
                    .bind(&k.key_id)
                    .bind(&k.tenant_id)
                    .bind(k.role.as_str())
                    .bind(k.secret_sha256.as_slice())
                    .bind(k.created_at_ms)
                    .bind(k.expires_at_ms)
                    .bind(k.revoked_at_ms)
                    .bind(k.last_used_at_ms)
                    .bind(key_label(k))
                    .execute(&mut *tx)
                    .await
                    .map_err(conflict)?;
                }
                KeyWrite::Update { old, new } => {
                    // Only from the state that was read: a revocation on
                    // one replica is never undone by a rotation on another
                    // that read the key before it.
                    let done = sqlx::query(
                        "UPDATE api_keys SET expires_at_ms = $1, revoked_at_ms = $2 \
                         WHERE key_id = $3 AND expires_at_ms IS NOT DISTINCT FROM $4 \
                         AND revoked_at_ms IS NOT DISTINCT FROM $5",
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
        raise_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1"
        )))
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| key_from_row(&r))
        .transpose()
    }

    /// The key, its tenant and the credential generation in one
    /// statement, so one snapshot: what the cache may keep.
    async fn get_api_key_with_tenant(&self, key_id: &str) -> Result<Option<(i64, KeyWithTenant)>> {
        let Some(row) = sqlx::query(
            "SELECT k.key_id, k.tenant_id, k.role, k.secret_sha256, k.created_at_ms, \
             k.expires_at_ms, k.revoked_at_ms, k.last_used_at_ms, k.label, \
             t.id, t.name, t.status, t.policy, t.mtls_subject, t.created_at_ms, t.updated_at_ms, \
             t.legal, (SELECT generation FROM credential_generation WHERE id = 1) \
             FROM api_keys k LEFT JOIN tenants t ON t.id = k.tenant_id WHERE k.key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let key = key_from_row(&row)?;
        let tenant = match row.try_get::<Option<String>, _>(KEY_COLUMN_COUNT)? {
            Some(_) => Some(tenant_from_row(&row, KEY_COLUMN_COUNT)?),
            None => None,
        };
        let generation: i64 = row.try_get(KEY_COLUMN_COUNT + TENANT_COLUMN_COUNT)?;
        Ok(Some((generation, (key, tenant))))
    }

    async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 \
             ORDER BY created_at_ms DESC, key_id COLLATE \"C\""
        )))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    /// One single-row statement: the round trip of a strict check.
    async fn credential_generation(&self) -> Result<Option<i64>> {
        let generation: i64 =
            sqlx::query_scalar("SELECT generation FROM credential_generation WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(Some(generation))
    }

    async fn touch_api_key(&self, key_id: &str, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at_ms = $1 WHERE key_id = $2")
            .bind(now_ms)
            .bind(key_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn count_usable_keys_with_role(&self, role: Role, now_ms: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE role = $1 AND revoked_at_ms IS NULL \
             AND (expires_at_ms IS NULL OR expires_at_ms > $2)",
        )
        .bind(role.as_str())
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }
}

impl AuditStore for PgStore {
    async fn append_audit(&self, audit: &[AuditEntry]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        tenant_id: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM admin_audit \
             WHERE ($1::text IS NULL OR tenant_id = $1) AND sequence < $2 \
             ORDER BY sequence DESC LIMIT $3"
        )))
        .bind(tenant_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }
}

impl SigningKeyStore for PgStore {
    async fn publish_signing_key(
        &self,
        purpose: &str,
        key_id: &str,
        public_key: &[u8; 32],
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Replicas starting together publish the same key at once; the
        // lock makes the insert-then-retire of each run whole.
        sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (key_id, public_key, not_before_ms, purpose) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(key_id)
        .bind(public_key.as_slice())
        .bind(now_ms)
        .bind(purpose)
        .execute(&mut *tx)
        .await?;
        // A key that signs again after a rollback is current again; every
        // other current key of its purpose retires.
        sqlx::query(
            "UPDATE signing_keys SET retired_at_ms = CASE WHEN key_id = $1 THEN NULL ELSE $2 END \
             WHERE key_id = $1 OR (retired_at_ms IS NULL AND purpose = $3)",
        )
        .bind(key_id)
        .bind(now_ms)
        .bind(purpose)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys \
             ORDER BY retired_at_ms IS NOT NULL, not_before_ms DESC"
        )))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(signing_key_from_row)
        .collect()
    }
}

/// Appends entries to the audit chain inside the caller's transaction.
/// The table lock (which readers do not wait for) makes concurrent
/// writers on any replica take turns, so sequences stay gapless and each
/// hash chains to the row before it.
async fn append_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    entries: &[AuditEntry],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    sqlx::query("LOCK TABLE admin_audit IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut **tx)
        .await?;
    let last =
        sqlx::query("SELECT sequence, chain_hash FROM admin_audit ORDER BY sequence DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let head = last.map(|r| chain_head(&r)).transpose()?;
    for (e, (sequence, hash)) in entries.iter().zip(super::audit_links(head, entries)) {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO admin_audit ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(sequence)
        .bind(e.at_ms)
        .bind(&e.actor_key_id)
        .bind(&e.actor_tenant_id)
        .bind(&e.action)
        .bind(&e.tenant_id)
        .bind(&e.field)
        .bind(&e.old_value)
        .bind(&e.new_value)
        .bind(hash.as_slice())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Turns a unique violation into `Conflict` naming the column, by the
/// constraint the schema names.
fn conflict(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return StoreError::Conflict(match db.constraint() {
            Some("tenants_name") => "name",
            Some("tenants_mtls_subject") => "mtls_subject",
            _ => "id",
        });
    }
    StoreError::Database(e)
}

/// Raises the credential generation inside `tx`, a transaction that
/// changes a tenant or a key (credentials.rs). The row lock orders
/// concurrent writers on every replica.
async fn raise_generation(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>) -> Result<()> {
    sqlx::query("UPDATE credential_generation SET generation = generation + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}
