//! `RegistryService`: the registry operator loads the registry over gRPC,
//! through the same import as `ekycd import` (validation, the reject report
//! without values, hashing on the pool, idempotency, one version switched
//! at once), and purges a retired pepper's rows.

use std::sync::Arc;

use ekyc_input::rows::{RawRow, row_from_pairs};
use ekyc_proto::v1 as pb;
use tokio_stream::{Stream, StreamExt};

use crate::App;
use crate::auth::Credential;
use crate::authz::{Gate, Target};
use crate::error::{Reason, ServiceError};
use crate::hashing::HashPool;
use crate::import::{self, ImportError, Input, ProgressStyle, Switch};
use crate::keyring::Keyring;
use crate::store::Store;
use crate::tenants::Actor;

/// Rows (records and deletes) one import stream may carry: they are held
/// in memory until the stream ends, so the bound is the server's memory.
/// An export larger than this goes as several imports (each its own
/// version).
pub const MAX_IMPORT_ROWS: usize = 1_000_000;

/// Rejects returned in a response; the rest are counted.
pub const MAX_REJECTS_RETURNED: usize = 10_000;

/// The registry operator's handle: the gate, the store and the pool.
pub struct RegistryService {
    gate: Gate,
    store: Store,
    pool: Arc<HashPool>,
    keyring: Arc<Keyring>,
}

impl RegistryService {
    /// The handle over `app`'s parts.
    pub fn new(app: &App) -> RegistryService {
        RegistryService {
            gate: Gate::new(app),
            store: app.store.clone(),
            pool: Arc::clone(&app.pool),
            keyring: Arc::clone(&app.keyring),
        }
    }

    async fn operator(&self, credential: &Credential, method: &str) -> Result<Actor, ServiceError> {
        let caller = self.gate.authenticate(credential).await?;
        self.gate.authorize(&caller, method, Target::Caller).await?;
        Ok(Actor {
            key_id: caller.key_id.clone(),
            tenant_id: caller.tenant.id.clone(),
        })
    }

    /// ImportRecords. The caller is checked before a single message is
    /// read; a stream that fails or is cut returns before anything is
    /// hashed or written.
    pub async fn import(
        &self,
        credential: &Credential,
        mut chunks: impl Stream<Item = Result<pb::ImportRecordsRequest, tonic::Status>> + Unpin,
    ) -> Result<pb::ImportRecordsResponse, tonic::Status> {
        let actor = self.operator(credential, "ImportRecords").await?;
        let (mut rows, mut deletes, mut rejects) = (Vec::new(), Vec::new(), Vec::new());
        let (mut complete, mut stage_only) = (false, false);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if complete {
                return Err(ServiceError::invalid(
                    "last",
                    "after_last",
                    "no message may follow the one marked last",
                )
                .into());
            }
            complete = chunk.last;
            stage_only |= chunk.stage_only;
            if rows.len() + deletes.len() + chunk.records.len() + chunk.deletes.len()
                > MAX_IMPORT_ROWS
            {
                return Err(ServiceError::refused(
                    Reason::ImportTooLarge,
                    format!(
                        "an import carries at most {MAX_IMPORT_ROWS} records and deletes; \
                         send the rest as another import"
                    ),
                )
                .into());
            }
            for record in chunk.records {
                let values = record
                    .fields
                    .into_iter()
                    .map(|f| (f.name, f.value))
                    .collect();
                match row_from_pairs(record.line, values) {
                    Ok(row) => rows.push(row),
                    Err(reject) => rejects.push(reject),
                }
            }
            deletes.extend(chunk.deletes.into_iter().map(|d| RawRow {
                line: d.line,
                values: vec![("id_number".into(), d.id_number)],
            }));
        }
        if !complete {
            return Err(ServiceError::refused(
                Reason::ImportIncomplete,
                "the stream ended before a message marked last; nothing was imported",
            )
            .into());
        }
        let switch = if stage_only {
            Switch::Staged
        } else {
            Switch::AtEnd
        };
        let input = Input::from_rows(rows, deletes, rejects);
        let (report, rejects) = import::import_version(
            &self.store,
            Arc::clone(&self.pool),
            input,
            ProgressStyle::Quiet,
            &actor,
            switch,
        )
        .await
        .map_err(import_refusal)?;
        let omitted = rejects.len().saturating_sub(MAX_REJECTS_RETURNED) as u64;
        Ok(pb::ImportRecordsResponse {
            rows: report.rows,
            rejected: report.rejected,
            inserted: report.inserted,
            updated: report.updated,
            unchanged: report.unchanged,
            deleted: report.deleted,
            delete_not_found: report.delete_not_found,
            registry_version: report.registry_version,
            rejects: rejects
                .into_iter()
                .take(MAX_REJECTS_RETURNED)
                .map(|r| pb::ImportReject {
                    line: r.line,
                    field: r.field,
                    rule: r.rule,
                    description: r.description,
                })
                .collect(),
            rejects_omitted: omitted,
            staged_version: report.staged_version,
            pepper_version: report.pepper_version,
            records: report.records,
        })
    }

    /// PublishVersion: the staged version becomes current everywhere.
    pub async fn publish_version(
        &self,
        credential: &Credential,
        req: &pb::PublishVersionRequest,
    ) -> Result<pb::PublishVersionResponse, ServiceError> {
        let actor = self.operator(credential, "PublishVersion").await?;
        let published = import::publish_staged(&self.store, req.registry_version, &actor)
            .await
            .map_err(import_refusal)?;
        tracing::info!(
            actor = %actor.key_id,
            registry_version = published.registry_version,
            pepper_version = published.pepper_version,
            records = published.records,
            "staged registry version published"
        );
        Ok(pb::PublishVersionResponse {
            registry_version: published.registry_version,
            pepper_version: published.pepper_version,
            records: published.records,
        })
    }

    /// DiscardVersion: the staged version goes; the current one stays.
    pub async fn discard_version(
        &self,
        credential: &Credential,
        req: &pb::DiscardVersionRequest,
    ) -> Result<pb::DiscardVersionResponse, ServiceError> {
        let actor = self.operator(credential, "DiscardVersion").await?;
        import::discard_staged(&self.store, req.registry_version, &actor)
            .await
            .map_err(import_refusal)?;
        Ok(pb::DiscardVersionResponse {})
    }

    /// PurgePepper: refuses the pepper imports derive with here, and (in
    /// the store) the current registry version's.
    pub async fn purge_pepper(
        &self,
        credential: &Credential,
        req: &pb::PurgePepperRequest,
    ) -> Result<pb::PurgePepperResponse, ServiceError> {
        let actor = self.operator(credential, "PurgePepper").await?;
        let version = req.pepper_version;
        if version == self.keyring.primary_version() || version == 0 {
            return Err(ServiceError::refused(
                Reason::PepperInUse,
                "pepper_version must be a retired version, not the one imports derive with (pepper.version)",
            ));
        }
        let removed = self
            .store
            .purge_pepper(version, crate::clock::now_ms(), &|removed| {
                actor.entry(
                    "purge_pepper",
                    "",
                    "pepper_version",
                    version.to_string(),
                    format!("{removed} records removed"),
                )
            })
            .await
            .map_err(|e| import_refusal(ImportError::Store(e)))?;
        Ok(pb::PurgePepperResponse {
            pepper_version: version,
            removed,
        })
    }
}

/// What an import's failure tells the operator.
fn import_refusal(e: ImportError) -> ServiceError {
    match e {
        ImportError::Store(e) => e.into(),
        e => ServiceError::internal(e),
    }
}
