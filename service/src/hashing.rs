//! The bounded Argon2 pool.
//!
//! Argon2id is the one expensive step of a Verify (tens of milliseconds and
//! tens of MiB). It runs on dedicated OS threads, one per core by default,
//! never on the async workers, so a burst of calls cannot stall the
//! transport. Work waits in a bounded queue; when the queue is full a call
//! is shed at once instead of queueing without bound, so memory stays
//! bounded by `threads x Argon2 memory` (each thread reuses one buffer).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ekyc_domain::keys::{KdfImplementation, KdfMemory, KdfParams, Pepper, SubjectKey, derive_key};
use ekyc_domain::normalize::IdNumber;
use tokio::sync::oneshot;

use crate::keyring::Keyring;

/// How long a hashing thread waits for work before it gives its working
/// memory back (`KdfMemory::release`). Each idle thread waits its turn at
/// the queue, so with `n` threads the last lets go within `n` of these.
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
    /// Jobs waiting in the queue now.
    pub queued: AtomicUsize,
}

struct Job {
    id: IdNumber,
    pepper: Arc<Pepper>,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<SubjectKey, HashError>>,
}

/// A fixed set of hashing threads behind a bounded queue.
pub struct HashPool {
    /// `None` once shut down; dropping the sender stops the threads.
    sender: Mutex<Option<SyncSender<Job>>>,
    stats: Arc<PoolStats>,
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
    /// peppers by `implementation`, with room for `queue` waiting jobs.
    pub fn start(
        keyring: Arc<Keyring>,
        (params, implementation): (KdfParams, KdfImplementation),
        threads: usize,
        queue: usize,
    ) -> HashPool {
        let threads = threads.max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(PoolStats::default());
        for n in 0..threads {
            let rx = Arc::clone(&rx);
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || worker(&rx, params, implementation, &stats))
                .unwrap_or_else(|e| panic!("cannot start hashing thread: {e}"));
        }
        HashPool {
            queue_capacity: queue,
            keyring,
            implementation,
            sender: Mutex::new(Some(tx)),
            stats,
            threads,
            params,
        }
    }

    /// Derives the subject key for `id` under pepper version `pepper`,
    /// waiting for a free thread if the queue has room, failing at once if
    /// it has none.
    pub async fn derive(
        &self,
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
            reply,
        };
        {
            let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
            let sender = guard.as_ref().ok_or(HashError::Closed)?;
            // Counted before the send so a worker can never take the job
            // (and uncount it) first.
            self.stats.queued.fetch_add(1, Ordering::SeqCst);
            match sender.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                    self.stats.shed.fetch_add(1, Ordering::Relaxed);
                    return Err(HashError::Saturated);
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(HashError::Closed);
                }
            }
        }
        rx.await.map_err(|_| HashError::Closed)?
    }

    /// Stops accepting work; threads exit when the queue drains.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Sheds a call at once if the queue is full now: it would be shed at
    /// [`HashPool::derive`] anyway, and refusing early spares it the
    /// ledger lookup and the limits. Counted as shed.
    pub fn shed_if_saturated(&self) -> bool {
        let full = self.stats.queued.load(Ordering::SeqCst) >= self.queue_capacity;
        if full {
            self.stats.shed.fetch_add(1, Ordering::Relaxed);
        }
        full
    }

    /// The counters.
    pub fn stats(&self) -> &PoolStats {
        &self.stats
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

fn worker(
    rx: &Mutex<Receiver<Job>>,
    params: KdfParams,
    implementation: KdfImplementation,
    stats: &PoolStats,
) {
    // One buffer per thread, reused: allocating and faulting in tens of MiB
    // per call costs a measurable share of an evaluation.
    let mut memory = KdfMemory::with(&params, implementation);
    loop {
        let waited = rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(IDLE_RELEASE);
        let job = match waited {
            Ok(job) => job,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                // Idle: the last evaluation's blocks go now rather than
                // whenever the next job overwrites them. Not at every
                // empty queue: a thread that had to map its memory again
                // after each short gap would add page faults to the
                // latency of moderate load.
                memory.release();
                let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                match rx.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            }
        };
        stats.queued.fetch_sub(1, Ordering::SeqCst);
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
}
