//! API keys: issuing, parsing and authenticating.
//!
//! A key reads `ekyc_<env>_<key id>_<secret>`: `env` is `live` or `test`,
//! the key id is 16 hex digits (public, the lookup key) and the secret is
//! 64 hex digits (32 random bytes). Only SHA-256 of the secret is stored,
//! compared in constant time; the whole key is shown once, when issued.
//! The tenant always comes from the key, never from a request.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Reason, ServiceError};
use crate::secrets::{SecretError, random_bytes};
use crate::store::{ApiKeyRecord, Role, Store, Tenant, TenantStatus};

/// How stale a key's last-used time may get before a call refreshes it.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// Prefix of every key, so secret scanners can find leaked ones.
pub const KEY_PREFIX: &str = "ekyc_";

/// What a call presented to prove who it is. It lives for one call: not
/// `Clone`, wiped when dropped, and its `Debug` never shows the key, so no
/// log line or panic message can carry one by accident.
#[derive(Default)]
pub struct Credential {
    /// The API key from the metadata, if any. Never logged.
    pub api_key: Option<Zeroizing<String>>,
    /// Subject CN of a verified client certificate (mutual TLS), if any.
    pub client_cert_subject: Option<String>,
}

impl Credential {
    /// A credential with only an API key.
    pub fn api_key(key: Option<&str>) -> Credential {
        Credential {
            api_key: key.map(|k| Zeroizing::new(k.to_string())),
            client_cert_subject: None,
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("client_cert_subject", &self.client_cert_subject)
            .finish()
    }
}

/// Who is calling, as established from the credential.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The tenant the key belongs to.
    pub tenant: Tenant,
    /// The key's public id (safe to log).
    pub key_id: String,
    /// The key's role.
    pub role: Role,
}

/// A freshly issued key: `token` is shown once and never stored.
pub struct IssuedKey {
    /// The full key to hand to the tenant.
    pub token: String,
    /// What is stored.
    pub record: ApiKeyRecord,
}

/// Creates a new key for `tenant_id`; the caller stores `record`.
pub fn issue(
    tenant_id: &str,
    role: Role,
    live: bool,
    now_ms: i64,
    expires_at_ms: Option<i64>,
) -> Result<IssuedKey, SecretError> {
    let key_id = hex::encode(random_bytes::<8>()?);
    let secret = random_bytes::<32>()?;
    let env = if live { "live" } else { "test" };
    Ok(IssuedKey {
        token: format!("{KEY_PREFIX}{env}_{key_id}_{}", hex::encode(secret)),
        record: ApiKeyRecord {
            key_id,
            tenant_id: tenant_id.to_string(),
            role,
            secret_sha256: Sha256::digest(secret).into(),
            created_at_ms: now_ms,
            expires_at_ms,
            revoked_at_ms: None,
            last_used_at_ms: None,
            live,
        },
    })
}

/// Splits a key into its public id and secret bytes.
pub fn parse(token: &str) -> Result<(String, [u8; 32]), ServiceError> {
    let malformed = || {
        ServiceError::refused(
            Reason::ApiKeyMalformed,
            "api key is malformed (expected ekyc_<env>_<16 hex>_<64 hex>)",
        )
    };
    let rest = token.strip_prefix(KEY_PREFIX).ok_or_else(malformed)?;
    let mut parts = rest.split('_');
    let (Some(env), Some(key_id), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let lower_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !matches!(env, "live" | "test") || !lower_hex(key_id, 16) || !lower_hex(secret, 64) {
        return Err(malformed());
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(secret, &mut bytes).map_err(|_| malformed())?;
    Ok((key_id.to_string(), bytes))
}

/// Establishes the caller from the presented credential. With an API key,
/// the key decides (it names a role), and a client certificate sent along
/// must not map to another tenant; a certificate alone authenticates as a
/// verifier of the tenant whose `mtls_subject` it bears.
pub async fn authenticate(
    store: &Store,
    credential: &Credential,
    now_ms: i64,
) -> Result<Caller, ServiceError> {
    let caller = authenticate_credential(store, credential, now_ms).await?;
    // The call's span (stack.rs) names the tenant from here on.
    tracing::Span::current().record("tenant", caller.tenant.id.as_str());
    Ok(caller)
}

/// [`authenticate`] without naming the tenant on the current span: for a
/// stream that checks its credential again before each item, whose span
/// named the tenant when it opened (recording a field again appends it,
/// so a span recorded per item would grow with the stream).
pub async fn recheck(
    store: &Store,
    credential: &Credential,
    now_ms: i64,
) -> Result<Caller, ServiceError> {
    authenticate_credential(store, credential, now_ms).await
}

async fn authenticate_credential(
    store: &Store,
    credential: &Credential,
    now_ms: i64,
) -> Result<Caller, ServiceError> {
    let Some(token) = credential.api_key.as_deref().map(String::as_str) else {
        return match &credential.client_cert_subject {
            Some(subject) => authenticate_certificate(store, subject).await,
            None => Err(ServiceError::refused(
                Reason::ApiKeyMissing,
                "an api key is required in the authorization (Bearer) or x-api-key metadata",
            )),
        };
    };
    let (key_id, secret) = parse(token)?;
    let invalid = || ServiceError::refused(Reason::ApiKeyInvalid, "api key is not valid");
    let found = store.get_api_key_with_tenant(&key_id).await?;
    let digest: [u8; 32] = Sha256::digest(secret).into();
    let Some((record, tenant)) = found else {
        // Same work as a known key, so a probe cannot time which ids exist.
        let _ = digest.ct_eq(&[0u8; 32]);
        return Err(invalid());
    };
    if !bool::from(digest.ct_eq(&record.secret_sha256)) {
        return Err(invalid());
    }
    if record.revoked_at_ms.is_some() {
        return Err(ServiceError::refused(
            Reason::ApiKeyRevoked,
            "api key has been revoked",
        ));
    }
    if record.expires_at_ms.is_some_and(|t| t <= now_ms) {
        return Err(ServiceError::refused(
            Reason::ApiKeyExpired,
            "api key has expired",
        ));
    }
    let tenant = tenant.ok_or_else(invalid)?;
    if tenant.status == TenantStatus::Suspended {
        return Err(ServiceError::refused(
            Reason::TenantSuspended,
            "tenant is suspended",
        ));
    }
    // Last-used time, to within a minute: one write per key per minute at
    // most, so busy keys do not turn every call into a write.
    if record
        .last_used_at_ms
        .is_none_or(|t| now_ms - t >= LAST_USED_RESOLUTION_MS)
        && let Err(e) = store.touch_api_key(&record.key_id, now_ms).await
    {
        tracing::warn!(key_id = %record.key_id, error = %e, "cannot record key use");
    }
    // A client certificate sent with a key must not speak for another
    // tenant: two credentials that disagree are refused, not arbitrated.
    if let Some(subject) = &credential.client_cert_subject
        && let Some(other) = store.find_tenant_by_mtls_subject(subject).await?
        && other.id != tenant.id
    {
        return Err(ServiceError::refused(
            Reason::CredentialsDisagree,
            "the api key and the client certificate belong to different tenants",
        ));
    }
    Ok(Caller {
        tenant,
        key_id: record.key_id,
        role: record.role,
    })
}

async fn authenticate_certificate(store: &Store, subject: &str) -> Result<Caller, ServiceError> {
    let tenant = store
        .find_tenant_by_mtls_subject(subject)
        .await?
        .ok_or(ServiceError::refused(
            Reason::ClientCertUnknown,
            "the client certificate's subject is not mapped to a tenant",
        ))?;
    if tenant.status == TenantStatus::Suspended {
        return Err(ServiceError::refused(
            Reason::TenantSuspended,
            "tenant is suspended",
        ));
    }
    Ok(Caller {
        key_id: format!("mtls:{}", tenant.id),
        tenant,
        role: Role::Verifier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_parse_back() {
        let k = issue("t1", Role::Verifier, true, 0, None).expect("issue");
        assert!(k.token.starts_with("ekyc_live_"));
        let (id, secret) = parse(&k.token).expect("parse");
        assert_eq!(id, k.record.key_id);
        let digest: [u8; 32] = Sha256::digest(secret).into();
        assert_eq!(digest, k.record.secret_sha256);
        assert!(!format!("{:?}", k.record).contains(&k.token[27..]));
    }

    /// Compiles only while the type is not `Clone` (the trick behind
    /// static_assertions' `assert_not_impl_any!`): for a `Clone` type both
    /// impls apply and the path is ambiguous. It must name a concrete
    /// type: inside a generic function the second impl never applies.
    macro_rules! assert_not_clone {
        ($t:ty) => {{
            trait AmbiguousIfClone<A> {
                fn check() {}
            }
            impl<T: ?Sized> AmbiguousIfClone<()> for T {}
            #[allow(dead_code, reason = "only named in the impl below")]
            struct Cloned;
            impl<T: ?Sized + Clone> AmbiguousIfClone<Cloned> for T {}
            <$t as AmbiguousIfClone<_>>::check();
        }};
    }

    #[test]
    fn secrets_cannot_be_printed_or_copied_by_accident() {
        let k = issue("t1", Role::Verifier, true, 0, None).expect("issue");
        let credential = Credential {
            api_key: Some(Zeroizing::new(k.token.clone())),
            client_cert_subject: Some("bank-gw".into()),
        };
        let shown = format!("{credential:?}");
        assert!(!shown.contains(&k.token), "{shown}");
        assert!(!shown.contains(&k.token[27..]), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("bank-gw"),
            "{shown}"
        );
        assert_not_clone!(Credential);
        assert_not_clone!(ekyc_domain::keys::Pepper);
        assert_not_clone!(crate::secrets::Signer);
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "ekyc_",
            "ekyc_live_0123456789abcdef",
            "ekyc_prod_0123456789abcdef_00",
            "sk_live_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
            "ekyc_live_0123456789ABCDEF_0000000000000000000000000000000000000000000000000000000000000000",
            "ekyc_live_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000_x",
        ] {
            assert!(
                matches!(
                    parse(bad),
                    Err(ServiceError::Refused {
                        reason: Reason::ApiKeyMalformed,
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }
}
