//! The pepper and what is keyed by it without Argon2: request
//! fingerprints and the subject guard's pseudonyms.
//!
//! The hashing pool derives subject keys with the same pepper (it holds a
//! shared reference, never a copy: `Pepper` is not `Clone`); everything
//! else that needs the pepper asks the keyring.

use std::sync::Arc;

use ekyc_domain::keys::{Pepper, request_fingerprint, subject_pseudonym};
use ekyc_domain::normalize::IdNumber;

/// The pepper and the one-HMAC derivations keyed by it.
pub struct Keyring {
    pepper: Arc<Pepper>,
}

impl Keyring {
    /// A keyring holding `pepper`.
    pub fn new(pepper: Pepper) -> Keyring {
        Keyring {
            pepper: Arc::new(pepper),
        }
    }

    /// The pepper, shared with the hashing pool's threads.
    pub fn pepper(&self) -> Arc<Pepper> {
        Arc::clone(&self.pepper)
    }

    /// The pepper version every key is derived with.
    pub fn pepper_version(&self) -> u32 {
        self.pepper.version()
    }

    /// The keyed fingerprint of a request (see
    /// `ekyc_domain::keys::request_fingerprint`).
    pub fn fingerprint(&self, parts: &[&[u8]]) -> [u8; 32] {
        request_fingerprint(&self.pepper, parts)
    }

    /// The subject guard's name for `id` (one HMAC, no Argon2): lets the
    /// guard refuse before any hashing work is queued.
    pub fn pseudonym(&self, id: &IdNumber) -> [u8; 32] {
        subject_pseudonym(&self.pepper, id)
    }
}
