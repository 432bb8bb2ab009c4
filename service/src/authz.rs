//! Who may call what: one table of every RPC, read by every service.
//!
//! A rule names the roles that may call a method for their own tenant
//! (`own`), and the roles that, on a key of the agency tenant, may call it
//! for any tenant (`agency`). A method with neither list is public: it
//! takes no credential and is never authorised (`ListSigningKeys`); were it
//! authorised, [`decide`] would refuse every caller. The agency tenant is
//! the one `ekycd admin bootstrap` recorded; a role alone, on a bank's key,
//! never reaches another tenant.
//!
//! [`decide`] is pure; [`crate::App::authorize`] looks the agency up only
//! when the answer depends on it, so a Verify costs no store read here.

use std::sync::Arc;

use ekyc_limits::{Limiter, RateDecision};

use crate::App;
use crate::auth::{self, Caller, Credential};
use crate::clock::Clock;
use crate::error::{Reason, ServiceError};
use crate::store::{Role, Store, Tenant};
use crate::tenants;

use Role::{AgencyAdmin, Auditor, Finance, PrivacyOfficer, RegistryOperator, Verifier};

/// Who may call one RPC.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The gRPC service, as in the proto (`ekyc.v1.BillingService`).
    pub service: &'static str,
    /// The method name, as in the proto.
    pub method: &'static str,
    /// Roles that may call it for their own tenant (or, for a method that
    /// names no tenant, at all).
    pub own: &'static [Role],
    /// Roles that may call it for any tenant when the key is the agency
    /// tenant's.
    pub agency: &'static [Role],
}

const VERIFICATION: &str = "ekyc.v1.VerificationService";
const ADMIN: &str = "ekyc.v1.TenantAdminService";
const BILLING: &str = "ekyc.v1.BillingService";
const REGISTRY: &str = "ekyc.v1.RegistryService";
const AUDIT_LOG: &str = "ekyc.v1.AuditLogService";

/// Changes to tenants, keys and the guard, and the audit trail: the
/// agency's admins only.
const AGENCY_ADMIN: (&[Role], &[Role]) = (&[], &[AgencyAdmin]);
/// A tenant's own record, keys and usage: its finance keys read them, the
/// agency's admins read every tenant's.
const TENANT_READ: (&[Role], &[Role]) = (&[Finance], &[AgencyAdmin]);
/// Usage, drafts, invoices and exports: a tenant's finance keys for their
/// own tenant, the agency's admin and finance keys for every tenant.
const BILLING_READ: (&[Role], &[Role]) = (&[Finance], &[AgencyAdmin, Finance]);
/// Numbering and signing an invoice: the agency only.
const BILLING_AGENCY: (&[Role], &[Role]) = (&[], &[AgencyAdmin, Finance]);
/// Price plans are public to every finance and agency key.
const PLANS: (&[Role], &[Role]) = (&[Finance, AgencyAdmin], &[]);
/// The registry is the agency's: only its registry operators load it.
const REGISTRY_OPERATOR: (&[Role], &[Role]) = (&[], &[RegistryOperator]);
/// Signed checkpoints and consistency proofs are for anyone with a key:
/// the more parties keep checkpoints, the harder history is to rewrite.
const LOG_PUBLIC: (&[Role], &[Role]) = (
    &[
        Verifier,
        Finance,
        AgencyAdmin,
        RegistryOperator,
        Auditor,
        PrivacyOfficer,
    ],
    &[],
);
/// An entry's proof: a tenant's own keys for its own transactions, the
/// agency's auditors and admins for any.
const LOG_PROOF: (&[Role], &[Role]) = (&[Verifier, Finance], &[Auditor, AgencyAdmin]);
/// Reading the logs' entries (the decision log's, the admin audit
/// trail's) and the trail's checkpoints: the agency's auditors and admins.
const LOG_AUDIT: (&[Role], &[Role]) = (&[], &[Auditor, AgencyAdmin]);
/// A citizen's history: the agency's privacy officers only.
const PRIVACY: (&[Role], &[Role]) = (&[], &[PrivacyOfficer]);

const fn rule(
    service: &'static str,
    method: &'static str,
    (own, agency): (&'static [Role], &'static [Role]),
) -> Rule {
    Rule {
        service,
        method,
        own,
        agency,
    }
}

/// Every RPC of `ekyc.v1`. A test walks it with every role against the
/// real server, and checks that it lists exactly the proto's methods.
pub const RULES: &[Rule] = &[
    rule(VERIFICATION, "Verify", (&[Verifier], &[])),
    rule(VERIFICATION, "VerifyBatch", (&[Verifier], &[])),
    rule(VERIFICATION, "ListSigningKeys", (&[], &[])),
    rule(ADMIN, "CreateTenant", AGENCY_ADMIN),
    rule(ADMIN, "GetTenant", TENANT_READ),
    rule(ADMIN, "ListTenants", AGENCY_ADMIN),
    rule(ADMIN, "UpdateTenant", AGENCY_ADMIN),
    rule(ADMIN, "SuspendTenant", AGENCY_ADMIN),
    rule(ADMIN, "ResumeTenant", AGENCY_ADMIN),
    rule(ADMIN, "IssueApiKey", AGENCY_ADMIN),
    rule(ADMIN, "ListApiKeys", TENANT_READ),
    rule(ADMIN, "RotateApiKey", AGENCY_ADMIN),
    rule(ADMIN, "RevokeApiKey", AGENCY_ADMIN),
    rule(ADMIN, "ListAuditEvents", LOG_AUDIT),
    rule(ADMIN, "GetTenantUsage", TENANT_READ),
    rule(ADMIN, "ClearSubjectGuard", AGENCY_ADMIN),
    rule(BILLING, "GetUsageSummary", BILLING_READ),
    rule(BILLING, "ListPricePlans", PLANS),
    rule(BILLING, "GetPricePlan", PLANS),
    rule(BILLING, "CreateInvoice", BILLING_READ),
    rule(BILLING, "FinalizeInvoice", BILLING_AGENCY),
    rule(BILLING, "ListInvoices", BILLING_READ),
    rule(BILLING, "ExportInvoice", BILLING_READ),
    rule(REGISTRY, "ImportRecords", REGISTRY_OPERATOR),
    rule(REGISTRY, "PublishVersion", REGISTRY_OPERATOR),
    rule(REGISTRY, "DiscardVersion", REGISTRY_OPERATOR),
    rule(REGISTRY, "PurgePepper", REGISTRY_OPERATOR),
    rule(AUDIT_LOG, "GetCheckpoint", LOG_PUBLIC),
    rule(AUDIT_LOG, "GetCheckpointAt", LOG_PUBLIC),
    rule(AUDIT_LOG, "GetConsistencyProof", LOG_PUBLIC),
    rule(AUDIT_LOG, "GetInclusionProof", LOG_PROOF),
    rule(AUDIT_LOG, "ListLogEntries", LOG_AUDIT),
    rule(AUDIT_LOG, "ListSubjectAccesses", PRIVACY),
    rule(AUDIT_LOG, "GetAdminAuditCheckpoint", LOG_AUDIT),
];

/// The rule of `method`. Every method the services serve has one, which
/// the table test checks, so a miss is a programming error.
pub fn rule_of(method: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.method == method)
        .unwrap_or_else(|| panic!("no authorisation rule for {method}"))
}

/// Whose data a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The method names no tenant (plans, Verify: the caller's own).
    Caller,
    /// This tenant's id; `""` means every tenant, which only the agency
    /// may ask about.
    Tenant(&'a str),
}

/// Whether a caller with `role`, a key of `caller_tenant`, may call
/// `rule`'s method about `target`; `of_agency` says whether the key is
/// the agency tenant's.
pub fn decide(
    rule: &Rule,
    role: Role,
    caller_tenant: &str,
    of_agency: bool,
    target: Target<'_>,
) -> Result<(), ServiceError> {
    let method = rule.method;
    if of_agency && rule.agency.contains(&role) {
        return Ok(());
    }
    if rule.own.contains(&role) {
        return match target {
            Target::Tenant(t) if t != caller_tenant => Err(ServiceError::refused(
                Reason::TenantNotAccessible,
                format!("this credential may only call {method} for its own tenant"),
            )),
            _ => Ok(()),
        };
    }
    let message = if rule.agency.contains(&role) {
        format!("only keys of the agency tenant may call {method}")
    } else {
        format!("role {} may not call {method}", role.as_str())
    };
    Err(ServiceError::refused(Reason::RoleNotAllowed, message))
}

/// Authentication, the admin rate limit and the table, for the admin and
/// billing services: every one of their calls passes [`Gate::authenticate`]
/// then [`Gate::authorize`].
#[derive(Clone)]
pub struct Gate {
    store: Store,
    limiter: Arc<Limiter>,
    clock: Arc<Clock>,
}

impl Gate {
    /// The gate over `app`'s store, limiter and clock.
    pub fn new(app: &App) -> Gate {
        Gate {
            store: app.store.clone(),
            limiter: Arc::clone(&app.limiter),
            clock: Arc::clone(&app.clock),
        }
    }

    /// Authenticates an admin or billing call and counts it against the
    /// calling tenant's admin rate limit (`limits.admin_*`), before any
    /// store or ledger work: no key, a finance key drafting invoices in a
    /// loop say, can keep the ledger writer or the store busy.
    pub async fn authenticate(&self, credential: &Credential) -> Result<Caller, ServiceError> {
        let caller = auth::authenticate(&self.store, credential, self.clock.now_ms()).await?;
        let rate = self.limiter.config().admin_rate();
        match self
            .limiter
            .check_rate(&format!("admin:{}", caller.tenant.id), rate)
            .await?
        {
            RateDecision::Allowed { .. } => Ok(caller),
            RateDecision::Limited { retry_after } => Err(ServiceError::RateLimited { retry_after }),
        }
    }

    /// Refuses a caller the table does not let call `method` about
    /// `target`. The agency is looked up only when the answer depends on
    /// it.
    pub async fn authorize(
        &self,
        caller: &Caller,
        method: &str,
        target: Target<'_>,
    ) -> Result<(), ServiceError> {
        let rule = rule_of(method);
        let of_agency = rule.agency.contains(&caller.role)
            && self.agency_tenant_id().await?.as_deref() == Some(caller.tenant.id.as_str());
        decide(rule, caller.role, &caller.tenant.id, of_agency, target)
    }

    /// The agency tenant's id, recorded by `ekycd admin bootstrap`.
    pub async fn agency_tenant_id(&self) -> Result<Option<String>, ServiceError> {
        Ok(self.store.get_meta(tenants::META_AGENCY_TENANT).await?)
    }

    /// The tenant with this id, or `TENANT_NOT_FOUND`.
    pub async fn load_tenant(&self, tenant_id: &str) -> Result<Tenant, ServiceError> {
        self.store
            .get_tenant(tenant_id)
            .await?
            .ok_or(ServiceError::refused(
                Reason::TenantNotFound,
                "tenant not found",
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason_of(r: Result<(), ServiceError>) -> &'static str {
        match r {
            Ok(()) => "OK",
            Err(ServiceError::Refused { reason, .. }) => {
                assert_eq!(reason.code(), tonic::Code::PermissionDenied);
                reason.as_str()
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn methods_are_listed_once() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(
                RULES[i + 1..].iter().all(|o| o.method != r.method),
                "{} listed twice",
                r.method
            );
        }
    }

    #[test]
    fn own_tenant_agency_and_everyone_else() {
        let d = |method, role, tenant, of_agency, target| {
            reason_of(decide(rule_of(method), role, tenant, of_agency, target))
        };
        let (own, other, all) = (
            Target::Tenant("tn_bank"),
            Target::Tenant("tn_other"),
            Target::Tenant(""),
        );
        // A bank's finance key: its own invoices, nobody else's, no finalizing.
        assert_eq!(d("ExportInvoice", Finance, "tn_bank", false, own), "OK");
        assert_eq!(
            d("ExportInvoice", Finance, "tn_bank", false, other),
            "TENANT_NOT_ACCESSIBLE"
        );
        assert_eq!(
            d("ListInvoices", Finance, "tn_bank", false, all),
            "TENANT_NOT_ACCESSIBLE"
        );
        assert_eq!(
            d("FinalizeInvoice", Finance, "tn_bank", false, own),
            "ROLE_NOT_ALLOWED"
        );
        // The agency's finance key: every tenant's billing, but only its
        // own tenant record.
        assert_eq!(d("FinalizeInvoice", Finance, "tn_ag", true, own), "OK");
        assert_eq!(d("ListInvoices", Finance, "tn_ag", true, all), "OK");
        assert_eq!(
            d("GetTenant", Finance, "tn_ag", true, other),
            "TENANT_NOT_ACCESSIBLE"
        );
        // An admin role on a bank's key reaches nothing.
        assert_eq!(
            d(
                "CreateTenant",
                AgencyAdmin,
                "tn_bank",
                false,
                Target::Caller
            ),
            "ROLE_NOT_ALLOWED"
        );
        assert_eq!(
            d("GetTenant", AgencyAdmin, "tn_bank", false, own),
            "ROLE_NOT_ALLOWED"
        );
        assert_eq!(
            d("CreateTenant", AgencyAdmin, "tn_ag", true, Target::Caller),
            "OK"
        );
        // Verifier and registry-operator keys call no admin or billing method.
        for role in [Verifier, RegistryOperator] {
            assert_eq!(d("GetTenant", role, "tn_ag", true, own), "ROLE_NOT_ALLOWED");
            assert_eq!(
                d("ListPricePlans", role, "tn_ag", true, Target::Caller),
                "ROLE_NOT_ALLOWED"
            );
        }
        assert_eq!(
            d("Verify", Verifier, "tn_bank", false, Target::Caller),
            "OK"
        );
        assert_eq!(
            d("Verify", Finance, "tn_bank", false, Target::Caller),
            "ROLE_NOT_ALLOWED"
        );
    }
}
