//! The bounded Argon2 pool.
//!
//! Argon2id is the one expensive step of a Verify (tens of milliseconds and
//! tens of MiB). It runs on dedicated OS threads, one per core by default,
//! never on the async workers, so a burst of calls cannot stall the
//! transport. Work waits in a bounded queue; when the queue is full a call
//! is shed at once instead of queueing without bound, so memory stays
//! bounded by `threads x Argon2 memory` (each thread reuses one buffer).
//!
//! Jobs come in two lanes. [`Lane::Interactive`] (unary Verify, imports)
//! is the bounded queue above. [`Lane::Batch`] (VerifyBatch items) is
//! never shed: its items wait, bounded upstream by the in-flight limits of
//! each stream and tenant (`batch.rs`). The fairness rule: a thread that
//! becomes free takes the oldest interactive job if there is one, and a
//! batch job only when no interactive job waits. So however many batch
//! items are queued, a unary call waits for at most the evaluations
//! already running plus the interactive jobs ahead of it, and batch items
//! never take the room of the interactive queue (they cannot get a unary
//! call shed).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ekyc_domain::keys::{KdfImplementation, KdfMemory, KdfParams, Pepper, SubjectKey, derive_key};
use ekyc_domain::normalize::IdNumber;
use tokio::sync::oneshot;

use crate::keyring::Keyring;

/// How long a hashing thread waits for work before it gives its working
/// memory back (`KdfMemory::release`).
const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// Why a key was not derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Every thread is busy and the queue is full.
    #[error("hashing pool is saturated")]
    Saturated,
    /// The caller's deadline passed while the job waited.
    #[error("deadline passed before hashing started")]
    DeadlinePassed,
    /// The pool has shut down.
    #[error("hashing pool is closed")]
    Closed,
    /// The key was asked for under a pepper this replica does not hold.
    #[error("pepper version {0} is not held by this replica")]
    PepperNotHeld(u32),
    /// The parameters are invalid (a configuration error).
    #[error("argon2 failed: {0}")]
    Kdf(String),
}

/// Which queue a job waits in (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A caller waiting for one answer: served first, shed when full.
    Interactive,
    /// A VerifyBatch item: served when no interactive job waits, never shed.
    Batch,
}

/// Counters that tests and metrics read.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Argon2 evaluations completed.
    pub evaluations: AtomicU64,
    /// Evaluations running right now.
    pub in_flight: AtomicUsize,
    /// Highest `in_flight` ever seen.
    pub max_in_flight: AtomicUsize,
    /// Jobs refused because the queue was full.
    pub shed: AtomicU64,
    /// Jobs dropped because their deadline passed while queued.
    pub expired: AtomicU64,
    /// Interactive jobs waiting in the queue now.
    pub queued: AtomicUsize,
    /// Batch jobs waiting now.
    pub batch_queued: AtomicUsize,
    /// Batch evaluations completed.
    pub batch_evaluations: AtomicU64,
}

struct Job {
    id: IdNumber,
    pepper: Arc<Pepper>,
    deadline: Option<Instant>,
    lane: Lane,
    reply: oneshot::Sender<Result<SubjectKey, HashError>>,
}

/// The two lanes' jobs, and whether the pool still takes work.
#[derive(Default)]
struct Queues {
    interactive: VecDeque<Job>,
    batch: VecDeque<Job>,
    closed: bool,
}

/// What the threads and the submitters share.
struct Shared {
    queues: Mutex<Queues>,
    /// Signalled when a job arrives or the pool closes.
    ready: Condvar,
    stats: PoolStats,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A fixed set of hashing threads behind a bounded queue.
pub struct HashPool {
    shared: Arc<Shared>,
    threads: usize,
    params: KdfParams,
    implementation: KdfImplementation,
    /// The peppers a job may ask for; each job carries its own reference
    /// to the threads, never a copy.
    keyring: Arc<Keyring>,
    queue_capacity: usize,
}

impl HashPool {
    /// Starts `threads` hashing threads, deriving with the keyring's
    /// peppers by `implementation`, with room for `queue` waiting
    /// interactive jobs.
    pub fn start(
        keyring: Arc<Keyring>,
        (params, implementation): (KdfParams, KdfImplementation),
        threads: usize,
        queue: usize,
    ) -> HashPool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
            stats: PoolStats::default(),
        });
        for n in 0..threads {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || worker(&shared, params, implementation))
                .unwrap_or_else(|e| panic!("cannot start hashing thread: {e}"));
        }
        HashPool {
            queue_capacity: queue,
            keyring,
            implementation,
            shared,
            threads,
            params,
        }
    }

    /// Derives the subject key for `id` under pepper version `pepper` in
    /// the interactive lane, waiting for a free thread if the queue has
    /// room, failing at once if it has none.
    pub async fn derive(
        &self,
        id: IdNumber,
        pepper: u32,
        deadline: Option<Instant>,
    ) -> Result<SubjectKey, HashError> {
        self.derive_in(Lane::Interactive, id, pepper, deadline)
            .await
    }

    /// Derives the subject key in `lane`: an interactive job is shed when
    /// its queue is full, a batch job waits for its turn.
    pub async fn derive_in(
        &self,
        lane: Lane,
        id: IdNumber,
        pepper: u32,
        deadline: Option<Instant>,
    ) -> Result<SubjectKey, HashError> {
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(HashError::DeadlinePassed);
        }
        let pepper = self
            .keyring
            .pepper(pepper)
            .ok_or(HashError::PepperNotHeld(pepper))?;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            id,
            pepper,
            deadline,
            lane,
            reply,
        };
        {
            let stats = &self.shared.stats;
            let mut queues = self.shared.lock();
            if queues.closed {
                return Err(HashError::Closed);
            }
            match lane {
                Lane::Interactive if queues.interactive.len() >= self.queue_capacity => {
                    stats.shed.fetch_add(1, Ordering::Relaxed);
                    return Err(HashError::Saturated);
                }
                Lane::Interactive => {
                    queues.interactive.push_back(job);
                    stats.queued.fetch_add(1, Ordering::SeqCst);
                }
                Lane::Batch => {
                    queues.batch.push_back(job);
                    stats.batch_queued.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        self.shared.ready.notify_one();
        rx.await.map_err(|_| HashError::Closed)?
    }

    /// Stops accepting work; threads exit when the queues drain.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }

    /// Sheds a call at once if the interactive queue is full now: it would
    /// be shed at [`HashPool::derive`] anyway, and refusing early spares
    /// it the ledger lookup and the limits. Counted as shed.
    pub fn shed_if_saturated(&self) -> bool {
        let stats = &self.shared.stats;
        let full = stats.queued.load(Ordering::SeqCst) >= self.queue_capacity;
        if full {
            stats.shed.fetch_add(1, Ordering::Relaxed);
        }
        full
    }

    /// The counters.
    pub fn stats(&self) -> &PoolStats {
        &self.shared.stats
    }

    /// Number of hashing threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The Argon2id implementation the threads run.
    pub fn implementation(&self) -> KdfImplementation {
        self.implementation
    }

    /// The Argon2 parameter set every key is derived with.
    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// The pepper version imports derive with (`pepper.version`).
    pub fn primary_pepper(&self) -> u32 {
        self.keyring.primary_version()
    }

    /// A retry delay hint for shed calls: roughly the time the queue ahead
    /// needs, at least one evaluation.
    pub fn retry_hint(&self) -> Duration {
        // About 25 ms per evaluation at the default cost on a current core;
        // scaled by memory so cheap test parameters give short hints.
        let per_eval_ms = (u64::from(self.params.m_kib) * u64::from(self.params.t) / 1500).max(1);
        Duration::from_millis(per_eval_ms.max(10))
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.close();
    }
}

/// The next job by the fairness rule (interactive first), waiting for one;
/// `None` once the pool is closed and drained. A thread idle for
/// [`IDLE_RELEASE`] gives its working memory back while it waits on:
/// not at every empty queue, since a thread that mapped its memory again
/// after each short gap would add page faults to moderate load's latency.
fn next_job(shared: &Shared, memory: &mut KdfMemory) -> Option<Job> {
    let mut queues = shared.lock();
    let mut released = false;
    loop {
        let job = queues
            .interactive
            .pop_front()
            .or_else(|| queues.batch.pop_front());
        if let Some(job) = job {
            let waiting = match job.lane {
                Lane::Interactive => &shared.stats.queued,
                Lane::Batch => &shared.stats.batch_queued,
            };
            waiting.fetch_sub(1, Ordering::SeqCst);
            return Some(job);
        }
        if queues.closed {
            return None;
        }
        if released {
            queues = shared.ready.wait(queues).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        let (guard, waited) = shared
            .ready
            .wait_timeout(queues, IDLE_RELEASE)
            .unwrap_or_else(|p| p.into_inner());
        queues = guard;
        if waited.timed_out() && queues.interactive.is_empty() && queues.batch.is_empty() {
            // Not under the lock: unmapping tens of MiB takes a while.
            drop(queues);
            memory.release();
            released = true;
            queues = shared.lock();
        }
    }
}

fn worker(shared: &Shared, params: KdfParams, implementation: KdfImplementation) {
    // One buffer per thread, reused: allocating and faulting in tens of MiB
    // per call costs a measurable share of an evaluation.
    let mut memory = KdfMemory::with(&params, implementation);
    let stats = &shared.stats;
    while let Some(job) = next_job(shared, &mut memory) {
        if job.reply.is_closed() {
            // The caller went away (cancelled or timed out): skip the work.
            continue;
        }
        if job.deadline.is_some_and(|d| d <= Instant::now()) {
            stats.expired.fetch_add(1, Ordering::Relaxed);
            let _ = job.reply.send(Err(HashError::DeadlinePassed));
            continue;
        }
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let result = derive_key(&job.pepper, &params, &job.id, &mut memory)
            .map_err(|e| HashError::Kdf(e.to_string()));
        stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        stats.evaluations.fetch_add(1, Ordering::Relaxed);
        if job.lane == Lane::Batch {
            stats.batch_evaluations.fetch_add(1, Ordering::Relaxed);
        }
        // The caller may have gone away meanwhile; nothing to do then.
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekyc_domain::normalize::normalize_id;

    const CHEAP: KdfParams = KdfParams {
        id: 0,
        m_kib: 64,
        t: 1,
        p: 1,
    };

    /// Pepper version 1 (`[4; 32]`), and version 2 (`[5; 32]`) held too.
    fn keyring() -> Arc<Keyring> {
        Arc::new(Keyring::new(
            Pepper::new(1, &[4; 32]),
            vec![Pepper::new(2, &[5; 32])],
        ))
    }

    #[tokio::test]
    async fn derives_the_same_key_as_the_domain() {
        let pool = HashPool::start(keyring(), (CHEAP, KdfImplementation::default()), 2, 4);
        let id = normalize_id("079085001234").expect("id");
        for (version, bytes) in [(1, [4; 32]), (2, [5; 32])] {
            let key = pool
                .derive(id.clone(), version, None)
                .await
                .expect("derive");
            let direct = derive_key(
                &Pepper::new(version, &bytes),
                &CHEAP,
                &id,
                &mut KdfMemory::new(&CHEAP),
            )
            .expect("derive");
            assert_eq!(key.locator(), direct.locator(), "pepper {version}");
        }
        assert_eq!(pool.stats().evaluations.load(Ordering::Relaxed), 2);
        assert_eq!(
            pool.derive(id, 3, None).await.map(|_| ()),
            Err(HashError::PepperNotHeld(3))
        );
        assert_eq!(pool.stats().evaluations.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn expired_deadlines_are_not_hashed() {
        let pool = HashPool::start(keyring(), (CHEAP, KdfImplementation::RustCrypto), 1, 4);
        let id = normalize_id("079085001234").expect("id");
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(
            pool.derive(id, 1, Some(past)).await.map(|_| ()),
            Err(HashError::DeadlinePassed)
        );
        assert_eq!(pool.stats().evaluations.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_sheds_at_once() {
        // Expensive enough that the queue fills before the thread drains it.
        let slow = KdfParams {
            id: 0,
            m_kib: 8 * 1024,
            t: 4,
            p: 1,
        };
        let pool = Arc::new(HashPool::start(
            keyring(),
            (slow, KdfImplementation::default()),
            1,
            1,
        ));
        let id = normalize_id("079085001234").expect("id");
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let pool = Arc::clone(&pool);
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                pool.derive(id, 1, None).await.map(|_| ())
            }));
        }
        let mut shed = 0;
        let mut ok = 0;
        for t in tasks {
            match t.await.expect("join") {
                Ok(()) => ok += 1,
                Err(HashError::Saturated) => shed += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(shed >= 1, "some calls are shed");
        assert!(ok >= 1 && ok <= 8 - shed);
        assert_eq!(pool.stats().shed.load(Ordering::Relaxed), shed as u64);
        assert_eq!(pool.stats().max_in_flight.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_free_thread_takes_every_interactive_job_before_any_batch_job() {
        let shared = Shared {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
            stats: PoolStats::default(),
        };
        let id = normalize_id("079085001234").expect("id");
        let pepper = keyring().pepper(1).expect("pepper");
        let mut replies = Vec::new();
        // Arrival order: batch, batch, unary, batch, unary.
        for (n, lane) in [
            Lane::Batch,
            Lane::Batch,
            Lane::Interactive,
            Lane::Batch,
            Lane::Interactive,
        ]
        .into_iter()
        .enumerate()
        {
            let (reply, rx) = oneshot::channel();
            replies.push(rx);
            let mut queues = shared.lock();
            let job = Job {
                id: id.clone(),
                pepper: Arc::clone(&pepper),
                deadline: Some(Instant::now() + Duration::from_secs(n as u64 + 1)),
                lane,
                reply,
            };
            match lane {
                Lane::Interactive => queues.interactive.push_back(job),
                Lane::Batch => queues.batch.push_back(job),
            }
        }
        shared.stats.queued.store(2, Ordering::SeqCst);
        shared.stats.batch_queued.store(3, Ordering::SeqCst);
        shared.lock().closed = true;
        let mut memory = KdfMemory::new(&CHEAP);
        let mut order = Vec::new();
        while let Some(job) = next_job(&shared, &mut memory) {
            order.push(
                job.deadline
                    .map(|d| d.duration_since(Instant::now()).as_secs()),
            );
            drop(job);
        }
        // Each job's deadline tells its arrival (n + 1 seconds, less the
        // time passed): both unary jobs first, then the batch in order.
        assert_eq!(
            order,
            vec![Some(2), Some(4), Some(0), Some(1), Some(3)],
            "unary jobs by arrival, then batch jobs by arrival"
        );
        assert_eq!(shared.stats.queued.load(Ordering::SeqCst), 0);
        assert_eq!(shared.stats.batch_queued.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batch_jobs_are_never_shed() {
        let pool = Arc::new(HashPool::start(
            keyring(),
            (CHEAP, KdfImplementation::default()),
            1,
            1,
        ));
        let id = normalize_id("079085001234").expect("id");
        let mut batch = Vec::new();
        for _ in 0..16 {
            let (pool, id) = (Arc::clone(&pool), id.clone());
            batch.push(tokio::spawn(async move {
                pool.derive_in(Lane::Batch, id, 1, None).await.map(|_| ())
            }));
        }
        for t in batch {
            t.await.expect("join").expect("batch derived");
        }
        let stats = pool.stats();
        assert_eq!(stats.shed.load(Ordering::Relaxed), 0);
        assert_eq!(stats.batch_evaluations.load(Ordering::Relaxed), 16);
    }
}
