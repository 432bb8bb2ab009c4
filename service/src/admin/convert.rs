//! The store's types as the wire's and back.

use ekyc_proto::v1 as pb;

use crate::clock;
use crate::store::{ApiKeyRecord, AuditEvent, Limits, Role, Tenant, TenantStatus};

/// The store's role for a proto role value.
pub fn role_from_proto(r: i32) -> Option<Role> {
    match pb::Role::try_from(r).ok()? {
        pb::Role::Verifier => Some(Role::Verifier),
        pb::Role::AgencyAdmin => Some(Role::AgencyAdmin),
        pb::Role::Finance => Some(Role::Finance),
        pb::Role::RegistryOperator => Some(Role::RegistryOperator),
        pb::Role::Auditor => Some(Role::Auditor),
        pb::Role::PrivacyOfficer => Some(Role::PrivacyOfficer),
        pb::Role::Unspecified => None,
    }
}

pub(super) fn role_to_proto(r: Role) -> pb::Role {
    match r {
        Role::Verifier => pb::Role::Verifier,
        Role::AgencyAdmin => pb::Role::AgencyAdmin,
        Role::Finance => pb::Role::Finance,
        Role::RegistryOperator => pb::Role::RegistryOperator,
        Role::Auditor => pb::Role::Auditor,
        Role::PrivacyOfficer => pb::Role::PrivacyOfficer,
    }
}

/// The wire form of a tenant.
pub fn tenant_to_proto(t: &Tenant) -> pb::Tenant {
    let p = &t.policy;
    pb::Tenant {
        tenant_id: t.id.clone(),
        name: t.name.clone(),
        status: match t.status {
            TenantStatus::Active => pb::TenantStatus::Active,
            TenantStatus::Suspended => pb::TenantStatus::Suspended,
        } as i32,
        policy: Some(pb::TenantPolicy {
            allowed_fields: p.allowed_fields.clone(),
            allowed_purposes: p.allowed_purposes.clone(),
            fuzzy_matching: p.fuzzy,
            fuzzy_threshold: i64::from(p.fuzzy_threshold),
            disclose_not_found: p.disclose_not_found,
            accept_folded: p.accept_folded,
            limits: Some(limits_to_proto(&p.limits)),
            price_plan: p.price_plan.clone(),
            time_zone: p.time_zone.clone(),
        }),
        mtls_subject: t.mtls_subject.clone().unwrap_or_default(),
        create_time: Some(clock::timestamp(t.created_at_ms)),
        update_time: Some(clock::timestamp(t.updated_at_ms)),
        legal: Some(pb::LegalParticulars {
            legal_name: t.legal.legal_name.clone(),
            address: t.legal.address.clone(),
            tax_code: t.legal.tax_code.clone(),
        }),
    }
}

pub(super) fn limits_to_proto(l: &Limits) -> pb::Limits {
    pb::Limits {
        requests_per_second: l.requests_per_second as i64,
        burst: l.burst as i64,
        daily_quota_units: l.daily_quota_units as i64,
        monthly_quota_units: l.monthly_quota_units as i64,
    }
}

pub(super) fn key_to_proto(k: &ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        key_id: k.key_id.clone(),
        tenant_id: k.tenant_id.clone(),
        role: role_to_proto(k.role) as i32,
        create_time: Some(clock::timestamp(k.created_at_ms)),
        expire_time: k.expires_at_ms.map(clock::timestamp),
        revoke_time: k.revoked_at_ms.map(clock::timestamp),
        last_used_time: k.last_used_at_ms.map(clock::timestamp),
        usable: k.usable_at(clock::now_ms()),
    }
}

pub(super) fn audit_to_proto(e: &AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        sequence: e.sequence,
        time: Some(clock::timestamp(e.entry.at_ms)),
        actor_key_id: e.entry.actor_key_id.clone(),
        actor_tenant_id: e.entry.actor_tenant_id.clone(),
        action: e.entry.action.clone(),
        tenant_id: e.entry.tenant_id.clone(),
        field: e.entry.field.clone(),
        old_value: e.entry.old_value.clone(),
        new_value: e.entry.new_value.clone(),
        chain_hash: hex::encode(e.chain_hash),
    }
}
