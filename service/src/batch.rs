//! `VerifyBatch`: a stream of Verify items answered by a stream of results.
//!
//! Each item runs the Verify chain on its own ([`VerifyService::verify_item`]):
//! validation, policy, rate, replay, quota, guard, one Argon2 evaluation,
//! the usage event written before the result is sent. What the stream
//! adds is how items are let in:
//!
//! - **Authentication** when the stream opens (a refusal fails the call
//!   before any result) and again before each item is read further: a key
//!   revoked or expired, or a tenant suspended, mid-stream ends the stream
//!   with the refusal a unary call would get, once the items read before
//!   are answered (the item that met the refusal gets none).
//! - **Backpressure.** An item is read from the stream only when a slot is
//!   free in both the stream (`batch.max_in_flight_per_stream`) and its
//!   tenant (`batch.max_in_flight_per_tenant`, across the tenant's streams
//!   on this replica). A slot is held until the item's result is handed
//!   to the transport, so a client that sends faster than the pool hashes,
//!   or reads results slower, meets HTTP/2 flow control; what a stream
//!   holds does not grow with the size of the batch.
//! - **Fairness.** Batch items hash in the pool's batch lane, which a
//!   thread serves only when no unary call waits (see `hashing.rs`), and
//!   they are never shed, so they cannot get a unary call shed either.
//! - **Lifetime.** After `batch.max_stream_secs`, or when the server starts
//!   shutting down, the stream stops reading, answers every item it read,
//!   and ends with `STREAM_LIFETIME_REACHED` (or `SHUTTING_DOWN`); the
//!   client resends the items that have no result on a new stream, and
//!   an item answered meanwhile is replayed from the ledger at no charge.
//!
//! A client that goes away leaves nothing half done: items already read
//! run to their end (answered and billed, or not), and a later stream
//! that sends them again gets the stored answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ekyc_proto::v1 as pb;
use ekyc_telemetry::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Status};
use tracing::Instrument;

use crate::auth::Credential;
use crate::error::{Reason, ServiceError, rpc_status};
use crate::verify::VerifyService;

/// The authorisation rule of the stream and of each of its items.
const METHOD: &str = "VerifyBatch";

/// The bounds of batch streams (resolved `[batch]` settings), and the
/// per-tenant slots every stream on this replica shares.
pub struct Batches {
    per_stream: usize,
    per_tenant: usize,
    max_stream: Duration,
    item_timeout: Duration,
    /// One semaphore per tenant with a stream open.
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Batches {
    /// Streams of at most `per_stream` items in flight, `per_tenant` per
    /// tenant, each lasting at most `max_stream`, each item answered
    /// within `item_timeout`.
    pub fn new(
        per_stream: usize,
        per_tenant: usize,
        max_stream: Duration,
        item_timeout: Duration,
    ) -> Batches {
        Batches {
            per_stream: per_stream.max(1),
            per_tenant: per_tenant.max(1),
            max_stream,
            item_timeout,
            tenants: Mutex::default(),
        }
    }

    /// Items in flight per stream.
    pub fn per_stream(&self) -> usize {
        self.per_stream
    }

    /// Forgets the slots of tenants no stream holds, so the map holds
    /// only tenants streaming now.
    fn prune(&self) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants.retain(|_, slots| Arc::strong_count(slots) > 1);
    }

    fn tenant_slots(&self, tenant: &str) -> Arc<Semaphore> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            tenants
                .entry(tenant.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant))),
        )
    }
}

/// A slot of `slots`, which are never closed.
async fn acquire(slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    Arc::clone(slots)
        .acquire_owned()
        .await
        .unwrap_or_else(|_| unreachable!("slots are never closed"))
}

/// How long a stream that must end (lifetime, deadline, shutdown, a
/// refused key) waits for the items it read to be taken by the client.
/// Past it, items still waiting are dropped: each is recorded and billed
/// or not already, and a new stream gets its stored answer.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// The results of one stream, as the transport sends them.
pub type Results = tokio_stream::wrappers::ReceiverStream<Result<pb::VerifyBatchResult, Status>>;

/// Why a stream stopped reading items.
enum End {
    /// The client sent its last item (or went away): finish normally.
    Done,
    /// End with this status once the items read are answered.
    Fail(Status),
}

impl VerifyService {
    /// Opens a `VerifyBatch` stream over `items`: authenticates and
    /// authorises the caller now (a refusal is the call's status), then
    /// answers the items in a task of its own. `stopping` turns true when
    /// the server starts shutting down; `deadline` is the caller's
    /// deadline for the whole stream, if it sent one.
    pub async fn verify_batch<S>(
        &self,
        credential: Credential,
        items: S,
        stopping: watch::Receiver<bool>,
        deadline: Option<Instant>,
    ) -> Result<Results, ServiceError>
    where
        S: Stream<Item = Result<pb::VerifyRequest, Status>> + Send + Unpin + 'static,
    {
        let caller = self.authenticate(&credential, METHOD).await?;
        let batches = self.batches();
        let tenant_slots = batches.tenant_slots(&caller.tenant.id);
        // Results wait here only as long as the transport is slower than
        // the items' slots are many; a full channel holds the slots.
        let (tx, rx) = mpsc::channel(batches.per_stream);
        let stream = Batch {
            service: self.clone(),
            credential,
            stopping,
            deadline,
            stream_slots: Arc::new(Semaphore::new(batches.per_stream)),
            tenant_slots,
            ends_at: tokio::time::Instant::now() + batches.max_stream,
            max_stream: batches.max_stream,
            item_timeout: batches.item_timeout,
            tx,
        };
        // The stream's items are steps of this call, in its trace too.
        tokio::spawn(
            stream
                .run(items)
                .instrument(tracing::Span::current())
                .with_current_context(),
        );
        Ok(Results::new(rx))
    }
}

/// One open stream's state, owned by its task.
struct Batch {
    service: VerifyService,
    credential: Credential,
    stopping: watch::Receiver<bool>,
    deadline: Option<Instant>,
    stream_slots: Arc<Semaphore>,
    tenant_slots: Arc<Semaphore>,
    ends_at: tokio::time::Instant,
    max_stream: Duration,
    item_timeout: Duration,
    tx: mpsc::Sender<Result<pb::VerifyBatchResult, Status>>,
}

impl Batch {
    async fn run<S>(self, mut items: S)
    where
        S: Stream<Item = Result<pb::VerifyRequest, Status>> + Send + Unpin + 'static,
    {
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        let mut read = 0u64;
        let mut lost = false;
        let end = loop {
            // Room first, then read: until the stream has a free slot it
            // is not read, and its HTTP/2 window fills. The tenant's slot
            // is taken once an item is in hand, so a stream idling between
            // items holds none of its tenant's room.
            let stream_slot = tokio::select! {
                slot = acquire(&self.stream_slots) => slot,
                end = self.interrupted() => break end,
            };
            let item = tokio::select! {
                item = items.next() => item,
                end = self.interrupted() => break end,
            };
            let req = match item {
                None => break End::Done,
                // The client reset the stream, or sent a message the
                // transport refused (too large): tonic's status says which.
                Some(Err(status)) => break End::Fail(status),
                Some(Ok(req)) => req,
            };
            let tenant_slot = tokio::select! {
                slot = acquire(&self.tenant_slots) => slot,
                end = self.interrupted() => break end,
            };
            let slots = (stream_slot, tenant_slot);
            // The key is checked again before each item: a revocation
            // stops the stream at the next item, as a unary call.
            let again = self.service.reauthenticate(&self.credential, METHOD);
            let caller = match again.await {
                Ok(caller) => caller,
                // A refused credential (revoked, expired, suspended) ends
                // the stream: this item gets no result, as a unary call
                // would get none.
                Err(e)
                    if matches!(
                        e.reason().code(),
                        Code::Unauthenticated | Code::PermissionDenied
                    ) =>
                {
                    break End::Fail(Status::from(e));
                }
                // The store was briefly unreachable: this item fails as a
                // unary call would, and the stream goes on.
                Err(e) => {
                    let result = pb::VerifyBatchResult {
                        request_id: req.request_id,
                        outcome: Some(pb::verify_batch_result::Outcome::Error(rpc_status(e))),
                    };
                    let _ = self.tx.send(Ok(result)).await;
                    continue;
                }
            };
            read += 1;
            // An item waits for the pool's spare capacity (unary calls go
            // first) at most this long: meanwhile it holds its quota and
            // its subject's guard attempt, so it must not wait forever
            // behind a steady unary load. It then fails as DEADLINE_PASSED,
            // which a client sends again later.
            let item_deadline = Instant::now() + self.item_timeout;
            let deadline = Some(
                self.deadline
                    .map_or(item_deadline, |d| d.min(item_deadline)),
            );
            let (service, tx) = (self.service.clone(), self.tx.clone());
            tasks.spawn(
                async move {
                    let outcome = match service.verify_item(&caller, &req, deadline).await {
                        Ok(answered) => {
                            pb::verify_batch_result::Outcome::Response(answered.response)
                        }
                        Err(e) => pb::verify_batch_result::Outcome::Error(rpc_status(e)),
                    };
                    let result = pb::VerifyBatchResult {
                        request_id: req.request_id,
                        outcome: Some(outcome),
                    };
                    // Waits while the transport is behind, holding the slots.
                    let _ = tx.send(Ok(result)).await;
                    drop(slots);
                }
                .in_current_span()
                .with_current_context(),
            );
            // Finished items are reaped as the stream goes, so the set
            // holds only those in flight.
            while let Some(joined) = tasks.try_join_next() {
                lost |= joined.is_err();
            }
        };
        // Every item read is answered (or, if the client went away,
        // finished and recorded) before the stream ends; a stream that
        // must end waits for a client that does not read for so long.
        let drain = async {
            while let Some(joined) = tasks.join_next().await {
                lost |= joined.is_err();
            }
        };
        // A client that sent its last item but reads no results is waited
        // for until the stream's lifetime is over, not forever: its items
        // hold their tenant's slots.
        let drained = match end {
            End::Done => tokio::time::timeout_at(self.ends_at + DRAIN_GRACE, drain)
                .await
                .is_ok(),
            End::Fail(_) => tokio::time::timeout(DRAIN_GRACE, drain).await.is_ok(),
        };
        if !drained {
            tasks.abort_all();
        }
        // An item that panicked has no result: the stream must not end as
        // if every item had one.
        let end = match end {
            End::Done if lost => End::Fail(Status::from(ServiceError::internal(
                "a verify batch item failed without a result",
            ))),
            end => end,
        };
        tracing::info!(
            items = read,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "verify batch stream ended"
        );
        if let End::Fail(status) = end {
            let _ = tokio::time::timeout(DRAIN_GRACE, self.tx.send(Err(status))).await;
        }
        let Batch {
            service,
            tenant_slots,
            ..
        } = self;
        drop(tenant_slots);
        service.batches().prune();
    }

    /// Completes when the stream must stop reading: its lifetime or the
    /// caller's deadline is over, the server is shutting down, or the
    /// client stopped reading results (it went away).
    async fn interrupted(&self) -> End {
        let mut stopping = self.stopping.clone();
        let deadline = self.deadline.map(tokio::time::Instant::from_std);
        tokio::select! {
            () = tokio::time::sleep_until(self.ends_at) => End::Fail(Status::from(
                ServiceError::refused(
                    Reason::StreamLifetimeReached,
                    format!(
                        "the stream reached its maximum lifetime of {} s after answering every \
                         item it read; send the unanswered items on a new stream",
                        self.max_stream.as_secs()
                    ),
                ),
            )),
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => End::Fail(Status::from(ServiceError::DeadlineExceeded)),
            _ = stopping.wait_for(|stopping| *stopping) => {
                End::Fail(Status::from(ServiceError::ShuttingDown))
            }
            () = self.tx.closed() => End::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_without_a_stream_are_forgotten() {
        let batches = Batches::new(4, 8, Duration::from_secs(60), Duration::from_secs(60));
        let held = batches.tenant_slots("tn_a");
        drop(batches.tenant_slots("tn_b"));
        batches.prune();
        let tenants = batches.tenants.lock().expect("lock");
        assert_eq!(tenants.keys().collect::<Vec<_>>(), vec!["tn_a"]);
        assert_eq!(held.available_permits(), 8);
    }
}
