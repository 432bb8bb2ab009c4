//! Rust client for the eKYC verification service.
//!
//! [`Client`] wraps the generated gRPC client with the API key and a
//! deadline on every call (but the `VerifyBatch` stream, which lasts as
//! long as its input), and checks every answer's attestation against
//! the service's published signing keys and the caller's own copy of the
//! request before handing it back. It never logs claims. [`audit_log`]
//! checks the decision log's checkpoints and proofs, and that an answer's
//! log entry records what its attestation says.
#![forbid(unsafe_code)]

pub mod audit_log;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ekyc_domain::Field;
use ekyc_domain::attestation::{self, AttestationBody, claims_digest, consent_digest};
use ekyc_domain::matching::MatchResult;
use ekyc_proto::v1 as pb;
use ekyc_proto::v1::audit_log_service_client::AuditLogServiceClient;
use ekyc_proto::v1::billing_service_client::BillingServiceClient;
use ekyc_proto::v1::registry_service_client::RegistryServiceClient;
use ekyc_proto::v1::tenant_admin_service_client::TenantAdminServiceClient;
use ekyc_proto::v1::verification_service_client::VerificationServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub use ekyc_proto::v1;

/// What can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint URL is invalid or unreachable.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The API key cannot be sent as metadata.
    #[error("api key contains characters not allowed in metadata")]
    BadApiKey,
    /// The service answered with an error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The answer's attestation does not check out.
    #[error("attestation check failed: {0}")]
    Attestation(String),
    /// A checkpoint, a proof or a log entry does not check out.
    #[error("log check failed: {0}")]
    Log(audit_log::LogError),
}

// By hand rather than `#[from]`, which would also make the log error the
// source: its message is already in this one's, and `{:#}` would print it
// twice.
impl From<audit_log::LogError> for ClientError {
    fn from(e: audit_log::LogError) -> ClientError {
        ClientError::Log(e)
    }
}

/// A verified answer: the response and its checked attestation.
#[derive(Debug, Clone)]
pub struct VerifiedAnswer {
    /// The response as received.
    pub response: pb::VerifyResponse,
    /// The decoded attestation body, checked against the request.
    pub attestation: AttestationBody,
}

/// How often a call the server refused unread is sent again.
const REFUSED_STREAM_RETRIES: u8 = 3;

/// True when the server reset the call's stream with `REFUSED_STREAM`,
/// which promises that it processed nothing (RFC 9113 section 8.7), so the
/// call can be sent again as it is. An HTTP/2 server refuses a stream over
/// its `SETTINGS_MAX_CONCURRENT_STREAMS`, and a client that respects the
/// limit still crosses it now and then: it may open a stream before the
/// server's settings arrive, or as soon as it has read the end of an
/// earlier call, before the server has freed that call's slot.
fn refused_unread(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = err.source();
    }
    false
}

/// A connection to the service with a credential and a per-call deadline.
pub struct Client {
    inner: VerificationServiceClient<Channel>,
    channel: Channel,
    api_key: Option<MetadataValue<tonic::metadata::Ascii>>,
    timeout: Duration,
    /// Attestation public keys by key id, fetched from ListSigningKeys on
    /// demand (never a checkpoint key: see [`Client::attestation_key`]).
    keys: Mutex<HashMap<String, [u8; 32]>>,
}

impl Client {
    /// Connects to `endpoint` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(
        endpoint: &str,
        api_key: Option<&str>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        Client::connect_with_tls(endpoint, api_key, timeout, None).await
    }

    /// Connects over TLS (an `https://` endpoint): `tls` names the CA to
    /// trust and, for mutual TLS, the client's certificate and key.
    pub async fn connect_with_tls(
        endpoint: &str,
        api_key: Option<&str>,
        timeout: Duration,
        tls: Option<ClientTlsConfig>,
    ) -> Result<Client, ClientError> {
        let connect_err = |source| ClientError::Connect {
            endpoint: endpoint.to_string(),
            source,
        };
        let mut ep = Endpoint::from_shared(endpoint.to_string())
            .map_err(connect_err)?
            .connect_timeout(Duration::from_secs(5));
        if let Some(tls) = tls {
            ep = ep.tls_config(tls).map_err(connect_err)?;
        }
        let channel = ep.connect().await.map_err(connect_err)?;
        let api_key = api_key
            .map(|k| {
                format!("Bearer {k}")
                    .parse()
                    .map_err(|_| ClientError::BadApiKey)
            })
            .transpose()?;
        Ok(Client {
            inner: VerificationServiceClient::new(channel.clone()),
            channel,
            api_key,
            timeout,
            keys: Mutex::new(HashMap::new()),
        })
    }

    /// A stub for `VerificationService` on the same connection, for calls
    /// that set their own deadline (send requests built with
    /// [`Client::request`], then change it with `set_timeout`).
    pub fn verification(&self) -> VerificationServiceClient<Channel> {
        self.inner.clone()
    }

    /// A stub for the agency's `TenantAdminService` on the same connection;
    /// send requests built with [`Client::request`] so they carry the key
    /// and the deadline.
    pub fn admin(&self) -> TenantAdminServiceClient<Channel> {
        TenantAdminServiceClient::new(self.channel.clone())
    }

    /// A stub for `BillingService` on the same connection (send requests
    /// built with [`Client::request`]).
    pub fn billing(&self) -> BillingServiceClient<Channel> {
        BillingServiceClient::new(self.channel.clone())
    }

    /// A stub for `AuditLogService` (the decision log) on the same
    /// connection (send requests built with [`Client::request`]). The
    /// checks of what it returns are in [`audit_log`].
    pub fn audit_log(&self) -> AuditLogServiceClient<Channel> {
        AuditLogServiceClient::new(self.channel.clone())
    }

    /// A stub for the agency's `RegistryService` on the same connection
    /// (send requests built with [`Client::request`], or for an import
    /// stream, which lasts as long as its hashing,
    /// [`Client::request_with_deadline`]).
    pub fn registry(&self) -> RegistryServiceClient<Channel> {
        RegistryServiceClient::new(self.channel.clone())
    }

    /// Wraps a message with this client's API key and deadline.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.request_with_deadline(message, Some(self.timeout))
    }

    /// Wraps a message with this client's API key and `timeout` (none:
    /// the server's own bound applies).
    pub fn request_with_deadline<T>(
        &self,
        message: T,
        timeout: Option<Duration>,
    ) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Some(timeout) = timeout {
            req.set_timeout(timeout);
        }
        if let Some(k) = &self.api_key {
            req.metadata_mut().insert("authorization", k.clone());
        }
        inject_trace_context(req.metadata_mut());
        req
    }

    /// Calls Verify and returns the raw response, without checking the
    /// attestation.
    pub async fn verify_unchecked(
        &self,
        request: pb::VerifyRequest,
    ) -> Result<pb::VerifyResponse, tonic::Status> {
        Ok(self.verify_raw(request).await?.into_inner())
    }

    /// Calls Verify and returns the whole gRPC response, metadata included
    /// (the tenant's remaining allowance: `x-ratelimit-remaining`,
    /// `x-quota-daily-remaining`, `x-quota-monthly-remaining`), without
    /// checking the attestation.
    pub async fn verify_raw(
        &self,
        request: pb::VerifyRequest,
    ) -> Result<tonic::Response<pb::VerifyResponse>, tonic::Status> {
        let mut refusals = 0;
        loop {
            let mut inner = self.inner.clone();
            match inner.verify(self.request(request.clone())).await {
                Err(status) if refusals < REFUSED_STREAM_RETRIES && refused_unread(&status) => {
                    refusals += 1;
                    tokio::time::sleep(Duration::from_millis(refusals.into())).await;
                }
                answer => return answer,
            }
        }
    }

    /// Calls Verify and checks the attestation before returning.
    pub async fn verify(&self, request: pb::VerifyRequest) -> Result<VerifiedAnswer, ClientError> {
        let response = self.verify_unchecked(request.clone()).await?;
        self.check_answer(&request, response).await
    }

    /// Opens a `VerifyBatch` stream sending `requests`, with the API key
    /// and no deadline: a batch lasts as long as its file, and the server
    /// bounds a stream's lifetime itself (it ends one with `UNAVAILABLE`,
    /// reason `STREAM_LIFETIME_REACHED`, after answering what it read).
    ///
    /// The results are not checked here, because checking needs the
    /// request each one answers: pass every response with its request to
    /// [`Client::check_answer`], and every error to [`status_from_rpc`].
    pub async fn verify_batch<S>(
        &self,
        requests: S,
    ) -> Result<tonic::Streaming<pb::VerifyBatchResult>, tonic::Status>
    where
        S: tokio_stream::Stream<Item = pb::VerifyRequest> + Send + 'static,
    {
        let mut inner = self.inner.clone();
        Ok(inner
            .verify_batch(self.request_with_deadline(requests, None))
            .await?
            .into_inner())
    }

    /// Checks `response`'s attestation against the `request` it answers,
    /// with the published key it names (fetched once, then cached).
    pub async fn check_answer(
        &self,
        request: &pb::VerifyRequest,
        response: pb::VerifyResponse,
    ) -> Result<VerifiedAnswer, ClientError> {
        let key_id = response
            .attestation
            .as_ref()
            .map(|a| a.key_id.clone())
            .ok_or_else(|| ClientError::Attestation("response has no attestation".into()))?;
        let public_key = self.attestation_key(&key_id).await?;
        let attestation = check_attestation(request, &response, &public_key)?;
        Ok(VerifiedAnswer {
            response,
            attestation,
        })
    }

    /// The published signing keys.
    pub async fn signing_keys(&self) -> Result<Vec<pb::SigningKey>, ClientError> {
        let mut inner = self.inner.clone();
        let mut req = tonic::Request::new(pb::ListSigningKeysRequest {});
        inject_trace_context(req.metadata_mut());
        req.set_timeout(self.timeout);
        Ok(inner.list_signing_keys(req).await?.into_inner().keys)
    }

    /// The published attestation key `key_id` (fetched once, then cached).
    /// Only keys published for attestations count (purpose `attestation`,
    /// or none from servers older than the decision log): a checkpoint key
    /// signs other bytes, and accepting it here would let a checkpoint
    /// signature pass for an answer's.
    pub async fn attestation_key(&self, key_id: &str) -> Result<[u8; 32], ClientError> {
        if let Some(k) = self.cached_key(key_id) {
            return Ok(k);
        }
        let keys = self.signing_keys().await?;
        {
            let mut cache = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            for k in keys.into_iter().filter(signs_attestations) {
                if let Ok(bytes) = <[u8; 32]>::try_from(k.public_key.as_slice()) {
                    cache.insert(k.key_id, bytes);
                }
            }
        }
        self.cached_key(key_id).ok_or_else(|| {
            ClientError::Attestation(format!("signing key {key_id} is not published"))
        })
    }

    fn cached_key(&self, key_id: &str) -> Option<[u8; 32]> {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_id)
            .copied()
    }
}

/// Whether a published key signs attestations.
fn signs_attestations(key: &pb::SigningKey) -> bool {
    key.purpose.is_empty() || key.purpose == audit_log::PURPOSE_ATTESTATION
}

/// The `tonic::Status` a `VerifyBatch` item's error stands for: the same
/// code, message and details a unary Verify would have failed with, so
/// `tonic_types::StatusExt::get_error_details` reads its `ErrorInfo`,
/// `BadRequest`, `RetryInfo` and `QuotaFailure` as it would there.
pub fn status_from_rpc(status: &tonic_types::pb::Status) -> tonic::Status {
    tonic::Status::with_details(
        tonic::Code::from_i32(status.code),
        status.message.clone(),
        prost::Message::encode_to_vec(status).into(),
    )
}

/// The claims of a request as `(field, value as sent)` pairs, in field order.
pub fn claim_pairs(c: &pb::Claims) -> Vec<(Field, &str)> {
    c.present()
        .into_iter()
        .filter_map(|(f, v)| Field::from_code(f as u8).map(|f| (f, v)))
        .collect()
}

/// Checks that `response` carries a valid signature by `public_key` over a
/// payload that matches both the response and the caller's own request.
pub fn check_attestation(
    request: &pb::VerifyRequest,
    response: &pb::VerifyResponse,
    public_key: &[u8; 32],
) -> Result<AttestationBody, ClientError> {
    let fail = |m: &str| ClientError::Attestation(m.to_string());
    let att = response
        .attestation
        .as_ref()
        .ok_or_else(|| fail("response has no attestation"))?;
    let body = attestation::verify(public_key, &att.payload, &att.signature)
        .map_err(|e| ClientError::Attestation(e.to_string()))?;
    let claims = request.claims.clone().unwrap_or_default();
    let digest = claims_digest(&request.id_number, &claim_pairs(&claims))
        .map_err(|e| ClientError::Attestation(e.to_string()))?;
    if body.key_id != att.key_id {
        return Err(fail("key id differs from the signed one"));
    }
    if body.claims_digest != digest {
        return Err(fail("claims digest differs from the request sent"));
    }
    if body.request_id != request.request_id
        || body.purpose_code != request.purpose_code
        || body.consent_digest != consent_digest(&request.consent_reference)
    {
        return Err(fail(
            "request id, purpose or consent differ from the request sent",
        ));
    }
    let signed_status = match body.subject_found {
        None => pb::SubjectStatus::Unspecified,
        Some(true) => pb::SubjectStatus::Found,
        Some(false) => pb::SubjectStatus::NotFound,
    };
    if signed_status as i32 != response.subject_status {
        return Err(fail("subject status differs from the signed one"));
    }
    if body.transaction_id != response.transaction_id
        || body.registry_version != response.registry_version
        || body.decision != (response.decision == pb::Decision::Yes as i32)
    {
        return Err(fail(
            "transaction, registry version or decision differ from the response",
        ));
    }
    let signed: Vec<(i32, i32, Option<u32>)> = body
        .results
        .iter()
        .map(|r| {
            (
                i32::from(r.field.code()),
                result_code(r.result),
                r.score.map(u32::from),
            )
        })
        .collect();
    let shown: Vec<(i32, i32, Option<u32>)> = response
        .results
        .iter()
        .map(|r| (r.field, r.result, r.score))
        .collect();
    if signed != shown {
        return Err(fail("field results differ from the signed ones"));
    }
    Ok(body)
}

fn result_code(r: MatchResult) -> i32 {
    i32::from(r.code())
}

/// Human name of a field code.
pub fn field_name(code: i32) -> String {
    u8::try_from(code)
        .ok()
        .and_then(Field::from_code)
        .map_or_else(|| format!("field_{code}"), |f| f.name().to_string())
}

/// Human name of a result code (`MATCH`, `MATCH_FOLDED`, ...).
pub fn result_name(code: i32) -> &'static str {
    match pb::MatchResult::try_from(code) {
        Ok(pb::MatchResult::Match) => "MATCH",
        Ok(pb::MatchResult::MatchFolded) => "MATCH_FOLDED",
        Ok(pb::MatchResult::NoMatch) => "NO_MATCH",
        Ok(pb::MatchResult::NotAvailable) => "NOT_AVAILABLE",
        _ => "UNSPECIFIED",
    }
}

/// Puts the caller's current OpenTelemetry context (the W3C
/// `traceparent`, with whatever the application's propagator adds) into a
/// request's metadata, so the server's spans join the caller's trace. The
/// propagator is the one the application installed globally
/// (`opentelemetry::global::set_text_map_propagator`); without one, which
/// is the default, nothing is added.
pub fn inject_trace_context(metadata: &mut tonic::metadata::MetadataMap) {
    struct Injector<'a>(&'a mut tonic::metadata::MetadataMap);
    impl opentelemetry::propagation::Injector for Injector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(key), Ok(value)) = (
                tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
                tonic::metadata::MetadataValue::try_from(value),
            ) {
                self.0.insert(key, value);
            }
        }
    }
    let cx = opentelemetry::Context::current();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut Injector(metadata))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_error_reads_like_a_unary_one() {
        use tonic_types::{ErrorDetails, StatusExt};
        let unary = tonic::Status::with_error_details(
            tonic::Code::ResourceExhausted,
            "daily quota used up",
            ErrorDetails::with_error_info("QUOTA_EXCEEDED", "ekyc.v1", []),
        );
        // What the server puts in a VerifyBatchResult: the status that a
        // unary call carries in grpc-status-details-bin.
        let rpc: tonic_types::pb::Status =
            prost::Message::decode(unary.details()).expect("google.rpc.Status");
        let status = status_from_rpc(&rpc);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.message(), "daily quota used up");
        let info = status.get_error_details().error_info().cloned();
        assert_eq!(info.map(|i| i.reason).as_deref(), Some("QUOTA_EXCEEDED"));
    }

    #[test]
    fn only_attestation_keys_verify_attestations() {
        let key = |purpose: &str| pb::SigningKey {
            key_id: "k".into(),
            purpose: purpose.into(),
            ..Default::default()
        };
        assert!(signs_attestations(&key("attestation")));
        assert!(signs_attestations(&key("")), "older servers send none");
        assert!(!signs_attestations(&key("checkpoint")));
        assert!(!signs_attestations(&key("invoice-v9")));
    }

    #[test]
    fn only_a_refused_stream_is_sent_again() {
        let reset = |reason| tonic::Status::from_error(Box::new(h2::Error::from(reason)));
        let refused = reset(h2::Reason::REFUSED_STREAM);
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(refused_unread(&refused));
        // A stream cut for any other reason may have been processed.
        assert!(!refused_unread(&reset(h2::Reason::CANCEL)));
        assert!(!refused_unread(&reset(h2::Reason::INTERNAL_ERROR)));
        // The service's own UNAVAILABLE (say, shedding load) is an answer.
        assert!(!refused_unread(&tonic::Status::unavailable("overloaded")));
    }
}
