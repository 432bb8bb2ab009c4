//! Minimal tenant onboarding: a tenant and its first verifier key. The full
//! admin API (policies, rotation, suspension) builds on this.

use crate::auth::{self, IssuedKey};
use crate::clock;
use crate::secrets::{SecretError, random_bytes};
use crate::store::{Role, Store, StoreError, Tenant, TenantPolicy, TenantStatus};

/// Onboarding failed.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Randomness failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The name is empty or too long.
    #[error("tenant name must be 1 to 100 printable characters")]
    InvalidName,
}

/// Returns the tenant named `name`, creating it (active, default policy) if
/// it does not exist.
pub async fn ensure_tenant(store: &Store, name: &str) -> Result<Tenant, TenantError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(TenantError::InvalidName);
    }
    if let Some(t) = store.find_tenant_by_name(name).await? {
        return Ok(t);
    }
    let tenant = Tenant {
        id: format!("tn_{}", hex::encode(random_bytes::<8>()?)),
        name: name.to_string(),
        status: TenantStatus::Active,
        policy: TenantPolicy::default(),
    };
    store.insert_tenant(&tenant, clock::now_ms()).await?;
    Ok(tenant)
}

/// Issues and stores a new key for `tenant`; the token is returned once.
pub async fn issue_key(
    store: &Store,
    tenant: &Tenant,
    role: Role,
    live: bool,
) -> Result<IssuedKey, TenantError> {
    let issued = auth::issue(&tenant.id, role, live, clock::now_ms(), None)?;
    store.insert_api_key(&issued.record).await?;
    Ok(issued)
}
