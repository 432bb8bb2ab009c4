//! The Verify request path, as one chain: authenticate, authorise,
//! validate, apply the tenant's policy, rate limit, replay a retry
//! (idempotency), quota, subject guard, hash, look up, match, record the
//! usage event durably, sign, respond.
//!
//! Everything before hashing is cheap and rejects early: a request refused
//! by authentication, validation, policy or a limit never costs an Argon2
//! evaluation, and a refused or unanswered call consumes no quota.
//! Every request that passes costs exactly one, whether or not the subject
//! exists, so existence does not leak through timing.
//!
//! Once the guard has admitted a call, the attempt counts as an
//! unsuccessful answer until the call ends in a recorded match, and from
//! the ledger write to the guard's settlement the call runs in a task of
//! its own: a caller that times out or resets its stream at any moment
//! cannot take an answer away without the guard counting it.

use std::sync::Arc;
use std::time::Instant;

use ekyc_billing::{Decision, Ledger, LedgerError, Recorded, UsageEvent};
use ekyc_domain::Field;
use ekyc_domain::attestation::{AttestationBody, claims_digest, consent_digest};
use ekyc_domain::keys::SubjectKey;
use ekyc_domain::matching::{MatchResult, match_claims};
use ekyc_domain::normalize::Normalized;
use ekyc_input::request::{ValidRequest, validate_verify};
use ekyc_limits::{
    GuardDecision, Limiter, Quota, QuotaDecision, QuotaGrant, RateDecision, RateLimit, Settlement,
    SubjectTicket, Unavailable,
};
use ekyc_proto::v1 as pb;
use ekyc_transparency::DecisionEntry;
use jiff::Timestamp;

use crate::App;
use crate::auth::{self, Caller, Credential};
use crate::authz::{self, Target};
use crate::batch::Batches;
use crate::clock;
use crate::error::{Reason, ServiceError};
use crate::hashing::HashError;
use crate::hashing::{HashPool, Lane};
use crate::idempotency::{self, Claim, Leader, Outcome};
use crate::keyring::Keyring;
use crate::metrics::Counters;
use crate::secrets::Signer;
use crate::secrets::random_bytes;
use crate::store::TenantPolicy;
use crate::store::{PURPOSE_CHECKPOINT, Store};

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

/// An admitted guard attempt. It is recorded, and counts as an
/// unsuccessful answer, from admission on; settling it as a match (or as
/// never answered) takes it back. Every settlement runs in a task of its
/// own, and a ticket dropped unsettled (the caller went away at any
/// moment, even before it received the ticket) settles itself as failed:
/// the guard cannot know what the caller saw. During a pepper rotation
/// the subject has one name per held pepper and the attempt one ticket
/// per name, all settled alike.
struct Attempt {
    limiter: Arc<Limiter>,
    tickets: Vec<SubjectTicket>,
    now: Timestamp,
}

impl Attempt {
    /// Settles the attempt; true when this failure locked the subject out.
    async fn settle(mut self, settlement: Settlement) -> bool {
        let tickets = std::mem::take(&mut self.tickets);
        let (limiter, now) = (Arc::clone(&self.limiter), self.now);
        tokio::spawn(async move { settle_all(&limiter, tickets, settlement, now).await })
            .await
            .unwrap_or(false)
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let tickets = std::mem::take(&mut self.tickets);
        if !tickets.is_empty()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (limiter, now) = (Arc::clone(&self.limiter), self.now);
            runtime
                .spawn(async move { settle_all(&limiter, tickets, Settlement::Failed, now).await });
        }
    }
}

/// Settles every ticket of one attempt; true when any locked its name out.
async fn settle_all(
    limiter: &Limiter,
    tickets: Vec<SubjectTicket>,
    settlement: Settlement,
    now: Timestamp,
) -> bool {
    let mut locked = false;
    for ticket in tickets {
        locked |= limiter.settle_subject(ticket, settlement, now).await;
    }
    locked
}

/// The quota units a call reserved. Dropped before the call's usage event
/// was handed to the ledger (the call was refused, shed or abandoned),
/// they go back: nothing is billed. From the ledger write on, [`commit`]
/// decides.
struct Units {
    limiter: Arc<Limiter>,
    grant: Option<QuotaGrant>,
}

impl Units {
    /// Gives the units back, in a task of its own.
    async fn release(mut self) {
        if let Some(grant) = self.grant.take() {
            let limiter = Arc::clone(&self.limiter);
            let _ = tokio::spawn(async move { limiter.release_quota(grant).await }).await;
        }
    }

    /// Keeps the units: the call was billed.
    fn keep(mut self) {
        drop(self.grant.take());
    }
}

impl Drop for Units {
    fn drop(&mut self) {
        if let Some(grant) = self.grant.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let limiter = Arc::clone(&self.limiter);
            runtime.spawn(async move { limiter.release_quota(grant).await });
        }
    }
}

/// What [`commit`] needs besides the event.
struct Commit {
    ledger: Arc<Ledger>,
    counters: Arc<Counters>,
    tenant: String,
    /// Whether the answer is a match (the only answer that gives the guard
    /// attempt back).
    matched: bool,
    /// Held until the event is written and the guard settled, so a
    /// concurrent duplicate in this process waits and then replays.
    leader: Leader,
}

/// Writes the usage event, then settles the guard and the quota by what
/// the ledger says, in a task of its own. Once the event is handed to the
/// ledger it will (almost surely) be committed and a retry answered from
/// it, so this must run to its end even if the call is dropped meanwhile
/// (the caller's deadline expires, or it resets the stream): the guard
/// counts every answer that can come out of the ledger.
async fn commit(
    units: Units,
    attempt: Attempt,
    (event, decision): (UsageEvent, Decision),
    c: Commit,
) -> Result<Recorded, LedgerError> {
    let task = tokio::spawn(async move {
        let recorded = c.ledger.record_decided(event, decision).await;
        let settlement = match &recorded {
            // This answer is the one that leaves, now or on a retry.
            Ok(Recorded::Inserted) if c.matched => Settlement::Matched,
            Ok(Recorded::Inserted) => Settlement::Failed,
            // A duplicate on another replica was recorded first: its
            // answer (or REQUEST_ID_REUSED) is what leaves, and its own
            // attempt counted it. Only that one is billed.
            Ok(Recorded::Existing(_)) => Settlement::Unanswered,
            // Not known to be durable, but it may be: a retry could still
            // be answered from it, so it counts unless it was a match.
            Err(_) if c.matched => Settlement::Matched,
            Err(_) => Settlement::Failed,
        };
        // Inserted: the units stay used, as billed; else they go back.
        if matches!(recorded, Ok(Recorded::Inserted)) {
            units.keep();
        } else {
            units.release().await;
        }
        let locked = attempt.settle(settlement).await;
        c.counters
            .guard_settled(&c.tenant, settlement == Settlement::Failed, locked);
        drop(c.leader);
        recorded
    });
    task.await.unwrap_or(Err(LedgerError::Closed))
}

/// What the guard said, with an admitted attempt held as an [`Attempt`].
enum Admission {
    Admitted(Attempt),
    Refused(GuardDecision),
}

/// Asks the guard to admit an attempt under every name of the subject
/// (one per held pepper), in a task of its own: with Redis the script may
/// record the attempt although this call is dropped while it runs, and the
/// [`Attempt`] made in the task then settles itself rather than leaving
/// the attempt in flight (and the subject busy) until it times out. A
/// refusal under any name refuses the attempt and takes back the tickets
/// already taken.
async fn admit(
    limiter: &Arc<Limiter>,
    names: Vec<[u8; 32]>,
    now: Timestamp,
) -> Result<Admission, Unavailable> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let limiter = Arc::clone(limiter);
    tokio::spawn(async move {
        let mut attempt = Attempt {
            limiter: Arc::clone(&limiter),
            tickets: Vec::with_capacity(names.len()),
            now,
        };
        let mut admission = None;
        for name in names {
            match limiter.admit_subject(name, now).await {
                Ok(GuardDecision::Admitted(ticket)) => attempt.tickets.push(ticket),
                Ok(refused) => {
                    admission = Some(Ok(Admission::Refused(refused)));
                    break;
                }
                Err(e) => {
                    admission = Some(Err(e));
                    break;
                }
            }
        }
        let admission = match admission {
            None => Ok(Admission::Admitted(attempt)),
            Some(refused) => {
                attempt.settle(Settlement::Unanswered).await;
                refused
            }
        };
        // Unread, an admitted attempt is dropped here and settles itself.
        let _ = tx.send(admission);
    });
    rx.await.unwrap_or(Err(Unavailable {
        limit: ekyc_limits::LimitKind::SubjectGuard,
    }))
}

/// The `VerificationService` handle: the Verify chain and the published
/// signing keys, over only the parts they use.
#[derive(Clone)]
pub struct VerifyService {
    store: Store,
    keyring: Arc<Keyring>,
    pool: Arc<HashPool>,
    signer: Arc<Signer>,
    limiter: Arc<ekyc_limits::Limiter>,
    ledger: Arc<Ledger>,
    in_flight: Arc<idempotency::InFlight>,
    clock: Arc<clock::Clock>,
    counters: Arc<Counters>,
    /// How long an answered `request_id` is answered again, in ms.
    replay_window_ms: i64,
    /// How long after retirement a signing key is still published as valid.
    attestation_validity_ms: i64,
    /// The bounds of VerifyBatch streams.
    batches: Arc<Batches>,
    /// Child spans of the steps that cost time.
    telemetry: ekyc_telemetry::Telemetry,
    /// The decision log's origin, the name of its checkpoint keys.
    checkpoint_origin: String,
}

impl VerifyService {
    /// The handle over `app`'s parts.
    pub fn new(app: &App) -> VerifyService {
        VerifyService {
            store: app.store.clone(),
            keyring: Arc::clone(&app.keyring),
            pool: Arc::clone(&app.pool),
            signer: Arc::clone(&app.signer),
            limiter: Arc::clone(&app.limiter),
            ledger: Arc::clone(&app.ledger),
            in_flight: Arc::clone(&app.in_flight),
            clock: Arc::clone(&app.clock),
            counters: Arc::clone(&app.counters),
            replay_window_ms: (app.billing.idempotency_window_secs as i64).saturating_mul(1000),
            attestation_validity_ms: app.attestation_validity_ms,
            batches: Arc::clone(&app.batches),
            telemetry: app.telemetry.clone(),
            checkpoint_origin: app.decision_log.origin.clone(),
        }
    }

    /// The bounds of VerifyBatch streams.
    pub(crate) fn batches(&self) -> &Batches {
        &self.batches
    }

    /// The signing keys whose attestations still verify: keys retired
    /// longer ago than attestations stay valid are no longer published.
    pub async fn list_signing_keys(&self) -> Result<pb::ListSigningKeysResponse, ServiceError> {
        let keys = self.store.list_signing_keys().await?;
        let now = clock::now_ms();
        let validity = self.attestation_validity_ms;
        Ok(pb::ListSigningKeysResponse {
            keys: keys
                .into_iter()
                .filter(|k| k.retired_at_ms.is_none_or(|t| t + validity > now))
                .map(|k| pb::SigningKey {
                    verifier_key: if k.purpose == PURPOSE_CHECKPOINT {
                        crate::audit_log::verifier_key(&self.checkpoint_origin, &k.public_key)
                    } else {
                        String::new()
                    },
                    key_id: k.key_id,
                    algorithm: "Ed25519".into(),
                    public_key: k.public_key.to_vec(),
                    not_before: Some(clock::timestamp(k.not_before_ms)),
                    not_after: k.retired_at_ms.map(|t| clock::timestamp(t + validity)),
                    purpose: k.purpose,
                })
                .collect(),
        })
    }

    /// Answers one Verify call. `credential` is the API key from the call's
    /// metadata; `deadline` the caller's deadline, if it sent one.
    pub async fn verify(
        &self,
        credential: &Credential,
        req: &pb::VerifyRequest,
        deadline: Option<Instant>,
    ) -> Result<Answered, ServiceError> {
        let result = match self.authenticate(credential, "Verify").await {
            Ok(caller) => {
                self.verify_as(&caller, req, deadline, Lane::Interactive)
                    .await
            }
            Err(e) => Err(e),
        };
        self.count(&result);
        result
    }

    /// Steps 1 and 2 of every Verify: authenticate (the tenant comes from
    /// the key, never the request) and authorise `method`. A VerifyBatch
    /// stream runs them when it opens and again before each item.
    pub(crate) async fn authenticate(
        &self,
        credential: &Credential,
        method: &str,
    ) -> Result<Caller, ServiceError> {
        let caller = auth::authenticate(&self.store, credential, self.clock.now_ms()).await?;
        Self::authorise(caller, method)
    }

    /// [`VerifyService::authenticate`] again, for the next item of a
    /// stream: the stream's span already names the tenant.
    pub(crate) async fn reauthenticate(
        &self,
        credential: &Credential,
        method: &str,
    ) -> Result<Caller, ServiceError> {
        let caller = auth::recheck(&self.store, credential, self.clock.now_ms()).await?;
        Self::authorise(caller, method)
    }

    fn authorise(caller: Caller, method: &str) -> Result<Caller, ServiceError> {
        authz::decide(
            authz::rule_of(method),
            caller.role,
            &caller.tenant.id,
            false,
            Target::Caller,
        )?;
        Ok(caller)
    }

    /// Answers one VerifyBatch item for an authenticated caller: the
    /// Verify chain from validation on, in the batch lane (see
    /// [`Lane::Batch`]).
    pub(crate) async fn verify_item(
        &self,
        caller: &Caller,
        req: &pb::VerifyRequest,
        deadline: Option<Instant>,
    ) -> Result<Answered, ServiceError> {
        let result = self.verify_as(caller, req, deadline, Lane::Batch).await;
        self.count(&result);
        result
    }

    fn count(&self, result: &Result<Answered, ServiceError>) {
        self.counters.verify_outcome(match result {
            Ok(_) => "answered",
            Err(e) => e.reason().as_str(),
        });
    }

    /// The Verify chain after authentication. In the batch lane a call
    /// over the tenant's rate waits for it instead of being refused, is
    /// never shed for a full queue (the batch's in-flight bounds hold it
    /// back instead), and hashes only when no unary call waits.
    async fn verify_as(
        &self,
        caller: &Caller,
        req: &pb::VerifyRequest,
        deadline: Option<Instant>,
        lane: Lane,
    ) -> Result<Answered, ServiceError> {
        let started = Instant::now();
        let mut now_ms = self.clock.now_ms();
        let mut now = Timestamp::from_millisecond(now_ms)?;

        // 3. Validate and normalise every field; all violations at once.
        let valid = validate_verify(req, clock::latest_date_on_earth(now))?;
        // 4. The tenant's policy: which fields and purposes it may ask about.
        let policy = &caller.tenant.policy;
        check_policy(policy, &valid.claims, &req.purpose_code)?;
        let tenant = caller.tenant.id.as_str();

        // 5. Rate limit: every call that gets here counts, answered, refused
        // or replayed, so retries of an answered request are not free. A
        // batch item waits for its turn: the stream is paced to the
        // tenant's rate rather than answered with refusals to resend.
        let rate = RateLimit {
            per_second: policy.limits.requests_per_second,
            burst: policy.limits.burst,
        };
        let rate_remaining = loop {
            match self
                .limiter
                .check_rate(tenant, rate)
                .await
                .map_err(ServiceError::from)?
            {
                RateDecision::Allowed { remaining } => break remaining,
                // Waits only while the caller's deadline leaves room.
                RateDecision::Limited { retry_after }
                    if lane == Lane::Batch
                        && deadline.is_none_or(|d| Instant::now() + retry_after < d) =>
                {
                    tokio::time::sleep(retry_after.max(std::time::Duration::from_millis(1))).await;
                    now_ms = self.clock.now_ms();
                    now = Timestamp::from_millisecond(now_ms)?;
                }
                RateDecision::Limited { retry_after } => {
                    return Err(ServiceError::RateLimited { retry_after });
                }
            }
        };
        // With the hashing queue full, this call would be shed at the pool
        // anyway: shed it now, before the ledger lookup and the limits.
        if lane == Lane::Interactive && self.pool.shed_if_saturated() {
            return Err(ServiceError::Overloaded {
                retry_after: self.pool.retry_hint(),
            });
        }

        // 6. Idempotency: a retry of an answered request gets the same
        // answer, unbilled and unhashed; a concurrent duplicate in this
        // process waits for the first and then gets its answer.
        let fingerprint = idempotency::fingerprint(&self.keyring, req);
        let leader = loop {
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
                            response: self.replay(caller, req, &valid, &event, now_ms)?,
                            allowance: Allowance {
                                rate_remaining,
                                ..Allowance::default()
                            },
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
            .map_err(ServiceError::from)?
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
        let reserved = Units {
            limiter: Arc::clone(&self.limiter),
            grant: Some(grant),
        };
        // 8. The subject guard, keyed by a pepper-keyed pseudonym (one HMAC)
        // so that a refusal costs no Argon2. From admission on, the attempt
        // counts as an unsuccessful answer until settled otherwise.
        let attempt = match admit(&self.limiter, self.keyring.pseudonyms(&valid.id), now).await {
            Ok(Admission::Admitted(attempt)) => attempt,
            Ok(Admission::Refused(GuardDecision::Tripped { retry_after })) => {
                reserved.release().await;
                self.counters.guard_refused(tenant);
                return Err(ServiceError::SubjectGuardTripped { retry_after });
            }
            Ok(Admission::Refused(_)) => {
                reserved.release().await;
                return Err(ServiceError::SubjectBusy {
                    retry_after: self.pool.retry_hint(),
                });
            }
            Err(e) => {
                reserved.release().await;
                return Err(e.into());
            }
        };

        // 9. Hash, look up, match: the work the call pays for.
        let (outcome, subject) = match self.answer(caller, &valid, deadline, now_ms, lane).await {
            Ok(answered) => answered,
            Err((e, settlement)) => {
                attempt.settle(settlement).await;
                reserved.release().await;
                return Err(e);
            }
        };
        // 10. Record the usage event and its decision-log entry, in one
        // transaction; the answer is returned only once they are durable.
        // This and the settlement of the limits run to their end even if
        // this call is dropped now.
        let decision = decision_entry(caller, req, &outcome, &subject, lane);
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
        let mut step = self.telemetry.step("ledger.write");
        let recorded = commit(
            reserved,
            attempt,
            (event, decision),
            Commit {
                ledger: Arc::clone(&self.ledger),
                counters: Arc::clone(&self.counters),
                tenant: tenant.to_string(),
                matched: outcome.decision,
                leader,
            },
        )
        .await;
        if recorded.is_err() {
            step.fail(Reason::LedgerUnavailable.as_str());
        }
        drop(step);
        // 11. Sign and respond.
        match recorded {
            Ok(Recorded::Inserted) => {
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
                    response: self.respond(caller, req, &valid, &outcome)?,
                    allowance,
                })
            }
            Ok(Recorded::Existing(winner)) => {
                // A duplicate on another replica was recorded first: its
                // answer is the answer, and only it is billed.
                let response = self.replay(caller, req, &valid, &winner, now_ms)?;
                Ok(Answered {
                    response,
                    allowance,
                })
            }
            Err(e) => {
                // Not known to be durable, so not answered (and not billed
                // unless it was written after all; a retry with the same
                // request_id then gets it).
                tracing::error!(error = %e, "usage event not recorded; call refused");
                Err(ServiceError::LedgerUnavailable)
            }
        }
    }

    /// Answers a retry from the ledger: the stored outcome, signed again
    /// over the retried request, if the retried request's fingerprint
    /// matches the stored one.
    fn replay(
        &self,
        caller: &Caller,
        req: &pb::VerifyRequest,
        valid: &ValidRequest<'_>,
        event: &UsageEvent,
        now_ms: i64,
    ) -> Result<pb::VerifyResponse, ServiceError> {
        match idempotency::fingerprint_matches(&self.keyring, &event.fingerprint, req) {
            Some(true) => {}
            Some(false) => {
                return Err(ServiceError::refused(
                    Reason::RequestIdReused,
                    "this request_id was already used for a different request",
                ));
            }
            // Answered under a pepper since retired: it cannot be told
            // apart from a different request, so it is not answered again.
            None => {
                return Err(ServiceError::refused(
                    Reason::RequestIdExpired,
                    "this request_id was answered under a retired pepper; use a new one",
                ));
            }
        }
        let window_ms = self.replay_window_ms;
        let outcome = event
            .replay
            .as_deref()
            .filter(|_| now_ms - event.event_time_ms <= window_ms)
            .and_then(Outcome::from_replay)
            .ok_or(ServiceError::refused(
                Reason::RequestIdExpired,
                "this request_id was answered before the retry window; use a new one",
            ))?;
        tracing::info!(
            tenant = %caller.tenant.id,
            key_id = %caller.key_id,
            transaction_id = %outcome.transaction_id,
            "verify replayed"
        );
        self.respond(caller, req, valid, &outcome)
    }

    /// Hashes, looks up and matches: the work a call pays for. A failure
    /// comes with how the guard attempt is to be settled: `Unanswered` when
    /// the pool refused the job before hashing it (nothing was computed),
    /// `Failed` otherwise.
    async fn answer(
        &self,
        caller: &Caller,
        valid: &ValidRequest<'_>,
        deadline: Option<Instant>,
        now_ms: i64,
        lane: Lane,
    ) -> Result<(Outcome, [u8; 32]), (ServiceError, Settlement)> {
        fn failed(e: impl Into<ServiceError>) -> (ServiceError, Settlement) {
            (e.into(), Settlement::Failed)
        }
        // Hash with the pepper of the registry's current version as last
        // seen, then look the locator up in the current version, reading
        // its pepper in the same snapshot. Only a call that meets a switch
        // to a new pepper finds them different; it derives again under the
        // new one, so every answer comes from one version, found with that
        // version's pepper.
        let mut pepper = self.keyring.serving();
        let mut derived = 0;
        let (key, lookup) = loop {
            let mut step = self.telemetry.step("hash");
            let key = self
                .derive(valid, pepper, deadline, derived, lane)
                .await
                .inspect_err(|(e, _)| step.fail(e.reason().as_str()))?;
            drop(step);
            derived += 1;
            let mut step = self.telemetry.step("store.lookup");
            let lookup = self
                .store
                .lookup(&key.locator())
                .await
                .map_err(failed)
                .inspect_err(|(e, _)| step.fail(e.reason().as_str()))?;
            drop(step);
            let current = lookup.pepper_version;
            if current == 0 || current == pepper {
                break (key, lookup);
            }
            if self.keyring.pepper(current).is_none() || derived >= 3 {
                tracing::error!(
                    pepper_version = current,
                    held = ?self.keyring.held_versions(),
                    "the registry's current version was built with a pepper this replica does not hold"
                );
                return Err((ServiceError::PepperNotHeld, Settlement::Unanswered));
            }
            self.keyring.observe_serving(current);
            pepper = current;
        };
        let (record, registry_version) = (lookup.record, lookup.registry_version);
        // Match under the tenant's policy.
        let policy = caller.tenant.policy.match_policy();
        let outcome = match_claims(
            &key,
            &valid.claims,
            record.as_ref().map(|r| &r.tags),
            &policy,
        );
        let answered = Outcome {
            transaction_id: format!("tx_{}", hex::encode(random_bytes::<16>().map_err(failed)?)),
            issued_at_ms: now_ms,
            registry_version,
            subject_found: outcome.subject_found,
            fields: outcome.fields,
            decision: outcome.decision,
        };
        Ok((answered, key.decision_log_subject()))
    }

    /// Derives the subject key under pepper `pepper` on the pool. A
    /// failure says how the guard attempt is settled: `Unanswered` when the
    /// pool refused the job before hashing (nothing was computed, and
    /// `earlier` evaluations were made for this call), `Failed` otherwise.
    async fn derive(
        &self,
        valid: &ValidRequest<'_>,
        pepper: u32,
        deadline: Option<Instant>,
        earlier: u32,
        lane: Lane,
    ) -> Result<SubjectKey, (ServiceError, Settlement)> {
        let unanswered = if earlier == 0 {
            Settlement::Unanswered
        } else {
            Settlement::Failed
        };
        self.pool
            .derive_in(lane, valid.id.clone(), pepper, deadline)
            .await
            .map_err(|e| match e {
                HashError::Saturated => (
                    ServiceError::Overloaded {
                        retry_after: self.pool.retry_hint(),
                    },
                    unanswered,
                ),
                HashError::DeadlinePassed => (ServiceError::DeadlineExceeded, unanswered),
                HashError::Closed => (ServiceError::ShuttingDown, unanswered),
                HashError::PepperNotHeld(_) => (ServiceError::PepperNotHeld, unanswered),
                HashError::Kdf(e) => (ServiceError::internal(e), Settlement::Failed),
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
            claims_digest: claims_digest(&req.id_number, &valid.raw_claims)?,
            purpose_code: req.purpose_code.clone(),
            consent_digest: consent_digest(&req.consent_reference),
            subject_found: outcome.subject_found,
            results: outcome.fields.clone(),
            decision: outcome.decision,
        };
        let payload = body.encode()?;
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

/// The decision-log entry of an answered call (docs/decision-log.md): who
/// asked, for what, and what was answered, about the subject named only
/// by its Argon2-keyed pseudonym.
fn decision_entry(
    caller: &Caller,
    req: &pb::VerifyRequest,
    outcome: &Outcome,
    subject: &[u8; 32],
    lane: Lane,
) -> Decision {
    let subject = hex::encode(subject);
    let entry = DecisionEntry {
        v: 1,
        time_ms: outcome.issued_at_ms,
        tenant: caller.tenant.id.clone(),
        api_key: caller.key_id.clone(),
        purpose: req.purpose_code.clone(),
        consent: hex::encode(consent_digest(&req.consent_reference)),
        transaction: outcome.transaction_id.clone(),
        request: req.request_id.clone(),
        registry_version: outcome.registry_version,
        method: match lane {
            Lane::Interactive => "Verify",
            Lane::Batch => "VerifyBatch",
        }
        .to_string(),
        fields: outcome
            .fields
            .iter()
            .map(|f| (f.field.name().to_string(), f.result.name().to_string()))
            .collect(),
        decision: if outcome.decision { "YES" } else { "NO" }.to_string(),
        subject: subject.clone(),
    };
    Decision {
        tenant_id: caller.tenant.id.clone(),
        time_ms: outcome.issued_at_ms,
        transaction_id: outcome.transaction_id.clone(),
        subject,
        entry: entry.encode(),
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
            return Err(ServiceError::refused(
                Reason::FieldNotAllowed,
                format!(
                    "the tenant's policy does not allow asking about {}",
                    refused.join(", ")
                ),
            ));
        }
    }
    if !policy.allowed_purposes.is_empty() && !policy.allowed_purposes.iter().any(|p| p == purpose)
    {
        return Err(ServiceError::refused(
            Reason::PurposeNotAllowed,
            "the tenant's policy does not allow this purpose_code",
        ));
    }
    Ok(())
}
