//! The eKYC verification server, `ekycd`, as a library.
//!
//! It wires the pure domain (`ekyc-domain`) to storage, the bounded Argon2
//! pool, attestation signing and gRPC. [`grpc::run`] serves a listener
//! until a shutdown future completes, so tests start a real server on
//! `127.0.0.1:0` and stop it deterministically.
//!
//! Architecture invariant: no raw citizen data (ID numbers, names, dates,
//! addresses, phones) is written to the store, a log line or an error
//! message. Raw values live only in the memory of the call that carries
//! them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit_log;
pub mod auth;
pub mod authz;
pub mod batch;
pub mod billing;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod grpc;
pub mod hashing;
pub mod idempotency;
pub mod import;
pub mod keyring;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod secrets;
pub mod stack;
pub mod store;
pub mod tenants;
#[cfg(feature = "testsuite")]
pub mod test_support;
pub mod transport;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

pub use config::Config;

use crate::hashing::HashPool;
use crate::secrets::{SecretError, Signer};
use crate::store::{Store, StoreError};

/// How long attestations signed by a retired key stay verifiable: retired
/// public keys are published with `not_after = retired + this`.
pub const ATTESTATION_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The parts every service handle is built over (`VerifyService`,
/// `AdminService`, `BillingService` each take only what they use):
/// opened by [`App::open`], closed by [`App::close`].
pub struct App {
    /// Registry, tenants, keys.
    pub store: Store,
    /// The pepper, request fingerprints and guard pseudonyms.
    pub keyring: Arc<keyring::Keyring>,
    /// The bounded Argon2 pool (hashing only).
    pub pool: Arc<HashPool>,
    /// The attestation signing key.
    pub signer: Arc<Signer>,
    /// How long in-flight calls may drain at shutdown.
    pub shutdown_grace: Duration,
    /// How long after retirement a signing key is still published as valid.
    pub attestation_validity_ms: i64,
    /// TLS (and mutual TLS) settings; `None` serves plaintext.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Rate limits, quotas and the subject guard.
    pub limiter: Arc<ekyc_limits::Limiter>,
    /// Call outcomes, for the metrics endpoint and tests.
    pub counters: Arc<metrics::Counters>,
    /// The usage ledger, price plans and invoices.
    pub ledger: Arc<ekyc_billing::Ledger>,
    /// Billing settings (idempotency window, issuer, default plan).
    pub billing: config::BillingConfig,
    /// Verify calls in flight by (tenant, request id), so concurrent
    /// duplicates run once.
    pub(crate) in_flight: Arc<idempotency::InFlight>,
    /// The time the request path decides by (manual in tests).
    pub clock: Arc<clock::Clock>,
    /// Transport limits the server is built with.
    pub transport: config::TransportConfig,
    /// What the transport limits refused, for metrics.
    pub transport_stats: Arc<transport::TransportStats>,
    /// The bounds of VerifyBatch streams and the per-tenant slots they share.
    pub batches: Arc<batch::Batches>,
    /// Spans and metrics over OTLP (off unless `telemetry.otlp_endpoint`).
    pub telemetry: ekyc_telemetry::Telemetry,
    /// When the current signing key started signing (unix ms), for the
    /// rotation alert.
    pub signing_key_since_ms: i64,
    /// When the server's TLS certificate expires (unix seconds), if TLS is on.
    pub tls_not_after_secs: Option<i64>,
    /// The key that signs the decision log's checkpoints.
    pub checkpoint_key: Arc<audit_log::CheckpointKey>,
    /// The decision log's settings.
    pub decision_log: config::DecisionLogConfig,
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store failed to open or migrate.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A secret file is missing or malformed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The limits configuration is invalid.
    #[error(transparent)]
    Limits(#[from] ekyc_limits::ConfigError),
    /// The ledger failed to open.
    #[error("billing ledger: {0}")]
    Ledger(#[from] ekyc_billing::LedgerError),
    /// The Argon2id implementation failed its self-test on this CPU.
    #[error("argon2: {0}")]
    Kdf(#[from] ekyc_domain::keys::KdfError),
    /// The OTLP exporter could not be set up.
    #[error(transparent)]
    Telemetry(#[from] ekyc_telemetry::StartError),
    /// The TLS certificate cannot be parsed.
    #[error("tls.cert_file: {0}")]
    TlsCertificate(String),
    /// The checkpoint key cannot sign under the configured origin.
    #[error("decision_log.origin: {0}")]
    Origin(String),
    /// A TLS file cannot be read.
    #[error("{key}: cannot read {path}: {source}")]
    Tls {
        /// Config key naming the file.
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The server's TLS settings from the configured files, and when the
/// certificate expires (unix seconds).
fn tls_config(
    tls: &config::TlsConfig,
) -> Result<Option<(tonic::transport::ServerTlsConfig, i64)>, StartError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |key: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| StartError::Tls {
            key,
            path: path.to_path_buf(),
            source,
        })
    };
    let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
        return Ok(None);
    };
    let cert_pem = read("tls.cert_file", cert)?;
    let not_after = leaf_not_after(&cert_pem)?;
    let mut server =
        ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, read("tls.key_file", key)?));
    if let Some(ca) = &tls.client_ca_file {
        server = server
            .client_ca_root(Certificate::from_pem(read("tls.client_ca_file", ca)?))
            .client_auth_optional(!tls.require_client_cert);
    }
    Ok(Some((server, not_after)))
}

/// The expiry (unix seconds) of the first certificate in a PEM chain: the
/// server's own, which is the one that stops connections when it lapses.
fn leaf_not_after(pem: &[u8]) -> Result<i64, StartError> {
    let bad = |what: String| StartError::TlsCertificate(what);
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    Ok(cert.validity().not_after.timestamp())
}

/// Telemetry as configured: off without an endpoint.
fn telemetry(config: &config::TelemetryConfig) -> Result<ekyc_telemetry::Telemetry, StartError> {
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(ekyc_telemetry::Telemetry::off());
    };
    let telemetry = ekyc_telemetry::Telemetry::start(&ekyc_telemetry::Settings {
        otlp_endpoint: endpoint.clone(),
        service_name: config.service_name.clone(),
        instance_id: Some(config.instance_id.clone()).filter(|id| !id.is_empty()),
        sample_ratio: config.sample_ratio,
        max_queued_spans: config.max_queued_spans,
        export_timeout: Duration::from_millis(config.export_timeout_ms),
        metrics_interval: Duration::from_secs(config.metrics_interval_secs),
    })?;
    tracing::info!(endpoint = %endpoint, "exporting traces and metrics over OTLP");
    Ok(telemetry)
}

impl App {
    /// Opens the store, loads (or, for development, generates) the pepper
    /// and signing key, publishes the signing key and starts the pool.
    pub async fn open(config: &Config) -> Result<App, StartError> {
        let tls = tls_config(&config.tls)?;
        let telemetry = telemetry(&config.telemetry)?;
        let limiter = Arc::new(ekyc_limits::Limiter::new(config.limits.clone())?);
        let store = Store::open(&config.database_url(), &config.database).await?;
        let params = config.kdf_params();
        let implementation = config.kdf_implementation();
        // Before any key is derived: the chosen code gives the published
        // answer and RustCrypto's keys on this CPU.
        ekyc_domain::keys::self_test(implementation, &params)?;
        store.register_kdf_params(&params).await?;
        let mut peppers = Vec::new();
        for file in config.pepper_files() {
            peppers.push(secrets::load_pepper(&file)?);
        }
        let primary = peppers.remove(0);
        let signer = secrets::load_signer(
            &config.signing_key_file(),
            config.signing.generate_if_missing,
        )?;
        store
            .publish_signing_key(
                store::PURPOSE_ATTESTATION,
                signer.key_id(),
                &signer.public_key(),
                clock::now_ms(),
            )
            .await?;
        let checkpoint_key = audit_log::CheckpointKey::new(
            &config.decision_log.origin,
            secrets::load_checkpoint_key(
                &config.checkpoint_key_file(),
                config.signing.generate_if_missing,
            )?,
        )
        .map_err(StartError::Origin)?;
        store
            .publish_signing_key(
                store::PURPOSE_CHECKPOINT,
                checkpoint_key.key_id(),
                &checkpoint_key.public_key(),
                clock::now_ms(),
            )
            .await?;
        let signing_key_since_ms = store
            .list_signing_keys()
            .await?
            .into_iter()
            .find(|k| k.key_id == signer.key_id())
            .map_or_else(clock::now_ms, |k| k.not_before_ms);
        let ledger =
            ekyc_billing::Ledger::open_with(&config.billing_database_url(), config.ledger_pool())
                .await?;
        // The demo plan is always there, so a tenant can be billed from day
        // one; storing it again is a no-op.
        ledger
            .put_plan(&ekyc_billing::pricing::demo_plan(), clock::now_ms())
            .await?;
        let keyring = Arc::new(keyring::Keyring::new(primary, peppers));
        // Verify derives with the pepper of the registry's current version;
        // every lookup reads it again, this is where the first one starts.
        keyring.observe_serving(store.registry_pepper_version().await?);
        let pool = Arc::new(HashPool::start(
            Arc::clone(&keyring),
            (params, implementation),
            config.pool_threads(),
            config.queue_capacity(),
        ));
        tracing::info!(
            signing_key = signer.key_id(),
            pepper_version = config.pepper.version,
            serving_pepper_version = keyring.serving(),
            held_pepper_versions = ?keyring.held_versions(),
            kdf_params_id = params.id,
            argon2 = %implementation.backend(),
            hashing_threads = pool.threads(),
            queue_capacity = config.queue_capacity(),
            shared_limits = limiter.is_shared(),
            "service state opened"
        );
        Ok(App {
            store,
            keyring,
            pool,
            signer: Arc::new(signer),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
            attestation_validity_ms: ATTESTATION_VALIDITY.as_millis() as i64,
            tls_not_after_secs: tls.as_ref().map(|(_, not_after)| *not_after),
            tls: tls.map(|(config, _)| config),
            limiter,
            counters: Arc::default(),
            ledger: Arc::new(ledger),
            billing: config.billing.clone(),
            in_flight: Arc::default(),
            clock: Arc::new(clock::Clock::System),
            transport: config.transport.clone(),
            transport_stats: Arc::default(),
            batches: Arc::new(batch::Batches::new(
                config.batch_per_stream(),
                config.batch_per_tenant(),
                Duration::from_secs(config.batch.max_stream_secs),
                Duration::from_secs(config.batch.item_timeout_secs),
            )),
            telemetry,
            signing_key_since_ms,
            checkpoint_key: Arc::new(checkpoint_key),
            decision_log: config.decision_log.clone(),
        })
    }

    /// Stops and flushes what [`App::open`] started, in reverse order: the
    /// hashing pool takes no more work, the ledger commits every usage
    /// event it acknowledged and closes, then the store closes. Every
    /// `ekycd` command that opens an `App` ends here.
    pub async fn close(&self) {
        self.pool.close();
        self.ledger.close().await;
        self.store.close().await;
        // Last, so the spans of the calls that drained go out too. The SDK
        // blocks while it exports; a lost collector costs at most the bound.
        let telemetry = self.telemetry.clone();
        let _ =
            tokio::task::spawn_blocking(move || telemetry.shutdown(Duration::from_secs(3))).await;
    }
}
