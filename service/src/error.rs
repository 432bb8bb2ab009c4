//! The service's error type and the one place that turns it into a gRPC
//! status with `google.rpc` details.
//!
//! Every message here is lowercase, names the field and the rule, and never
//! carries a request value: callers build errors from rules, not from input.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ekyc_domain::normalize::Violation;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "ekyc.v1";

/// Declares [`Reason`] with each reason's wire name and gRPC code, once.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal => $code:ident,)*) => {
        /// Every stable `ErrorInfo.reason` a client may switch on, each
        /// paired here, and only here, with its gRPC code: no code path can
        /// send `NOT_FOUND` with `RATE_LIMITED`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &[Reason] = &[$(Reason::$variant),*];

            /// The wire name (`ErrorInfo.reason`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)*
                }
            }

            /// The gRPC status code every error with this reason carries.
            pub fn code(self) -> Code {
                match self {
                    $(Reason::$variant => Code::$code,)*
                }
            }
        }
    };
}

reasons! {
    /// One or more request fields are invalid (see `BadRequest`).
    InvalidRequest = "INVALID_REQUEST" => InvalidArgument,
    /// Fields are well formed but outside their range: a date in the future, an expiry
    /// before the issue date (see `BadRequest`).
    ValueOutOfRange = "VALUE_OUT_OF_RANGE" => OutOfRange,
    /// A request message is larger than the method's limit; it was refused before being
    /// read (see `ErrorInfo.metadata["limit_bytes"]`).
    MessageTooLarge = "MESSAGE_TOO_LARGE" => ResourceExhausted,
    /// The server holds as many partly received messages as it allows; retry shortly.
    RequestBuffersFull = "REQUEST_BUFFERS_FULL" => ResourceExhausted,
    /// No API key in the request metadata.
    ApiKeyMissing = "API_KEY_MISSING" => Unauthenticated,
    /// The API key is not shaped like one of ours.
    ApiKeyMalformed = "API_KEY_MALFORMED" => Unauthenticated,
    /// The API key is unknown or its secret is wrong.
    ApiKeyInvalid = "API_KEY_INVALID" => Unauthenticated,
    /// The API key was revoked.
    ApiKeyRevoked = "API_KEY_REVOKED" => Unauthenticated,
    /// The API key has expired.
    ApiKeyExpired = "API_KEY_EXPIRED" => Unauthenticated,
    /// A client certificate was presented but maps to no tenant.
    ClientCertUnknown = "CLIENT_CERT_UNKNOWN" => Unauthenticated,
    /// The tenant is suspended.
    TenantSuspended = "TENANT_SUSPENDED" => PermissionDenied,
    /// The credential's role may not call this method.
    RoleNotAllowed = "ROLE_NOT_ALLOWED" => PermissionDenied,
    /// The credential may not see or change this tenant.
    TenantNotAccessible = "TENANT_NOT_ACCESSIBLE" => PermissionDenied,
    /// The tenant's policy does not allow a requested claim field.
    FieldNotAllowed = "FIELD_NOT_ALLOWED" => PermissionDenied,
    /// The tenant's policy does not allow the declared purpose.
    PurposeNotAllowed = "PURPOSE_NOT_ALLOWED" => PermissionDenied,
    /// The API key and the client certificate name different tenants.
    CredentialsDisagree = "CREDENTIALS_DISAGREE" => PermissionDenied,
    /// No such tenant.
    TenantNotFound = "TENANT_NOT_FOUND" => NotFound,
    /// No such API key.
    ApiKeyNotFound = "API_KEY_NOT_FOUND" => NotFound,
    /// No price plan of the id the call names.
    PricePlanNotFound = "PRICE_PLAN_NOT_FOUND" => NotFound,
    /// The tenant's price plan does not exist, so its month cannot be priced.
    PricePlanMissing = "PRICE_PLAN_MISSING" => FailedPrecondition,
    /// No such invoice.
    InvoiceNotFound = "INVOICE_NOT_FOUND" => NotFound,
    /// No decision with this transaction id is in the decision log.
    TransactionNotLogged = "TRANSACTION_NOT_LOGGED" => NotFound,
    /// No checkpoint was signed for the tree size asked for.
    CheckpointNotFound = "CHECKPOINT_NOT_FOUND" => NotFound,
    /// Another import is building the next registry version.
    ImportInProgress = "IMPORT_IN_PROGRESS" => FailedPrecondition,
    /// The pepper version to purge is one the service derives with (the
    /// registry's current version's, or the one imports use).
    PepperInUse = "PEPPER_IN_USE" => FailedPrecondition,
    /// A built version waits for its publish or discard, so no other import may start.
    VersionStaged = "VERSION_STAGED" => FailedPrecondition,
    /// A publish or discard named a version that is not the staged one.
    VersionNotStaged = "VERSION_NOT_STAGED" => FailedPrecondition,
    /// An import would derive with a pepper older than the registry's current one.
    PepperBehind = "PEPPER_BEHIND" => FailedPrecondition,
    /// An import stream ended before its message marked last.
    ImportIncomplete = "IMPORT_INCOMPLETE" => Aborted,
    /// An import stream carries more rows than one import holds.
    ImportTooLarge = "IMPORT_TOO_LARGE" => ResourceExhausted,
    /// An admin may not suspend the tenant its own credential belongs to.
    CannotSuspendOwnTenant = "CANNOT_SUSPEND_OWN_TENANT" => FailedPrecondition,
    /// Only a usable key can be rotated: this one is revoked or expired.
    ApiKeyNotUsable = "API_KEY_NOT_USABLE" => FailedPrecondition,
    /// The billing month has not ended, so it cannot be finalized.
    PeriodNotOver = "PERIOD_NOT_OVER" => FailedPrecondition,
    /// The month's invoice is finalized and cannot change.
    InvoiceFinalized = "INVOICE_FINALIZED" => FailedPrecondition,
    /// The object changed concurrently; re-read and retry.
    ConcurrentModification = "CONCURRENT_MODIFICATION" => Aborted,
    /// The request id was already used for a different request.
    RequestIdReused = "REQUEST_ID_REUSED" => AlreadyExists,
    /// The request id was answered longer ago than the retry window.
    RequestIdExpired = "REQUEST_ID_EXPIRED" => AlreadyExists,
    /// Every hashing worker is busy and the queue is full.
    HashingOverloaded = "HASHING_OVERLOADED" => ResourceExhausted,
    /// The tenant's request rate limit is exhausted (see `RetryInfo`).
    RateLimited = "RATE_LIMITED" => ResourceExhausted,
    /// The tenant's daily or monthly quota is used up (see `QuotaFailure`).
    QuotaExceeded = "QUOTA_EXCEEDED" => ResourceExhausted,
    /// Too many unsuccessful questions about this subject in the guard's window, from any
    /// tenant.
    SubjectGuardTripped = "SUBJECT_GUARD_TRIPPED" => ResourceExhausted,
    /// Other questions about this subject are still being answered and, were they all to
    /// fail, would use up its allowance; retry shortly.
    SubjectBusy = "SUBJECT_BUSY" => ResourceExhausted,
    /// The call's deadline passed before it could be answered.
    DeadlinePassed = "DEADLINE_PASSED" => DeadlineExceeded,
    /// The server is shutting down.
    ShuttingDown = "SHUTTING_DOWN" => Unavailable,
    /// A VerifyBatch stream reached its maximum lifetime after answering every item it read;
    /// send the unanswered items on a new stream.
    StreamLifetimeReached = "STREAM_LIFETIME_REACHED" => Unavailable,
    /// The usage ledger cannot be written, so nothing can be answered.
    LedgerUnavailable = "LEDGER_UNAVAILABLE" => Unavailable,
    /// The database holding the registry, tenants and keys cannot be reached (or no
    /// connection is free in time), so nothing can be checked or answered.
    StoreUnavailable = "STORE_UNAVAILABLE" => Unavailable,
    /// The registry's current version was built with a pepper this replica does not hold
    /// (a rotation reached it before its configuration did); another replica may answer.
    PepperNotHeld = "PEPPER_NOT_HELD" => Unavailable,
    /// A limit could not be checked (its shared store is unreachable) and its policy is to
    /// refuse.
    LimitsUnavailable = "LIMITS_UNAVAILABLE" => Unavailable,
    /// A log (the decision log, the admin audit trail) no longer extends
    /// the checkpoint the service signed before: entries were cut off or
    /// rewritten under it. The service signs nothing more until an
    /// operator has looked (docs/runbooks.md).
    LogInconsistent = "LOG_INCONSISTENT" => DataLoss,
    /// An internal failure; details are in the server log, not here.
    Internal = "INTERNAL" => Internal,
}

/// Response metadata carrying what is left of the tenant's allowance.
pub mod allowance {
    /// Requests that could follow at once under the rate limit.
    pub const RATE_REMAINING: &str = "x-ratelimit-remaining";
    /// Units left in today's quota.
    pub const DAILY_REMAINING: &str = "x-quota-daily-remaining";
    /// Units left in this month's quota.
    pub const MONTHLY_REMAINING: &str = "x-quota-monthly-remaining";
}

/// Everything that can go wrong while answering a call.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is invalid; one violation per bad field.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<Violation>),
    /// Well-formed fields outside their range; one violation per field.
    #[error("request out of range: {}", describe(.0))]
    OutOfRange(Vec<Violation>),
    /// A request message is larger than its method allows.
    #[error("the request message is larger than {limit} bytes")]
    MessageTooLarge {
        /// The method's limit, in bytes.
        limit: usize,
    },
    /// Too many partly received messages are held server-wide.
    #[error("the server is receiving too many large messages, retry shortly")]
    RequestBuffersFull,
    /// A refusal that carries nothing but its reason and an explanation
    /// (authentication, authorisation, missing objects, states that do
    /// not allow the call, races); its code comes from the reason.
    #[error("{message}")]
    Refused {
        /// Stable reason, which decides the code.
        reason: Reason,
        /// Lowercase explanation, never a request value.
        message: Cow<'static, str>,
    },
    /// The usage ledger could not record the call, so it is not answered.
    #[error("the usage ledger is unavailable, retry later with the same request_id")]
    LedgerUnavailable,
    /// The store could not be reached; the call fails closed.
    #[error("the registry database is unavailable, retry later with the same request_id")]
    StoreUnavailable,
    /// The registry moved to a pepper this replica does not hold.
    #[error(
        "this replica does not hold the pepper of the registry's current version, retry later with the same request_id"
    )]
    PepperNotHeld,
    /// The hashing pool is saturated; retry after the given delay.
    #[error("hashing capacity is exhausted, retry later")]
    Overloaded {
        /// Suggested delay before retrying.
        retry_after: Duration,
    },
    /// The tenant's rate limit refused the call.
    #[error("the tenant's rate limit is exhausted, retry later")]
    RateLimited {
        /// When one more request fits.
        retry_after: Duration,
    },
    /// The call would pass one of the tenant's quotas.
    #[error("the tenant's {period} quota is used up")]
    QuotaExceeded {
        /// `daily` or `monthly`.
        period: &'static str,
        /// The period (`2026-11-29` or `2026-11`) in the tenant's zone.
        label: String,
        /// The tenant's zone.
        time_zone: String,
        /// The quota, in units.
        limit: u64,
        /// When the next period starts (RFC 3339, UTC).
        resets_at: String,
    },
    /// The subject guard refused the call.
    #[error("too many unsuccessful verifications of this subject; try again later")]
    SubjectGuardTripped {
        /// Until the guard's window ends.
        retry_after: Duration,
    },
    /// Questions about this subject in flight fill its guard allowance.
    #[error("other verifications of this subject are in progress; retry shortly")]
    SubjectBusy {
        /// About when those will have been answered.
        retry_after: Duration,
    },
    /// A limit could not be checked and fails closed.
    #[error("the {limit} limit cannot be checked right now, retry later")]
    LimitsUnavailable {
        /// Which limit.
        limit: &'static str,
    },
    /// The deadline passed before the expensive work started.
    #[error("the call's deadline passed before it could be answered")]
    DeadlineExceeded,
    /// The service is going away.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A bug or a backing store failure. What failed goes to the log with
    /// its source chain, never to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.description.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<ekyc_input::request::Rejected> for ServiceError {
    fn from(r: ekyc_input::request::Rejected) -> Self {
        match r {
            ekyc_input::request::Rejected::Invalid(v) => ServiceError::InvalidArgument(v),
            ekyc_input::request::Rejected::OutOfRange(v) => ServiceError::OutOfRange(v),
        }
    }
}

impl ServiceError {
    /// One violation of a request field.
    pub fn invalid(
        field: &'static str,
        rule: &'static str,
        description: impl Into<String>,
    ) -> Self {
        ServiceError::InvalidArgument(vec![Violation {
            field,
            rule,
            description: description.into(),
        }])
    }

    /// A refusal with `reason` and an explanation.
    pub fn refused(reason: Reason, message: impl Into<Cow<'static, str>>) -> Self {
        ServiceError::Refused {
            reason,
            message: message.into(),
        }
    }

    /// The stable reason of this error, which decides its gRPC code.
    pub fn reason(&self) -> Reason {
        match self {
            ServiceError::InvalidArgument(_) => Reason::InvalidRequest,
            ServiceError::OutOfRange(_) => Reason::ValueOutOfRange,
            ServiceError::MessageTooLarge { .. } => Reason::MessageTooLarge,
            ServiceError::RequestBuffersFull => Reason::RequestBuffersFull,
            ServiceError::Refused { reason, .. } => *reason,
            ServiceError::LedgerUnavailable => Reason::LedgerUnavailable,
            ServiceError::StoreUnavailable => Reason::StoreUnavailable,
            ServiceError::PepperNotHeld => Reason::PepperNotHeld,
            ServiceError::Overloaded { .. } => Reason::HashingOverloaded,
            ServiceError::RateLimited { .. } => Reason::RateLimited,
            ServiceError::QuotaExceeded { .. } => Reason::QuotaExceeded,
            ServiceError::SubjectGuardTripped { .. } => Reason::SubjectGuardTripped,
            ServiceError::SubjectBusy { .. } => Reason::SubjectBusy,
            ServiceError::LimitsUnavailable { .. } => Reason::LimitsUnavailable,
            ServiceError::DeadlineExceeded => Reason::DeadlinePassed,
            ServiceError::ShuttingDown => Reason::ShuttingDown,
            ServiceError::Internal(_) => Reason::Internal,
        }
    }

    /// Wraps an internal failure that has no error type of its own.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ServiceError::Internal(e.to_string().into())
    }
}

/// Failures of the parts below the service are internal: the caller gets
/// `INTERNAL`, the log gets the chain.
macro_rules! internal_from {
    ($($source:ty),* $(,)?) => {
        $(impl From<$source> for ServiceError {
            fn from(e: $source) -> Self {
                ServiceError::Internal(Box::new(e))
            }
        })*
    };
}

internal_from!(
    crate::tenants::TenantError,
    crate::secrets::SecretError,
    jiff::Error,
    ekyc_domain::attestation::AttestationError,
);

/// A ledger that cannot be reached (or is closing) fails closed with
/// `LEDGER_UNAVAILABLE`, so a client retries; anything else is internal.
/// Billing maps its invoice refusals itself (`billing.rs`).
impl From<ekyc_billing::LedgerError> for ServiceError {
    fn from(e: ekyc_billing::LedgerError) -> Self {
        use ekyc_billing::LedgerError;
        match e {
            LedgerError::Database(_) | LedgerError::Closed => {
                tracing::warn!(error = %Chain(&e), "ledger unavailable");
                ServiceError::LedgerUnavailable
            }
            other => ServiceError::Internal(Box::new(other)),
        }
    }
}

/// A store that cannot be reached fails closed with `UNAVAILABLE`, so a
/// client retries (with the same request id) once the database is back;
/// the registry states that refuse an operator's call are refusals; any
/// other store failure is internal.
impl From<crate::store::StoreError> for ServiceError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        let state = match &e {
            StoreError::ImportInProgress { .. } => Some(Reason::ImportInProgress),
            StoreError::PepperBehind { .. } => Some(Reason::PepperBehind),
            StoreError::PepperInUse(_) => Some(Reason::PepperInUse),
            StoreError::VersionStaged { .. } => Some(Reason::VersionStaged),
            StoreError::NotStaged { .. } => Some(Reason::VersionNotStaged),
            _ => None,
        };
        if let Some(reason) = state {
            // Their messages name versions and keys, never a value.
            ServiceError::refused(reason, e.to_string())
        } else if e.is_unavailable() {
            tracing::warn!(error = %Chain(&e), "store unavailable");
            ServiceError::StoreUnavailable
        } else {
            ServiceError::Internal(Box::new(e))
        }
    }
}

/// A limit that cannot be checked and fails closed.
impl From<ekyc_limits::Unavailable> for ServiceError {
    fn from(e: ekyc_limits::Unavailable) -> Self {
        ServiceError::LimitsUnavailable {
            limit: e.limit.name(),
        }
    }
}

/// An error and every source under it, for the log.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// Errors answered since the process started, by reason (indexed by the
/// enum's declaration order): `ekyc_errors_total`. Counted here, where
/// every error becomes a status, so no path can answer one uncounted.
/// Process-wide, like the process it describes.
static ANSWERED: std::sync::LazyLock<Box<[AtomicU64]>> =
    std::sync::LazyLock::new(|| Reason::ALL.iter().map(|_| AtomicU64::new(0)).collect());

/// How many errors with each reason this process has answered.
pub fn answered_errors() -> impl Iterator<Item = (Reason, u64)> {
    Reason::ALL
        .iter()
        .map(|r| (*r, ANSWERED[*r as usize].load(Ordering::Relaxed)))
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Status {
        let reason = err.reason();
        let code = reason.code();
        ANSWERED[reason as usize].fetch_add(1, Ordering::Relaxed);
        if let ServiceError::Internal(source) = &err {
            // What failed may name a file or a database error; it goes to
            // the log, never to the client.
            tracing::error!(error = %Chain(source.as_ref()), "internal error");
        }
        // The message is the error's Display, written once in the enum.
        let message = err.to_string();
        let mut details = ErrorDetails::new();
        let mut metadata = HashMap::new();
        // Whether clients that retry on their own (gRFC A6) should: not
        // when the retry cannot succeed before the window ends.
        let mut pushback_after = None;
        // The allowance header a limit refusal sets to zero.
        let mut exhausted = None;
        match err {
            ServiceError::InvalidArgument(violations) | ServiceError::OutOfRange(violations) => {
                details.set_bad_request(
                    violations
                        .into_iter()
                        .map(|v| {
                            let mut fv = FieldViolation::new(field_path(v.field), v.description);
                            fv.reason = v.rule.to_ascii_uppercase();
                            fv
                        })
                        .collect::<Vec<_>>(),
                );
            }
            ServiceError::MessageTooLarge { limit } => {
                metadata.insert("limit_bytes".to_string(), limit.to_string());
            }
            ServiceError::RequestBuffersFull => {
                let after = Duration::from_secs(1);
                details.set_retry_info(Some(after));
                pushback_after = Some(after);
            }
            ServiceError::Overloaded { retry_after }
            | ServiceError::SubjectBusy { retry_after } => {
                details.set_retry_info(Some(retry_after));
                pushback_after = Some(retry_after);
            }
            ServiceError::RateLimited { retry_after } => {
                details.set_retry_info(Some(retry_after));
                pushback_after = Some(retry_after);
                exhausted = Some(allowance::RATE_REMAINING);
            }
            ServiceError::SubjectGuardTripped { retry_after } => {
                details.set_retry_info(Some(retry_after));
            }
            ServiceError::LedgerUnavailable
            | ServiceError::StoreUnavailable
            | ServiceError::PepperNotHeld
            | ServiceError::LimitsUnavailable { .. }
            | ServiceError::ShuttingDown => {
                details.set_retry_info(Some(Duration::from_secs(1)));
            }
            ServiceError::QuotaExceeded {
                period,
                ref label,
                ref time_zone,
                limit,
                ref resets_at,
            } => {
                metadata.extend([
                    ("period".to_string(), period.to_string()),
                    ("period_label".to_string(), label.clone()),
                    ("time_zone".to_string(), time_zone.clone()),
                    ("resets_at".to_string(), resets_at.clone()),
                ]);
                details.add_quota_failure_violation(
                    format!("tenant.policy.limits.{period}_quota_units"),
                    format!(
                        "the {period} quota of {limit} units for {label} ({time_zone}) is used up; \
                         it resets at {resets_at}"
                    ),
                );
                exhausted = Some(if period == "daily" {
                    allowance::DAILY_REMAINING
                } else {
                    allowance::MONTHLY_REMAINING
                });
            }
            ServiceError::Refused { .. }
            | ServiceError::DeadlineExceeded
            | ServiceError::Internal(_) => {}
        }
        details.set_error_info(reason.as_str(), ERROR_DOMAIN, metadata);
        let mut status = Status::with_error_details(code, message, details);
        if let Some(after) = pushback_after {
            pushback(&mut status, after);
        }
        if let Some(header) = exhausted {
            status.metadata_mut().insert(header, 0.into());
        }
        status
    }
}

/// The `google.rpc.Status` a unary call would carry for `err` (its code,
/// message and details, from the conversion above), for a streamed
/// result such as a `VerifyBatch` item. Response metadata (pushback,
/// allowance headers) has no place in it; `RetryInfo` carries the delay.
pub fn rpc_status(err: ServiceError) -> tonic_types::pb::Status {
    let status = Status::from(err);
    // Every status above is built with its details; should one not be,
    // its code and message still are (an empty buffer decodes as OK).
    <tonic_types::pb::Status as prost::Message>::decode(status.details())
        .ok()
        .filter(|s| s.code == status.code() as i32)
        .unwrap_or_else(|| tonic_types::pb::Status {
            code: status.code() as i32,
            message: status.message().to_string(),
            details: Vec::new(),
        })
}

/// gRPC clients with retry policies read this header (gRFC A6) instead of
/// the `RetryInfo` detail.
fn pushback(status: &mut Status, after: Duration) {
    status
        .metadata_mut()
        .insert("grpc-retry-pushback-ms", (after.as_millis() as u64).into());
}

/// Proto field path of a violation: claim fields live under `claims.`;
/// every other path is already a full path.
fn field_path(field: &str) -> String {
    if ekyc_domain::Field::from_name(field).is_some() {
        format!("claims.{field}")
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let status = Status::from(ServiceError::invalid(
            "date_of_birth",
            "impossible_date",
            "date_of_birth must be a real calendar date",
        ));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request detail");
        assert_eq!(bad.field_violations[0].field, "claims.date_of_birth");
        assert_eq!(bad.field_violations[0].reason, "IMPOSSIBLE_DATE");
        assert_eq!(
            details.error_info().expect("error info").reason,
            Reason::InvalidRequest.as_str()
        );
    }

    #[test]
    fn reasons_have_unique_wire_names_and_an_error_code() {
        let names: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        for (i, r) in Reason::ALL.iter().enumerate() {
            // ANSWERED is indexed by the discriminant.
            assert_eq!(*r as usize, i, "{r:?}");
            assert_ne!(r.code(), Code::Ok, "{r:?}");
            assert!(
                r.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{r:?}"
            );
        }
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let count = || {
            answered_errors()
                .find(|(r, _)| *r == Reason::Internal)
                .map(|(_, n)| n)
        };
        let before = count();
        let status = Status::from(ServiceError::internal("disk /secret/path failed"));
        assert_eq!(status.code(), Code::Internal);
        // Counted (other tests in this process may count more at once).
        assert!(count() > before);
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn overload_carries_retry_info_and_pushback() {
        let status = Status::from(ServiceError::Overloaded {
            retry_after: Duration::from_millis(250),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.get_error_details().retry_info().is_some());
        assert_eq!(
            status
                .metadata()
                .get("grpc-retry-pushback-ms")
                .and_then(|v| v.to_str().ok()),
            Some("250")
        );
    }
}
