//! Registry import for the agency: CSV or JSON Lines in, hashed records out.
//!
//! Reading and validating rows is `ekyc_input::rows` (the columns are
//! listed there). Every row is validated on its own. A bad row is skipped and reported in
//! the reject report (`line,field,rule,description`, never the value); the
//! good rows are hashed on all cores and written in batched transactions,
//! so a row is either wholly stored or wholly rejected. Importing the same
//! file twice changes nothing (unchanged records are detected by their
//! tags); a changed record replaces the old one; a delete list (one ID
//! number per line) removes records. The registry version goes up by one
//! for an import that changed anything.
//!
//! Raw values exist only in this process's memory while a row is hashed.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ekyc_domain::keys::SubjectKey;
use ekyc_domain::normalize::{IdNumber, NORMALIZATION_VERSION, normalize_id};
use ekyc_domain::record::RecordTags;
pub use ekyc_input::rows::{Format, RawRow, Reject, ValidRow, validate_row};
use ekyc_input::rows::{RowStream, RowsError};
use tokio::task::JoinSet;

use crate::clock::now_ms;
use crate::hashing::{HashError, HashPool};
use crate::store::{Staging, Store, StoreError, StoredRecord, Upserted};
use crate::tenants::Actor;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    /// A progress bar on a terminal, periodic lines otherwise.
    Auto,
    /// Nothing.
    Quiet,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Rows read.
    pub rows: u64,
    /// Rows rejected (see the reject report).
    pub rejected: u64,
    /// New records.
    pub inserted: u64,
    /// Records replaced.
    pub updated: u64,
    /// Records already identical.
    pub unchanged: u64,
    /// Records removed by the delete list.
    pub deleted: u64,
    /// IDs in the delete list that were not in the registry.
    pub delete_not_found: u64,
    /// Registry version current after the import.
    pub registry_version: u64,
    /// The version built and kept staged for a separate publish (a staged
    /// import that changed something), else 0.
    pub staged_version: u64,
    /// The pepper version the records were derived with.
    pub pepper_version: u32,
    /// Records the new version holds (the current one if nothing changed).
    pub records: u64,
}

impl ImportReport {
    /// Whether the import changed the registry.
    pub fn changed(&self) -> bool {
        self.inserted + self.updated + self.deleted > 0
    }
}

/// The import could not run (as opposed to rows being rejected).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CSV header names an unknown column or lacks `id_number`.
    #[error("{path}: {message}")]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The format could not be guessed from the file name.
    #[error("{0}: cannot tell the format from the extension; pass --format csv|jsonl")]
    UnknownFormat(PathBuf),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error("hashing failed: {0}")]
    Hash(#[from] HashError),
}

/// Records written per transaction.
const BATCH: usize = 500;

/// Hashing jobs in flight per pool thread: one running and one waiting,
/// so a thread never waits for the import's loop to hand it the next row.
const WINDOW_PER_THREAD: usize = 2;

/// Opens a CSV or JSONL file as a stream of rows, with the number of
/// lines it holds (a cheap first pass, for progress): the rows are read as
/// they are hashed, so an import's memory does not grow with the file. A
/// bad header stops the import before anything is written.
pub fn open_rows(path: &Path, format: Format) -> Result<(Rows, u64), ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut lines = 0u64;
    let mut counting = BufReader::new(std::fs::File::open(path).map_err(io)?);
    loop {
        let buf = counting.fill_buf().map_err(io)?;
        if buf.is_empty() {
            break;
        }
        lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        let n = buf.len();
        counting.consume(n);
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let stream = RowStream::new(BufReader::new(file), format).map_err(|e| match e {
        RowsError::Header(message) => ImportError::Header {
            path: path.to_path_buf(),
            message,
        },
        RowsError::Io(source) => io(source),
    })?;
    let expected = match format {
        Format::Csv => lines.saturating_sub(1),
        Format::Jsonl => lines,
    };
    let path = path.to_path_buf();
    let rows = stream.map(move |row| {
        row.map_err(|source| ImportError::Io {
            path: path.clone(),
            source,
        })
    });
    Ok((Box::new(rows), expected))
}

/// Rows as an import reads them, one at a time: a row, or the reject of a
/// line that could not be read as one.
pub type Rows = Box<dyn Iterator<Item = Result<Result<RawRow, Reject>, ImportError>> + Send>;

/// Imports rows (and deletes) into the store as its next registry
/// version, hashing on `pool`. The version is built beside the current
/// one, which keeps answering, and is published in one switch at the end,
/// with an audit entry by `actor` holding the counts in the same
/// transaction. An import that fails, or whose future is dropped (a cut
/// call, a shutdown), is discarded; one whose process is killed leaves
/// rows no lookup sees, removed by the next import.
pub async fn import_rows(
    store: &Store,
    pool: Arc<HashPool>,
    rows: Vec<RawRow>,
    deletes: Vec<RawRow>,
    rejects: Vec<Reject>,
    progress: ProgressStyle,
    actor: &Actor,
) -> Result<(ImportReport, Vec<Reject>), ImportError> {
    let input = Input::from_rows(rows, deletes, rejects);
    import_version(store, pool, input, progress, actor, Switch::AtEnd).await
}

/// What an import reads: rows (read as they are hashed), deletes, and the
/// rejects found before.
pub struct Input {
    /// Records.
    pub rows: Rows,
    /// About how many rows `rows` holds, for progress only.
    pub expected_rows: u64,
    /// IDs to delete.
    pub deletes: Vec<RawRow>,
    /// Rows already refused.
    pub rejects: Vec<Reject>,
}

impl Input {
    /// Rows already in memory (a gRPC import, the demo).
    pub fn from_rows(rows: Vec<RawRow>, deletes: Vec<RawRow>, rejects: Vec<Reject>) -> Input {
        Input {
            expected_rows: rows.len() as u64,
            rows: Box::new(rows.into_iter().map(|row| Ok(Ok(row)))),
            deletes,
            rejects,
        }
    }
}

/// When the version an import builds becomes current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// As soon as it is built.
    AtEnd,
    /// Never by the import: it stays staged until a publish (or discard)
    /// names it, so the operator can check the counts first.
    Staged,
}

/// Imports like [`import_rows`], switching as `switch` says.
pub async fn import_version(
    store: &Store,
    pool: Arc<HashPool>,
    input: Input,
    progress: ProgressStyle,
    actor: &Actor,
    switch: Switch,
) -> Result<(ImportReport, Vec<Reject>), ImportError> {
    let staging = store
        .begin_version(crate::clock::now_ms(), pool.primary_pepper())
        .await?;
    let mut guard = DiscardOnDrop {
        store: store.clone(),
        staging: Some(staging.clone()),
    };
    let (mut report, rejects) = build_version(store, &staging, pool, input, progress).await?;
    report.pepper_version = staging.pepper;
    if !report.changed() {
        // Nothing changed: the current version stays current.
        store.discard_version(&staging).await?;
        report.registry_version = staging.version - 1;
        report.records = store.count_records().await?;
    } else if switch == Switch::Staged {
        report.registry_version = staging.version - 1;
        report.staged_version = staging.version;
        report.records = store.count_staged(&staging).await?;
        let entry = actor.entry(
            "registry.stage",
            "",
            "registry_version",
            (staging.version - 1).to_string(),
            counts(&report)?,
        );
        store.keep_staged(&staging, now_ms(), &[entry]).await?;
    } else {
        report.registry_version = staging.version;
        report.records = store.count_staged(&staging).await?;
        let entry = actor.entry(
            "registry.import",
            "",
            "registry_version",
            (staging.version - 1).to_string(),
            counts(&report)?,
        );
        store.publish_version(&staging, &[entry]).await?;
    }
    guard.staging = None;
    Ok((report, rejects))
}

/// A staged version made current by [`publish_staged`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    /// The version now current.
    pub registry_version: u64,
    /// The pepper its records are derived with.
    pub pepper_version: u32,
    /// Records it holds.
    pub records: u64,
}

/// Makes the staged version `version` (built by a [`Switch::Staged`]
/// import) current on every replica at once, recording who did it.
pub async fn publish_staged(
    store: &Store,
    version: u64,
    actor: &Actor,
) -> Result<Published, ImportError> {
    let staging = store.staged_version(version).await?;
    let records = store.count_staged(&staging).await?;
    let entry = actor.entry(
        "registry.publish",
        "",
        "registry_version",
        (version - 1).to_string(),
        version.to_string(),
    );
    store.publish_version(&staging, &[entry]).await?;
    Ok(Published {
        registry_version: version,
        pepper_version: staging.pepper,
        records,
    })
}

/// Removes the staged version `version` without a trace in the registry,
/// recording who did it.
pub async fn discard_staged(store: &Store, version: u64, actor: &Actor) -> Result<(), ImportError> {
    let staging = store.staged_version(version).await?;
    store.discard_version(&staging).await?;
    let entry = actor.entry(
        "registry.discard",
        "",
        "registry_version",
        version.to_string(),
        String::new(),
    );
    store.append_audit(&[entry]).await?;
    Ok(())
}

/// The report as the audit entry's value.
fn counts(report: &ImportReport) -> Result<String, ImportError> {
    serde_json::to_string(report).map_err(|e| ImportError::Hash(HashError::Kdf(e.to_string())))
}

/// Discards the staged version unless the import got to its end: an
/// error, or the import's future dropped half way (a client that went
/// away, a server timeout, a shutdown), frees the claim at once instead
/// of after [`crate::store::STAGING_STALE_MS`].
struct DiscardOnDrop {
    store: Store,
    staging: Option<Staging>,
}

impl Drop for DiscardOnDrop {
    fn drop(&mut self) {
        let Some(staging) = self.staging.take() else {
            return;
        };
        let store = self.store.clone();
        let discard = async move {
            if let Err(e) = store.discard_version(&staging).await {
                // The next import removes it; lookups never see it.
                tracing::warn!(error = %e, version = staging.version, "staged version not discarded");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(discard)),
            Err(_) => {
                tracing::warn!("no runtime to discard the staged version; the next import will")
            }
        }
    }
}

/// Validates, hashes and writes everything into the staged version, one
/// row at a time as it is read: the pool is kept full (a window of jobs
/// per thread) while a writer task stores the finished records a batch at
/// a time, so neither hashing nor writing waits for the other and memory
/// holds a window of rows, a batch or two of records and one 8-byte key
/// per ID seen (the duplicate check).
async fn build_version(
    store: &Store,
    staging: &Staging,
    pool: Arc<HashPool>,
    input: Input,
    progress: ProgressStyle,
) -> Result<(ImportReport, Vec<Reject>), ImportError> {
    let Input {
        rows,
        expected_rows,
        deletes,
        mut rejects,
    } = input;
    let mut report = ImportReport::default();
    let new_version = staging.version;
    let mut meter = Progress::new(expected_rows + deletes.len() as u64, progress);

    let today = crate::clock::latest_date_on_earth(jiff::Timestamp::now());
    let mut seen = HashSet::new();
    let window = pool.threads() * WINDOW_PER_THREAD;
    let mut in_flight = JoinSet::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut writer = Writer::start(store.clone(), staging.clone());
    let (pepper_version, params_id) = (staging.pepper, pool.params().id);
    let mut rows = rows.fuse();
    loop {
        while in_flight.len() < window {
            let Some(row) = rows.next() else { break };
            let row = match row? {
                Ok(row) => row,
                Err(reject) => {
                    rejects.push(reject);
                    meter.inc();
                    continue;
                }
            };
            report.rows += 1;
            let valid = match validate_row(&row, today) {
                Ok(v) => v,
                Err(vs) => {
                    rejects.extend(vs.into_iter().map(|v| Reject {
                        line: row.line,
                        field: v.field.to_string(),
                        rule: v.rule.to_string(),
                        description: v.description,
                    }));
                    meter.inc();
                    continue;
                }
            };
            if !seen.insert(id_key(&valid.id)) {
                rejects.push(Reject {
                    line: row.line,
                    field: "id_number".into(),
                    rule: "duplicate_id".into(),
                    description: "the same id_number appears on an earlier line".into(),
                });
                meter.inc();
                continue;
            }
            let pool = Arc::clone(&pool);
            in_flight.spawn(async move {
                let key = derive_patiently(&pool, valid.id, pepper_version).await?;
                Ok::<_, HashError>(StoredRecord {
                    locator: key.locator(),
                    pepper_version,
                    kdf_params_id: params_id,
                    normalization_version: NORMALIZATION_VERSION,
                    registry_version: new_version,
                    tags: RecordTags::compute(&key, &valid.fields),
                })
            });
        }
        let Some(done) = in_flight.join_next().await else {
            break;
        };
        let record = done.map_err(|e| ImportError::Hash(HashError::Kdf(e.to_string())))??;
        batch.push(record);
        meter.inc();
        if batch.len() >= BATCH {
            writer
                .write(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .await?;
        }
    }
    drop(seen);
    if !batch.is_empty() {
        writer.write(batch).await?;
    }
    let written = writer.finish().await?;
    tally(&mut report, &written);

    // Deletes: each ID costs one derivation to find its locator, on every
    // pool thread; written a batch at a time (each write also keeps the
    // import's claim fresh).
    let mut ids = Vec::with_capacity(deletes.len());
    for row in &deletes {
        let raw = row.values.first().map(|(_, v)| v.as_str()).unwrap_or("");
        match normalize_id(raw) {
            Ok(id) => ids.push(id),
            Err(v) => {
                rejects.push(Reject {
                    line: row.line,
                    field: "delete.id_number".into(),
                    rule: v.rule.to_string(),
                    description: v.description,
                });
                meter.inc();
            }
        }
    }
    let mut pending = ids.into_iter();
    let mut in_flight = JoinSet::new();
    let staging_pepper = staging.pepper;
    let mut locators = Vec::with_capacity(BATCH);
    loop {
        while in_flight.len() < window {
            let Some(id) = pending.next() else { break };
            let pool = Arc::clone(&pool);
            in_flight.spawn(async move {
                derive_patiently(&pool, id, staging_pepper)
                    .await
                    .map(|k| k.locator())
            });
        }
        let last = match in_flight.join_next().await {
            Some(done) => {
                let locator =
                    done.map_err(|e| ImportError::Hash(HashError::Kdf(e.to_string())))??;
                locators.push(locator);
                meter.inc();
                false
            }
            None => true,
        };
        if locators.len() >= BATCH || (last && !locators.is_empty()) {
            let n = store.delete_records(staging, &locators, now_ms()).await?;
            report.deleted += n;
            report.delete_not_found += locators.len() as u64 - n;
            locators.clear();
        }
        if last {
            break;
        }
    }

    report.rejected = rejects.iter().map(|r| r.line).collect::<HashSet<_>>().len() as u64;
    meter.finish();
    rejects.sort_by_key(|r| r.line);
    Ok((report, rejects))
}

/// An import is a batch job: when the pool is saturated (a server sharing
/// it is busy, or the queue is momentarily full) it waits its turn instead
/// of failing.
async fn derive_patiently(
    pool: &HashPool,
    id: IdNumber,
    pepper: u32,
) -> Result<SubjectKey, HashError> {
    loop {
        match pool.derive(id.clone(), pepper, None).await {
            Err(HashError::Saturated) => tokio::time::sleep(Duration::from_millis(5)).await,
            other => return other,
        }
    }
}

/// What the writer stored.
#[derive(Default)]
struct Written {
    inserted: u64,
    updated: u64,
    unchanged: u64,
}

fn tally(report: &mut ImportReport, written: &Written) {
    report.inserted += written.inserted;
    report.updated += written.updated;
    report.unchanged += written.unchanged;
}

/// Stores batches of records in a task of its own, so hashing goes on
/// while a batch is written. One batch waits at most: a slow store slows
/// the import instead of filling memory.
struct Writer {
    batches: tokio::sync::mpsc::Sender<Vec<StoredRecord>>,
    task: tokio::task::JoinHandle<Result<Written, StoreError>>,
}

impl Writer {
    fn start(store: Store, staging: Staging) -> Writer {
        let (batches, mut rx) = tokio::sync::mpsc::channel::<Vec<StoredRecord>>(1);
        let task = tokio::spawn(async move {
            let mut written = Written::default();
            while let Some(batch) = rx.recv().await {
                for outcome in store.upsert_records(&staging, &batch, now_ms()).await? {
                    match outcome {
                        Upserted::Inserted => written.inserted += 1,
                        Upserted::Updated => written.updated += 1,
                        Upserted::Unchanged => written.unchanged += 1,
                    }
                }
            }
            Ok(written)
        });
        Writer { batches, task }
    }

    /// Hands a batch over, waiting while another is still queued; a
    /// writer that failed returns its error here (and the import stops).
    async fn write(&mut self, batch: Vec<StoredRecord>) -> Result<(), ImportError> {
        if self.batches.send(batch).await.is_ok() {
            return Ok(());
        }
        // The task ended while batches were still coming: only a failed
        // write ends it early.
        Err(match (&mut self.task).await {
            Ok(Err(e)) => e.into(),
            Ok(Ok(_)) => ImportError::Hash(HashError::Kdf("the record writer stopped".into())),
            Err(e) => ImportError::Hash(HashError::Kdf(e.to_string())),
        })
    }

    /// Waits for every batch handed over to be stored.
    async fn finish(self) -> Result<Written, ImportError> {
        drop(self.batches);
        match self.task.await {
            Ok(written) => Ok(written?),
            Err(e) => Err(ImportError::Hash(HashError::Kdf(e.to_string()))),
        }
    }
}

/// The ID as 8 bytes, exactly (12 or 9 digits, and which): the duplicate
/// check keeps one per row, not the row's text.
fn id_key(id: &IdNumber) -> u64 {
    let digits = id.as_str();
    let value: u64 = digits.parse().unwrap_or(u64::MAX >> 1);
    (value << 1) | u64::from(digits.len() == 12)
}

/// Reads a delete list: one ID number per line; blank lines and lines
/// starting with `#` are skipped.
pub fn read_delete_list(path: &Path) -> Result<Vec<RawRow>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(ekyc_input::rows::delete_list(&text))
}

/// Writes the reject report as CSV: `line,field,rule,description`.
pub fn write_rejects(path: &Path, rejects: &[Reject]) -> Result<(), ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    ekyc_input::rows::write_reject_report(file, rejects).map_err(io)
}

/// Progress: a bar on a terminal, a line every few seconds otherwise (so
/// logs of unattended imports still show rate and ETA).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    quiet: bool,
}

impl Progress {
    fn new(total: u64, style: ProgressStyle) -> Progress {
        let quiet = style == ProgressStyle::Quiet;
        let bar = (!quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(s) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} records {per_sec} eta {eta}",
            ) {
                bar.set_style(s);
            }
            bar
        });
        Progress {
            bar,
            total,
            done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
            quiet,
        }
    }

    fn inc(&mut self) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if !self.quiet && self.last_line.elapsed() >= Duration::from_secs(2) {
            self.last_line = Instant::now();
            self.print_line();
        }
    }

    fn print_line(&self) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / secs;
        let eta = if rate > 0.0 {
            (self.total.saturating_sub(self.done)) as f64 / rate
        } else {
            0.0
        };
        let _ = writeln!(
            std::io::stderr(),
            "import: {}/{} records ({rate:.0} records/s, eta {eta:.0}s)",
            self.done,
            self.total
        );
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        } else if !self.quiet {
            self.print_line();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_header_must_be_known() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "id_number,surname\n001085000001,Nguyen\n").expect("write");
        let err = open_rows(&p, Format::Csv).err().expect("unknown column");
        assert!(err.to_string().contains("column 2"), "{err}");
        // A file without a header row: its first row is data, never echoed.
        std::fs::write(&p, "079085001234,Nguyễn Văn An,1985-03-12\n").expect("write");
        let msg = open_rows(&p, Format::Csv)
            .err()
            .expect("no header")
            .to_string();
        assert!(
            !msg.contains("079085001234") && !msg.contains("Nguy"),
            "{msg}"
        );
        assert!(msg.contains("column 1"), "{msg}");
        std::fs::write(&p, "full_name\nAn\n").expect("write");
        assert!(open_rows(&p, Format::Csv).is_err());
    }
}
