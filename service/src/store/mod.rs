//! Persistent state: the hashed registry, tenants and API keys, published
//! signing keys.
//!
//! [`Store`] is the only type the rest of the service sees. It dispatches to
//! a backend chosen by the database URL; SQLite is embedded and the default.
//! A PostgreSQL backend is a new variant of `Backend` and a new file beside
//! `sqlite.rs`, with the same methods: nothing above this module changes.
//!
//! Architecture invariant: nothing written here holds a citizen's raw data.
//! Records are a locator and opaque tags; see `ekyc_domain::record`.

mod sqlite;

use ekyc_domain::keys::{KdfParams, Locator};
use ekyc_domain::record::RecordTags;
use serde::{Deserialize, Serialize};

/// A storage failure. Messages may name tables, never hold row values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported backend.
    #[error("unsupported database url scheme (expected sqlite://...)")]
    UnsupportedUrl,
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
    /// A KDF parameter id is already registered with different costs.
    #[error(
        "argon2.params_id {0} is already registered with different costs; choose a new params_id for new costs"
    )]
    ParamsConflict(u32),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, StoreError>;

/// One hashed citizen record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// `HMAC(K, "locator")`.
    pub locator: Locator,
    /// Pepper version the record was derived under.
    pub pepper_version: u32,
    /// Argon2 parameter set id.
    pub kdf_params_id: u32,
    /// Normalisation rules version.
    pub normalization_version: u16,
    /// Registry version of the import that last changed it.
    pub registry_version: u64,
    /// The field tags.
    pub tags: RecordTags,
}

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

/// Tenant state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// May call.
    Active,
    /// Refused on every call.
    Suspended,
}

/// Rate limits and quotas; 0 means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Sustained requests per second.
    pub requests_per_second: u64,
    /// Burst above the sustained rate.
    pub burst: u64,
    /// Billable units per day.
    pub daily_quota_units: u64,
    /// Billable units per billing month.
    pub monthly_quota_units: u64,
}

/// What a tenant may ask and how answers are computed for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantPolicy {
    /// Claim fields it may ask about (snake_case names); empty: all.
    pub allowed_fields: Vec<String>,
    /// Purpose codes it may declare; empty: any.
    pub allowed_purposes: Vec<String>,
    /// Whether a folded (diacritic-insensitive) match counts as a match.
    pub accept_folded: bool,
    /// Whether token-overlap scores are computed and reported. Named as in
    /// the API (and so in the audit trail).
    #[serde(rename = "fuzzy_matching", alias = "fuzzy")]
    pub fuzzy: bool,
    /// Score threshold for fuzzy matches (0-100).
    pub fuzzy_threshold: u8,
    /// Whether "not in the registry" is disclosed.
    pub disclose_not_found: bool,
    /// Rate limits and quotas (enforced by the limits layer).
    pub limits: Limits,
    /// Price plan id (used by billing); empty: none assigned.
    pub price_plan: String,
    /// IANA zone of the tenant's quota and billing periods.
    pub time_zone: String,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        let d = ekyc_domain::matching::MatchPolicy::default();
        TenantPolicy {
            allowed_fields: Vec::new(),
            allowed_purposes: Vec::new(),
            limits: Limits::default(),
            price_plan: String::new(),
            time_zone: ekyc_limits::DEFAULT_TIME_ZONE.to_string(),
            accept_folded: d.accept_folded,
            fuzzy: d.fuzzy,
            fuzzy_threshold: d.fuzzy_threshold,
            disclose_not_found: d.disclose_not_found,
        }
    }
}

impl TenantPolicy {
    /// The matching policy the domain applies.
    pub fn match_policy(&self) -> ekyc_domain::matching::MatchPolicy {
        ekyc_domain::matching::MatchPolicy {
            accept_folded: self.accept_folded,
            fuzzy: self.fuzzy,
            fuzzy_threshold: self.fuzzy_threshold,
            disclose_not_found: self.disclose_not_found,
        }
    }
}

/// A tenant's legal particulars, printed on its invoices. Empty strings
/// until the agency records them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LegalParticulars {
    /// Legal name (tên đơn vị), Unicode NFC.
    pub legal_name: String,
    /// Registered address.
    pub address: String,
    /// Tax code (mã số thuế): 10 digits, or `NNNNNNNNNN-NNN`.
    pub tax_code: String,
}

/// A tenant (a relying party organisation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Stable id, bound into attestations.
    pub id: String,
    /// Unique display name.
    pub name: String,
    /// Active or suspended.
    pub status: TenantStatus,
    /// Matching policy.
    pub policy: TenantPolicy,
    /// Client-certificate subject CN that authenticates as this tenant.
    pub mtls_subject: Option<String>,
    /// Creation time.
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
    /// Legal particulars for invoices.
    pub legal: LegalParticulars,
}

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Calls Verify.
    Verifier,
    /// Manages tenants (the agency).
    AgencyAdmin,
    /// Reads usage and invoices.
    Finance,
    /// Imports and deletes registry records.
    RegistryOperator,
}

impl Role {
    /// Stable lowercase name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Verifier => "verifier",
            Role::AgencyAdmin => "agency_admin",
            Role::Finance => "finance",
            Role::RegistryOperator => "registry_operator",
        }
    }

    /// The role with this stored name.
    pub fn parse(s: &str) -> Option<Role> {
        [
            Role::Verifier,
            Role::AgencyAdmin,
            Role::Finance,
            Role::RegistryOperator,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A stored API key: only a digest of its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id (the part of the key before the secret).
    pub key_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the secret.
    pub secret_sha256: [u8; 32],
    /// Creation time.
    pub created_at_ms: i64,
    /// Expiry, if any.
    pub expires_at_ms: Option<i64>,
    /// Revocation time, if revoked.
    pub revoked_at_ms: Option<i64>,
    /// Last successful use (to within a minute), if ever used.
    pub last_used_at_ms: Option<i64>,
    /// Whether the key reads `ekyc_live_` (else `ekyc_test_`).
    pub live: bool,
}

impl ApiKeyRecord {
    /// Whether the key authenticates at `now_ms`.
    pub fn usable_at(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|t| t > now_ms)
    }
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

/// One administrative change, as written to the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When.
    pub at_ms: i64,
    /// Credential that made the change.
    pub actor_key_id: String,
    /// Tenant of that credential.
    pub actor_tenant_id: String,
    /// What was done, e.g. `tenant.update`.
    pub action: String,
    /// Tenant changed.
    pub tenant_id: String,
    /// Field or object changed.
    pub field: String,
    /// JSON before; empty if none. Never a secret.
    pub old_value: String,
    /// JSON after; empty if none. Never a secret.
    pub new_value: String,
}

/// A stored audit entry with its position in the hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Gapless sequence number.
    pub sequence: i64,
    /// The change.
    pub entry: AuditEntry,
    /// SHA-256(previous chain hash || canonical JSON of `entry`).
    pub chain_hash: [u8; 32],
}

/// The chain hash of `entry` after `previous` (32 zero bytes for the first).
pub fn audit_chain_hash(previous: &[u8; 32], entry: &AuditEntry) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    // Struct field order makes this JSON canonical.
    let json = serde_json::to_vec(entry).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(previous);
    h.update(&json);
    h.finalize().into()
}

impl std::fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("key_id", &self.key_id)
            .field("tenant_id", &self.tenant_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A published signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id.
    pub key_id: String,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// When it started signing.
    pub not_before_ms: i64,
    /// When it stopped signing, if retired.
    pub retired_at_ms: Option<i64>,
}

/// The storage handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Store> {
        if url.starts_with("sqlite:") {
            let s = sqlite::SqliteStore::open(url).await?;
            return Ok(Store {
                backend: Backend::Sqlite(s),
            });
        }
        Err(StoreError::UnsupportedUrl)
    }

    /// Records a KDF parameter set, refusing an id reused with other costs.
    pub async fn register_kdf_params(&self, params: &KdfParams) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.register_kdf_params(params).await,
        }
    }

    /// The record at `locator`, if any, with the current registry version,
    /// read together (one round trip, one snapshot): what Verify needs.
    pub async fn get_record_and_version(
        &self,
        locator: &Locator,
    ) -> Result<(Option<StoredRecord>, u64)> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_record_and_version(locator).await,
        }
    }

    /// Writes a batch of records in one transaction; `registry_version` is
    /// stamped on those that are new or changed.
    pub async fn upsert_records(&self, batch: &[StoredRecord]) -> Result<Vec<Upserted>> {
        match &self.backend {
            Backend::Sqlite(s) => s.upsert_records(batch).await,
        }
    }

    /// Deletes the records at these locators; returns how many existed.
    pub async fn delete_records(&self, locators: &[Locator]) -> Result<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.delete_records(locators).await,
        }
    }

    /// Number of records.
    pub async fn count_records(&self) -> Result<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.count_records().await,
        }
    }

    /// A metadata value.
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_meta(key).await,
        }
    }

    /// Sets a metadata value.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.set_meta(key, value).await,
        }
    }

    /// The current registry version (0 before the first import).
    pub async fn registry_version(&self) -> Result<u64> {
        Ok(self
            .get_meta(META_REGISTRY_VERSION)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Creates a tenant and records `audit` in the same transaction;
    /// fails with `Conflict` if the name or mTLS subject is taken.
    pub async fn insert_tenant(&self, tenant: &Tenant, audit: &[AuditEntry]) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.write_tenant(tenant, None, audit).await,
        }
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
        match &self.backend {
            Backend::Sqlite(s) => {
                s.write_tenant(tenant, Some(read_updated_at_ms), audit)
                    .await
            }
        }
    }

    /// Up to `limit` tenants with ids after `after`, by id.
    pub async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_tenants(after, limit).await,
        }
    }

    /// The tenant whose client certificates carry this subject CN.
    pub async fn find_tenant_by_mtls_subject(&self, subject: &str) -> Result<Option<Tenant>> {
        match &self.backend {
            Backend::Sqlite(s) => s.find_tenant_by_mtls_subject(subject).await,
        }
    }

    /// Appends audit entries about a change made outside the store (a
    /// guard clear), in one transaction.
    pub async fn append_audit(&self, audit: &[AuditEntry]) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.append_audit(audit).await,
        }
    }

    /// Writes keys and `audit` in one transaction, so a rotation never
    /// leaves half a change; an update whose key changed since it was read
    /// fails the whole write with `Stale`.
    pub async fn write_api_keys(&self, keys: &[KeyWrite<'_>], audit: &[AuditEntry]) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.write_api_keys(keys, audit).await,
        }
    }

    /// A tenant's keys, newest first.
    pub async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRecord>> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_api_keys(tenant_id).await,
        }
    }

    /// Records a successful use of a key.
    pub async fn touch_api_key(&self, key_id: &str, now_ms: i64) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.touch_api_key(key_id, now_ms).await,
        }
    }

    /// How many usable keys have this role.
    pub async fn count_usable_keys_with_role(&self, role: Role, now_ms: i64) -> Result<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.count_usable_keys_with_role(role, now_ms).await,
        }
    }

    /// Audit events, newest first, optionally for one tenant, with
    /// sequence below `before`.
    pub async fn list_audit(
        &self,
        tenant_id: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_audit(tenant_id, before, limit).await,
        }
    }

    /// The tenant with this id.
    pub async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_tenant(id).await,
        }
    }

    /// The tenant with this name.
    pub async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        match &self.backend {
            Backend::Sqlite(s) => s.find_tenant_by_name(name).await,
        }
    }

    /// The API key with this public id.
    pub async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_api_key(key_id).await,
        }
    }

    /// The API key with this public id and its tenant (`None` if the
    /// tenant row is missing), in one read: what authentication needs.
    pub async fn get_api_key_with_tenant(
        &self,
        key_id: &str,
    ) -> Result<Option<(ApiKeyRecord, Option<Tenant>)>> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_api_key_with_tenant(key_id).await,
        }
    }

    /// Publishes a signing key if it is not yet known, and retires every
    /// other current key as of `now_ms`.
    pub async fn publish_signing_key(
        &self,
        key_id: &str,
        public_key: &[u8; 32],
        now_ms: i64,
    ) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.publish_signing_key(key_id, public_key, now_ms).await,
        }
    }

    /// All published signing keys, current first.
    pub async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_signing_keys().await,
        }
    }

    /// Flushes and closes connections.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
        }
    }
}

/// Metadata key of the registry version.
pub const META_REGISTRY_VERSION: &str = "registry_version";

#[cfg(test)]
mod tests {
    use super::*;

    fn record(byte: u8, registry_version: u64) -> StoredRecord {
        StoredRecord {
            locator: [byte; 32],
            pepper_version: 1,
            kdf_params_id: KdfParams::DEFAULT.id,
            normalization_version: 1,
            registry_version,
            tags: RecordTags::default(),
        }
    }

    /// Verify's one read: the record if present, and always the current
    /// registry version (0 before any import), also for unknown locators.
    #[tokio::test]
    async fn record_and_version_come_back_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("ekyc.db").display());
        let store = Store::open(&url).await.expect("open");
        assert_eq!(
            store.get_record_and_version(&[1; 32]).await.expect("read"),
            (None, 0)
        );
        store
            .register_kdf_params(&KdfParams::DEFAULT)
            .await
            .expect("params");
        let stored = record(1, 3);
        store
            .upsert_records(std::slice::from_ref(&stored))
            .await
            .expect("upsert");
        store
            .set_meta(META_REGISTRY_VERSION, "3")
            .await
            .expect("meta");
        assert_eq!(
            store.get_record_and_version(&[1; 32]).await.expect("read"),
            (Some(stored), 3)
        );
        assert_eq!(
            store.get_record_and_version(&[2; 32]).await.expect("read"),
            (None, 3)
        );
    }
}
