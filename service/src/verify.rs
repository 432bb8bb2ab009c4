//! The Verify request path, as one chain: authenticate, authorise,
//! validate, apply the tenant's policy, replay a retry (idempotency), rate
//! limit, quota, subject guard, hash, look up, match, record the usage
//! event durably, sign, respond.
//!
//! Everything before hashing is cheap and rejects early: a request refused
//! by authentication, validation, policy or a limit never costs an Argon2
//! evaluation, and a refused or unanswered call consumes no quota.
//! Every request that passes costs exactly one, whether or not the subject
//! exists, so existence does not leak through timing.

use std::time::Instant;

use ekyc_domain::Field;
use ekyc_domain::attestation::{AttestationBody, claims_digest, consent_digest};
use ekyc_domain::matching::{MatchResult, match_claims};
use ekyc_domain::normalize::{IdNumber, Normalized, Violation, normalize_field, normalize_id};
use ekyc_proto::v1 as pb;

use crate::App;
use crate::auth::{self, Caller, Credential};
use crate::clock;
use crate::error::{ServiceError, reason};
use crate::hashing::HashError;
use crate::idempotency::{self, Claim, Outcome};
use crate::secrets::random_bytes;
use crate::store::{Role, TenantPolicy};
use ekyc_billing::{Recorded, UsageEvent};

use std::sync::Arc;

use ekyc_limits::{
    GuardDecision, Limiter, Quota, QuotaDecision, QuotaGrant, RateDecision, RateLimit,
    SubjectTicket, Unavailable,
};

/// A request that passed validation.
struct ValidRequest<'a> {
    id: IdNumber,
    claims: Vec<(Field, Normalized)>,
    /// The claims exactly as sent, for the attestation's claims digest.
    raw_claims: Vec<(Field, &'a str)>,
}

/// What is left of the tenant's allowance after an answered call; sent
/// back as response metadata (see `error::allowance`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowance {
    /// Requests that could follow at once (`None`: no rate limit).
    pub rate_remaining: Option<u64>,
    /// Units left today (`None`: no daily quota).
    pub daily_remaining: Option<u64>,
    /// Units left this month (`None`: no monthly quota).
    pub monthly_remaining: Option<u64>,
}

/// An answered Verify.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The signed answer.
    pub response: pb::VerifyResponse,
    /// The tenant's remaining allowance.
    pub allowance: Allowance,
}

/// The quota units and subject-guard attempt taken for a call before it is
/// hashed. They are settled once the call's fate is known; if the call is
/// dropped first (the client went away), they are given back, since an
/// unanswered call must not consume anything.
struct Reservation {
    limiter: Arc<Limiter>,
    grant: Option<QuotaGrant>,
    ticket: Option<SubjectTicket>,
}

impl Reservation {
    /// The call was answered: its units stay used, and the attempt stays
    /// counted if the answer was not a match.
    async fn answered(mut self, failed: bool) {
        let _ = self.grant.take();
        if let Some(ticket) = self.ticket.take() {
            self.limiter.settle_subject(ticket, failed).await;
        }
    }

    /// The call was not answered: give everything back.
    async fn release(mut self) {
        release(&self.limiter, self.grant.take(), self.ticket.take()).await;
    }
}

async fn release(limiter: &Limiter, grant: Option<QuotaGrant>, ticket: Option<SubjectTicket>) {
    if let Some(ticket) = ticket {
        limiter.settle_subject(ticket, false).await;
    }
    if let Some(grant) = grant {
        limiter.release_quota(grant).await;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let (grant, ticket) = (self.grant.take(), self.ticket.take());
        if (grant.is_some() || ticket.is_some())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let limiter = Arc::clone(&self.limiter);
            runtime.spawn(async move { release(&limiter, grant, ticket).await });
        }
    }
}

impl App {
    /// Answers one Verify call. `credential` is the API key from the call's
    /// metadata; `deadline` the caller's deadline, if it sent one.
    pub async fn verify(
        &self,
        credential: &Credential,
        req: &pb::VerifyRequest,
        deadline: Option<Instant>,
    ) -> Result<Answered, ServiceError> {
        let result = self.verify_counted(credential, req, deadline).await;
        self.counters.verify_outcome(match &result {
            Ok(_) => "answered",
            Err(e) => e.reason(),
        });
        result
    }

    async fn verify_counted(
        &self,
        credential: &Credential,
        req: &pb::VerifyRequest,
        deadline: Option<Instant>,
    ) -> Result<Answered, ServiceError> {
        let started = Instant::now();
        let now_ms = clock::now_ms();
        let now = jiff::Timestamp::from_millisecond(now_ms).map_err(ServiceError::internal)?;

        // 1. Authenticate: the tenant comes from the key, never the request.
        let caller: Caller = auth::authenticate(&self.store, credential, now_ms).await?;
        // 2. Authorise.
        auth::require_role(&caller, Role::Verifier, "Verify")?;
        // 3. Validate and normalise every field; all violations at once.
        let valid = validate(req)?;
        // 4. The tenant's policy: which fields and purposes it may ask about.
        let policy = &caller.tenant.policy;
        check_policy(policy, &valid.claims, &req.purpose_code)?;
        let tenant = caller.tenant.id.as_str();
        // With the hashing queue full, this call would be shed at the pool
        // anyway: shed it now, before the ledger lookup and the limits.
        if self.pool.shed_if_saturated() {
            return Err(ServiceError::Overloaded {
                retry_after: self.pool.retry_hint(),
            });
        }

        // 5. Idempotency: a retry of an answered request gets the same
        // answer, unbilled and unhashed; a concurrent duplicate in this
        // process waits for the first and then gets its answer.
        let fingerprint = idempotency::fingerprint(&self.pool, req);
        let _leader = loop {
            match self.in_flight.claim(tenant, &req.request_id) {
                Claim::Leader(leader) => {
                    // Looked up only once this call leads its request id,
                    // so a duplicate that finished a moment ago is seen.
                    if let Some(event) =
                        self.ledger
                            .find(tenant, &req.request_id)
                            .await
                            .map_err(|e| {
                                tracing::error!(error = %e, "ledger lookup failed");
                                ServiceError::LedgerUnavailable
                            })?
                    {
                        return Ok(Answered {
                            response: self.replay(
                                &caller,
                                req,
                                &valid,
                                &event,
                                &fingerprint,
                                now_ms,
                            )?,
                            allowance: Allowance::default(),
                        });
                    }
                    break leader;
                }
                Claim::Follower(mut done) => {
                    // Ends when the first call finishes, answered or not.
                    while done.changed().await.is_ok() {}
                }
            }
        };

        // 6. Rate limit (counts the request, answered or not).
        let rate = RateLimit {
            per_second: policy.limits.requests_per_second,
            burst: policy.limits.burst,
        };
        let rate_remaining = match self
            .limiter
            .check_rate(tenant, rate)
            .await
            .map_err(unavailable)?
        {
            RateDecision::Allowed { remaining } => remaining,
            RateDecision::Limited { retry_after } => {
                return Err(ServiceError::RateLimited { retry_after });
            }
        };
        // 7. Quota: reserve the call's units in the tenant's day and month.
        let tz = ekyc_limits::time_zone(&policy.time_zone)
            .map_err(|_| ServiceError::internal("a stored tenant time zone is unknown"))?;
        let quota = Quota {
            daily: policy.limits.daily_quota_units,
            monthly: policy.limits.monthly_quota_units,
        };
        let units = ekyc_domain::billable_units(valid.claims.len());
        let grant = match self
            .limiter
            .reserve_quota(tenant, quota, &tz, units, now)
            .await
            .map_err(unavailable)?
        {
            QuotaDecision::Granted(grant) => grant,
            QuotaDecision::Exceeded { period, limit, .. } => {
                return Err(ServiceError::QuotaExceeded {
                    period: period.kind.name(),
                    label: period.label,
                    time_zone: policy.time_zone.clone(),
                    limit,
                    resets_at: period.ends_at.to_string(),
                });
            }
        };
        let allowance = Allowance {
            rate_remaining,
            daily_remaining: grant.daily_remaining,
            monthly_remaining: grant.monthly_remaining,
        };
        let mut reservation = Reservation {
            limiter: Arc::clone(&self.limiter),
            grant: Some(grant),
            ticket: None,
        };
        // 8. The subject guard, keyed by a pepper-keyed pseudonym (one HMAC)
        // so that a refusal costs no Argon2.
        match self
            .limiter
            .admit_subject(self.pool.pseudonym(&valid.id), now)
            .await
        {
            Ok(GuardDecision::Admitted(ticket)) => reservation.ticket = Some(ticket),
            Ok(GuardDecision::Tripped { retry_after }) => {
                reservation.release().await;
                return Err(ServiceError::SubjectGuardTripped { retry_after });
            }
            Ok(GuardDecision::Busy) => {
                reservation.release().await;
                return Err(ServiceError::SubjectBusy {
                    retry_after: self.pool.retry_hint(),
                });
            }
            Err(e) => {
                reservation.release().await;
                return Err(unavailable(e));
            }
        }

        // 9. Everything after the reservations; they are settled by how it
        // ends. The answer is returned only once its usage event is durable.
        let outcome = match self.answer(&caller, &valid, deadline, now_ms).await {
            Ok(outcome) => outcome,
            Err(e) => {
                reservation.release().await;
                return Err(e);
            }
        };
        let event = UsageEvent {
            tenant_id: tenant.to_string(),
            request_id: req.request_id.clone(),
            event_time_ms: outcome.issued_at_ms,
            method: "Verify".to_string(),
            fields: valid
                .claims
                .iter()
                .map(|(f, _)| f.name().to_string())
                .collect(),
            units,
            outcome: if outcome.decision { "yes" } else { "no" }.to_string(),
            fingerprint: fingerprint.clone(),
            replay: Some(outcome.to_replay()),
            invoice_number: None,
        };
        // From here the units follow the ledger: if this call is dropped
        // while its event is being written, the event is (almost surely)
        // committed and billed, so the units stay used. They are given back
        // below only when the ledger says this call was not billed.
        let grant = reservation.grant.take();
        let give_back = |grant: Option<QuotaGrant>| async {
            if let Some(grant) = grant {
                self.limiter.release_quota(grant).await;
            }
        };
        match self.ledger.record(event).await {
            Ok(Recorded::Inserted) => {
                reservation.answered(!outcome.decision).await;
                tracing::info!(
                    tenant = %caller.tenant.id,
                    key_id = %caller.key_id,
                    transaction_id = %outcome.transaction_id,
                    fields = outcome.fields.len(),
                    decision = outcome.decision,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "verify answered"
                );
                Ok(Answered {
                    response: self.respond(&caller, req, &valid, &outcome)?,
                    allowance,
                })
            }
            Ok(Recorded::Existing(winner)) => {
                // A duplicate on another replica was recorded first: its
                // answer is the answer, and only it is billed.
                give_back(grant).await;
                reservation.release().await;
                let response = self.replay(&caller, req, &valid, &winner, &fingerprint, now_ms)?;
                Ok(Answered {
                    response,
                    allowance,
                })
            }
            Err(e) => {
                // Not durable, so not answered (and not billed).
                give_back(grant).await;
                reservation.release().await;
                tracing::error!(error = %e, "usage event not recorded; call refused");
                Err(ServiceError::LedgerUnavailable)
            }
        }
    }

    /// Answers a retry from the ledger: the stored outcome, signed again
    /// over the retried request, if `fingerprint` (the retried request's)
    /// matches the stored one.
    fn replay(
        &self,
        caller: &Caller,
        req: &pb::VerifyRequest,
        valid: &ValidRequest<'_>,
        event: &UsageEvent,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<pb::VerifyResponse, ServiceError> {
        if event.fingerprint != fingerprint {
            return Err(ServiceError::AlreadyExists {
                reason: reason::REQUEST_ID_REUSED,
                message: "this request_id was already used for a different request",
            });
        }
        let window_ms = (self.billing.idempotency_window_secs as i64).saturating_mul(1000);
        let outcome = event
            .replay
            .as_deref()
            .filter(|_| now_ms - event.event_time_ms <= window_ms)
            .and_then(Outcome::from_replay)
            .ok_or(ServiceError::AlreadyExists {
                reason: reason::REQUEST_ID_EXPIRED,
                message: "this request_id was answered before the retry window; use a new one",
            })?;
        tracing::info!(
            tenant = %caller.tenant.id,
            key_id = %caller.key_id,
            transaction_id = %outcome.transaction_id,
            "verify replayed"
        );
        self.respond(caller, req, valid, &outcome)
    }

    /// Hashes, looks up and matches: the work a call pays for.
    async fn answer(
        &self,
        caller: &Caller,
        valid: &ValidRequest<'_>,
        deadline: Option<Instant>,
        now_ms: i64,
    ) -> Result<Outcome, ServiceError> {
        // Hash: the one expensive step, on the bounded pool.
        let key = self
            .pool
            .derive(valid.id.clone(), deadline)
            .await
            .map_err(|e| match e {
                HashError::Saturated => ServiceError::Overloaded {
                    retry_after: self.pool.retry_hint(),
                },
                HashError::DeadlinePassed => ServiceError::DeadlineExceeded,
                HashError::Closed => ServiceError::ShuttingDown,
                HashError::Kdf(e) => ServiceError::internal(e),
            })?;
        // Look up. Records live at the locator of the current pepper and
        // parameters; a record under an older pepper is not found until it
        // is re-imported.
        let (record, registry_version) = self
            .store
            .get_record_and_version(&key.locator())
            .await
            .map_err(ServiceError::internal)?;
        // Match under the tenant's policy.
        let policy = caller.tenant.policy.match_policy();
        let outcome = match_claims(
            &key,
            &valid.claims,
            record.as_ref().map(|r| &r.tags),
            &policy,
        );
        Ok(Outcome {
            transaction_id: format!(
                "tx_{}",
                hex::encode(random_bytes::<16>().map_err(ServiceError::internal)?)
            ),
            issued_at_ms: now_ms,
            registry_version,
            subject_found: outcome.subject_found,
            fields: outcome.fields,
            decision: outcome.decision,
        })
    }

    /// Signs an outcome over the request it answers and builds the reply.
    /// Deterministic: the same outcome and request give the same bytes.
    fn respond(
        &self,
        caller: &Caller,
        req: &pb::VerifyRequest,
        valid: &ValidRequest<'_>,
        outcome: &Outcome,
    ) -> Result<pb::VerifyResponse, ServiceError> {
        let body = AttestationBody {
            key_id: self.signer.key_id().to_string(),
            tenant_id: caller.tenant.id.clone(),
            request_id: req.request_id.clone(),
            transaction_id: outcome.transaction_id.clone(),
            issued_at_ms: outcome.issued_at_ms,
            registry_version: outcome.registry_version,
            claims_digest: claims_digest(&req.id_number, &valid.raw_claims)
                .map_err(ServiceError::internal)?,
            purpose_code: req.purpose_code.clone(),
            consent_digest: consent_digest(&req.consent_reference),
            subject_found: outcome.subject_found,
            results: outcome.fields.clone(),
            decision: outcome.decision,
        };
        let payload = body.encode().map_err(ServiceError::internal)?;
        let signature = self.signer.sign(&payload);
        Ok(pb::VerifyResponse {
            transaction_id: outcome.transaction_id.clone(),
            decision: if outcome.decision {
                pb::Decision::Yes
            } else {
                pb::Decision::No
            } as i32,
            results: outcome
                .fields
                .iter()
                .map(|f| pb::FieldResult {
                    field: i32::from(f.field.code()),
                    result: match f.result {
                        MatchResult::Match => pb::MatchResult::Match,
                        MatchResult::MatchFolded => pb::MatchResult::MatchFolded,
                        MatchResult::NoMatch => pb::MatchResult::NoMatch,
                        MatchResult::NotAvailable => pb::MatchResult::NotAvailable,
                    } as i32,
                    score: f.score.map(u32::from),
                })
                .collect(),
            registry_version: outcome.registry_version,
            verified_at: Some(clock::timestamp(outcome.issued_at_ms)),
            subject_status: match outcome.subject_found {
                None => pb::SubjectStatus::Unspecified,
                Some(true) => pb::SubjectStatus::Found,
                Some(false) => pb::SubjectStatus::NotFound,
            } as i32,
            attestation: Some(pb::Attestation {
                key_id: self.signer.key_id().to_string(),
                payload,
                signature: signature.to_vec(),
            }),
        })
    }
}

fn unavailable(e: Unavailable) -> ServiceError {
    ServiceError::LimitsUnavailable {
        limit: e.limit.name(),
    }
}

fn validate(req: &pb::VerifyRequest) -> Result<ValidRequest<'_>, ServiceError> {
    let mut violations = Vec::new();
    check_token(
        &mut violations,
        "request_id",
        &req.request_id,
        64,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'),
        "request_id must be 1 to 64 characters from A-Z a-z 0-9 . _ : -",
    );
    check_token(
        &mut violations,
        "purpose_code",
        &req.purpose_code,
        64,
        |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_',
        "purpose_code must be 1 to 64 characters from A-Z 0-9 _",
    );
    check_token(
        &mut violations,
        "consent_reference",
        &req.consent_reference,
        128,
        |c| !c.is_control(),
        "consent_reference must be 1 to 128 characters without control characters",
    );
    let id = match normalize_id(&req.id_number) {
        Ok(id) => Some(id),
        Err(v) => {
            violations.push(v);
            None
        }
    };
    // Values as sent, for the attestation's claims digest.
    let raw_claims: Vec<(Field, &str)> = req
        .claims
        .as_ref()
        .map(|c| c.present())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(f, v)| Field::from_code(f as u8).map(|f| (f, v)))
        .collect();
    if raw_claims.is_empty() {
        violations.push(Violation {
            field: "claims",
            rule: "required",
            description: "claims must hold at least one field besides id_number".into(),
        });
    }
    let mut claims = Vec::with_capacity(raw_claims.len());
    for (field, raw) in &raw_claims {
        match normalize_field(*field, raw) {
            Ok(n) => claims.push((*field, n)),
            Err(v) => violations.push(v),
        }
    }
    match id {
        Some(id) if violations.is_empty() => Ok(ValidRequest {
            id,
            claims,
            raw_claims,
        }),
        _ => Err(ServiceError::InvalidArgument(violations)),
    }
}

/// Refuses fields and purposes the tenant's policy excludes, naming them.
fn check_policy(
    policy: &TenantPolicy,
    claims: &[(Field, Normalized)],
    purpose: &str,
) -> Result<(), ServiceError> {
    if !policy.allowed_fields.is_empty() {
        let refused: Vec<&str> = claims
            .iter()
            .map(|(f, _)| f.name())
            .filter(|f| !policy.allowed_fields.iter().any(|a| a == f))
            .collect();
        if !refused.is_empty() {
            return Err(ServiceError::PermissionDenied {
                reason: reason::FIELD_NOT_ALLOWED,
                message: format!(
                    "the tenant's policy does not allow asking about {}",
                    refused.join(", ")
                ),
            });
        }
    }
    if !policy.allowed_purposes.is_empty() && !policy.allowed_purposes.iter().any(|p| p == purpose)
    {
        return Err(ServiceError::PermissionDenied {
            reason: reason::PURPOSE_NOT_ALLOWED,
            message: "the tenant's policy does not allow this purpose_code".into(),
        });
    }
    Ok(())
}

fn check_token(
    violations: &mut Vec<Violation>,
    field: &'static str,
    value: &str,
    max_chars: usize,
    allowed: impl Fn(char) -> bool,
    description: &'static str,
) {
    let rule = if value.is_empty() {
        Some("required")
    } else if value.chars().count() > max_chars {
        Some("too_long")
    } else if !value.chars().all(allowed) {
        Some("invalid_format")
    } else {
        None
    };
    if let Some(rule) = rule {
        violations.push(Violation {
            field,
            rule,
            description: description.into(),
        });
    }
}
