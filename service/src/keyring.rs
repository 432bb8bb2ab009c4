//! The peppers and what is keyed by them without Argon2: request
//! fingerprints and the subject guard's pseudonyms.
//!
//! A replica holds one pepper, or two during a rotation: the one imports
//! derive with (`pepper.version`) and the others of `pepper.also_held`.
//! Verify derives with the pepper the registry's current version was built
//! with ([`Keyring::serving`]), which moves at the switch of the version a
//! re-import under the new pepper publishes. The hashing pool's threads
//! share the peppers (a shared reference, never a copy: `Pepper` is not
//! `Clone`); everything else that needs a pepper asks the keyring.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use ekyc_domain::keys::{Pepper, request_fingerprint, subject_pseudonym};
use ekyc_domain::normalize::IdNumber;

/// The peppers and the one-HMAC derivations keyed by them.
pub struct Keyring {
    peppers: BTreeMap<u32, Arc<Pepper>>,
    /// The version imports derive with.
    primary: u32,
    /// The pepper version of the registry's current version, as this
    /// replica last saw it (every lookup reads it with the record).
    serving: AtomicU32,
}

impl Keyring {
    /// A keyring holding `primary` (what imports derive with) and `others`.
    /// It serves with `primary` until told otherwise.
    pub fn new(primary: Pepper, others: Vec<Pepper>) -> Keyring {
        let version = primary.version();
        let mut peppers = BTreeMap::new();
        for p in others.into_iter().chain([primary]) {
            peppers.insert(p.version(), Arc::new(p));
        }
        Keyring {
            peppers,
            primary: version,
            serving: AtomicU32::new(version),
        }
    }

    /// The pepper of `version`, if this replica holds it.
    pub fn pepper(&self, version: u32) -> Option<Arc<Pepper>> {
        self.peppers.get(&version).map(Arc::clone)
    }

    /// The pepper version imports derive with (`pepper.version`).
    pub fn primary_version(&self) -> u32 {
        self.primary
    }

    /// Every pepper version held, oldest first.
    pub fn held_versions(&self) -> Vec<u32> {
        self.peppers.keys().copied().collect()
    }

    /// The pepper version the registry's current version was built with,
    /// as last seen.
    pub fn serving(&self) -> u32 {
        self.serving.load(Ordering::Acquire)
    }

    /// Records the current version's pepper as read from the store; `0`
    /// (a registry that records none: empty, or imported before versions
    /// named their pepper) leaves it as it is.
    pub fn observe_serving(&self, version: u32) {
        if version != 0 {
            self.serving.store(version, Ordering::Release);
        }
    }

    /// The keyed fingerprint of a request (see
    /// `ekyc_domain::keys::request_fingerprint`) under the serving pepper,
    /// tagged with its version (`"<version>:<hex>"`) so a retry is
    /// compared under the same pepper after a rotation.
    pub fn fingerprint(&self, parts: &[&[u8]]) -> String {
        let version = self.serving();
        match self.pepper(version) {
            Some(p) => format!("{version}:{}", hex::encode(request_fingerprint(&p, parts))),
            // Serving a pepper not held: Verify fails closed before any
            // answer is stored; an empty fingerprint matches nothing.
            None => String::new(),
        }
    }

    /// Whether `stored` (a fingerprint from the ledger) is the fingerprint
    /// of `parts`: `None` when it was taken under a pepper no longer held.
    /// An untagged fingerprint (stored before tags) is compared under
    /// every held pepper.
    pub fn fingerprint_matches(&self, stored: &str, parts: &[&[u8]]) -> Option<bool> {
        let under = |p: &Pepper| hex::encode(request_fingerprint(p, parts));
        match stored.split_once(':') {
            Some((version, hex)) => {
                let pepper = self.pepper(version.parse().ok()?)?;
                Some(under(&pepper) == hex)
            }
            None => Some(self.peppers.values().any(|p| under(p) == stored)),
        }
    }

    /// The subject guard's names for `id` (one HMAC each, no Argon2), one
    /// per held pepper: the guard admits an attempt under every one, so
    /// replicas holding different sets during a rotation still share a
    /// count. Lets the guard refuse before any hashing work is queued.
    pub fn pseudonyms(&self, id: &IdNumber) -> Vec<[u8; 32]> {
        self.peppers
            .values()
            .map(|p| subject_pseudonym(p, id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(primary: u32, others: &[u32]) -> Keyring {
        let pepper = |v: u32| Pepper::new(v, &[v as u8; 32]);
        Keyring::new(pepper(primary), others.iter().map(|&v| pepper(v)).collect())
    }

    #[test]
    fn a_fingerprint_is_compared_under_the_pepper_it_names() {
        let parts: [&[u8]; 2] = [b"Verify", b"req-1"];
        let old = keyring(1, &[]);
        let stored = old.fingerprint(&parts);
        assert!(stored.starts_with("1:"), "{stored}");
        // A replica in the middle of a rotation, serving the new pepper.
        let both = keyring(2, &[1]);
        both.observe_serving(2);
        assert!(both.fingerprint(&parts).starts_with("2:"));
        assert_eq!(both.fingerprint_matches(&stored, &parts), Some(true));
        assert_eq!(
            both.fingerprint_matches(&stored, &[b"Verify", b"req-2"]),
            Some(false)
        );
        // After the old pepper is gone, its fingerprints cannot be checked.
        assert_eq!(keyring(2, &[]).fingerprint_matches(&stored, &parts), None);
        // Untagged (stored before tags): any held pepper.
        let untagged = stored.split_once(':').expect("tagged").1.to_string();
        assert_eq!(both.fingerprint_matches(&untagged, &parts), Some(true));
    }

    #[test]
    fn every_held_pepper_names_the_subject() {
        let id = ekyc_domain::normalize::normalize_id("079085001234").expect("id");
        let old = keyring(1, &[]).pseudonyms(&id);
        let both = keyring(2, &[1]).pseudonyms(&id);
        let new = keyring(2, &[]).pseudonyms(&id);
        assert_eq!(both.len(), 2);
        // Each side of a rolling restart shares one name with the middle.
        assert!(both.contains(&old[0]) && both.contains(&new[0]));
        assert_ne!(old[0], new[0]);
    }

    #[test]
    fn serving_moves_only_to_a_recorded_pepper() {
        let k = keyring(2, &[1]);
        assert_eq!(k.serving(), 2);
        k.observe_serving(1);
        assert_eq!(k.serving(), 1);
        k.observe_serving(0);
        assert_eq!(k.serving(), 1);
        assert_eq!(k.held_versions(), vec![1, 2]);
        assert_eq!(k.primary_version(), 2);
    }
}
