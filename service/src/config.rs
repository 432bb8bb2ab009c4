//! Typed configuration with defaults, loaded from a TOML file, then
//! `EKYCD_*` environment variables, then command-line flags (each layer
//! overrides the one before).
//!
//! The sources are passed in (a path, a map of variables, a list of
//! overrides) rather than read from the process, so tests hand in maps.
//! Unknown keys anywhere are an error naming the key.
//!
//! Environment variables map to keys by dropping the `EKYCD_` prefix,
//! lowercasing, and reading `__` as a section separator:
//! `EKYCD_ARGON2__MEMORY_KIB=65536` sets `argon2.memory_kib`.
//! `EKYCD_CONFIG` names the file and is not itself a key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ekyc_domain::keys::{KdfImplementation, KdfParams};
use serde::Deserialize;

/// Prefix of the environment variables the server reads.
pub const ENV_PREFIX: &str = "EKYCD_";

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Directory for the embedded database and generated development keys.
    pub data_dir: PathBuf,
    /// Database URL; default `sqlite://<data_dir>/ekyc.db`. A
    /// `postgres://` URL holds every store there (registry, tenants, keys,
    /// audit, signing keys, and the ledger unless `billing.database_url`
    /// says otherwise), which is what replicas share. TLS to PostgreSQL is
    /// set in the URL: `?sslmode=verify-full&sslrootcert=/path/ca.pem`.
    pub database_url: Option<String>,
    /// Connection pool and timeouts of the database.
    pub database: DatabaseConfig,
    /// Pepper settings.
    pub pepper: PepperConfig,
    /// Attestation signing key settings.
    pub signing: SigningConfig,
    /// Argon2id cost and the hashing pool.
    pub argon2: Argon2Config,
    /// Logging.
    pub log: LogConfig,
    /// TLS and mutual TLS; plaintext when no certificate is set.
    pub tls: TlsConfig,
    /// How long in-flight calls may take to drain after a shutdown signal.
    pub shutdown_grace_secs: u64,
    /// Rate limits, quotas and the subject guard; shared through Redis
    /// when `limits.redis_url` is set.
    pub limits: ekyc_limits::LimitsConfig,
    /// Address of the Prometheus scrape endpoint (`GET /metrics`); unset
    /// serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// The usage ledger and invoices.
    pub billing: BillingConfig,
    /// Transport limits: what any client, authenticated or not, can make
    /// the server hold.
    pub transport: TransportConfig,
    /// Bulk verification streams (`VerifyBatch`).
    pub batch: BatchConfig,
    /// Address of a plaintext gRPC listener serving only
    /// `grpc.health.v1`, for probes that cannot present a client
    /// certificate when the main listener requires one; unset serves none.
    pub health_listen: Option<SocketAddr>,
    /// Traces and metrics over OTLP.
    pub telemetry: TelemetryConfig,
    /// The decision log: checkpoints, their publication and retention.
    pub decision_log: DecisionLogConfig,
}

/// The decision log (`[decision_log]`, docs/decision-log.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionLogConfig {
    /// The log's name in its checkpoints, and the signing key's name:
    /// a schema-less URL-like name unique to this deployment, e.g.
    /// `registry.example.gov.vn/ekyc/decisions`.
    pub origin: String,
    /// File holding the checkpoint signing key (Ed25519, 64 hex
    /// characters); default `<data_dir>/keys/checkpoint.key`. Generated
    /// when missing under the same rule as the attestation key
    /// (`signing.generate_if_missing`).
    pub checkpoint_key_file: Option<PathBuf>,
    /// How often a checkpoint is signed when the log grew, in seconds.
    pub checkpoint_interval_secs: u64,
    /// A directory each checkpoint is also written to
    /// (`<log>-<size>.checkpoint` and `<log>-latest.checkpoint`, `<log>`
    /// being `decisions` or `admin-audit`): mount storage the operator does not
    /// control (a witness's, an object store's sync) so that rewriting
    /// history needs rewriting copies elsewhere. Unset writes none.
    pub publish_dir: Option<PathBuf>,
    /// Days an entry's details are kept; older entries keep only their
    /// leaf hash. Default 1825 (five years).
    pub retention_days: u32,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        DecisionLogConfig {
            origin: "ekyc.local/decision-log".into(),
            checkpoint_key_file: None,
            checkpoint_interval_secs: 60,
            publish_dir: None,
            retention_days: 1825,
        }
    }
}

/// OpenTelemetry export (`[telemetry]`): off unless `otlp_endpoint` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's OTLP gRPC endpoint, e.g. `http://collector:4317`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of everything exported.
    pub service_name: String,
    /// `service.instance.id`; unset takes the `HOSTNAME` variable (the pod
    /// name on Kubernetes), and none is sent if that is unset too.
    pub instance_id: String,
    /// Fraction of new traces kept, 0 to 1 (a caller's sampling decision,
    /// sent in `traceparent`, wins).
    pub sample_ratio: f64,
    /// Ended spans that may wait for export; more are dropped and counted.
    pub max_queued_spans: usize,
    /// Longest one export may take, in milliseconds.
    pub export_timeout_ms: u64,
    /// How often metrics are pushed, in seconds.
    pub metrics_interval_secs: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "ekycd".into(),
            instance_id: String::new(),
            sample_ratio: 1.0,
            max_queued_spans: 4096,
            export_timeout_ms: 5000,
            metrics_interval_secs: 60,
        }
    }
}

/// Bulk verification streams (`[batch]`). A stream's items in flight are
/// read but not yet answered (waiting for the tenant's rate, hashing,
/// being recorded or sent); the server reads the next item only when the
/// stream and its tenant have room, so these bound what a batch holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Items in flight per stream; 0 means four per hashing thread.
    pub max_in_flight_per_stream: usize,
    /// Items in flight per tenant across all its streams (on this
    /// replica); 0 means eight per hashing thread.
    pub max_in_flight_per_tenant: usize,
    /// Longest a stream may last: it then stops reading, answers what it
    /// read and ends with `STREAM_LIFETIME_REACHED` (clients resend the
    /// rest on a new stream), so a stream ends cleanly rather than being
    /// cut by a deploy or a proxy's timeout. A connection's maximum age
    /// (`transport.max_connection_age_secs`) can still cut a stream opened
    /// late in its life, after the grace; nothing is lost then either
    /// (items are replayed by `request_id`).
    pub max_stream_secs: u64,
    /// Longest an item may wait to be answered (for the tenant's rate, or
    /// for the pool's spare capacity: unary calls go first); it then fails
    /// with `DEADLINE_PASSED` and is sent again later. While it waits it
    /// holds its quota units and its subject's guard attempt.
    pub item_timeout_secs: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_in_flight_per_stream: 0,
            max_in_flight_per_tenant: 0,
            max_stream_secs: 1800,
            item_timeout_secs: 120,
        }
    }
}

/// The database's connection pool (`[database]`), for the store and the
/// ledger alike.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Connections per pool (the store and the ledger have one each).
    pub max_connections: u32,
    /// How long a call waits for a free connection before it is refused
    /// with `UNAVAILABLE`: a pool exhausted by slow queries sheds calls
    /// instead of queueing them without bound.
    pub acquire_timeout_ms: u64,
    /// PostgreSQL `statement_timeout`: a statement running longer is
    /// cancelled by the server (0: none). SQLite has no equivalent.
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            max_connections: 16,
            acquire_timeout_ms: 2_000,
            statement_timeout_ms: 5_000,
        }
    }
}

/// Limits of the gRPC transport (`[transport]`). Authentication runs after
/// a request message has been read, so these bound what an
/// unauthenticated client can make the server hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// Largest request message per service, in bytes.
    pub max_message_bytes: MessageLimits,
    /// HTTP/2 streams one connection may have open at once
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// Client connections open at once; beyond it a new connection is
    /// closed as it is accepted.
    pub max_connections: usize,
    /// Bytes reserved for partly received request messages across all
    /// connections; a message that would pass it is refused
    /// (`REQUEST_BUFFERS_FULL`).
    pub max_buffered_request_bytes: usize,
    /// Longest a call may take on the server; a caller's shorter
    /// `grpc-timeout` wins. It also ends streaming calls (health `Watch`,
    /// reflection), which clients re-open.
    pub request_timeout_secs: u64,
    /// Longest a registry operator's call (`RegistryService`) may take: an
    /// import stream lasts as long as hashing its records (about
    /// `records / (cores / Argon2 time)`), and publishing a pepper rotation
    /// or purging a pepper rewrites every row of it. `max_connection_age_secs`
    /// also bounds them: raise both for a larger import.
    pub import_timeout_secs: u64,
    /// Idle time after which the server pings a connection (HTTP/2 PING);
    /// 0 turns keepalive off.
    pub keepalive_interval_secs: u64,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout_secs: u64,
    /// Age after which a connection is asked to go away (GOAWAY) so
    /// clients rebalance across replicas; 0 means no limit.
    pub max_connection_age_secs: u64,
    /// How long an aged connection may finish its calls before it is
    /// closed.
    pub max_connection_age_grace_secs: u64,
    /// Largest header block a request may send (`SETTINGS_MAX_HEADER_LIST_SIZE`).
    pub max_header_list_bytes: u32,
    /// HTTP/2 flow-control window per stream: what a client may send on a
    /// stream before the server has read it.
    pub stream_window_bytes: u32,
    /// HTTP/2 flow-control window per connection.
    pub connection_window_bytes: u32,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_message_bytes: MessageLimits::default(),
            max_concurrent_streams: 32,
            max_connections: 1024,
            max_buffered_request_bytes: 16 << 20,
            request_timeout_secs: 30,
            import_timeout_secs: 3600,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 10,
            max_connection_age_secs: 3600,
            max_connection_age_grace_secs: 30,
            max_header_list_bytes: 16 << 10,
            stream_window_bytes: 64 << 10,
            connection_window_bytes: 1 << 20,
        }
    }
}

/// The largest request message of each service (`[transport.max_message_bytes]`).
/// Each default fits the largest valid request of that service with room
/// to spare; anything larger cannot be valid, so it is refused before it
/// is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageLimits {
    /// `ekyc.v1.VerificationService`: ten values of at most 4 KiB each
    /// (the ID and nine claims) plus request id, purpose and consent
    /// reference come to about 41 KiB.
    pub verification: usize,
    /// `ekyc.v1.TenantAdminService`: a tenant with 100 purposes is about
    /// 8 KiB.
    pub tenant_admin: usize,
    /// `ekyc.v1.BillingService`: ids and periods, well under 1 KiB.
    pub billing: usize,
    /// `ekyc.v1.RegistryService`: an import chunk of a few hundred records
    /// (each at most ten values of 4 KiB, typically 300 bytes).
    pub registry: usize,
    /// Everything else (health, reflection).
    pub other: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits {
            verification: 48 << 10,
            tenant_admin: 32 << 10,
            billing: 16 << 10,
            registry: 256 << 10,
            other: 16 << 10,
        }
    }
}

impl MessageLimits {
    /// The limit of the method at `path` (`/package.Service/Method`).
    pub fn for_path(&self, path: &str) -> usize {
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match service {
            "ekyc.v1.VerificationService" => self.verification,
            "ekyc.v1.TenantAdminService" => self.tenant_admin,
            "ekyc.v1.BillingService" => self.billing,
            "ekyc.v1.RegistryService" => self.registry,
            _ => self.other,
        }
    }

    /// The largest of them (tonic's own decode limit, a second line).
    pub fn largest(&self) -> usize {
        self.verification
            .max(self.tenant_admin)
            .max(self.billing)
            .max(self.registry)
            .max(self.other)
    }
}

/// The usage ledger, idempotent retries and invoices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// Ledger database (`sqlite://...` or `postgres://...`); default the
    /// top-level `database_url` when that is PostgreSQL, else
    /// `sqlite://<data_dir>/billing.db`.
    pub database_url: Option<String>,
    /// How long a retried request id is answered again identically
    /// (afterwards it is refused: request ids are unique forever).
    pub idempotency_window_secs: u64,
    /// Issuer id: the prefix of invoice numbers (gapless per issuer).
    pub issuer_id: String,
    /// Issuer name printed on invoices when it has no legal name.
    pub issuer_name: String,
    /// The issuer's legal name (tên đơn vị bán) printed on invoices, in
    /// Unicode NFC; empty prints `issuer_name`.
    pub issuer_legal_name: String,
    /// The issuer's registered address printed on invoices.
    pub issuer_address: String,
    /// The issuer's tax code (mã số thuế): 10 digits, or `NNNNNNNNNN-NNN`;
    /// empty prints none.
    pub issuer_tax_code: String,
    /// Plan of tenants that have none assigned.
    pub default_plan: String,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            database_url: None,
            idempotency_window_secs: 24 * 3600,
            issuer_id: "EKYC".to_string(),
            issuer_name: "eKYC Registry Verification Service".to_string(),
            issuer_legal_name: String::new(),
            issuer_address: String::new(),
            issuer_tax_code: String::new(),
            default_plan: "demo".to_string(),
        }
    }
}

/// Where the pepper comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PepperConfig {
    /// Version recorded with every record hashed under this pepper.
    pub version: u32,
    /// File holding the pepper as 64 hex characters; default
    /// `<data_dir>/keys/pepper-v<version>.key`.
    pub file: Option<PathBuf>,
    /// Whether a missing pepper file may be generated (development only:
    /// a production pepper comes from a secret store, and losing it makes
    /// the registry unreadable).
    pub generate_if_missing: bool,
    /// Other peppers this replica holds during a rotation: Verify derives
    /// with whichever pepper the registry's current version was built
    /// with, so every replica holds both the old and the new pepper from
    /// before the re-import until the old one is purged. Imports always
    /// derive with `version`. Never generated.
    pub also_held: Vec<HeldPepper>,
}

/// A pepper held besides the one imports derive with (`pepper.also_held`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldPepper {
    /// Its version, as recorded with the records derived under it.
    pub version: u32,
    /// File holding it as 64 hex characters.
    pub file: PathBuf,
}

/// One pepper to load, from [`Config::pepper_files`].
#[derive(Debug, Clone)]
pub struct PepperFile {
    /// Its version.
    pub version: u32,
    /// Where it is.
    pub path: PathBuf,
    /// Whether it may be generated when missing (development only).
    pub generate: bool,
    /// The configuration key that names the file, for errors.
    pub key: &'static str,
}

/// Where the attestation signing key comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// File holding the Ed25519 secret key as 64 hex characters; default
    /// `<data_dir>/keys/signing.key`.
    pub key_file: Option<PathBuf>,
    /// Whether a missing key file may be generated (development only).
    pub generate_if_missing: bool,
}

/// Argon2id parameters and the bounded pool that evaluates them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Config {
    /// Id of this parameter set; recorded per record. Changing the costs
    /// needs a new id.
    pub params_id: u32,
    /// Memory cost, KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Hashing threads; 0 means one per core.
    pub pool_threads: usize,
    /// Calls that may wait for a hashing thread; beyond it calls are shed.
    /// 0 means 4 per thread.
    pub queue_capacity: usize,
    /// Which code evaluates Argon2id: `argon2-rust` (the fastest measured,
    /// its SIMD path chosen at run time) or `rustcrypto` (the fallback).
    /// Both derive the same keys (docs/argon2.md).
    pub implementation: String,
}

/// TLS settings. With `client_ca_file`, clients may authenticate with a
/// certificate signed by that CA whose subject CN is a tenant's
/// `mtls_subject` (as a verifier of that tenant).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// Server private key (PEM).
    pub key_file: Option<PathBuf>,
    /// CA that signs client certificates (PEM); enables mutual TLS.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse connections without a client certificate (else API keys
    /// still work over TLS).
    pub require_client_cert: bool,
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `ekyc_service=debug`.
    pub filter: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("ekyc-data"),
            database_url: None,
            database: DatabaseConfig::default(),
            pepper: PepperConfig::default(),
            signing: SigningConfig::default(),
            argon2: Argon2Config::default(),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            shutdown_grace_secs: 10,
            limits: ekyc_limits::LimitsConfig::default(),
            metrics_listen: None,
            billing: BillingConfig::default(),
            transport: TransportConfig::default(),
            batch: BatchConfig::default(),
            health_listen: None,
            telemetry: TelemetryConfig::default(),
            decision_log: DecisionLogConfig::default(),
        }
    }
}

impl Config {
    /// The `[telemetry]` rules.
    fn validate_decision_log(&self) -> Result<(), ConfigError> {
        let d = &self.decision_log;
        let semantic = |key, message: &str| ConfigError::Semantic {
            key,
            message: message.into(),
        };
        let origin_ok = !d.origin.is_empty()
            && d.origin.len() <= 200
            && d.origin.chars().all(|c| c.is_ascii_graphic() && c != '+');
        if !origin_ok {
            return Err(semantic(
                "decision_log.origin",
                "must be 1 to 200 printable ASCII characters without spaces or '+'",
            ));
        }
        if !(1..=86_400).contains(&d.checkpoint_interval_secs) {
            return Err(semantic(
                "decision_log.checkpoint_interval_secs",
                "must be from 1 to 86400",
            ));
        }
        if !(1..=36_500).contains(&d.retention_days) {
            return Err(semantic(
                "decision_log.retention_days",
                "must be from 1 to 36500",
            ));
        }
        Ok(())
    }

    fn validate_telemetry(&self) -> Result<(), ConfigError> {
        let t = &self.telemetry;
        let semantic = |key, message: &str| ConfigError::Semantic {
            key,
            message: message.into(),
        };
        if let Some(endpoint) = &t.otlp_endpoint
            && !http::Uri::try_from(endpoint.as_str()).is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
            })
        {
            return Err(semantic(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL of an OTLP gRPC collector, e.g. http://collector:4317",
            ));
        }
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return Err(semantic("telemetry.sample_ratio", "must be from 0 to 1"));
        }
        if t.service_name.is_empty() {
            return Err(semantic("telemetry.service_name", "must not be empty"));
        }
        if !(1..=1_000_000).contains(&t.max_queued_spans) {
            return Err(semantic(
                "telemetry.max_queued_spans",
                "must be from 1 to 1000000",
            ));
        }
        if !(100..=60_000).contains(&t.export_timeout_ms) {
            return Err(semantic(
                "telemetry.export_timeout_ms",
                "must be from 100 to 60000",
            ));
        }
        if !(1..=3600).contains(&t.metrics_interval_secs) {
            return Err(semantic(
                "telemetry.metrics_interval_secs",
                "must be from 1 to 3600",
            ));
        }
        Ok(())
    }
}

impl Default for PepperConfig {
    fn default() -> Self {
        PepperConfig {
            version: 1,
            file: None,
            generate_if_missing: true,
            also_held: Vec::new(),
        }
    }
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            key_file: None,
            generate_if_missing: true,
        }
    }
}

impl Default for Argon2Config {
    fn default() -> Self {
        let d = KdfParams::DEFAULT;
        Argon2Config {
            params_id: d.id,
            memory_kib: d.m_kib,
            iterations: d.t,
            parallelism: d.p,
            pool_threads: 0,
            queue_capacity: 0,
            implementation: KdfImplementation::default().name().to_string(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".to_string(),
        }
    }
}

/// Configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A source is not valid TOML or holds an unknown or mistyped key.
    #[error("invalid configuration ({origin}): {message}")]
    Invalid {
        /// Which layer: the file, the environment or the flags.
        origin: String,
        /// The parser's message, which names the key.
        message: String,
    },
    /// Values parse but do not make sense together.
    #[error("invalid configuration: {key}: {message}")]
    Semantic {
        /// The offending key.
        key: &'static str,
        /// Why it is wrong.
        message: String,
    },
}

impl Config {
    /// Loads the layers in order: file (if any), environment, overrides.
    ///
    /// `overrides` are `(dotted.key, value)` pairs from flags.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        overrides: &[(&str, toml::Value)],
    ) -> Result<Config, ConfigError> {
        let mut merged = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Invalid {
                        origin: format!("file {}", path.display()),
                        message: e.message().to_string(),
                    })?;
            // Validate the file on its own so its errors name the file.
            check(&table, &format!("file {}", path.display()))?;
            merge(&mut merged, table);
        }
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if key == "CONFIG" {
                continue;
            }
            let path = key.to_ascii_lowercase().replace("__", ".");
            let origin = format!("environment variable {name}");
            let layer_of = |value| {
                let mut layer = toml::Table::new();
                set_path(&mut layer, &path, value);
                layer
            };
            // A value takes its field's type: read as a number or boolean
            // when it looks like one, and as the string it is when the
            // field is a string (an issuer id `2024`, a tax code
            // `0109876543`). A value neither reading fits reports the
            // typed reading's error.
            let typed = layer_of(parse_scalar(value));
            let layer = match check(&typed, &origin) {
                Ok(()) => typed,
                Err(err) => {
                    let string = layer_of(toml::Value::String(value.clone()));
                    check(&string, &origin).map_err(|_| err)?;
                    string
                }
            };
            merge(&mut merged, layer);
        }
        for (path, value) in overrides {
            let mut layer = toml::Table::new();
            set_path(&mut layer, path, value.clone());
            check(&layer, &format!("flag for {path}"))?;
            merge(&mut merged, layer);
        }
        let mut config: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: "merged".into(),
                    message: e.message().to_string(),
                })?;
        if config.telemetry.instance_id.is_empty()
            && let Some(host) = env.get("HOSTNAME")
        {
            // The pod's name on Kubernetes.
            config.telemetry.instance_id = host.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_telemetry()?;
        self.validate_decision_log()?;
        self.kdf_params()
            .validate()
            .map_err(|e| ConfigError::Semantic {
                key: "argon2",
                message: e.to_string(),
            })?;
        if KdfImplementation::from_name(&self.argon2.implementation).is_none() {
            return Err(ConfigError::Semantic {
                key: "argon2.implementation",
                message: format!(
                    "must be \"{}\" or \"{}\"",
                    KdfImplementation::Argon2Rust.name(),
                    KdfImplementation::RustCrypto.name()
                ),
            });
        }
        if self.pepper.version == 0 {
            return Err(ConfigError::Semantic {
                key: "pepper.version",
                message: "must be at least 1".into(),
            });
        }
        let mut versions = vec![self.pepper.version];
        for held in &self.pepper.also_held {
            if held.version == 0 || versions.contains(&held.version) {
                return Err(ConfigError::Semantic {
                    key: "pepper.also_held",
                    message: format!(
                        "version {} must be at least 1 and differ from pepper.version and from every other held pepper",
                        held.version
                    ),
                });
            }
            versions.push(held.version);
        }
        let tls = &self.tls;
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(ConfigError::Semantic {
                key: "tls.cert_file",
                message: "tls.cert_file and tls.key_file must be set together".into(),
            });
        }
        if tls.client_ca_file.is_some() && tls.cert_file.is_none() {
            return Err(ConfigError::Semantic {
                key: "tls.client_ca_file",
                message: "mutual TLS needs tls.cert_file and tls.key_file".into(),
            });
        }
        if tls.require_client_cert && tls.client_ca_file.is_none() {
            return Err(ConfigError::Semantic {
                key: "tls.require_client_cert",
                message: "requiring client certificates needs tls.client_ca_file".into(),
            });
        }
        self.limits.validate().map_err(|e| ConfigError::Semantic {
            key: "limits",
            message: e.to_string(),
        })?;
        let issuer = &self.billing.issuer_id;
        if issuer.is_empty()
            || issuer.len() > 16
            || !issuer
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(ConfigError::Semantic {
                key: "billing.issuer_id",
                message: "must be 1 to 16 characters from A-Z 0-9".into(),
            });
        }
        let b = &self.billing;
        if !b.issuer_tax_code.is_empty() && !ekyc_billing::valid_tax_code(&b.issuer_tax_code) {
            return Err(ConfigError::Semantic {
                key: "billing.issuer_tax_code",
                message: "must be a Vietnamese tax code: 10 digits, or the 10 digits, '-' and a \
                          3-digit branch suffix"
                    .into(),
            });
        }
        for (key, value, max) in [
            ("billing.issuer_legal_name", &b.issuer_legal_name, 200),
            ("billing.issuer_address", &b.issuer_address, 300),
        ] {
            if !value.is_empty()
                && let Err(rule) = crate::tenants::check_display_text(value, max)
            {
                return Err(ConfigError::Semantic {
                    key,
                    message: format!(
                        "must be at most {max} characters in Unicode NFC without control or \
                         invisible characters ({rule})"
                    ),
                });
            }
        }
        if self.billing.idempotency_window_secs == 0 {
            return Err(ConfigError::Semantic {
                key: "billing.idempotency_window_secs",
                message: "must be at least 1".into(),
            });
        }
        let t = &self.transport;
        for (key, value, min) in [
            (
                "transport.max_concurrent_streams",
                u64::from(t.max_concurrent_streams),
                1,
            ),
            ("transport.max_connections", t.max_connections as u64, 1),
            ("transport.request_timeout_secs", t.request_timeout_secs, 1),
            ("transport.import_timeout_secs", t.import_timeout_secs, 1),
            (
                "transport.max_header_list_bytes",
                u64::from(t.max_header_list_bytes),
                1024,
            ),
        ] {
            if value < min {
                return Err(ConfigError::Semantic {
                    key,
                    message: format!("must be at least {min}"),
                });
            }
        }
        let m = &t.max_message_bytes;
        for (key, v) in [
            ("transport.max_message_bytes.verification", m.verification),
            ("transport.max_message_bytes.tenant_admin", m.tenant_admin),
            ("transport.max_message_bytes.billing", m.billing),
            ("transport.max_message_bytes.other", m.other),
        ] {
            if !(1024..=(4 << 20)).contains(&v) {
                return Err(ConfigError::Semantic {
                    key,
                    message: "must be between 1024 and 4194304 bytes".into(),
                });
            }
        }
        if t.max_buffered_request_bytes < m.largest() {
            return Err(ConfigError::Semantic {
                key: "transport.max_buffered_request_bytes",
                message: "must hold at least one message of the largest max_message_bytes".into(),
            });
        }
        // HTTP/2 requires windows of 65535 to 2^31-1 bytes for a
        // connection and of at most 2^31-1 for a stream.
        if !(65_535..=i32::MAX as u32).contains(&t.connection_window_bytes)
            || !(1..=i32::MAX as u32).contains(&t.stream_window_bytes)
        {
            return Err(ConfigError::Semantic {
                key: "transport.connection_window_bytes",
                message: "windows must be 65535 (connection) or 1 (stream) to 2147483647 bytes"
                    .into(),
            });
        }
        for (key, secs) in [
            ("batch.max_stream_secs", self.batch.max_stream_secs),
            ("batch.item_timeout_secs", self.batch.item_timeout_secs),
        ] {
            if !(1..=7 * 24 * 3600).contains(&secs) {
                return Err(ConfigError::Semantic {
                    key,
                    message: "must be 1 to 604800 seconds (7 days)".into(),
                });
            }
        }
        if self.argon2.pool_threads > 1024 {
            return Err(ConfigError::Semantic {
                key: "argon2.pool_threads",
                message: "must be at most 1024".into(),
            });
        }
        Ok(())
    }

    /// The Argon2id parameter set.
    pub fn kdf_params(&self) -> KdfParams {
        KdfParams {
            id: self.argon2.params_id,
            m_kib: self.argon2.memory_kib,
            t: self.argon2.iterations,
            p: self.argon2.parallelism,
        }
    }

    /// The Argon2id implementation (`argon2.implementation`, validated).
    pub fn kdf_implementation(&self) -> KdfImplementation {
        KdfImplementation::from_name(&self.argon2.implementation).unwrap_or_default()
    }

    /// Hashing threads after resolving "one per core".
    pub fn pool_threads(&self) -> usize {
        match self.argon2.pool_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Queue capacity after resolving the default.
    pub fn queue_capacity(&self) -> usize {
        match self.argon2.queue_capacity {
            0 => 4 * self.pool_threads(),
            n => n,
        }
    }

    /// Items in flight per batch stream after resolving the default.
    pub fn batch_per_stream(&self) -> usize {
        match self.batch.max_in_flight_per_stream {
            0 => 4 * self.pool_threads(),
            n => n,
        }
    }

    /// Items in flight per tenant's batches after resolving the default.
    pub fn batch_per_tenant(&self) -> usize {
        match self.batch.max_in_flight_per_tenant {
            0 => 8 * self.pool_threads(),
            n => n,
        }
    }

    /// The database URL after resolving the default.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ekyc.db").display()))
    }

    /// The ledger database URL after resolving the default: the store's
    /// PostgreSQL when there is one (replicas share one ledger), else its
    /// own SQLite file.
    pub fn billing_database_url(&self) -> String {
        if let Some(url) = &self.billing.database_url {
            return url.clone();
        }
        match &self.database_url {
            Some(url) if !url.starts_with("sqlite:") => url.clone(),
            _ => format!("sqlite://{}", self.data_dir.join("billing.db").display()),
        }
    }

    /// The ledger's pool: the same `[database]` settings as the store's.
    pub fn ledger_pool(&self) -> ekyc_billing::PoolSettings {
        ekyc_billing::PoolSettings {
            max_connections: self.database.max_connections,
            acquire_timeout: Duration::from_millis(self.database.acquire_timeout_ms),
            statement_timeout: Duration::from_millis(self.database.statement_timeout_ms),
        }
    }

    /// Every pepper this replica holds, the one imports derive with first.
    pub fn pepper_files(&self) -> Vec<PepperFile> {
        let mut files = vec![PepperFile {
            version: self.pepper.version,
            path: self.pepper_file(),
            generate: self.pepper.generate_if_missing,
            key: "pepper.file",
        }];
        for held in &self.pepper.also_held {
            files.push(PepperFile {
                version: held.version,
                path: held.file.clone(),
                generate: false,
                key: "pepper.also_held",
            });
        }
        files
    }

    /// The pepper file after resolving the default.
    pub fn pepper_file(&self) -> PathBuf {
        self.pepper.file.clone().unwrap_or_else(|| {
            self.data_dir
                .join("keys")
                .join(format!("pepper-v{}.key", self.pepper.version))
        })
    }

    /// The checkpoint signing key file after resolving the default.
    pub fn checkpoint_key_file(&self) -> PathBuf {
        self.decision_log
            .checkpoint_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("checkpoint.key"))
    }

    /// The signing key file after resolving the default.
    pub fn signing_key_file(&self) -> PathBuf {
        self.signing
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("signing.key"))
    }
}

/// Deserialises one layer alone, so an unknown key is reported against the
/// layer that introduced it.
fn check(layer: &toml::Table, origin: &str) -> Result<(), ConfigError> {
    // Missing keys take defaults, so a partial layer is a valid Config iff
    // its keys exist and have the right types.
    toml::Value::Table(layer.clone())
        .try_into::<Config>()
        .map(|_| ())
        .map_err(|e| ConfigError::Invalid {
            origin: origin.to_string(),
            message: e.message().to_string(),
        })
}

/// An environment value read as an integer, a decimal number or a boolean
/// when it looks like one; `Config::load` falls back to the string when the
/// key is a string.
fn parse_scalar(raw: &str) -> toml::Value {
    // A list (`pepper.also_held`) is written as a TOML inline array.
    if raw.trim_start().starts_with('[')
        && let Ok(mut t) = format!("v = {raw}").parse::<toml::Table>()
        && let Some(v) = t.remove("v")
    {
        return v;
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if raw.contains('.')
        && let Ok(f) = raw.parse::<f64>()
        && f.is_finite()
    {
        return toml::Value::Float(f);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut cur = table;
    for p in parts {
        cur = match cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => t,
            // A scalar where a section is expected: replaced by the section,
            // and the deserialiser reports the key's type if it matters.
            other => {
                *other = toml::Value::Table(toml::Table::new());
                match other {
                    toml::Value::Table(t) => t,
                    _ => unreachable!("just assigned a table"),
                }
            }
        };
    }
    cur.insert(last.to_string(), value);
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let c = Config::load(None, &BTreeMap::new(), &[]).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(c.kdf_params(), KdfParams::DEFAULT);
        assert!(c.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ekycd.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1000\"\ndata_dir = \"/from-file\"\n[argon2]\nmemory_kib = 1024\niterations = 3\n",
        )
        .expect("write");
        let c = Config::load(
            Some(&file),
            &env(&[
                ("EKYCD_LISTEN", "127.0.0.1:2000"),
                ("EKYCD_ARGON2__ITERATIONS", "4"),
                ("OTHER", "ignored"),
            ]),
            &[("listen", toml::Value::String("127.0.0.1:3000".into()))],
        )
        .expect("load");
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.data_dir, PathBuf::from("/from-file"));
        assert_eq!(c.argon2.memory_kib, 1024);
        assert_eq!(c.argon2.iterations, 4);
    }

    #[test]
    fn telemetry_settings_are_checked_and_named() {
        let on = Config::load(
            None,
            &env(&[
                ("EKYCD_TELEMETRY__OTLP_ENDPOINT", "http://collector:4317"),
                ("EKYCD_TELEMETRY__SAMPLE_RATIO", "0.25"),
                ("EKYCD_HEALTH_LISTEN", "0.0.0.0:8081"),
            ]),
            &[],
        )
        .expect("valid");
        assert_eq!(
            on.telemetry.otlp_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(on.telemetry.sample_ratio, 0.25);
        assert_eq!(on.health_listen.map(|a| a.port()), Some(8081));
        for (key, value, named) in [
            (
                "EKYCD_TELEMETRY__OTLP_ENDPOINT",
                "collector:4317",
                "telemetry.otlp_endpoint",
            ),
            (
                "EKYCD_TELEMETRY__SAMPLE_RATIO",
                "1.5",
                "telemetry.sample_ratio",
            ),
            (
                "EKYCD_TELEMETRY__MAX_QUEUED_SPANS",
                "0",
                "telemetry.max_queued_spans",
            ),
            (
                "EKYCD_TELEMETRY__EXPORT_TIMEOUT_MS",
                "10",
                "telemetry.export_timeout_ms",
            ),
            (
                "EKYCD_TELEMETRY__METRICS_INTERVAL_SECS",
                "0",
                "telemetry.metrics_interval_secs",
            ),
            (
                "EKYCD_TELEMETRY__SERVICE_NAME",
                "",
                "telemetry.service_name",
            ),
        ] {
            let err = Config::load(None, &env(&[(key, value)]), &[]).expect_err(key);
            assert!(err.to_string().contains(named), "{key}={value}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::load(None, &env(&[("EKYCD_LISTN", "x")]), &[]).expect_err("unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("EKYCD_LISTN") && msg.contains("listn"),
            "{msg}"
        );

        let err = Config::load(None, &env(&[("EKYCD_ARGON2__MEMORY_KIB", "lots")]), &[])
            .expect_err("mistyped");
        assert!(
            err.to_string().contains("EKYCD_ARGON2__MEMORY_KIB"),
            "{err}"
        );
    }

    #[test]
    fn environment_values_take_their_fields_type() {
        // An issuer tax code is digits, but a string field: read as such.
        let c = Config::load(
            None,
            &env(&[("EKYCD_BILLING__ISSUER_TAX_CODE", "0109876543")]),
            &[],
        )
        .expect("a tax code of digits");
        assert_eq!(c.billing.issuer_tax_code, "0109876543");
        let c = Config::load(None, &env(&[("EKYCD_BILLING__ISSUER_ID", "2024")]), &[])
            .expect("an issuer id of digits");
        assert_eq!(c.billing.issuer_id, "2024");
        let err = Config::load(
            None,
            &env(&[("EKYCD_BILLING__ISSUER_TAX_CODE", "12345")]),
            &[],
        )
        .expect_err("not a tax code");
        assert!(err.to_string().contains("billing.issuer_tax_code"), "{err}");
    }

    #[test]
    fn held_peppers_come_from_an_inline_array() {
        let c = Config::load(
            None,
            &env(&[
                ("EKYCD_PEPPER__VERSION", "2"),
                (
                    "EKYCD_PEPPER__ALSO_HELD",
                    r#"[{ version = 1, file = "/keys/pepper-v1.key" }]"#,
                ),
            ]),
            &[],
        )
        .expect("two peppers");
        let files = c.pepper_files();
        assert_eq!(files.len(), 2);
        assert_eq!(
            (files[1].version, files[1].generate),
            (1, false),
            "held, never generated"
        );
        assert_eq!(files[1].path, PathBuf::from("/keys/pepper-v1.key"));
        let err = Config::load(
            None,
            &env(&[(
                "EKYCD_PEPPER__ALSO_HELD",
                r#"[{ version = 1, file = "/keys/other.key" }]"#,
            )]),
            &[],
        )
        .expect_err("the same version twice");
        assert!(err.to_string().contains("pepper.also_held"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = Config::load(None, &env(&[("EKYCD_ARGON2__ITERATIONS", "0")]), &[])
            .expect_err("bad cost");
        assert!(err.to_string().contains("argon2"), "{err}");
        let err = Config::load(None, &env(&[("EKYCD_PEPPER__VERSION", "0")]), &[])
            .expect_err("bad version");
        assert!(err.to_string().contains("pepper.version"), "{err}");
        let err = Config::load(None, &env(&[("EKYCD_ARGON2__IMPLEMENTATION", "fast")]), &[])
            .expect_err("unknown implementation");
        assert!(
            err.to_string().contains("argon2.implementation")
                && err.to_string().contains("rustcrypto"),
            "{err}"
        );
        let c = Config::load(
            None,
            &env(&[("EKYCD_ARGON2__IMPLEMENTATION", "rustcrypto")]),
            &[],
        )
        .expect("the fallback");
        assert_eq!(c.kdf_implementation(), KdfImplementation::RustCrypto);
        assert_eq!(
            Config::default().kdf_implementation(),
            KdfImplementation::Argon2Rust
        );
    }
}
