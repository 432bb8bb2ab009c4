//! The usage ledger: one row per billable call, keyed by (tenant, request
//! id), written durably before the call's answer is returned.
//!
//! Concurrent writes are batched: callers hand their event to one writer
//! task, which inserts everything waiting in one transaction (one disk
//! flush for the batch) and only then tells each caller its event is
//! durable. SQLite runs with `synchronous = FULL`, so a committed batch
//! survives a power cut, not just a killed process.
//!
//! The same SQL runs on SQLite and PostgreSQL through `sqlx::Any`; the
//! only differences are in the migrations (`migrations/<backend>/`, which
//! use no `BLOB`/`BYTEA`, so they read alike) and in how `finalize` locks
//! the table (see `invoices.rs`).

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use crate::decision_log::{self, Decision, TreeCache};

/// The ledger's connection pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a write or read waits for a free connection before it
    /// fails (and the call with it, as `LEDGER_UNAVAILABLE`).
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout` (zero: none; SQLite has none).
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::ZERO,
        }
    }
}

/// The ledger's migrations are tracked apart from the store's, since on
/// PostgreSQL both live in one database.
const MIGRATIONS_TABLE: &str = "_ledger_migrations";

/// Which database the ledger runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (the default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// One billable outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    /// The calling tenant.
    pub tenant_id: String,
    /// The client's request id: the idempotency key, unique per tenant
    /// forever.
    pub request_id: String,
    /// When the call was answered, Unix milliseconds.
    pub event_time_ms: i64,
    /// The RPC, e.g. `Verify`.
    pub method: String,
    /// Requested claim fields, by name, in field-code order.
    pub fields: Vec<String>,
    /// Billable units.
    pub units: u64,
    /// The outcome billed, e.g. `yes` or `no`.
    pub outcome: String,
    /// A keyed fingerprint of the request (no personal data), to tell a
    /// retry from a different request reusing the id.
    pub fingerprint: String,
    /// What the service needs to answer a retry identically (opaque here;
    /// holds no personal data). Cleared after the idempotency window.
    pub replay: Option<String>,
    /// The finalized invoice that billed it.
    pub invoice_number: Option<String>,
}

/// What recording an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// It is now durable.
    Inserted,
    /// An event with the same tenant and request id was already there
    /// (a concurrent duplicate on another replica won); this is it.
    Existing(Box<UsageEvent>),
}

/// A ledger failure.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database failed.
    #[error("ledger database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrating the ledger failed.
    #[error("ledger migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The ledger holds migrations this build does not know.
    #[error(
        "the ledger schema is at version {found}, newer than this ekycd knows (up to {known}); run a newer ekycd"
    )]
    SchemaTooNew {
        /// The newest version applied to the database.
        found: i64,
        /// The newest version this build carries.
        known: i64,
    },
    /// The URL names no supported database.
    #[error("billing database URL must start with sqlite: or postgres:")]
    Url,
    /// The writer task has stopped (shutting down).
    #[error("the ledger is closed")]
    Closed,
    /// A stored value is not what this version writes.
    #[error("corrupt ledger row: {0}")]
    Corrupt(String),
    /// Invoice-level refusals and failures.
    #[error(transparent)]
    Invoice(#[from] crate::invoices::InvoiceError),
    /// A proof asked for a tree the log does not hold.
    #[error("{0}")]
    Proof(String),
}

/// One write: a usage event, its decision-log entry, or both (committed
/// together or not at all).
struct WriteJob {
    event: Option<UsageEvent>,
    decision: Option<Decision>,
    reply: oneshot::Sender<Result<Recorded, LedgerError>>,
}

/// Largest batch one transaction takes.
const MAX_BATCH: usize = 256;

/// The ledger and invoice store.
pub struct Ledger {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    writer: mpsc::Sender<WriteJob>,
}

impl Ledger {
    /// Opens (and creates) the ledger at `url` (`sqlite://path` or
    /// `postgres://...`) with default pool settings and starts its writer.
    pub async fn open(url: &str) -> Result<Ledger, LedgerError> {
        Ledger::open_with(url, PoolSettings::default()).await
    }

    /// Opens the ledger with these pool settings, migrating it first (on
    /// PostgreSQL under sqlx's advisory lock, so replicas take turns); a
    /// ledger migrated by a newer build is refused.
    pub async fn open_with(url: &str, settings: PoolSettings) -> Result<Ledger, LedgerError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(LedgerError::Url);
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout);
        if backend == Backend::Postgres && !settings.statement_timeout.is_zero() {
            let timeout = settings.statement_timeout.as_millis();
            options = options.after_connect(move |conn, _| {
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SET statement_timeout = {timeout}"
                    )))
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            });
        }
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    // FULL: a committed batch is on disk, not only in the
                    // OS cache, when the writer acknowledges it.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        let _lock = match backend {
            Backend::Sqlite => {
                use std::str::FromStr;
                let file = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?
                    .get_filename()
                    .to_path_buf();
                Some(
                    crate::file_lock::lock_for_migration(&file)
                        .await
                        .map_err(|e| LedgerError::Database(sqlx::Error::Io(e)))?,
                )
            }
            Backend::Postgres => None,
        };
        let mut migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        match migrator.run(&pool).await {
            Ok(()) => {}
            Err(sqlx::migrate::MigrateError::VersionMissing(found)) => {
                return Err(LedgerError::SchemaTooNew {
                    found,
                    known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
                });
            }
            Err(e) => return Err(e.into()),
        }
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(pool.clone(), rx));
        Ok(Ledger {
            pool,
            backend,
            writer: tx,
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Records an event durably. Returns once its batch has committed.
    pub async fn record(&self, event: UsageEvent) -> Result<Recorded, LedgerError> {
        self.submit(Some(event), None).await
    }

    /// Records an event and, in the same transaction, appends its decision
    /// to the decision log, but only if the event is new: a duplicate
    /// (`Recorded::Existing`) appends nothing, since the first has its
    /// entry already.
    pub async fn record_decided(
        &self,
        event: UsageEvent,
        decision: Decision,
    ) -> Result<Recorded, LedgerError> {
        self.submit(Some(event), Some(decision)).await
    }

    pub(crate) async fn submit(
        &self,
        event: Option<UsageEvent>,
        decision: Option<Decision>,
    ) -> Result<Recorded, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(WriteJob {
                event,
                decision,
                reply,
            })
            .await
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// The event of `(tenant, request_id)`, if any.
    pub async fn find(
        &self,
        tenant_id: &str,
        request_id: &str,
    ) -> Result<Option<UsageEvent>, LedgerError> {
        let row = dynamic(format!(
            "SELECT {EVENT_COLUMNS} FROM usage_events WHERE tenant_id = $1 AND request_id = $2"
        ))
        .bind(tenant_id)
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| event_from_row(&r)).transpose()
    }

    /// Events of a tenant in `[from_ms, to_ms)`, oldest first.
    pub async fn events(
        &self,
        tenant_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageEvent>, LedgerError> {
        let rows = dynamic(format!(
            "SELECT {EVENT_COLUMNS} FROM usage_events
             WHERE tenant_id = $1 AND event_time_ms >= $2 AND event_time_ms < $3
             ORDER BY event_time_ms, request_id"
        ))
        .bind(tenant_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Calls and units of a tenant in `[from_ms, to_ms)`, per method.
    pub async fn usage_by_method(
        &self,
        tenant_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, crate::Quantities)>, LedgerError> {
        let rows = sqlx::query(
            "SELECT method, CAST(COUNT(*) AS BIGINT) AS calls,
                    CAST(SUM(units) AS BIGINT) AS units FROM usage_events
             WHERE tenant_id = $1 AND event_time_ms >= $2 AND event_time_ms < $3
             GROUP BY method ORDER BY method",
        )
        .bind(tenant_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("method")?,
                    crate::Quantities {
                        calls: r.try_get::<i64, _>("calls")? as u64,
                        units: r.try_get::<i64, _>("units")? as u64,
                    },
                ))
            })
            .collect()
    }

    /// Forgets the replay material of events older than `before_ms`: past
    /// the idempotency window a retry is refused, so it is not needed.
    pub async fn expire_replays(&self, before_ms: i64) -> Result<u64, LedgerError> {
        Ok(sqlx::query(
            "UPDATE usage_events SET replay = NULL
             WHERE event_time_ms < $1 AND replay IS NOT NULL",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Closes the pool once every acknowledged write has committed.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A query built from constant fragments of this crate (column lists,
/// shared predicates): never from input, which is always bound.
pub(crate) fn dynamic(
    sql: String,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
}

pub(crate) const EVENT_COLUMNS: &str = "tenant_id, request_id, event_time_ms, method, fields, units, \
     outcome, fingerprint, replay, invoice_number";

pub(crate) fn event_from_row(r: &AnyRow) -> Result<UsageEvent, LedgerError> {
    let fields: String = r.try_get("fields")?;
    Ok(UsageEvent {
        tenant_id: r.try_get("tenant_id")?,
        request_id: r.try_get("request_id")?,
        event_time_ms: r.try_get("event_time_ms")?,
        method: r.try_get("method")?,
        fields: fields
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect(),
        units: u64::try_from(r.try_get::<i64, _>("units")?)
            .map_err(|_| LedgerError::Corrupt("negative units".into()))?,
        outcome: r.try_get("outcome")?,
        fingerprint: r.try_get("fingerprint")?,
        replay: r.try_get("replay")?,
        invoice_number: r.try_get("invoice_number")?,
    })
}

/// The writer: takes whatever is waiting (up to `MAX_BATCH`), writes it
/// in one transaction, acknowledges each event after the commit.
async fn writer(pool: AnyPool, mut rx: mpsc::Receiver<WriteJob>) {
    let mut tree = TreeCache::default();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match write_batch(&pool, &batch, &mut tree).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                // Nothing of the batch is durable: every caller fails, and
                // none of them returns its answer.
                tracing::error!(error = %e, events = batch.len(), "ledger batch failed");
                let message = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(LedgerError::Corrupt(format!(
                        "batch not written: {message}"
                    ))));
                }
            }
        }
    }
}

/// Writes a batch in one transaction: the events, then the log entries of
/// those that were new. `tree` is replaced only once the commit succeeded.
async fn write_batch(
    pool: &AnyPool,
    batch: &[WriteJob],
    tree: &mut TreeCache,
) -> Result<Vec<Recorded>, LedgerError> {
    let mut tx = pool.begin().await?;
    let mut inserted = Vec::with_capacity(batch.len());
    for job in batch {
        let Some(e) = &job.event else {
            inserted.push(true);
            continue;
        };
        let done = sqlx::query(
            "INSERT INTO usage_events (tenant_id, request_id, event_time_ms, method, fields,
                 units, outcome, fingerprint, replay, invoice_number)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)
             ON CONFLICT (tenant_id, request_id) DO NOTHING",
        )
        .bind(&e.tenant_id)
        .bind(&e.request_id)
        .bind(e.event_time_ms)
        .bind(&e.method)
        .bind(e.fields.join(","))
        .bind(e.units as i64)
        .bind(&e.outcome)
        .bind(&e.fingerprint)
        .bind(e.replay.clone())
        .execute(&mut *tx)
        .await?;
        inserted.push(done.rows_affected() == 1);
    }
    let decisions: Vec<&Decision> = batch
        .iter()
        .zip(&inserted)
        .filter(|(_, new)| **new)
        .filter_map(|(job, _)| job.decision.as_ref())
        .collect();
    let appended = if decisions.is_empty() {
        None
    } else {
        Some(decision_log::append(&mut tx, tree, &decisions).await?)
    };
    tx.commit().await?;
    if let Some(appended) = appended {
        *tree = appended;
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for (job, was_inserted) in batch.iter().zip(inserted) {
        if was_inserted {
            outcomes.push(Recorded::Inserted);
            continue;
        }
        let Some(e) = &job.event else {
            continue;
        };
        let row = dynamic(format!(
            "SELECT {EVENT_COLUMNS} FROM usage_events WHERE tenant_id = $1 AND request_id = $2"
        ))
        .bind(&e.tenant_id)
        .bind(&e.request_id)
        .fetch_one(pool)
        .await?;
        outcomes.push(Recorded::Existing(Box::new(event_from_row(&row)?)));
    }
    Ok(outcomes)
}
