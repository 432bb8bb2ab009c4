//! The service's own data: hashed records, tenants and their policies,
//! API keys, audit entries and signing keys, as the stores keep them and
//! the services use them. No citizen's raw data has a place here.

use ekyc_domain::keys::Locator;
use ekyc_domain::record::RecordTags;
use serde::{Deserialize, Serialize};

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
    /// Reads the decision log: entries, proofs, checkpoints (the agency).
    Auditor,
    /// Lists the decisions about a citizen, for the citizen (the agency).
    PrivacyOfficer,
}

impl Role {
    /// Stable lowercase name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Verifier => "verifier",
            Role::AgencyAdmin => "agency_admin",
            Role::Finance => "finance",
            Role::RegistryOperator => "registry_operator",
            Role::Auditor => "auditor",
            Role::PrivacyOfficer => "privacy_officer",
        }
    }

    /// The role with this stored name.
    pub fn parse(s: &str) -> Option<Role> {
        [
            Role::Verifier,
            Role::AgencyAdmin,
            Role::Finance,
            Role::RegistryOperator,
            Role::Auditor,
            Role::PrivacyOfficer,
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
    /// What it signs: [`PURPOSE_ATTESTATION`] or [`PURPOSE_CHECKPOINT`].
    pub purpose: String,
}

/// A key that signs answers (and invoices).
pub const PURPOSE_ATTESTATION: &str = "attestation";
/// A key that signs the decision log's checkpoints.
pub const PURPOSE_CHECKPOINT: &str = "checkpoint";
