//! Persistent state: the hashed registry, tenants and API keys, published
//! signing keys.
//!
//! [`Store`] is the only type the rest of the service sees. It dispatches to
//! a backend chosen by the database URL: SQLite, embedded and the default,
//! or PostgreSQL, which replicas share. Each backend implements the storage
//! traits below in its own file, in its own SQL dialect, with its own
//! migrations under `service/migrations/<backend>/`; the rows they read
//! are decoded once, in `rows.rs`. `tests/store_conformance.rs` runs every
//! operation against both.
//!
//! Architecture invariant: nothing written here holds a citizen's raw data.
//! Records are a locator and opaque tags; see `ekyc_domain::record`.

mod credentials;
mod postgres;
mod rows;
mod sqlite;

pub use crate::model::*;
pub use credentials::KeyWithTenant;

use std::sync::Arc;

use credentials::CredentialCache;
use ekyc_domain::keys::{KdfParams, Locator};

pub use crate::config::DatabaseConfig;

/// A storage failure. Messages may name tables, never hold row values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported backend.
    #[error("database_url must start with sqlite: or postgres:")]
    UnsupportedUrl,
    /// The database holds migrations this build does not know: a newer
    /// ekycd migrated it. Running would misread its rows.
    #[error(
        "the {store} schema is at version {found}, newer than this ekycd knows (up to {known}); run a newer ekycd"
    )]
    SchemaTooNew {
        /// Which schema ("store" or "ledger").
        store: &'static str,
        /// The newest version applied to the database.
        found: i64,
        /// The newest version this build carries.
        known: i64,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Schema migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored bytes are corrupt.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The row changed since it was read (a concurrent change won).
    #[error("the record was changed concurrently")]
    Stale,
    /// A unique value is taken (e.g. a tenant name); names the column.
    #[error("{0} is already taken")]
    Conflict(&'static str),
    /// Another import is building the next registry version.
    #[error(
        "another import is building registry version {version} (active {idle_secs} s ago); retry when it has finished, or after {} s without activity", STAGING_STALE_MS / 1000
    )]
    ImportInProgress {
        /// The version it builds.
        version: u64,
        /// Seconds since it last wrote.
        idle_secs: i64,
    },
    /// A built version waits for its publish (or discard).
    #[error(
        "registry version {version} is staged, waiting to be published or discarded; publish or discard it first"
    )]
    VersionStaged {
        /// The staged version.
        version: u64,
    },
    /// A publish or discard named a version that is not staged.
    #[error("registry version {asked} is not staged ({})", match .staged {
        Some(v) => format!("version {v} is"),
        None => "no version is".to_string(),
    })]
    NotStaged {
        /// The version asked for.
        asked: u64,
        /// The version staged, if any.
        staged: Option<u64>,
    },
    /// An import would derive with a pepper older than the one the
    /// registry's current version was built with: a replica not yet
    /// configured with the new pepper (publishing would move lookups back).
    #[error(
        "this import derives with pepper version {import}, older than the registry's current pepper version {current}; configure pepper.version = {current} (or newer) on the replica that imports"
    )]
    PepperBehind {
        /// The import's pepper version.
        import: u32,
        /// The current version's.
        current: u32,
    },
    /// The pepper to purge is the one the current registry version was
    /// built with.
    #[error(
        "pepper version {0} is the one the registry's current version was built with; re-import under the new pepper first"
    )]
    PepperInUse(u32),
    /// A KDF parameter id is already registered with different costs.
    #[error(
        "argon2.params_id {0} is already registered with different costs; choose a new params_id for new costs"
    )]
    ParamsConflict(u32),
}

impl StoreError {
    /// Whether the database is unreachable or overloaded (the connection
    /// failed or dropped, no pooled connection came free in time, the
    /// server is shutting down or cancelled a statement that ran too
    /// long), as opposed to a fault in what was asked. Callers fail closed
    /// with `UNAVAILABLE` and a retry can succeed.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            // SQLSTATE class 08 is "connection exception"; 53 "insufficient
            // resources" (too many connections among them); 57P01-57P03 an
            // administrator shutdown or a server not accepting connections;
            // 57014 a statement cancelled by statement_timeout; 25006 a
            // write to a standby (during a failover).
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code == "57014"
                    || code == "25006"
            }),
            _ => false,
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, StoreError>;

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new record.
    Inserted,
    /// An existing record whose tags or versions changed.
    Updated,
    /// An identical record was already there; nothing written.
    Unchanged,
}

/// One key write in [`Store::write_api_keys`].
#[derive(Debug, Clone, Copy)]
pub enum KeyWrite<'a> {
    /// A new key.
    Insert(&'a ApiKeyRecord),
    /// A lifecycle change (expiry, revocation) of `old`, as read.
    Update {
        /// The key as read.
        old: &'a ApiKeyRecord,
        /// The key as it should become.
        new: &'a ApiKeyRecord,
    },
}

/// What one registry lookup read, in one snapshot.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The record at the locator in the current version, if any.
    pub record: Option<StoredRecord>,
    /// The current registry version.
    pub registry_version: u64,
    /// The pepper version the current version was built with (`0`: none
    /// recorded, an empty registry).
    pub pepper_version: u32,
}

/// The registry as Verify reads it: the hot path, one statement per call.
pub(crate) trait RegistryRead {
    /// The record at `locator`, if any, with the current registry version
    /// and its pepper, read together (one round trip, one snapshot).
    async fn lookup(&self, locator: &Locator) -> Result<Lookup>;
}

/// Registry writes: what an import does. An import builds the next
/// version beside the current one ([`RegistryWrite::begin_version`]),
/// writes records and deletes into it, invisible to lookups, and either
/// publishes it (one atomic switch for every replica) or discards it.
pub(crate) trait RegistryWrite {
    /// Records a KDF parameter set, refusing an id reused with other costs.
    async fn register_kdf_params(&self, params: &KdfParams) -> Result<()>;
    /// Claims the next version for one import deriving with pepper
    /// `pepper`: removes what an abandoned import left (its claim idle for
    /// [`STAGING_STALE_MS`]) and the rows the current version no longer
    /// sees; refuses while another import is active, and an import under
    /// a pepper older than the current version's.
    async fn begin_version(&self, now_ms: i64, pepper: u32) -> Result<Staging>;
    /// Writes a batch of records into the staged version in one
    /// transaction (their `registry_version` is the staged one).
    async fn upsert_records(
        &self,
        staging: &Staging,
        batch: &[StoredRecord],
        now_ms: i64,
    ) -> Result<Vec<Upserted>>;
    /// Deletes the records at these locators from the staged version;
    /// returns how many it held.
    async fn delete_records(
        &self,
        staging: &Staging,
        locators: &[Locator],
        now_ms: i64,
    ) -> Result<u64>;
    /// Makes the staged version current: one write, seen by every lookup
    /// after it, with `audit` in the same transaction. A version built
    /// under a new pepper (a rotation: a full re-import) holds only that
    /// pepper's rows: the other peppers' rows leave it.
    async fn publish_version(&self, staging: &Staging, audit: &[AuditEntry]) -> Result<()>;
    /// Removes the staged version without a trace.
    async fn discard_version(&self, staging: &Staging) -> Result<()>;
    /// Keeps a built version staged for a separate publish (its claim
    /// marked ready, held for [`STAGED_KEEP_MS`]), with `audit` in the
    /// same transaction.
    async fn keep_staged(&self, staging: &Staging, now_ms: i64, audit: &[AuditEntry])
    -> Result<()>;
    /// Number of records the staged version holds as it would be
    /// published (without the other peppers' rows if it rotates).
    async fn count_staged(&self, staging: &Staging) -> Result<u64>;
    /// Number of records in the current version.
    async fn count_records(&self) -> Result<u64>;
    /// Deletes every row derived under `pepper_version` (after a rotation,
    /// so the retired pepper's rows cannot be attacked), with the audit
    /// entry `audit(removed)` in the same transaction; refused while an
    /// import is active and for the current version's pepper.
    async fn purge_pepper(
        &self,
        pepper_version: u32,
        now_ms: i64,
        audit: &(dyn Fn(u64) -> AuditEntry + Sync),
    ) -> Result<u64>;
}

/// An import's claim on the registry version it builds, stored as the
/// `registry_staging` metadata value `"<version> <token> <last write ms>"`.
/// Every write checks the claim in its transaction, so an import whose
/// claim was taken over (after it went idle) cannot write into another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staging {
    /// The version being built.
    pub version: u64,
    /// The pepper version its rows are derived with.
    pub pepper: u32,
    /// Built and kept for a separate publish (or discard).
    pub ready: bool,
    token: String,
}

/// Metadata key of the staged version's claim.
pub const META_STAGING: &str = "registry_staging";

/// How long an import's claim holds without a write before another
/// import may take it over (its rows are then discarded).
pub const STAGING_STALE_MS: i64 = 10 * 60 * 1000;

/// How long a built version kept for a separate publish holds its claim
/// before another import may replace it.
pub const STAGED_KEEP_MS: i64 = 24 * 3600 * 1000;

impl Staging {
    /// Claims `version` for an import under pepper `pepper`, refusing a
    /// pepper older than `current_pepper` (the current version's).
    fn new(version: u64, pepper: u32, current_pepper: u32) -> Result<Staging> {
        if pepper < current_pepper {
            return Err(StoreError::PepperBehind {
                import: pepper,
                current: current_pepper,
            });
        }
        let bytes = crate::secrets::random_bytes::<8>()
            .map_err(|e| StoreError::Corrupt(format!("no randomness for a staging token: {e}")))?;
        Ok(Staging {
            version,
            pepper,
            ready: false,
            token: hex::encode(bytes),
        })
    }

    fn encode(&self, now_ms: i64) -> String {
        let ready = u8::from(self.ready);
        format!(
            "{} {} {now_ms} {} {ready}",
            self.version, self.token, self.pepper
        )
    }

    /// The claim and its last write time, from the stored value.
    fn decode(value: &str) -> Option<(Staging, i64)> {
        let mut parts = value.split(' ');
        let version = parts.next()?.parse().ok()?;
        let token = parts.next()?.to_string();
        let at_ms = parts.next()?.parse().ok()?;
        let pepper = parts.next()?.parse().ok()?;
        let ready = parts.next() == Some("1");
        Some((
            Staging {
                version,
                pepper,
                ready,
                token,
            },
            at_ms,
        ))
    }

    /// The claim stored as `stored` if it is a built version `version`
    /// kept for a separate publish.
    fn ready_version(stored: Option<&str>, version: u64) -> Result<Staging> {
        match stored.and_then(Staging::decode) {
            Some((claim, _)) if claim.ready && claim.version == version => Ok(claim),
            Some((claim, _)) if claim.ready => Err(StoreError::NotStaged {
                asked: version,
                staged: Some(claim.version),
            }),
            _ => Err(StoreError::NotStaged {
                asked: version,
                staged: None,
            }),
        }
    }

    /// Whether publishing this version moves lookups to another pepper
    /// than `current_pepper`'s (`0`: none recorded yet).
    fn rotates(&self, current_pepper: u32) -> bool {
        current_pepper != 0 && current_pepper != self.pepper
    }

    /// Checks that `stored` is this claim: else the claim was taken over
    /// or the version discarded (`Stale`).
    fn check(&self, stored: Option<&str>) -> Result<()> {
        match stored.and_then(Staging::decode) {
            Some((claim, _)) if (claim.version, &claim.token) == (self.version, &self.token) => {
                Ok(())
            }
            _ => Err(StoreError::Stale),
        }
    }

    /// Refuses while the stored claim is active (written to within
    /// [`STAGING_STALE_MS`], or kept for a publish within
    /// [`STAGED_KEEP_MS`]); an idle claim may be taken over.
    fn refuse_if_active(stored: Option<&str>, now_ms: i64) -> Result<()> {
        match stored.and_then(Staging::decode) {
            Some((claim, at_ms)) if claim.ready && now_ms - at_ms < STAGED_KEEP_MS => {
                Err(StoreError::VersionStaged {
                    version: claim.version,
                })
            }
            Some((claim, at_ms)) if !claim.ready && now_ms - at_ms < STAGING_STALE_MS => {
                Err(StoreError::ImportInProgress {
                    version: claim.version,
                    idle_secs: (now_ms - at_ms) / 1000,
                })
            }
            _ => Ok(()),
        }
    }
}

/// Small named values (the registry version, the agency tenant).
pub(crate) trait MetaStore {
    /// A metadata value.
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    /// Sets a metadata value.
    async fn set_meta(&self, key: &str, value: &str) -> Result<()>;
}

/// Tenants and their API keys; every change carries its audit entries,
/// written in the same transaction.
pub(crate) trait TenantStore {
    /// Inserts (`read_updated_at_ms` `None`) or updates a tenant, only if
    /// the stored row still has `read_updated_at_ms` (else `Stale`).
    async fn write_tenant(
        &self,
        tenant: &Tenant,
        read_updated_at_ms: Option<i64>,
        audit: &[AuditEntry],
    ) -> Result<()>;
    /// The tenant with this id.
    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>>;
    /// The tenant with this name.
    async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>>;
    /// The tenant whose client certificates carry this subject CN.
    async fn find_tenant_by_mtls_subject(&self, subject: &str) -> Result<Option<Tenant>>;
    /// Up to `limit` tenants with ids after `after`, by id.
    async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>>;
    /// Writes keys and `audit` in one transaction.
    async fn write_api_keys(&self, keys: &[KeyWrite<'_>], audit: &[AuditEntry]) -> Result<()>;
    /// The API key with this public id.
    async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>>;
    /// The key, its tenant and the credential generation they were read
    /// at, in one statement: what authentication caches.
    async fn get_api_key_with_tenant(&self, key_id: &str) -> Result<Option<(i64, KeyWithTenant)>>;
    /// The credential generation as it reads now, or `None` if it cannot
    /// be read (then nothing cached is used).
    async fn credential_generation(&self) -> Result<Option<i64>>;
    /// A tenant's keys, newest first.
    async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRecord>>;
    /// Records a successful use of a key.
    async fn touch_api_key(&self, key_id: &str, now_ms: i64) -> Result<()>;
    /// How many usable keys have this role.
    async fn count_usable_keys_with_role(&self, role: Role, now_ms: i64) -> Result<u64>;
}

/// The admin audit trail: a gapless hash chain.
pub(crate) trait AuditStore {
    /// Appends entries about a change made outside the store.
    async fn append_audit(&self, audit: &[AuditEntry]) -> Result<()>;
    /// Audit events, newest first, optionally for one tenant, with
    /// sequence below `before`.
    async fn list_audit(
        &self,
        tenant_id: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>>;
}

/// Published signing keys.
pub(crate) trait SigningKeyStore {
    /// Publishes a key of `purpose` if new, and retires every other
    /// current key of that purpose.
    async fn publish_signing_key(
        &self,
        purpose: &str,
        key_id: &str,
        public_key: &[u8; 32],
        now_ms: i64,
    ) -> Result<()>;
    /// All published signing keys, current first.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
}

/// The storage handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Keys and tenants authentication read, valid while the credential
    /// generation has not moved (credentials.rs).
    credentials: Arc<CredentialCache>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Calls the same method on whichever backend this is.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($s) => $call,
            Backend::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`:
    /// `sqlite://path` or `postgres://...`.
    pub async fn open(url: &str, options: &DatabaseConfig) -> Result<Store> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::SqliteStore::open(url, options).await?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres(postgres::PgStore::open(url, options).await?)
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        Ok(Store {
            backend,
            credentials: Arc::default(),
        })
    }

    /// Which backend this is: `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Records a KDF parameter set, refusing an id reused with other costs.
    pub async fn register_kdf_params(&self, params: &KdfParams) -> Result<()> {
        dispatch!(self, s => s.register_kdf_params(params).await)
    }

    /// The record at `locator`, if any, with the current registry version
    /// and its pepper, read together (one round trip, one snapshot): what
    /// Verify needs.
    pub async fn lookup(&self, locator: &Locator) -> Result<Lookup> {
        dispatch!(self, s => s.lookup(locator).await)
    }

    /// Claims the next registry version for an import deriving with
    /// pepper `pepper` (see [`RegistryWrite::begin_version`]).
    pub async fn begin_version(&self, now_ms: i64, pepper: u32) -> Result<Staging> {
        dispatch!(self, s => s.begin_version(now_ms, pepper).await)
    }

    /// Writes a batch of records into the staged version in one
    /// transaction; says per record what it did.
    pub async fn upsert_records(
        &self,
        staging: &Staging,
        batch: &[StoredRecord],
        now_ms: i64,
    ) -> Result<Vec<Upserted>> {
        dispatch!(self, s => s.upsert_records(staging, batch, now_ms).await)
    }

    /// Deletes the records at these locators from the staged version;
    /// returns how many it held.
    pub async fn delete_records(
        &self,
        staging: &Staging,
        locators: &[Locator],
        now_ms: i64,
    ) -> Result<u64> {
        dispatch!(self, s => s.delete_records(staging, locators, now_ms).await)
    }

    /// Switches every lookup to the staged version at once, recording
    /// `audit` in the same transaction.
    pub async fn publish_version(&self, staging: &Staging, audit: &[AuditEntry]) -> Result<()> {
        dispatch!(self, s => s.publish_version(staging, audit).await)
    }

    /// Removes the staged version without a trace.
    pub async fn discard_version(&self, staging: &Staging) -> Result<()> {
        dispatch!(self, s => s.discard_version(staging).await)
    }

    /// Keeps a built version staged for a separate publish, recording
    /// `audit` in the same transaction.
    pub async fn keep_staged(
        &self,
        staging: &Staging,
        now_ms: i64,
        audit: &[AuditEntry],
    ) -> Result<()> {
        dispatch!(self, s => s.keep_staged(staging, now_ms, audit).await)
    }

    /// The built version `version` kept for a separate publish; else
    /// `NotStaged`.
    pub async fn staged_version(&self, version: u64) -> Result<Staging> {
        Staging::ready_version(self.get_meta(META_STAGING).await?.as_deref(), version)
    }

    /// Number of records the staged version will hold once published.
    pub async fn count_staged(&self, staging: &Staging) -> Result<u64> {
        dispatch!(self, s => s.count_staged(staging).await)
    }

    /// Deletes every row derived under a retired pepper version (see
    /// [`RegistryWrite::purge_pepper`]); returns how many.
    pub async fn purge_pepper(
        &self,
        pepper_version: u32,
        now_ms: i64,
        audit: &(dyn Fn(u64) -> AuditEntry + Sync),
    ) -> Result<u64> {
        dispatch!(self, s => s.purge_pepper(pepper_version, now_ms, audit).await)
    }

    /// Number of records in the current version.
    pub async fn count_records(&self) -> Result<u64> {
        dispatch!(self, s => s.count_records().await)
    }

    /// A metadata value.
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        dispatch!(self, s => s.get_meta(key).await)
    }

    /// Sets a metadata value.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        dispatch!(self, s => s.set_meta(key, value).await)
    }

    /// The current registry version (0 before the first import).
    pub async fn registry_version(&self) -> Result<u64> {
        Ok(self
            .get_meta(META_REGISTRY_VERSION)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// The pepper version the current registry version was built with (0
    /// before the first import).
    pub async fn registry_pepper_version(&self) -> Result<u32> {
        Ok(self
            .get_meta(META_REGISTRY_PEPPER)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Creates a tenant and records `audit` in the same transaction;
    /// fails with `Conflict` if the name or mTLS subject is taken.
    pub async fn insert_tenant(&self, tenant: &Tenant, audit: &[AuditEntry]) -> Result<()> {
        dispatch!(self, s => s.write_tenant(tenant, None, audit).await)
    }

    /// Replaces a tenant's name, status, policy and mTLS subject, recording
    /// `audit` in the same transaction, only if the stored row still has
    /// `read_updated_at_ms` (else `Stale`: a concurrent change won).
    pub async fn update_tenant(
        &self,
        tenant: &Tenant,
        read_updated_at_ms: i64,
        audit: &[AuditEntry],
    ) -> Result<()> {
        dispatch!(self, s => s.write_tenant(tenant, Some(read_updated_at_ms), audit).await)
    }

    /// Up to `limit` tenants with ids after `after`, by id.
    pub async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>> {
        dispatch!(self, s => s.list_tenants(after, limit).await)
    }

    /// The tenant whose client certificates carry this subject CN.
    pub async fn find_tenant_by_mtls_subject(&self, subject: &str) -> Result<Option<Tenant>> {
        dispatch!(self, s => s.find_tenant_by_mtls_subject(subject).await)
    }

    /// Appends audit entries about a change made outside the store (a
    /// guard clear), in one transaction.
    pub async fn append_audit(&self, audit: &[AuditEntry]) -> Result<()> {
        dispatch!(self, s => s.append_audit(audit).await)
    }

    /// Writes keys and `audit` in one transaction, so a rotation never
    /// leaves half a change; an update whose key changed since it was read
    /// fails the whole write with `Stale`.
    pub async fn write_api_keys(&self, keys: &[KeyWrite<'_>], audit: &[AuditEntry]) -> Result<()> {
        dispatch!(self, s => s.write_api_keys(keys, audit).await)
    }

    /// A tenant's keys, newest first.
    pub async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRecord>> {
        dispatch!(self, s => s.list_api_keys(tenant_id).await)
    }

    /// Records a successful use of a key.
    pub async fn touch_api_key(&self, key_id: &str, now_ms: i64) -> Result<()> {
        dispatch!(self, s => s.touch_api_key(key_id, now_ms).await)?;
        self.credentials.touched(key_id, now_ms);
        Ok(())
    }

    /// How many usable keys have this role.
    pub async fn count_usable_keys_with_role(&self, role: Role, now_ms: i64) -> Result<u64> {
        dispatch!(self, s => s.count_usable_keys_with_role(role, now_ms).await)
    }

    /// Audit events, newest first, optionally for one tenant, with
    /// sequence below `before`.
    pub async fn list_audit(
        &self,
        tenant_id: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        dispatch!(self, s => s.list_audit(tenant_id, before, limit).await)
    }

    /// The tenant with this id.
    pub async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        dispatch!(self, s => s.get_tenant(id).await)
    }

    /// The tenant with this name.
    pub async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        dispatch!(self, s => s.find_tenant_by_name(name).await)
    }

    /// The API key with this public id.
    pub async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        dispatch!(self, s => s.get_api_key(key_id).await)
    }

    /// The API key with this public id and its tenant (`None` if the
    /// tenant row is missing): what authentication needs. Served from
    /// the cache while the credential generation reads as it did when the
    /// key was read, so a change committed by any process is seen by the
    /// next call; else read in one statement. Unknown ids are never
    /// cached, so probing for ids cannot fill the cache.
    pub async fn get_api_key_with_tenant(&self, key_id: &str) -> Result<Option<KeyWithTenant>> {
        let now = dispatch!(self, s => s.credential_generation().await)?;
        if let Some(generation) = now
            && let Some(cached) = self.credentials.get(key_id, generation)
        {
            return Ok(Some(cached));
        }
        let found = dispatch!(self, s => s.get_api_key_with_tenant(key_id).await)?;
        Ok(found.map(|(generation, found)| {
            self.credentials.put(generation, &found);
            found
        }))
    }

    /// How many authentications this handle served from its cache.
    pub fn credential_cache_hits(&self) -> u64 {
        self.credentials.hits()
    }

    /// Publishes a signing key of `purpose` (`PURPOSE_ATTESTATION`,
    /// `PURPOSE_CHECKPOINT`) if it is not yet known, and retires every
    /// other current key of that purpose as of `now_ms`.
    pub async fn publish_signing_key(
        &self,
        purpose: &str,
        key_id: &str,
        public_key: &[u8; 32],
        now_ms: i64,
    ) -> Result<()> {
        dispatch!(self, s => s.publish_signing_key(purpose, key_id, public_key, now_ms).await)
    }

    /// All published signing keys, current first.
    pub async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        dispatch!(self, s => s.list_signing_keys().await)
    }

    /// Flushes and closes connections.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(s) => s.close().await,
        }
    }
}

/// The sequence number and chain hash of each entry appended after the
/// chain's newest row `head` (`None`: an empty chain), in order: the one
/// rule both backends write the audit chain by.
fn audit_links(head: Option<(i64, [u8; 32])>, entries: &[AuditEntry]) -> Vec<(i64, [u8; 32])> {
    let (mut sequence, mut previous) = head.unwrap_or((0, [0u8; 32]));
    entries
        .iter()
        .map(|e| {
            sequence += 1;
            previous = audit_chain_hash(&previous, e);
            (sequence, previous)
        })
        .collect()
}

/// Runs `migrator` (under the backend's migration lock, so replicas that
/// start together take turns), refusing a database that a newer build
/// migrated: its applied versions include one this build does not carry.
async fn migrate<'a, A>(
    migrator: &sqlx::migrate::Migrator,
    store: &'static str,
    conn: A,
) -> Result<()>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    match migrator.run(conn).await {
        Ok(()) => Ok(()),
        Err(sqlx::migrate::MigrateError::VersionMissing(found)) => Err(StoreError::SchemaTooNew {
            store,
            found,
            known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Metadata key of the registry version.
pub const META_REGISTRY_VERSION: &str = "registry_version";

/// Metadata key of the pepper version the current registry version was
/// built with; written with the version at every switch.
pub const META_REGISTRY_PEPPER: &str = "registry_pepper_version";
