//! The pepper and the attestation signing key: read from files held outside
//! the database, or generated for development with a loud warning.
//!
//! Files hold 64 hex characters (32 bytes) and a newline. Generated files
//! are created with mode 0600 and never overwritten. Secrets never reach a
//! log line: only file paths and public key ids are logged. Every buffer a
//! secret passes through here (the file's text, the decoded bytes, the hex
//! written for a generated one) is wiped when dropped.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ekyc_domain::keys::Pepper;

use crate::config::PepperFile;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A secret file could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file is missing and generation is not allowed.
    #[error("{what} file {path} does not exist (set {key} or allow generation for development)")]
    Missing {
        /// Which secret.
        what: &'static str,
        /// The expected path.
        path: PathBuf,
        /// The config key that names it.
        key: &'static str,
    },
    /// The file cannot be read or written.
    #[error("{what} file {path}: {source}")]
    Io {
        /// Which secret.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold 64 hex characters.
    #[error("{what} file {path} must hold exactly 64 hex characters")]
    Malformed {
        /// Which secret.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// The system random source failed.
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

/// Loads a pepper, generating a development one if allowed.
pub fn load_pepper(file: &PepperFile) -> Result<Pepper, SecretError> {
    let bytes = load_or_generate(&file.path, file.generate, "pepper", file.key)?;
    Ok(Pepper::new(file.version, &bytes))
}

/// The signing key and its public id. Not `Clone`: one copy per process,
/// wiped on drop by `ed25519-dalek`; `Debug` shows only the key id.
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl Signer {
    /// Wraps a key; the id is derived from the public key.
    pub fn new(key: SigningKey) -> Self {
        let key_id = key_id_of(&key.verifying_key().to_bytes());
        Signer { key, key_id }
    }

    /// The key id published with the public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs attestation bytes.
    pub fn sign(&self, payload: &[u8]) -> [u8; 64] {
        ekyc_domain::attestation::sign(&self.key, payload)
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}, <redacted>)", self.key_id)
    }
}

/// `ed25519-` followed by the first 8 bytes of SHA-256(public key), in hex:
/// stable, and derivable by anyone holding the public key.
pub fn key_id_of(public_key: &[u8; 32]) -> String {
    format!("ed25519-{}", hex::encode(&Sha256::digest(public_key)[..8]))
}

/// Loads the signing key, generating a development one if allowed.
pub fn load_signer(path: &Path, generate: bool) -> Result<Signer, SecretError> {
    let bytes = load_or_generate(path, generate, "signing key", "signing.key_file")?;
    Ok(Signer::new(SigningKey::from_bytes(&bytes)))
}

/// Loads the decision log's checkpoint signing key, generating a
/// development one if allowed.
pub fn load_checkpoint_key(path: &Path, generate: bool) -> Result<SigningKey, SecretError> {
    let bytes = load_or_generate(
        path,
        generate,
        "checkpoint signing key",
        "decision_log.checkpoint_key_file",
    )?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// 32 random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(out)
}

fn load_or_generate(
    path: &Path,
    generate: bool,
    what: &'static str,
    key: &'static str,
) -> Result<Zeroizing<[u8; 32]>, SecretError> {
    match std::fs::read(path).map(Zeroizing::new) {
        Ok(text) => {
            let mut out = Zeroizing::new([0u8; 32]);
            let trimmed = text.trim_ascii();
            hex::decode_to_slice(trimmed, out.as_mut()).map_err(|_| SecretError::Malformed {
                what,
                path: path.to_path_buf(),
            })?;
            Ok(out)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !generate {
                return Err(SecretError::Missing {
                    what,
                    path: path.to_path_buf(),
                    key,
                });
            }
            let bytes = Zeroizing::new(random_bytes::<32>()?);
            let text = Zeroizing::new(hex::encode(bytes.as_ref()));
            write_new_secret(path, &text).map_err(|source| SecretError::Io {
                what,
                path: path.to_path_buf(),
                source,
            })?;
            tracing::warn!(
                path = %path.display(),
                "GENERATED A DEVELOPMENT {}: fine for a demo, never for production; \
                 provide your own through configuration and keep it out of the database",
                what.to_uppercase()
            );
            Ok(bytes)
        }
        Err(source) => Err(SecretError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates `path` with mode 0600 and writes `contents`; fails if it exists,
/// so a generated secret never replaces one in use.
pub fn write_new_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &Path, generate: bool) -> PepperFile {
        PepperFile {
            version: 1,
            path: path.to_path_buf(),
            generate,
            key: "pepper.file",
        }
    }

    #[test]
    fn generates_once_with_mode_0600_then_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/pepper-v1.key");
        let a = load_pepper(&file(&path, true)).expect("generate");
        let b = load_pepper(&file(&path, true)).expect("reload");
        assert_eq!(a.expose_secret(), b.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn missing_without_generation_names_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load_signer(&dir.path().join("nope.key"), false).expect_err("missing");
        assert!(err.to_string().contains("signing.key_file"), "{err}");
        let held = PepperFile {
            key: "pepper.also_held",
            ..file(&dir.path().join("pepper-v2.key"), false)
        };
        let err = load_pepper(&held).expect_err("missing");
        assert!(err.to_string().contains("pepper.also_held"), "{err}");
    }

    #[test]
    fn malformed_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "not hex").expect("write");
        assert!(matches!(
            load_pepper(&file(&path, true)),
            Err(SecretError::Malformed { .. })
        ));
    }
}
