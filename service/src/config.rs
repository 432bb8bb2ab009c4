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

use ekyc_domain::keys::KdfParams;
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
    /// Database URL; default `sqlite://<data_dir>/ekyc.db`.
    pub database_url: Option<String>,
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
}

/// The usage ledger, idempotent retries and invoices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// Ledger database (`sqlite://...` or `postgres://...`); default
    /// `sqlite://<data_dir>/billing.db`.
    pub database_url: Option<String>,
    /// How long a retried request id is answered again identically
    /// (afterwards it is refused: request ids are unique forever).
    pub idempotency_window_secs: u64,
    /// Issuer id: the prefix of invoice numbers (gapless per issuer).
    pub issuer_id: String,
    /// Issuer name printed on invoices.
    pub issuer_name: String,
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
            pepper: PepperConfig::default(),
            signing: SigningConfig::default(),
            argon2: Argon2Config::default(),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            shutdown_grace_secs: 10,
            limits: ekyc_limits::LimitsConfig::default(),
            metrics_listen: None,
            billing: BillingConfig::default(),
        }
    }
}

impl Default for PepperConfig {
    fn default() -> Self {
        PepperConfig {
            version: 1,
            file: None,
            generate_if_missing: true,
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
            let mut layer = toml::Table::new();
            set_path(&mut layer, &path, parse_scalar(value));
            check(&layer, &format!("environment variable {name}"))?;
            merge(&mut merged, layer);
        }
        for (path, value) in overrides {
            let mut layer = toml::Table::new();
            set_path(&mut layer, path, value.clone());
            check(&layer, &format!("flag for {path}"))?;
            merge(&mut merged, layer);
        }
        let config: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: "merged".into(),
                    message: e.message().to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.kdf_params()
            .validate()
            .map_err(|e| ConfigError::Semantic {
                key: "argon2",
                message: e.to_string(),
            })?;
        if self.pepper.version == 0 {
            return Err(ConfigError::Semantic {
                key: "pepper.version",
                message: "must be at least 1".into(),
            });
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
        if self.billing.idempotency_window_secs == 0 {
            return Err(ConfigError::Semantic {
                key: "billing.idempotency_window_secs",
                message: "must be at least 1".into(),
            });
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

    /// The database URL after resolving the default.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ekyc.db").display()))
    }

    /// The ledger database URL after resolving the default.
    pub fn billing_database_url(&self) -> String {
        self.billing
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("billing.db").display()))
    }

    /// The pepper file after resolving the default.
    pub fn pepper_file(&self) -> PathBuf {
        self.pepper.file.clone().unwrap_or_else(|| {
            self.data_dir
                .join("keys")
                .join(format!("pepper-v{}.key", self.pepper.version))
        })
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

/// Integers and booleans in environment variables are typed; anything else
/// is a string.
fn parse_scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
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
    fn semantic_errors_name_the_key() {
        let err = Config::load(None, &env(&[("EKYCD_ARGON2__ITERATIONS", "0")]), &[])
            .expect_err("bad cost");
        assert!(err.to_string().contains("argon2"), "{err}");
        let err = Config::load(None, &env(&[("EKYCD_PEPPER__VERSION", "0")]), &[])
            .expect_err("bad version");
        assert!(err.to_string().contains("pepper.version"), "{err}");
    }
}
