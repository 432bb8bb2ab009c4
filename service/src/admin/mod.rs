//! The agency's administration path (`TenantAdminService`): every method
//! authenticates, authorises by role and tenant, validates all input before
//! changing anything, and writes the change together with its audit
//! entries in one transaction.
//!
//! Who may do what is in [`crate::authz::RULES`]: agency admins
//! everything, for every tenant; a tenant's finance keys read their own
//! tenant and keys; everyone else nothing here.

use ekyc_domain::normalize::{Violation, normalize_id};
use ekyc_proto::v1 as pb;

use std::sync::Arc;

use crate::App;
use crate::auth::{self, Caller, Credential};
use crate::authz::{Gate, Target};
use crate::clock;
use crate::error::{Reason, ServiceError};
use crate::hashing::HashPool;
use crate::keyring::Keyring;
use crate::store::{ApiKeyRecord, KeyWrite, Role, Store, StoreError, Tenant, TenantStatus};
use crate::tenants::{self, Actor};

mod audit_diff;
mod convert;
mod validate;

use audit_diff::{diff, json};
use convert::{audit_to_proto, key_to_proto, limits_to_proto};
pub use convert::{role_from_proto, tenant_to_proto};
use validate::*;

/// The `TenantAdminService` handle: tenants, keys, the audit trail and
/// the subject guard's clear call.
#[derive(Clone)]
pub struct AdminService {
    gate: Gate,
    store: Store,
    pool: Arc<HashPool>,
    keyring: Arc<Keyring>,
    limiter: Arc<ekyc_limits::Limiter>,
    clock: Arc<clock::Clock>,
}

impl AdminService {
    /// The handle over `app`'s parts.
    pub fn new(app: &App) -> AdminService {
        AdminService {
            gate: Gate::new(app),
            store: app.store.clone(),
            pool: Arc::clone(&app.pool),
            keyring: Arc::clone(&app.keyring),
            limiter: Arc::clone(&app.limiter),
            clock: Arc::clone(&app.clock),
        }
    }

    async fn admin_caller(&self, credential: &Credential) -> Result<(Caller, Actor), ServiceError> {
        let caller = self.gate.authenticate(credential).await?;
        let actor = Actor {
            key_id: caller.key_id.clone(),
            tenant_id: caller.tenant.id.clone(),
        };
        Ok((caller, actor))
    }

    /// Roles that act for the agency are only issued to the agency tenant.
    async fn check_role_for_tenant(&self, role: Role, tenant_id: &str) -> Result<(), ServiceError> {
        let agency_only = matches!(
            role,
            Role::AgencyAdmin | Role::RegistryOperator | Role::Auditor | Role::PrivacyOfficer
        );
        if agency_only && self.gate.agency_tenant_id().await?.as_deref() != Some(tenant_id) {
            return Err(ServiceError::invalid(
                "role",
                "agency_only",
                "agency_admin, registry_operator, auditor and privacy_officer keys can only be \
                 issued to the agency tenant",
            ));
        }
        Ok(())
    }

    async fn load_key(&self, key_id: &str) -> Result<ApiKeyRecord, ServiceError> {
        self.store
            .get_api_key(key_id)
            .await?
            .ok_or(ServiceError::refused(
                Reason::ApiKeyNotFound,
                "api key not found",
            ))
    }

    /// CreateTenant.
    pub async fn create_tenant(
        &self,
        credential: &Credential,
        req: &pb::CreateTenantRequest,
    ) -> Result<pb::Tenant, ServiceError> {
        let (caller, actor) = self.admin_caller(credential).await?;
        self.gate
            .authorize(&caller, "CreateTenant", Target::Caller)
            .await?;
        let input = req.tenant.clone().unwrap_or_default();
        let mut violations = Vec::new();
        check_name(&input.name, &mut violations);
        let mut policy = policy_from_proto(input.policy.as_ref(), &mut violations);
        check_limits(&policy.limits, &mut violations);
        // No tenant is unlimited by omission: what the agency left at zero
        // takes the service's defaults, stored (and audited) as such.
        if violations.is_empty() {
            policy.limits = tenants::with_default_limits(&policy.limits, self.limiter.config());
            check_limits(&policy.limits, &mut violations);
        }
        let mtls = mtls_subject(&input.mtls_subject, &mut violations);
        let legal = legal_from_proto(input.legal.as_ref(), &mut violations);
        if !violations.is_empty() {
            return Err(ServiceError::InvalidArgument(violations));
        }
        let mut tenant = tenants::new_tenant(&input.name, policy, mtls, self.limiter.config())?;
        tenant.legal = legal;
        tenants::create_tenant(&self.store, &tenant, &actor)
            .await
            .map_err(|e| match e {
                tenants::TenantError::Store(StoreError::Conflict(col)) => taken(col),
                e => e.into(),
            })?;
        tracing::info!(actor = %actor.key_id, tenant = %tenant.id, "tenant created");
        Ok(tenant_to_proto(&tenant))
    }

    /// ClearSubjectGuard: forgets a subject's unsuccessful answers, for a
    /// citizen locked out by someone else's wrong answers. The audit entry
    /// is written first, so no clear happens unaudited; it names the
    /// subject by `HMAC(K, "audit")` (one Argon2 evaluation), never by the
    /// ID or the guard's HMAC-speed pseudonym.
    pub async fn clear_subject_guard(
        &self,
        credential: &Credential,
        req: &pb::ClearSubjectGuardRequest,
    ) -> Result<pb::ClearSubjectGuardResponse, ServiceError> {
        let (caller, actor) = self.admin_caller(credential).await?;
        self.gate
            .authorize(&caller, "ClearSubjectGuard", Target::Caller)
            .await?;
        let mut violations = Vec::new();
        let id = match normalize_id(&req.id_number) {
            Ok(id) => Some(id),
            Err(v) => {
                violations.push(v);
                None
            }
        };
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
        let key = self
            .pool
            .derive(id.clone(), self.keyring.serving(), None)
            .await
            .map_err(|e| match e {
                crate::hashing::HashError::Saturated => ServiceError::Overloaded {
                    retry_after: self.pool.retry_hint(),
                },
                crate::hashing::HashError::Closed => ServiceError::ShuttingDown,
                e => ServiceError::internal(e),
            })?;
        let audit_subject = hex::encode(key.audit_subject());
        let entry = actor.entry(
            "subject_guard.clear",
            "",
            "subject",
            String::new(),
            serde_json::json!({"subject": audit_subject, "reason": req.reason}).to_string(),
        );
        self.store.append_audit(&[entry]).await?;
        // During a pepper rotation the subject has a name per held pepper,
        // each counting the same failures: the most any held is the count.
        let mut cleared = 0;
        for name in self.keyring.pseudonyms(&id) {
            cleared = cleared.max(self.limiter.clear_subject(name, self.clock.now()).await?);
        }
        tracing::info!(actor = %actor.key_id, cleared, "subject guard cleared");
        Ok(pb::ClearSubjectGuardResponse {
            cleared_failures: cleared as i64,
            audit_subject,
        })
    }

    /// GetTenantUsage: the same counters Verify enforces, read now.
    pub async fn tenant_usage(
        &self,
        credential: &Credential,
        req: &pb::GetTenantUsageRequest,
    ) -> Result<pb::GetTenantUsageResponse, ServiceError> {
        let (caller, _) = self.admin_caller(credential).await?;
        self.gate
            .authorize(&caller, "GetTenantUsage", Target::Tenant(&req.tenant_id))
            .await?;
        let tenant = self.gate.load_tenant(&req.tenant_id).await?;
        let p = &tenant.policy;
        let tz = ekyc_limits::time_zone(&p.time_zone)
            .map_err(|_| ServiceError::internal("a stored tenant time zone is unknown"))?;
        let rate = ekyc_limits::RateLimit {
            per_second: p.limits.requests_per_second,
            burst: p.limits.burst,
        };
        let usage = self
            .limiter
            .usage(&tenant.id, rate, &tz, jiff::Timestamp::now())
            .await?;
        let period = |period: &ekyc_limits::Period, used: u64, limit: u64| pb::QuotaUsage {
            period: period.label.clone(),
            used_units: used as i64,
            limit_units: limit as i64,
            remaining_units: (limit > 0).then(|| limit.saturating_sub(used) as i64),
            resets_at: Some(clock::timestamp(period.ends_at.as_millisecond())),
        };
        Ok(pb::GetTenantUsageResponse {
            tenant_id: tenant.id.clone(),
            limits: Some(limits_to_proto(&p.limits)),
            time_zone: p.time_zone.clone(),
            rate_remaining: usage.rate_remaining.map(|r| r as i64),
            daily: Some(period(
                &usage.day,
                usage.day_used,
                p.limits.daily_quota_units,
            )),
            monthly: Some(period(
                &usage.month,
                usage.month_used,
                p.limits.monthly_quota_units,
            )),
            shared: self.limiter.is_shared(),
        })
    }

    /// GetTenant.
    pub async fn get_tenant(
        &self,
        credential: &Credential,
        req: &pb::GetTenantRequest,
    ) -> Result<pb::Tenant, ServiceError> {
        let (caller, _) = self.admin_caller(credential).await?;
        self.gate
            .authorize(&caller, "GetTenant", Target::Tenant(&req.tenant_id))
            .await?;
        Ok(tenant_to_proto(
            &self.gate.load_tenant(&req.tenant_id).await?,
        ))
    }

    /// ListTenants.
    pub async fn list_tenants(
        &self,
        credential: &Credential,
        req: &pb::ListTenantsRequest,
    ) -> Result<pb::ListTenantsResponse, ServiceError> {
        let (caller, _) = self.admin_caller(credential).await?;
        self.gate
            .authorize(&caller, "ListTenants", Target::Caller)
            .await?;
        let size = page_size(req.page_size, 50, 500)?;
        let after = decode_token(&req.page_token)?;
        let mut page = self.store.list_tenants(after.as_deref(), size + 1).await?;
        let next = if page.len() > size as usize {
            page.truncate(size as usize);
            page.last().map(|t| hex::encode(&t.id)).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListTenantsResponse {
            tenants: page.iter().map(tenant_to_proto).collect(),
            next_page_token: next,
        })
    }

    /// UpdateTenant: applies the fields named in the mask.
    pub async fn update_tenant(
        &self,
        credential: &Credential,
        req: &pb::UpdateTenantRequest,
    ) -> Result<pb::Tenant, ServiceError> {
        let (caller, actor) = self.admin_caller(credential).await?;
        self.gate
            .authorize(&caller, "UpdateTenant", Target::Caller)
            .await?;
        let input = req.tenant.clone().unwrap_or_default();
        let paths = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(ServiceError::invalid(
                "update_mask",
                "required",
                "update_mask must name at least one field to change",
            ));
        }
        let old = self.gate.load_tenant(&input.tenant_id).await?;
        let mut new = old.clone();
        let mut violations = Vec::new();
        let proposed = policy_from_proto(input.policy.as_ref(), &mut violations);
        let legal = legal_from_proto(input.legal.as_ref(), &mut violations);
        // Only violations in fields the mask names count.
        violations.retain(|v| {
            paths
                .iter()
                .any(|p| v.field.starts_with(&format!("tenant.{p}")) || p == "policy")
        });
        // Legal particulars are checked only when the mask names them.
        let legal_named = paths.iter().any(|p| p.starts_with("legal"));
        if !legal_named {
            violations.retain(|v| !v.field.starts_with("tenant.legal"));
        }
        for path in &paths {
            let p = &mut new.policy;
            let limits = &proposed.limits;
            match path.as_str() {
                "name" => {
                    check_name(&input.name, &mut violations);
                    new.name = input.name.clone();
                }
                "mtls_subject" => {
                    new.mtls_subject = mtls_subject(&input.mtls_subject, &mut violations)
                }
                "policy" => *p = proposed.clone(),
                "policy.allowed_fields" => p.allowed_fields = proposed.allowed_fields.clone(),
                "policy.allowed_purposes" => p.allowed_purposes = proposed.allowed_purposes.clone(),
                "policy.fuzzy_matching" => p.fuzzy = proposed.fuzzy,
                "policy.fuzzy_threshold" => p.fuzzy_threshold = proposed.fuzzy_threshold,
                "policy.disclose_not_found" => p.disclose_not_found = proposed.disclose_not_found,
                "policy.accept_folded" => p.accept_folded = proposed.accept_folded,
                "policy.price_plan" => p.price_plan = proposed.price_plan.clone(),
                "policy.time_zone" => p.time_zone = proposed.time_zone.clone(),
                "policy.limits" => p.limits = limits.clone(),
                "policy.limits.requests_per_second" => {
                    p.limits.requests_per_second = limits.requests_per_second
                }
                "policy.limits.burst" => p.limits.burst = limits.burst,
                "policy.limits.daily_quota_units" => {
                    p.limits.daily_quota_units = limits.daily_quota_units
                }
                "policy.limits.monthly_quota_units" => {
                    p.limits.monthly_quota_units = limits.monthly_quota_units
                }
                "legal" => new.legal = legal.clone(),
                "legal.legal_name" => new.legal.legal_name = legal.legal_name.clone(),
                "legal.address" => new.legal.address = legal.address.clone(),
                "legal.tax_code" => new.legal.tax_code = legal.tax_code.clone(),
                _ => violations.push(Violation {
                    field: "update_mask",
                    rule: "unknown_path",
                    description:
                        "update_mask names a field that does not exist or cannot be changed".into(),
                }),
            }
        }
        check_limits(&new.policy.limits, &mut violations);
        if !violations.is_empty() {
            return Err(ServiceError::InvalidArgument(violations));
        }
        let changes = diff(&old, &new);
        if changes.is_empty() {
            return Ok(tenant_to_proto(&old));
        }
        new.updated_at_ms = next_update_time(&old);
        let audit: Vec<_> = changes
            .into_iter()
            .map(|(field, before, after)| {
                actor.entry("tenant.update", &new.id, &field, before, after)
            })
            .collect();
        self.store
            .update_tenant(&new, old.updated_at_ms, &audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(col) => taken(col),
                e => store_error(e),
            })?;
        tracing::info!(actor = %actor.key_id, tenant = %new.id, changes = audit.len(), "tenant updated");
        Ok(tenant_to_proto(&new))
    }

    /// SuspendTenant and ResumeTenant.
    pub async fn set_tenant_status(
        &self,
        credential: &Credential,
        tenant_id: &str,
        status: TenantStatus,
        why: &str,
    ) -> Result<pb::Tenant, ServiceError> {
        let (caller, actor) = self.admin_caller(credential).await?;
        let method = if status == TenantStatus::Suspended {
            "SuspendTenant"
        } else {
            "ResumeTenant"
        };
        self.gate.authorize(&caller, method, Target::Caller).await?;
        if !why.is_empty()
            && let Err(rule) = tenants::check_display_text(why, 500)
        {
            return Err(ServiceError::invalid(
                "reason",
                rule,
                "reason must be at most 500 characters in Unicode NFC without control or \
                 invisible characters",
            ));
        }
        if status == TenantStatus::Suspended
            && self.gate.agency_tenant_id().await?.as_deref() == Some(tenant_id)
        {
            // Suspending the agency's tenant would lock every admin out.
            return Err(ServiceError::refused(
                Reason::CannotSuspendOwnTenant,
                "the agency tenant cannot be suspended",
            ));
        }
        let old = self.gate.load_tenant(tenant_id).await?;
        if old.status == status {
            return Ok(tenant_to_proto(&old));
        }
        let mut new = old.clone();
        new.status = status;
        new.updated_at_ms = next_update_time(&old);
        let action = if status == TenantStatus::Suspended {
            "tenant.suspend"
        } else {
            "tenant.resume"
        };
        let mut entry = actor.entry(
            action,
            tenant_id,
            "status",
            json(&old.status),
            json(&new.status),
        );
        if !why.is_empty() {
            entry.new_value = serde_json::json!({"status": new.status, "reason": why}).to_string();
        }
        self.store
            .update_tenant(&new, old.updated_at_ms, &[entry])
            .await
            .map_err(store_error)?;
        tracing::info!(actor = %actor.key_id, tenant = %tenant_id, action, "tenant status changed");
        Ok(tenant_to_proto(&new))
    }

    /// IssueApiKey: returns the key's description and its whole secret.
    pub async fn issue_api_key(
        &self,
        credential: &Credential,
        req: &pb::IssueApiKeyRequest,
    ) -> Result<pb::IssueApiKeyResponse, ServiceError> {
        let (caller, actor) = self.admin_caller(credential).await?;
        self.gate
            .authorize(&caller, "IssueApiKey", Target::Caller)
            .await?;
        let mut violations = Vec::new();
        let role = role_from_proto(req.role);
        if role.is_none() {
            violations.push(Violation {
                field: "role",
                rule: "required",
                description:
                    "role must be one of verifier, agency_admin, finance, registry_operator".into(),
            });
        }
        if !(0..=10 * 365 * 24 * 3600).contains(&req.ttl_seconds) {
            violations.push(Violation {
                field: "ttl_seconds",
                rule: "out_of_range",
                description: "ttl_seconds must be between 0 (no expiry) and ten years".into(),
            });
        }
        let (Some(role), true) = (role, violations.is_empty()) else {
            return Err(ServiceError::InvalidArgument(violations));
        };
        let tenant = self.gate.load_tenant(&req.tenant_id).await?;
        self.check_role_for_tenant(role, &tenant.id).await?;
        let expires = (req.ttl_seconds > 0).then(|| clock::now_ms() + req.ttl_seconds * 1000);
        let issued =
            tenants::issue_key(&self.store, &tenant, role, req.live, expires, &actor).await?;
        tracing::info!(actor = %actor.key_id, tenant = %tenant.id, key_id = %issued.record.key_id, "api key issued");
        Ok(pb::IssueApiKeyResponse {
            api_key: Some(key_to_proto(&issued.record)),
            secret: issued.token,
        })
    }

    /// ListApiKeys.
    pub async fn list_api_keys(
        &self,
        credential: &Credential,
        req: &pb::ListApiKeysRequest,
    ) -> Result<pb::ListApiKeysResponse, ServiceError> {
        let (caller, _) = self.admin_caller(credential).await?;
        self.gate
            .authorize(&caller, "ListApiKeys", Target::Tenant(&req.tenant_id))
            .await?;
        self.gate.load_tenant(&req.tenant_id).await?;
        let keys = self.store.list_api_keys(&req.tenant_id).await?;
        Ok(pb::ListApiKeysResponse {
            api_keys: keys.iter().map(key_to_proto).collect(),
        })
    }

    /// RotateApiKey: a new key with the same tenant, role and label; the old
    /// one expires after the grace period. Both in one transaction.
    pub async fn rotate_api_key(
        &self,
        credential: &Credential,
        req: &pb::RotateApiKeyRequest,
    ) -> Result<pb::RotateApiKeyResponse, ServiceError> {
        let (caller, actor) = self.admin_caller(credential).await?;
        self.gate
            .authorize(&caller, "RotateApiKey", Target::Caller)
            .await?;
        if !(0..=30 * 24 * 3600).contains(&req.grace_seconds) {
            return Err(ServiceError::invalid(
                "grace_seconds",
                "out_of_range",
                "grace_seconds must be between 0 and 30 days",
            ));
        }
        let now = clock::now_ms();
        let old = self.load_key(&req.key_id).await?;
        self.check_role_for_tenant(old.role, &old.tenant_id).await?;
        if !old.usable_at(now) {
            return Err(ServiceError::refused(
                Reason::ApiKeyNotUsable,
                "only a usable key can be rotated; issue a new one instead",
            ));
        }
        // The successor gets the old key's lifetime, counted from now.
        let expires = old.expires_at_ms.map(|t| now + (t - old.created_at_ms));
        let issued = auth::issue(&old.tenant_id, old.role, old.live, now, expires)?;
        let mut replaced = old.clone();
        let end = now + req.grace_seconds * 1000;
        replaced.expires_at_ms = Some(old.expires_at_ms.map_or(end, |t| t.min(end)));
        let audit = [
            actor.entry(
                "api_key.issue",
                &old.tenant_id,
                &format!("api_key:{}", issued.record.key_id),
                String::new(),
                tenants::key_audit_json(&issued.record),
            ),
            actor.entry(
                "api_key.rotate",
                &old.tenant_id,
                &format!("api_key:{}", old.key_id),
                tenants::key_audit_json(&old),
                tenants::key_audit_json(&replaced),
            ),
        ];
        self.store
            .write_api_keys(
                &[
                    KeyWrite::Insert(&issued.record),
                    KeyWrite::Update {
                        old: &old,
                        new: &replaced,
                    },
                ],
                &audit,
            )
            .await
            .map_err(store_error)?;
        tracing::info!(actor = %actor.key_id, old = %old.key_id, new = %issued.record.key_id, "api key rotated");
        Ok(pb::RotateApiKeyResponse {
            api_key: Some(key_to_proto(&issued.record)),
            secret: issued.token,
            replaced: Some(key_to_proto(&replaced)),
        })
    }

    /// RevokeApiKey: refused from the next call on.
    pub async fn revoke_api_key(
        &self,
        credential: &Credential,
        req: &pb::RevokeApiKeyRequest,
    ) -> Result<pb::ApiKey, ServiceError> {
        let (caller, actor) = self.admin_caller(credential).await?;
        self.gate
            .authorize(&caller, "RevokeApiKey", Target::Caller)
            .await?;
        let old = self.load_key(&req.key_id).await?;
        if old.revoked_at_ms.is_some() {
            return Ok(key_to_proto(&old));
        }
        let mut revoked = old.clone();
        revoked.revoked_at_ms = Some(clock::now_ms());
        let entry = actor.entry(
            "api_key.revoke",
            &old.tenant_id,
            &format!("api_key:{}", old.key_id),
            tenants::key_audit_json(&old),
            tenants::key_audit_json(&revoked),
        );
        self.store
            .write_api_keys(
                &[KeyWrite::Update {
                    old: &old,
                    new: &revoked,
                }],
                &[entry],
            )
            .await
            .map_err(store_error)?;
        tracing::info!(actor = %actor.key_id, key_id = %old.key_id, "api key revoked");
        Ok(key_to_proto(&revoked))
    }

    /// ListAuditEvents.
    pub async fn list_audit_events(
        &self,
        credential: &Credential,
        req: &pb::ListAuditEventsRequest,
    ) -> Result<pb::ListAuditEventsResponse, ServiceError> {
        let (caller, _) = self.admin_caller(credential).await?;
        self.gate
            .authorize(&caller, "ListAuditEvents", Target::Caller)
            .await?;
        let size = page_size(req.page_size, 100, 1000)?;
        let before = match decode_token(&req.page_token)? {
            None => None,
            Some(t) => Some(t.parse::<i64>().map_err(|_| bad_token())?),
        };
        let tenant = (!req.tenant_id.is_empty()).then_some(req.tenant_id.as_str());
        let mut events = self.store.list_audit(tenant, before, size + 1).await?;
        let next = if events.len() > size as usize {
            events.truncate(size as usize);
            events
                .last()
                .map(|e| hex::encode(e.sequence.to_string()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListAuditEventsResponse {
            events: events.iter().map(audit_to_proto).collect(),
            next_page_token: next,
        })
    }
}

/// A concurrent change won: the caller re-reads and decides again.
fn store_error(e: StoreError) -> ServiceError {
    match e {
        StoreError::Stale => ServiceError::refused(
            Reason::ConcurrentModification,
            "the object changed while this call was applying its change; read it again and retry",
        ),
        e => e.into(),
    }
}

/// A new `updated_at` strictly after the one read, so the compare-and-set
/// on it tells every change apart even within one millisecond.
fn next_update_time(old: &Tenant) -> i64 {
    clock::now_ms().max(old.updated_at_ms + 1)
}

fn taken(column: &'static str) -> ServiceError {
    let (field, description) = match column {
        "name" => (
            "tenant.name",
            "tenant.name is already used by another tenant",
        ),
        "mtls_subject" => (
            "tenant.mtls_subject",
            "tenant.mtls_subject is already mapped to another tenant",
        ),
        _ => ("tenant", "the tenant conflicts with an existing one"),
    };
    ServiceError::invalid(field, "already_exists", description)
}

fn page_size(requested: i32, default: u32, max: u32) -> Result<u32, ServiceError> {
    match requested {
        0 => Ok(default),
        n if n > 0 && n as u32 <= max => Ok(n as u32),
        _ => Err(ServiceError::invalid(
            "page_size",
            "out_of_range",
            format!("page_size must be between 1 and {max} (0 for the default)"),
        )),
    }
}

fn bad_token() -> ServiceError {
    ServiceError::invalid(
        "page_token",
        "invalid_format",
        "page_token is not a token this service issued",
    )
}

fn decode_token(token: &str) -> Result<Option<String>, ServiceError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = hex::decode(token).map_err(|_| bad_token())?;
    String::from_utf8(bytes).map(Some).map_err(|_| bad_token())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TenantPolicy;

    #[test]
    fn bad_policies_are_named_field_by_field() {
        let mut v = Vec::new();
        let policy = pb::TenantPolicy {
            allowed_fields: vec!["full_name".into(), "shoe_size".into()],
            allowed_purposes: vec!["open account".into()],
            fuzzy_threshold: 101,
            limits: Some(pb::Limits {
                requests_per_second: -1,
                burst: 5,
                daily_quota_units: -10,
                monthly_quota_units: 0,
            }),
            price_plan: "Gold Plan".into(),
            ..Default::default()
        };
        policy_from_proto(Some(&policy), &mut v);
        let got: Vec<(&str, &str)> = v.iter().map(|v| (v.field, v.rule)).collect();
        assert_eq!(
            got,
            vec![
                ("tenant.policy.allowed_fields", "unknown_field"),
                ("tenant.policy.allowed_purposes", "invalid_format"),
                ("tenant.policy.fuzzy_threshold", "out_of_range"),
                ("tenant.policy.price_plan", "invalid_format"),
                ("tenant.policy.limits.requests_per_second", "negative"),
                ("tenant.policy.limits.daily_quota_units", "negative"),
            ]
        );
    }

    #[test]
    fn diff_names_each_changed_leaf() {
        let no_defaults = ekyc_limits::LimitsConfig {
            default_requests_per_second: 0,
            default_burst: 0,
            ..ekyc_limits::LimitsConfig::default()
        };
        let old = tenants::new_tenant("bank", TenantPolicy::default(), None, &no_defaults)
            .expect("tenant");
        let mut new = old.clone();
        new.policy.limits.burst = 20;
        new.name = "bank two".into();
        let d = diff(&old, &new);
        let paths: Vec<&str> = d.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(paths, vec!["name", "policy.limits.burst"]);
        assert_eq!(d[1].1, "0");
        assert_eq!(d[1].2, "20");
    }
}
