//! Rows to model types, shared by both backends: each backend selects the
//! same columns in the same order (the `*_COLUMNS` lists), so one decoder
//! serves both and a column added to one cannot be forgotten in the other.

use ekyc_domain::record::RecordTags;
use sqlx::{ColumnIndex, Database, Decode, Row, Type};

use super::{
    ApiKeyRecord, AuditEntry, AuditEvent, Result, Role, SigningKeyRecord, StoreError, StoredRecord,
    Tenant, TenantPolicy, TenantStatus,
};

/// A Rust type both backends can decode (the bounds every decoder needs).
pub(super) trait Decodes<DB: Database>: for<'r> Decode<'r, DB> + Type<DB> {}
impl<DB: Database, T: for<'r> Decode<'r, DB> + Type<DB>> Decodes<DB> for T {}

/// Columns of a tenant, in `tenant_from_row` order.
pub(super) const TENANT_COLUMNS: &str =
    "id, name, status, policy, mtls_subject, created_at_ms, updated_at_ms, legal";

/// How many columns `TENANT_COLUMNS` names.
pub(super) const TENANT_COLUMN_COUNT: usize = 8;

/// Columns of an API key, in `key_from_row` order.
pub(super) const KEY_COLUMNS: &str = "key_id, tenant_id, role, secret_sha256, created_at_ms, \
     expires_at_ms, revoked_at_ms, last_used_at_ms, label";

/// How many columns `KEY_COLUMNS` names (where a joined tenant starts).
pub(super) const KEY_COLUMN_COUNT: usize = 9;

/// Columns of an audit event, in `audit_from_row` order.
pub(super) const AUDIT_COLUMNS: &str = "sequence, at_ms, actor_key_id, actor_tenant_id, action, \
     tenant_id, field, old_value, new_value, chain_hash";

/// Columns of a signing key, in `signing_key_from_row` order.
pub(super) const SIGNING_KEY_COLUMNS: &str =
    "key_id, public_key, not_before_ms, retired_at_ms, purpose";

/// A record from the columns locator, pepper_version, kdf_params_id,
/// normalization_version, registry_version, tags, starting at column `at`.
pub(super) fn record_from_row<R>(r: &R, at: usize) -> Result<StoredRecord>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decodes<R::Database>,
    Vec<u8>: Decodes<R::Database>,
{
    let tags: Vec<u8> = r.try_get(at + 5)?;
    Ok(StoredRecord {
        locator: fixed(&r.try_get::<Vec<u8>, _>(at)?, "locator")?,
        pepper_version: narrow(r.try_get::<i64, _>(at + 1)?, "pepper_version")?,
        kdf_params_id: narrow(r.try_get::<i64, _>(at + 2)?, "kdf_params_id")?,
        normalization_version: narrow(r.try_get::<i64, _>(at + 3)?, "normalization_version")?,
        registry_version: narrow(r.try_get::<i64, _>(at + 4)?, "registry_version")?,
        tags: RecordTags::decode(&tags).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

/// A tenant from `TENANT_COLUMNS` starting at column `at`.
pub(super) fn tenant_from_row<R>(r: &R, at: usize) -> Result<Tenant>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decodes<R::Database>,
    String: Decodes<R::Database>,
{
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

/// An API key from `KEY_COLUMNS` starting at column 0.
pub(super) fn key_from_row<R>(r: &R) -> Result<ApiKeyRecord>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decodes<R::Database>,
    String: Decodes<R::Database>,
    Vec<u8>: Decodes<R::Database>,
{
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

/// An audit event from `AUDIT_COLUMNS`.
pub(super) fn audit_from_row<R>(r: &R) -> Result<AuditEvent>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decodes<R::Database>,
    String: Decodes<R::Database>,
    Vec<u8>: Decodes<R::Database>,
{
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
}

/// A signing key from `SIGNING_KEY_COLUMNS`.
pub(super) fn signing_key_from_row<R>(r: &R) -> Result<SigningKeyRecord>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decodes<R::Database>,
    String: Decodes<R::Database>,
    Vec<u8>: Decodes<R::Database>,
{
    Ok(SigningKeyRecord {
        key_id: r.try_get(0)?,
        public_key: fixed(&r.try_get::<Vec<u8>, _>(1)?, "public key")?,
        not_before_ms: r.try_get(2)?,
        retired_at_ms: r.try_get(3)?,
        purpose: r.try_get(4)?,
    })
}

/// The audit chain's newest row (`sequence, chain_hash`), as
/// [`super::audit_links`] continues from it.
pub(super) fn chain_head<R>(r: &R) -> Result<(i64, [u8; 32])>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decodes<R::Database>,
    Vec<u8>: Decodes<R::Database>,
{
    Ok((
        r.try_get(0)?,
        fixed(&r.try_get::<Vec<u8>, _>(1)?, "audit chain hash")?,
    ))
}

/// The stored form of a tenant's status.
pub(super) fn status_str(s: TenantStatus) -> &'static str {
    match s {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    }
}

/// A tenant's policy and legal particulars as stored (JSON text).
pub(super) fn tenant_json(t: &Tenant) -> Result<(String, String)> {
    let policy = serde_json::to_string(&t.policy)
        .map_err(|e| StoreError::Corrupt(format!("tenant policy: {e}")))?;
    let legal = serde_json::to_string(&t.legal)
        .map_err(|e| StoreError::Corrupt(format!("tenant legal particulars: {e}")))?;
    Ok((policy, legal))
}

/// The stored label of a key ("live" or "test").
pub(super) fn key_label(k: &ApiKeyRecord) -> &'static str {
    if k.live { "live" } else { "test" }
}

/// A fixed-length byte column.
pub(super) fn fixed<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} has the wrong length")))
}

/// A stored integer into its narrower model type; out of range is corrupt,
/// never silently truncated.
fn narrow<T: TryFrom<i64>>(value: i64, what: &str) -> Result<T> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is out of range")))
}
