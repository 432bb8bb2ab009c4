//! The service's error type and the one place that turns it into a gRPC
//! status with `google.rpc` details.
//!
//! Every message here is lowercase, names the field and the rule, and never
//! carries a request value: callers build errors from rules, not from input.

use std::collections::HashMap;
use std::time::Duration;

use ekyc_domain::normalize::Violation;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "ekyc.v1";

/// Stable `ErrorInfo.reason` strings clients may switch on.
pub mod reason {
    /// One or more request fields are invalid (see `BadRequest`).
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    /// Fields are well formed but outside their range: a date in the
    /// future, an expiry before the issue date (see `BadRequest`).
    pub const VALUE_OUT_OF_RANGE: &str = "VALUE_OUT_OF_RANGE";
    /// A request message is larger than the method's limit; it was refused
    /// before being read (see `ErrorInfo.metadata["limit_bytes"]`).
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
    /// The server holds as many partly received messages as it allows;
    /// retry shortly.
    pub const REQUEST_BUFFERS_FULL: &str = "REQUEST_BUFFERS_FULL";
    /// No API key in the request metadata.
    pub const API_KEY_MISSING: &str = "API_KEY_MISSING";
    /// The API key is not shaped like one of ours.
    pub const API_KEY_MALFORMED: &str = "API_KEY_MALFORMED";
    /// The API key is unknown or its secret is wrong.
    pub const API_KEY_INVALID: &str = "API_KEY_INVALID";
    /// The API key was revoked.
    pub const API_KEY_REVOKED: &str = "API_KEY_REVOKED";
    /// The API key has expired.
    pub const API_KEY_EXPIRED: &str = "API_KEY_EXPIRED";
    /// The tenant is suspended.
    pub const TENANT_SUSPENDED: &str = "TENANT_SUSPENDED";
    /// The credential's role may not call this method.
    pub const ROLE_NOT_ALLOWED: &str = "ROLE_NOT_ALLOWED";
    /// Every hashing worker is busy and the queue is full.
    pub const HASHING_OVERLOADED: &str = "HASHING_OVERLOADED";
    /// The call's deadline passed before it could be answered.
    pub const DEADLINE_PASSED: &str = "DEADLINE_PASSED";
    /// The server is shutting down.
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
    /// An internal failure; details are in the server log, not here.
    pub const INTERNAL: &str = "INTERNAL";
    /// The tenant's policy does not allow a requested claim field.
    pub const FIELD_NOT_ALLOWED: &str = "FIELD_NOT_ALLOWED";
    /// The tenant's policy does not allow the declared purpose.
    pub const PURPOSE_NOT_ALLOWED: &str = "PURPOSE_NOT_ALLOWED";
    /// The credential may not see or change this tenant.
    pub const TENANT_NOT_ACCESSIBLE: &str = "TENANT_NOT_ACCESSIBLE";
    /// No such tenant.
    pub const TENANT_NOT_FOUND: &str = "TENANT_NOT_FOUND";
    /// No such API key.
    pub const API_KEY_NOT_FOUND: &str = "API_KEY_NOT_FOUND";
    /// An admin may not suspend the tenant its own credential belongs to.
    pub const CANNOT_SUSPEND_OWN_TENANT: &str = "CANNOT_SUSPEND_OWN_TENANT";
    /// The object changed concurrently; re-read and retry.
    pub const CONCURRENT_MODIFICATION: &str = "CONCURRENT_MODIFICATION";
    /// The API key and the client certificate name different tenants.
    pub const CREDENTIALS_DISAGREE: &str = "CREDENTIALS_DISAGREE";
    /// A client certificate was presented but maps to no tenant.
    pub const CLIENT_CERT_UNKNOWN: &str = "CLIENT_CERT_UNKNOWN";
    /// The tenant's request rate limit is exhausted (see `RetryInfo`).
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// The tenant's daily or monthly quota is used up (see `QuotaFailure`).
    pub const QUOTA_EXCEEDED: &str = "QUOTA_EXCEEDED";
    /// Too many unsuccessful questions about this subject in the guard's
    /// window, from any tenant.
    pub const SUBJECT_GUARD_TRIPPED: &str = "SUBJECT_GUARD_TRIPPED";
    /// Other questions about this subject are still being answered and,
    /// were they all to fail, would use up its allowance; retry shortly.
    pub const SUBJECT_BUSY: &str = "SUBJECT_BUSY";
    /// The request id was already used for a different request.
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
    /// The request id was answered longer ago than the retry window.
    pub const REQUEST_ID_EXPIRED: &str = "REQUEST_ID_EXPIRED";
    /// No such price plan (or the tenant's plan does not exist).
    pub const PRICE_PLAN_NOT_FOUND: &str = "PRICE_PLAN_NOT_FOUND";
    /// The billing month has not ended, so it cannot be finalized.
    pub const PERIOD_NOT_OVER: &str = "PERIOD_NOT_OVER";
    /// The month's invoice is finalized and cannot change.
    pub const INVOICE_FINALIZED: &str = "INVOICE_FINALIZED";
    /// No such invoice.
    pub const INVOICE_NOT_FOUND: &str = "INVOICE_NOT_FOUND";
    /// The usage ledger cannot be written, so nothing can be answered.
    pub const LEDGER_UNAVAILABLE: &str = "LEDGER_UNAVAILABLE";
    /// A limit could not be checked (its shared store is unreachable) and
    /// its policy is to refuse.
    pub const LIMITS_UNAVAILABLE: &str = "LIMITS_UNAVAILABLE";
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
    /// No valid credential.
    #[error("{message}")]
    Unauthenticated {
        /// Stable reason.
        reason: &'static str,
        /// Lowercase explanation.
        message: &'static str,
    },
    /// Authenticated, but not allowed.
    #[error("{message}")]
    PermissionDenied {
        /// Stable reason.
        reason: &'static str,
        /// Lowercase explanation.
        message: String,
    },
    /// The named object does not exist.
    #[error("{message}")]
    NotFound {
        /// Stable reason.
        reason: &'static str,
        /// Lowercase explanation.
        message: &'static str,
    },
    /// The request is valid but the system's state does not allow it.
    #[error("{message}")]
    FailedPrecondition {
        /// Stable reason.
        reason: &'static str,
        /// Lowercase explanation.
        message: &'static str,
    },
    /// The request names something that already exists (a used request
    /// id).
    #[error("{message}")]
    AlreadyExists {
        /// Stable reason.
        reason: &'static str,
        /// Lowercase explanation.
        message: &'static str,
    },
    /// The usage ledger could not record the call, so it is not answered.
    #[error("the usage ledger is unavailable, retry later")]
    LedgerUnavailable,
    /// A concurrent change won; re-read and retry.
    #[error("{message}")]
    Aborted {
        /// Stable reason.
        reason: &'static str,
        /// Lowercase explanation.
        message: &'static str,
    },
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
    #[error("the {limit} limit cannot be checked right now")]
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
    /// A bug or a backing store failure. The message goes to the log only.
    #[error("internal error: {0}")]
    Internal(String),
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

    /// The stable `ErrorInfo.reason` of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ServiceError::InvalidArgument(_) => reason::INVALID_REQUEST,
            ServiceError::OutOfRange(_) => reason::VALUE_OUT_OF_RANGE,
            ServiceError::MessageTooLarge { .. } => reason::MESSAGE_TOO_LARGE,
            ServiceError::RequestBuffersFull => reason::REQUEST_BUFFERS_FULL,
            ServiceError::Unauthenticated { reason, .. }
            | ServiceError::PermissionDenied { reason, .. }
            | ServiceError::NotFound { reason, .. }
            | ServiceError::FailedPrecondition { reason, .. }
            | ServiceError::Aborted { reason, .. }
            | ServiceError::AlreadyExists { reason, .. } => reason,
            ServiceError::LedgerUnavailable => reason::LEDGER_UNAVAILABLE,
            ServiceError::Overloaded { .. } => reason::HASHING_OVERLOADED,
            ServiceError::RateLimited { .. } => reason::RATE_LIMITED,
            ServiceError::QuotaExceeded { .. } => reason::QUOTA_EXCEEDED,
            ServiceError::SubjectGuardTripped { .. } => reason::SUBJECT_GUARD_TRIPPED,
            ServiceError::SubjectBusy { .. } => reason::SUBJECT_BUSY,
            ServiceError::LimitsUnavailable { .. } => reason::LIMITS_UNAVAILABLE,
            ServiceError::DeadlineExceeded => reason::DEADLINE_PASSED,
            ServiceError::ShuttingDown => reason::SHUTTING_DOWN,
            ServiceError::Internal(_) => reason::INTERNAL,
        }
    }

    /// Wraps any displayable internal failure.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Status {
        let reason = err.reason();
        let info = |reason: &str| {
            let mut d = ErrorDetails::new();
            d.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
            d
        };
        let bad_request = |code, message: String, violations: Vec<Violation>| {
            let mut d = info(reason);
            d.set_bad_request(
                violations
                    .into_iter()
                    .map(|v| {
                        let mut fv = FieldViolation::new(field_path(v.field), v.description);
                        fv.reason = v.rule.to_ascii_uppercase();
                        fv
                    })
                    .collect::<Vec<_>>(),
            );
            Status::with_error_details(code, message, d)
        };
        match err {
            ServiceError::InvalidArgument(violations) => {
                let message = format!("invalid request: {}", describe(&violations));
                bad_request(Code::InvalidArgument, message, violations)
            }
            ServiceError::OutOfRange(violations) => {
                let message = format!("request out of range: {}", describe(&violations));
                bad_request(Code::OutOfRange, message, violations)
            }
            ServiceError::MessageTooLarge { limit } => {
                let mut d = ErrorDetails::new();
                d.set_error_info(
                    reason,
                    ERROR_DOMAIN,
                    HashMap::from([("limit_bytes".to_string(), limit.to_string())]),
                );
                Status::with_error_details(
                    Code::ResourceExhausted,
                    format!("the request message is larger than {limit} bytes"),
                    d,
                )
            }
            ServiceError::RequestBuffersFull => {
                let mut d = info(reason);
                let retry_after = Duration::from_secs(1);
                d.set_retry_info(Some(retry_after));
                let mut status = Status::with_error_details(
                    Code::ResourceExhausted,
                    "the server is receiving too many large messages, retry shortly",
                    d,
                );
                pushback(&mut status, retry_after);
                status
            }
            ServiceError::Unauthenticated { message, .. } => {
                Status::with_error_details(Code::Unauthenticated, message, info(reason))
            }
            ServiceError::PermissionDenied { message, .. } => {
                Status::with_error_details(Code::PermissionDenied, message, info(reason))
            }
            ServiceError::NotFound { message, .. } => {
                Status::with_error_details(Code::NotFound, message, info(reason))
            }
            ServiceError::AlreadyExists { message, .. } => {
                Status::with_error_details(Code::AlreadyExists, message, info(reason))
            }
            ServiceError::LedgerUnavailable => {
                let mut d = info(reason);
                d.set_retry_info(Some(Duration::from_secs(1)));
                Status::with_error_details(
                    Code::Unavailable,
                    "the usage ledger is unavailable, retry later with the same request_id",
                    d,
                )
            }
            ServiceError::Aborted { message, .. } => {
                Status::with_error_details(Code::Aborted, message, info(reason))
            }
            ServiceError::FailedPrecondition { message, .. } => {
                Status::with_error_details(Code::FailedPrecondition, message, info(reason))
            }
            ServiceError::Overloaded { retry_after } => {
                let mut d = info(reason);
                d.set_retry_info(Some(retry_after));
                let mut status = Status::with_error_details(
                    Code::ResourceExhausted,
                    "hashing capacity is exhausted, retry later",
                    d,
                );
                pushback(&mut status, retry_after);
                status
            }
            ServiceError::RateLimited { retry_after } => {
                let mut d = info(reason);
                d.set_retry_info(Some(retry_after));
                let mut status = Status::with_error_details(
                    Code::ResourceExhausted,
                    "the tenant's rate limit is exhausted, retry later",
                    d,
                );
                pushback(&mut status, retry_after);
                status
                    .metadata_mut()
                    .insert(allowance::RATE_REMAINING, 0.into());
                status
            }
            ServiceError::QuotaExceeded {
                period,
                label,
                time_zone,
                limit,
                resets_at,
            } => {
                let mut d = ErrorDetails::new();
                d.set_error_info(
                    reason,
                    ERROR_DOMAIN,
                    HashMap::from([
                        ("period".to_string(), period.to_string()),
                        ("period_label".to_string(), label.clone()),
                        ("time_zone".to_string(), time_zone.clone()),
                        ("resets_at".to_string(), resets_at.clone()),
                    ]),
                );
                d.add_quota_failure_violation(
                    format!("tenant.policy.limits.{period}_quota_units"),
                    format!(
                        "the {period} quota of {limit} units for {label} ({time_zone}) is used up; \
                         it resets at {resets_at}"
                    ),
                );
                let mut status = Status::with_error_details(
                    Code::ResourceExhausted,
                    format!("the tenant's {period} quota is used up"),
                    d,
                );
                let header = if period == "daily" {
                    allowance::DAILY_REMAINING
                } else {
                    allowance::MONTHLY_REMAINING
                };
                status.metadata_mut().insert(header, 0.into());
                status
            }
            ServiceError::SubjectGuardTripped { retry_after } => {
                // No pushback header: an automatic retry cannot succeed
                // before the window ends, and should not be attempted.
                let mut d = info(reason);
                d.set_retry_info(Some(retry_after));
                Status::with_error_details(
                    Code::ResourceExhausted,
                    "too many unsuccessful verifications of this subject; try again later",
                    d,
                )
            }
            ServiceError::SubjectBusy { retry_after } => {
                let mut d = info(reason);
                d.set_retry_info(Some(retry_after));
                let mut status = Status::with_error_details(
                    Code::ResourceExhausted,
                    "other verifications of this subject are in progress; retry shortly",
                    d,
                );
                pushback(&mut status, retry_after);
                status
            }
            ServiceError::LimitsUnavailable { limit } => {
                let mut d = info(reason);
                d.set_retry_info(Some(Duration::from_secs(1)));
                Status::with_error_details(
                    Code::Unavailable,
                    format!("the {limit} limit cannot be checked right now, retry later"),
                    d,
                )
            }
            ServiceError::DeadlineExceeded => Status::with_error_details(
                Code::DeadlineExceeded,
                "the call's deadline passed before it could be answered",
                info(reason),
            ),
            ServiceError::ShuttingDown => {
                let mut d = info(reason);
                d.set_retry_info(Some(Duration::from_secs(1)));
                Status::with_error_details(Code::Unavailable, "the server is shutting down", d)
            }
            ServiceError::Internal(detail) => {
                // The detail may name a file or a database error; it goes to
                // the log, never to the client.
                tracing::error!(error = %detail, "internal error");
                Status::with_error_details(Code::Internal, "internal error", info(reason))
            }
        }
    }
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
            reason::INVALID_REQUEST
        );
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let status = Status::from(ServiceError::internal("disk /secret/path failed"));
        assert_eq!(status.code(), Code::Internal);
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
