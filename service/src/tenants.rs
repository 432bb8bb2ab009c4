//! Tenant and key operations shared by the admin API and the operator
//! commands of `ekycd` (demo, issue-key, admin bootstrap). Every change
//! is written together with its audit entries.

use crate::auth::{self, IssuedKey};
use crate::clock;
use crate::secrets::{SecretError, random_bytes};
use crate::store::{AuditEntry, Role, Store, StoreError, Tenant, TenantPolicy, TenantStatus};

/// Onboarding failed.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Randomness failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The name is empty, too long or holds invisible characters.
    #[error(
        "tenant name must be 1 to 100 characters in Unicode NFC without control or invisible characters, with single spaces"
    )]
    InvalidName,
    /// `admin bootstrap` already ran.
    #[error(
        "an agency admin key already exists; pass --force to issue another (the existing keys stay valid)"
    )]
    AlreadyBootstrapped,
}

/// Who makes a change, as recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The credential's key id, or `local:<command>` for operator commands
    /// run on the server's own machine.
    pub key_id: String,
    /// The credential's tenant; empty for local operator commands.
    pub tenant_id: String,
}

impl Actor {
    /// An operator command of `ekycd` run against the store directly.
    pub fn local(command: &str) -> Actor {
        Actor {
            key_id: format!("local:{command}"),
            tenant_id: String::new(),
        }
    }

    /// An audit entry by this actor about `tenant_id`.
    pub fn entry(
        &self,
        action: &str,
        tenant_id: &str,
        field: &str,
        old_value: String,
        new_value: String,
    ) -> AuditEntry {
        AuditEntry {
            at_ms: clock::now_ms(),
            actor_key_id: self.key_id.clone(),
            actor_tenant_id: self.tenant_id.clone(),
            action: action.to_string(),
            tenant_id: tenant_id.to_string(),
            field: field.to_string(),
            old_value,
            new_value,
        }
    }
}

/// Checks text the service stores and shows to people (tenant names,
/// certificate subjects, reasons): 1 to `max` characters, Unicode NFC, no
/// control or invisible characters (bidirectional overrides, zero-width
/// spaces and joiners, ...: `ekyc_domain::normalize::is_invisible`), no
/// whitespace but single ASCII spaces between words. Two names that look
/// the same are then the same string. Returns the violated rule.
pub fn check_display_text(text: &str, max: usize) -> Result<(), &'static str> {
    let n = text.chars().count();
    if n == 0 {
        return Err("required");
    }
    if n > max {
        return Err("too_long");
    }
    if text.chars().any(ekyc_domain::normalize::is_invisible) {
        return Err("invisible_character");
    }
    if text.chars().any(|c| c.is_whitespace() && c != ' ')
        || text.trim() != text
        || text.contains("  ")
    {
        return Err("invalid_whitespace");
    }
    if !unicode_normalization::is_nfc(text) {
        return Err("not_nfc");
    }
    Ok(())
}

/// Checks a tenant name (see [`check_display_text`]).
pub fn valid_name(name: &str) -> bool {
    check_display_text(name, 100).is_ok()
}

/// `limits` with every zero taken from the service's defaults for new
/// tenants (`limits.default_*`): no tenant is unlimited by omission.
pub fn with_default_limits(
    limits: &crate::store::Limits,
    defaults: &ekyc_limits::LimitsConfig,
) -> crate::store::Limits {
    let pick = |own: u64, default: u64| if own == 0 { default } else { own };
    let rate = pick(
        limits.requests_per_second,
        defaults.default_requests_per_second,
    );
    crate::store::Limits {
        requests_per_second: rate,
        // A default burst only goes with the default rate.
        burst: if limits.requests_per_second == 0 {
            pick(limits.burst, defaults.default_burst)
        } else {
            limits.burst
        },
        daily_quota_units: pick(limits.daily_quota_units, defaults.default_daily_quota_units),
        monthly_quota_units: pick(
            limits.monthly_quota_units,
            defaults.default_monthly_quota_units,
        ),
    }
}

/// A new active tenant (not yet stored); limits it leaves at zero take
/// `defaults`.
pub fn new_tenant(
    name: &str,
    mut policy: TenantPolicy,
    mtls_subject: Option<String>,
    defaults: &ekyc_limits::LimitsConfig,
) -> Result<Tenant, TenantError> {
    let now = clock::now_ms();
    policy.limits = with_default_limits(&policy.limits, defaults);
    Ok(Tenant {
        id: format!("tn_{}", hex::encode(random_bytes::<8>()?)),
        name: name.to_string(),
        status: TenantStatus::Active,
        policy,
        mtls_subject,
        created_at_ms: now,
        updated_at_ms: now,
        legal: Default::default(),
    })
}

/// JSON of a tenant for the audit trail (everything but timestamps).
pub fn audit_json(tenant: &Tenant) -> String {
    serde_json::json!({
        "name": tenant.name,
        "status": tenant.status,
        "policy": tenant.policy,
        "mtls_subject": tenant.mtls_subject,
        "legal": tenant.legal,
    })
    .to_string()
}

/// Stores a new tenant with its audit entry.
pub async fn create_tenant(
    store: &Store,
    tenant: &Tenant,
    actor: &Actor,
) -> Result<(), TenantError> {
    let entry = actor.entry(
        "tenant.create",
        &tenant.id,
        "tenant",
        String::new(),
        audit_json(tenant),
    );
    store.insert_tenant(tenant, &[entry]).await?;
    Ok(())
}

/// Returns the tenant named `name`, creating it (active, default policy) if
/// it does not exist.
pub async fn ensure_tenant(
    store: &Store,
    name: &str,
    defaults: &ekyc_limits::LimitsConfig,
    actor: &Actor,
) -> Result<Tenant, TenantError> {
    let name = name.trim();
    if !valid_name(name) {
        return Err(TenantError::InvalidName);
    }
    if let Some(t) = store.find_tenant_by_name(name).await? {
        return Ok(t);
    }
    let tenant = new_tenant(name, TenantPolicy::default(), None, defaults)?;
    create_tenant(store, &tenant, actor).await?;
    Ok(tenant)
}

/// JSON of a key for the audit trail: never the secret or its digest.
pub fn key_audit_json(k: &crate::store::ApiKeyRecord) -> String {
    serde_json::json!({
        "key_id": k.key_id,
        "role": k.role,
        "expires_at_ms": k.expires_at_ms,
        "revoked_at_ms": k.revoked_at_ms,
    })
    .to_string()
}

/// Issues and stores a new key for `tenant`; the token is returned once.
pub async fn issue_key(
    store: &Store,
    tenant: &Tenant,
    role: Role,
    live: bool,
    expires_at_ms: Option<i64>,
    actor: &Actor,
) -> Result<IssuedKey, TenantError> {
    let issued = auth::issue(&tenant.id, role, live, clock::now_ms(), expires_at_ms)?;
    let entry = actor.entry(
        "api_key.issue",
        &tenant.id,
        &format!("api_key:{}", issued.record.key_id),
        String::new(),
        key_audit_json(&issued.record),
    );
    store
        .write_api_keys(&[crate::store::KeyWrite::Insert(&issued.record)], &[entry])
        .await?;
    Ok(issued)
}

/// Name of the tenant that holds the agency's own credentials.
pub const AGENCY_TENANT: &str = "agency";

/// Metadata key holding the agency tenant's id: agency-admin powers belong
/// to keys of this tenant only (a name could be taken or changed).
pub const META_AGENCY_TENANT: &str = "agency_tenant_id";

/// "agency", or "agency-2", ... if a tenant already has that name.
async fn agency_name(store: &Store) -> Result<String, TenantError> {
    let mut name = AGENCY_TENANT.to_string();
    let mut n = 1;
    while store.find_tenant_by_name(&name).await?.is_some() {
        n += 1;
        name = format!("{AGENCY_TENANT}-{n}");
    }
    Ok(name)
}

/// Creates the agency tenant (if needed) and an agency-admin key. Refuses
/// when a usable agency-admin key exists, unless `force`.
pub async fn bootstrap(
    store: &Store,
    defaults: &ekyc_limits::LimitsConfig,
    force: bool,
) -> Result<(Tenant, IssuedKey), TenantError> {
    let actor = Actor::local("admin-bootstrap");
    if !force
        && store
            .count_usable_keys_with_role(Role::AgencyAdmin, clock::now_ms())
            .await?
            > 0
    {
        return Err(TenantError::AlreadyBootstrapped);
    }
    let tenant = match store.get_meta(META_AGENCY_TENANT).await? {
        Some(id) => match store.get_tenant(&id).await? {
            Some(t) => t,
            None => {
                return Err(TenantError::Store(StoreError::Corrupt(
                    "agency tenant is missing".into(),
                )));
            }
        },
        None => {
            // A fresh tenant, never an existing one that happens to carry
            // the name: that one could be a bank's.
            let name = agency_name(store).await?;
            let tenant = new_tenant(&name, TenantPolicy::default(), None, defaults)?;
            create_tenant(store, &tenant, &actor).await?;
            store.set_meta(META_AGENCY_TENANT, &tenant.id).await?;
            tenant
        }
    };
    let key = issue_key(store, &tenant, Role::AgencyAdmin, true, None, &actor).await?;
    Ok((tenant, key))
}
