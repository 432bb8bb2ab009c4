//! The gRPC surface: thin adapters from tonic to [`App`], and the server.
//!
//! Handlers only pull the credential and deadline out of the metadata,
//! call the request path and convert its error with `Status::from`, the one
//! place errors become statuses (`error.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ekyc_proto::v1 as pb;
use ekyc_proto::v1::audit_log_service_server::{AuditLogService, AuditLogServiceServer};
use ekyc_proto::v1::billing_service_server::{BillingService, BillingServiceServer};
use ekyc_proto::v1::registry_service_server::{RegistryService, RegistryServiceServer};
use ekyc_proto::v1::tenant_admin_service_server::{TenantAdminService, TenantAdminServiceServer};
use ekyc_proto::v1::verification_service_server::{VerificationService, VerificationServiceServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::App;
use crate::admin::AdminService;
use crate::audit_log::AuditLogService as AuditLogHandle;
use crate::auth::Credential;
use crate::billing::BillingService as BillingHandle;
use crate::error::allowance;
use crate::registry::RegistryService as RegistryHandle;
use crate::stack;
use crate::store::TenantStatus;
use crate::transport::{BufferBudget, MessageLimitLayer, limit_connections};
use crate::verify::VerifyService;

/// The `VerificationService` adapter.
pub struct VerificationApi {
    service: VerifyService,
    /// Turns true when the server starts shutting down: batch streams stop
    /// reading, answer what they read and end.
    stopping: tokio::sync::watch::Receiver<bool>,
}

#[tonic::async_trait]
impl VerificationService for VerificationApi {
    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let credential = credential(&request);
        let deadline = deadline(request.metadata());
        let answered = self
            .service
            .verify(&credential, request.get_ref(), deadline)
            .await?;
        let mut response = Response::new(answered.response);
        let a = answered.allowance;
        for (header, value) in [
            (allowance::RATE_REMAINING, a.rate_remaining),
            (allowance::DAILY_REMAINING, a.daily_remaining),
            (allowance::MONTHLY_REMAINING, a.monthly_remaining),
        ] {
            if let Some(v) = value {
                response.metadata_mut().insert(header, v.into());
            }
        }
        Ok(response)
    }

    type VerifyBatchStream = crate::batch::Results;

    async fn verify_batch(
        &self,
        request: Request<tonic::Streaming<pb::VerifyRequest>>,
    ) -> Result<Response<Self::VerifyBatchStream>, Status> {
        let credential = credential(&request);
        let deadline = deadline(request.metadata());
        let items = request.into_inner();
        let results = self
            .service
            .verify_batch(credential, items, self.stopping.clone(), deadline)
            .await?;
        Ok(Response::new(results))
    }

    async fn list_signing_keys(
        &self,
        _request: Request<pb::ListSigningKeysRequest>,
    ) -> Result<Response<pb::ListSigningKeysResponse>, Status> {
        Ok(Response::new(self.service.list_signing_keys().await?))
    }
}

/// The `TenantAdminService` adapter.
pub struct TenantAdminApi {
    service: AdminService,
}

/// Runs an admin method with the call's credential and wraps its answer.
macro_rules! admin_call {
    ($self:ident, $request:ident, |$app:ident, $cred:ident, $msg:ident| $body:expr, $wrap:expr) => {{
        let credential = credential(&$request);
        let $app = &$self.service;
        let $cred = &credential;
        let $msg = $request.get_ref();
        let out = $body.await?;
        Ok(Response::new($wrap(out)))
    }};
}

/// The `AuditLogService` adapter.
pub struct AuditLogApi {
    service: AuditLogHandle,
}

#[tonic::async_trait]
impl AuditLogService for AuditLogApi {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.get_checkpoint(cred, msg),
            |r| r
        )
    }

    async fn get_checkpoint_at(
        &self,
        request: Request<pb::GetCheckpointAtRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.get_checkpoint_at(cred, msg),
            |r| r
        )
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.get_inclusion_proof(cred, msg),
            |r| r
        )
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.get_consistency_proof(cred, msg),
            |r| r
        )
    }

    async fn list_log_entries(
        &self,
        request: Request<pb::ListLogEntriesRequest>,
    ) -> Result<Response<pb::ListLogEntriesResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.list_entries(cred, msg),
            |r| r
        )
    }

    async fn get_admin_audit_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.get_admin_checkpoint(cred, msg),
            |r| r
        )
    }

    async fn list_subject_accesses(
        &self,
        request: Request<pb::ListSubjectAccessesRequest>,
    ) -> Result<Response<pb::ListSubjectAccessesResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.list_subject_accesses(cred, msg),
            |r| r
        )
    }
}

/// The `BillingService` adapter.
pub struct BillingApi {
    service: BillingHandle,
}

#[tonic::async_trait]
impl BillingService for BillingApi {
    async fn get_usage_summary(
        &self,
        request: Request<pb::GetUsageSummaryRequest>,
    ) -> Result<Response<pb::GetUsageSummaryResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.usage_summary(cred, msg),
            |r| r
        )
    }

    async fn list_price_plans(
        &self,
        request: Request<pb::ListPricePlansRequest>,
    ) -> Result<Response<pb::ListPricePlansResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, _m| app.list_price_plans(cred),
            |r| r
        )
    }

    async fn get_price_plan(
        &self,
        request: Request<pb::GetPricePlanRequest>,
    ) -> Result<Response<pb::GetPricePlanResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.get_price_plan(cred, msg),
            |r| r
        )
    }

    async fn create_invoice(
        &self,
        request: Request<pb::CreateInvoiceRequest>,
    ) -> Result<Response<pb::CreateInvoiceResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.create_invoice(cred, msg),
            |r| r
        )
    }

    async fn finalize_invoice(
        &self,
        request: Request<pb::FinalizeInvoiceRequest>,
    ) -> Result<Response<pb::FinalizeInvoiceResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.finalize_invoice(cred, msg),
            |r| r
        )
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.list_invoices(cred, msg),
            |r| r
        )
    }

    async fn export_invoice(
        &self,
        request: Request<pb::ExportInvoiceRequest>,
    ) -> Result<Response<pb::ExportInvoiceResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.export_invoice(cred, msg),
            |r| r
        )
    }
}

#[tonic::async_trait]
impl TenantAdminService for TenantAdminApi {
    async fn clear_subject_guard(
        &self,
        request: Request<pb::ClearSubjectGuardRequest>,
    ) -> Result<Response<pb::ClearSubjectGuardResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.clear_subject_guard(cred, msg),
            |r| r
        )
    }

    async fn get_tenant_usage(
        &self,
        request: Request<pb::GetTenantUsageRequest>,
    ) -> Result<Response<pb::GetTenantUsageResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.tenant_usage(cred, msg),
            |r| r
        )
    }

    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.create_tenant(cred, msg),
            |t| { pb::CreateTenantResponse { tenant: Some(t) } }
        )
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::GetTenantResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.get_tenant(cred, msg),
            |t| { pb::GetTenantResponse { tenant: Some(t) } }
        )
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.list_tenants(cred, msg),
            |r| r
        )
    }

    async fn update_tenant(
        &self,
        request: Request<pb::UpdateTenantRequest>,
    ) -> Result<Response<pb::UpdateTenantResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.update_tenant(cred, msg),
            |t| { pb::UpdateTenantResponse { tenant: Some(t) } }
        )
    }

    async fn suspend_tenant(
        &self,
        request: Request<pb::SuspendTenantRequest>,
    ) -> Result<Response<pb::SuspendTenantResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.set_tenant_status(
                cred,
                &msg.tenant_id,
                TenantStatus::Suspended,
                &msg.reason
            ),
            |t| pb::SuspendTenantResponse { tenant: Some(t) }
        )
    }

    async fn resume_tenant(
        &self,
        request: Request<pb::ResumeTenantRequest>,
    ) -> Result<Response<pb::ResumeTenantResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.set_tenant_status(cred, &msg.tenant_id, TenantStatus::Active, ""),
            |t| pb::ResumeTenantResponse { tenant: Some(t) }
        )
    }

    async fn issue_api_key(
        &self,
        request: Request<pb::IssueApiKeyRequest>,
    ) -> Result<Response<pb::IssueApiKeyResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.issue_api_key(cred, msg),
            |r| r
        )
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.list_api_keys(cred, msg),
            |r| r
        )
    }

    async fn rotate_api_key(
        &self,
        request: Request<pb::RotateApiKeyRequest>,
    ) -> Result<Response<pb::RotateApiKeyResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.rotate_api_key(cred, msg),
            |r| r
        )
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.revoke_api_key(cred, msg),
            |k| { pb::RevokeApiKeyResponse { api_key: Some(k) } }
        )
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.list_audit_events(cred, msg),
            |r| r
        )
    }
}

/// `ekyc.v1.RegistryService` over the registry handle.
pub struct RegistryApi {
    service: RegistryHandle,
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn import_records(
        &self,
        request: Request<tonic::Streaming<pb::ImportRecordsRequest>>,
    ) -> Result<Response<pb::ImportRecordsResponse>, Status> {
        let credential = credential(&request);
        let chunks = request.into_inner();
        Ok(Response::new(
            self.service.import(&credential, chunks).await?,
        ))
    }

    async fn publish_version(
        &self,
        request: Request<pb::PublishVersionRequest>,
    ) -> Result<Response<pb::PublishVersionResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.publish_version(cred, msg),
            |r| r
        )
    }

    async fn discard_version(
        &self,
        request: Request<pb::DiscardVersionRequest>,
    ) -> Result<Response<pb::DiscardVersionResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.discard_version(cred, msg),
            |r| r
        )
    }

    async fn purge_pepper(
        &self,
        request: Request<pb::PurgePepperRequest>,
    ) -> Result<Response<pb::PurgePepperResponse>, Status> {
        admin_call!(
            self,
            request,
            |app, cred, msg| app.purge_pepper(cred, msg),
            |r| r
        )
    }
}

/// What the call presented: its API key and, over mutual TLS, the subject
/// CN of the client certificate the TLS layer verified.
fn credential<T>(request: &Request<T>) -> Credential {
    Credential {
        api_key: api_key(request.metadata()).map(zeroize::Zeroizing::new),
        client_cert_subject: request
            .peer_certs()
            .and_then(|certs| certs.first().and_then(|c| common_name(c.as_ref()))),
    }
}

/// The subject CN of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_string())
}

/// The API key from `authorization: Bearer <key>` or `x-api-key: <key>`.
fn api_key(md: &tonic::metadata::MetadataMap) -> Option<String> {
    let bearer = md
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim())
        .map(|v| match v.strip_prefix("Bearer") {
            Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest.trim(),
            _ => v,
        });
    let header = md
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    // An empty header is no credential at all, not a malformed one.
    bearer
        .filter(|v| !v.is_empty())
        .or(header.filter(|v| !v.is_empty()))
        .map(str::to_string)
}

/// The caller's deadline from the `grpc-timeout` header (gRPC over HTTP/2
/// spec: up to 8 digits and a unit H, M, S, m, u or n).
fn deadline(md: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let raw = md.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Instant::now().checked_add(timeout)
}

/// The server failed to start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed.
    #[error("grpc transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptors.
    #[error("grpc reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves the API on `listener` until `shutdown` completes, then reports
/// NOT_SERVING, stops accepting, and lets in-flight calls drain for at most
/// the configured grace period. Use [`crate::lifecycle::serve`], which
/// also runs and stops what serves beside it.
pub async fn run(
    listener: TcpListener,
    probes: Option<TcpListener>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // For liveness probes: SERVING for as long as the process runs, so a
    // replica that is draining (NOT_SERVING overall, so taken out of
    // rotation) is not also killed for it.
    health
        .set_service_status(LIVENESS, tonic_health::ServingStatus::Serving)
        .await;
    health
        .set_serving::<VerificationServiceServer<VerificationApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ekyc_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // One handle per service, each over only the parts it uses.
    let (stopping_batches, stopping) = tokio::sync::watch::channel(false);
    let api = VerificationApi {
        service: VerifyService::new(&app),
        stopping,
    };
    let admin = TenantAdminApi {
        service: AdminService::new(&app),
    };
    let billing = BillingApi {
        service: BillingHandle::new(&app),
    };
    let registry = RegistryApi {
        service: RegistryHandle::new(&app),
    };
    let audit_log = AuditLogApi {
        service: AuditLogHandle::new(&app),
    };
    health
        .set_serving::<TenantAdminServiceServer<TenantAdminApi>>()
        .await;
    health
        .set_serving::<BillingServiceServer<BillingApi>>()
        .await;
    health
        .set_serving::<RegistryServiceServer<RegistryApi>>()
        .await;
    health
        .set_serving::<AuditLogServiceServer<AuditLogApi>>()
        .await;
    let grace = app.shutdown_grace;

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutdown requested: reporting NOT_SERVING and draining");
        stopping_batches.send_replace(true);
        health
            .set_not_serving::<VerificationServiceServer<VerificationApi>>()
            .await;
        health
            .set_not_serving::<TenantAdminServiceServer<TenantAdminApi>>()
            .await;
        health
            .set_not_serving::<BillingServiceServer<BillingApi>>()
            .await;
        health
            .set_not_serving::<RegistryServiceServer<RegistryApi>>()
            .await;
        health
            .set_not_serving::<AuditLogServiceServer<AuditLogApi>>()
            .await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let _ = stopping_tx.send(());
    };

    let t = &app.transport;
    let secs = std::time::Duration::from_secs;
    let limits = t.max_message_bytes;
    let budget = BufferBudget::new(
        t.max_buffered_request_bytes,
        Arc::clone(&app.transport_stats),
    );
    let mut builder = tonic::transport::Server::builder()
        // Without it hyper's default of 200 is removed and a client may
        // open streams without end (SETTINGS_MAX_CONCURRENT_STREAMS).
        .max_concurrent_streams(t.max_concurrent_streams)
        .http2_max_header_list_size(t.max_header_list_bytes)
        // What a client may send before the server reads it.
        .initial_stream_window_size(t.stream_window_bytes)
        .initial_connection_window_size(t.connection_window_bytes)
        // Dead peers are found and their streams freed.
        .http2_keepalive_interval(
            (t.keepalive_interval_secs > 0).then(|| secs(t.keepalive_interval_secs)),
        )
        .http2_keepalive_timeout(Some(secs(t.keepalive_timeout_secs.max(1))));
    if t.max_connection_age_secs > 0 {
        // Old connections go away (GOAWAY, then a grace) so clients spread
        // over replicas that were added since.
        builder = builder
            .max_connection_age(secs(t.max_connection_age_secs))
            .max_connection_age_grace(secs(t.max_connection_age_grace_secs));
    }
    if let Some(tls) = app.tls.clone() {
        builder = builder.tls_config(tls)?;
    }
    // Each message's declared size is checked against its service's limit
    // before tonic reserves a buffer for it (in the stack); tonic's own
    // limit, the same, stays behind it as a second line.
    let server = builder
        .layer(stack::layers(
            Arc::clone(&app.counters),
            app.telemetry.clone(),
            MessageLimitLayer::new(limits, budget),
            // No call, stalled or not, outlives these (a caller's shorter
            // grpc-timeout wins).
            stack::CallTimeouts {
                request: secs(t.request_timeout_secs),
                import: secs(t.import_timeout_secs),
            },
        ))
        .add_service(
            health_service
                .clone()
                .max_decoding_message_size(limits.other),
        )
        .add_service(reflection.max_decoding_message_size(limits.other))
        .add_service(
            VerificationServiceServer::new(api).max_decoding_message_size(limits.verification),
        )
        .add_service(
            TenantAdminServiceServer::new(admin).max_decoding_message_size(limits.tenant_admin),
        )
        .add_service(BillingServiceServer::new(billing).max_decoding_message_size(limits.billing))
        .add_service(
            RegistryServiceServer::new(registry).max_decoding_message_size(limits.registry),
        )
        .add_service(AuditLogServiceServer::new(audit_log).max_decoding_message_size(limits.other))
        .serve_with_incoming_shutdown(
            limit_connections(
                incoming(listener),
                t.max_connections,
                Arc::clone(&app.transport_stats),
            ),
            signal,
        );

    // The probe listener: health only, plaintext, no limits but the
    // message size (it serves two tiny calls). It outlives the drain, so a
    // probe sees NOT_SERVING rather than a refused connection.
    let (stop_probes, probes_stopped) = tokio::sync::oneshot::channel::<()>();
    let probes = probes.map(|listener| {
        let health = health_service.max_decoding_message_size(limits.other);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(incoming(listener), async {
                    let _ = probes_stopped.await;
                }),
        )
    });

    // Bound the drain: once shutdown starts, in-flight calls get `grace`.
    let drain_limit = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let served = tokio::select! {
        result = server => result,
        () = drain_limit => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight calls did not drain in time; stopping anyway");
            Ok(())
        }
    };
    let _ = stop_probes.send(());
    if let Some(task) = probes
        && let Ok(Err(e)) = task.await
    {
        tracing::warn!(error = %e, "the health listener failed");
    }
    served?;
    // What App::open started is closed by its owner (lifecycle::serve),
    // not here.
    Ok(())
}

/// The health service name that stays SERVING until the process exits.
pub const LIVENESS: &str = "liveness";

/// Accepted connections with Nagle's algorithm off. gRPC sends small
/// frames (headers, then data, then trailers); with Nagle on, the second
/// waits for the peer's delayed ACK, adding ~40 ms to every answer. tonic
/// sets this itself only for listeners it binds.
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(stream) = &accepted
            && let Err(e) = stream.set_nodelay(true)
        {
            tracing::debug!(error = %e, "cannot disable Nagle on a connection");
        }
        accepted
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    #[test]
    fn credential_from_either_header() {
        let mut md = MetadataMap::new();
        md.insert("authorization", "Bearer ekyc_x".parse().expect("value"));
        assert_eq!(api_key(&md).as_deref(), Some("ekyc_x"));
        let mut md = MetadataMap::new();
        md.insert("x-api-key", "ekyc_y".parse().expect("value"));
        assert_eq!(api_key(&md).as_deref(), Some("ekyc_y"));
        assert_eq!(api_key(&MetadataMap::new()), None);
        let mut md = MetadataMap::new();
        md.insert("authorization", "Bearer ".parse().expect("value"));
        assert_eq!(api_key(&md), None, "an empty key is a missing key");
    }

    #[test]
    fn grpc_timeout_parses() {
        let mut md = MetadataMap::new();
        md.insert("grpc-timeout", "250m".parse().expect("value"));
        let d = deadline(&md).expect("deadline");
        let left = d - Instant::now();
        assert!(left <= Duration::from_millis(250) && left > Duration::from_millis(200));
        md.insert("grpc-timeout", "bogus".parse().expect("value"));
        assert!(deadline(&md).is_none());
    }
}
