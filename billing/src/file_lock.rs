//! An exclusive lock on a file beside an SQLite database, held while it is
//! migrated. sqlx locks migrations on PostgreSQL (an advisory lock) but
//! not on SQLite, so two processes opening one new file at once would both
//! apply its first migration and one would fail. The store and the ledger
//! both take this lock.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Held until dropped (closing the file releases the lock).
#[derive(Debug)]
pub struct MigrationLock {
    _file: File,
}

/// Waits for the exclusive lock of `database` (a file path) and returns
/// it. The lock file is `<database>.migrate-lock`; it stays behind, empty.
pub async fn lock_for_migration(database: &Path) -> std::io::Result<MigrationLock> {
    let path = lock_path(database);
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(MigrationLock { _file: file })
    })
    .await
    .map_err(std::io::Error::other)?
}

fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".migrate-lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("x.db");
        let first = lock_for_migration(&db).await.expect("first");
        let db2 = db.clone();
        let second = tokio::spawn(async move { lock_for_migration(&db2).await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!second.is_finished(), "the second got the lock while held");
        drop(first);
        second.await.expect("task").expect("second");
    }
}
