//! Authentication without a database round trip, exactly as strict as one.
//!
//! Every call authenticates, and reading the key and its tenant was a
//! statement per call: on SQLite a hand-off to a connection's worker
//! thread and back, the most expensive step of a refused call. The cache
//! keeps what was read, tagged with the **credential generation**: a
//! counter raised in the same transaction as every change to a tenant or
//! an API key (migrations sqlite 0006, postgres 0004). An entry is used
//! only while the generation still reads what it read when the entry was
//! filled, so a revocation or a suspension committed anywhere is seen by
//! the very next call on every process.
//!
//! How the generation is read on each call:
//! - **PostgreSQL**: one single-row statement. The round trip stays, and
//!   the saving is the join and the decoding of the tenant's policy.
//! - **SQLite**: from an *announce file* beside the database, with one
//!   `pread`, on the calling thread. A writer (any process on the same
//!   file) raises the generation inside its write transaction, writes the
//!   new value to the file, and only then commits. So a committed change
//!   has always been announced. A writer that dies between the two leaves
//!   the file ahead of the database, and no entry matches it until the
//!   next change commits: the cache is bypassed, never trusted stale.
//!   Opening the store writes the committed value under the write lock
//!   (where no writer is half way), which also announces a database
//!   older than the file.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{ApiKeyRecord, Tenant};

/// Keys held at most: enough for every tenant's keys of a national
/// deployment. Past it the cache starts over, which costs one read per
/// key, not correctness.
const CAPACITY: usize = 10_000;

/// A key and its tenant, as authentication reads them.
pub type KeyWithTenant = (ApiKeyRecord, Option<Tenant>);

/// Keys and tenants read earlier, each with the generation it was read at.
#[derive(Default)]
pub(super) struct CredentialCache {
    entries: Mutex<HashMap<String, (i64, KeyWithTenant)>>,
    hits: AtomicU64,
}

impl CredentialCache {
    /// The key `key_id` and its tenant, if read at `generation`.
    pub(super) fn get(&self, key_id: &str, generation: i64) -> Option<KeyWithTenant> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key_id) {
            Some((read_at, found)) if *read_at == generation => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(found.clone())
            }
            _ => None,
        }
    }

    /// Keeps what was read at `generation` (in the same snapshot).
    pub(super) fn put(&self, generation: i64, found: &KeyWithTenant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(&found.0.key_id) {
            entries.clear();
        }
        entries.insert(found.0.key_id.clone(), (generation, found.clone()));
    }

    /// Authentications served from the cache so far.
    pub(super) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// A use of the key was recorded: the entry's last-used time follows,
    /// so a busy key is touched once a minute, not on every call.
    pub(super) fn touched(&self, key_id: &str, now_ms: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, (key, _))) = entries.get_mut(key_id) {
            key.last_used_at_ms = Some(now_ms);
        }
    }
}

/// The SQLite database's announce file: the last generation a writer
/// announced, as 8 little-endian bytes and their complement, so a read
/// torn by a concurrent write is detected and treated as unknown.
pub(super) struct AnnounceFile {
    file: File,
    path: PathBuf,
}

impl AnnounceFile {
    /// The announce file of the database `db` (created if missing).
    pub(super) fn open(db: &Path) -> io::Result<AnnounceFile> {
        let mut name = db.as_os_str().to_owned();
        name.push("-credentials");
        let path = PathBuf::from(name);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        Ok(AnnounceFile { file, path })
    }

    /// The announced generation, or `None` if it cannot be read whole
    /// (never written yet, or torn): then nothing cached is used.
    pub(super) fn read(&self) -> Option<i64> {
        let mut bytes = [0u8; 16];
        self.file.read_exact_at(&mut bytes, 0).ok()?;
        let (value, check) = bytes.split_at(8);
        let value = i64::from_le_bytes(value.try_into().ok()?);
        let check = i64::from_le_bytes(check.try_into().ok()?);
        (check == !value).then_some(value)
    }

    /// Announces `generation`, before the transaction that raised it
    /// commits. No fsync: after a crash of the machine every process
    /// starts with an empty cache.
    pub(super) fn announce(&self, generation: i64) -> io::Result<()> {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&generation.to_le_bytes());
        bytes[8..].copy_from_slice(&(!generation).to_le_bytes());
        self.file
            .write_all_at(&bytes, 0)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Role;

    fn key(id: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            key_id: id.into(),
            tenant_id: "t1".into(),
            role: Role::Verifier,
            secret_sha256: [7; 32],
            created_at_ms: 0,
            expires_at_ms: None,
            revoked_at_ms: None,
            last_used_at_ms: None,
            live: true,
        }
    }

    #[test]
    fn an_entry_serves_only_the_generation_it_was_read_at() {
        let cache = CredentialCache::default();
        cache.put(3, &(key("a"), None));
        assert!(cache.get("a", 3).is_some());
        // A later change, and equally a database restored to an earlier
        // generation: either way the entry is not what the store holds.
        assert!(cache.get("a", 4).is_none());
        assert!(cache.get("a", 2).is_none());
        assert!(cache.get("b", 3).is_none());
        cache.touched("a", 60_000);
        assert_eq!(
            cache.get("a", 3).map(|(k, _)| k.last_used_at_ms),
            Some(Some(60_000))
        );
    }

    #[test]
    fn a_full_cache_starts_over_rather_than_growing() {
        let cache = CredentialCache::default();
        for i in 0..CAPACITY + 5 {
            cache.put(1, &(key(&format!("k{i}")), None));
        }
        let held = cache.entries.lock().expect("lock").len();
        assert!(held <= CAPACITY, "{held}");
        assert!(cache.get(&format!("k{}", CAPACITY + 4), 1).is_some());
    }

    #[test]
    fn the_announce_file_reads_back_and_refuses_a_torn_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("ekyc.db");
        let file = AnnounceFile::open(&db).expect("open");
        assert_eq!(file.read(), None, "never written");
        file.announce(41).expect("announce");
        // Another process's handle sees it at once.
        let other = AnnounceFile::open(&db).expect("open again");
        assert_eq!(other.read(), Some(41));
        // Half of a newer value over the older one: unknown, not 41 or 42.
        file.file
            .write_all_at(&42i64.to_le_bytes(), 0)
            .expect("tear");
        assert_eq!(other.read(), None);
    }
}
