//! One owner of start and stop: what `ekycd serve` runs beside the gRPC
//! server, started in order and stopped in reverse, each step bounded.
//!
//! [`App::open`](crate::App::open) builds the parts (store, ledger and its
//! writer, hashing pool, limiter); [`serve`] starts what runs around them
//! (housekeeping, the metrics endpoint, the gRPC server) and, on shutdown,
//! stops it all again: NOT_SERVING and the drain (bounded by
//! `shutdown_grace_secs`), the metrics endpoint, the housekeeping, then
//! [`App::close`](crate::App::close) (bounded by [`CLOSE_BOUND`]), which
//! stops the pool, flushes and closes the ledger and closes the store.
//! Every other `ekycd` command opens and closes the same [`App`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::App;
use crate::grpc::{self, ServeError};

/// How long the parts may take to close once the server has drained.
pub const CLOSE_BOUND: Duration = Duration::from_secs(10);

/// What `ekycd serve` listens on, bound beforehand (tests bind port 0).
pub struct Listeners {
    /// The gRPC API.
    pub grpc: TcpListener,
    /// `GET /metrics`, if configured.
    pub metrics: Option<TcpListener>,
    /// Plaintext `grpc.health.v1` only, for probes, if configured.
    pub health: Option<TcpListener>,
}

/// Serves `app` on the listeners until `shutdown` completes; returns once
/// everything has stopped.
pub async fn serve(
    app: Arc<App>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Listeners {
        grpc: listener,
        metrics,
        health,
    } = listeners;
    // The same readings the metrics endpoint serves, pushed over OTLP. A
    // weak handle: the exporters live in the App and must not keep it.
    let weak = Arc::downgrade(&app);
    app.telemetry.observe(Arc::new(move || {
        weak.upgrade()
            .map(|app| crate::metrics::readings(&app))
            .unwrap_or_default()
    }));
    let housekeeping = tokio::spawn(housekeep(Arc::clone(&app)));
    let checkpoints = tokio::spawn(keep_decision_log(Arc::clone(&app)));
    // The metrics endpoint stays up while the server drains, so the drain
    // itself can be watched.
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = metrics.map(|listener| {
        tokio::spawn(crate::metrics::serve(listener, Arc::clone(&app), async {
            let _ = metrics_stopped.await;
        }))
    });

    let served = grpc::run(listener, health, Arc::clone(&app), shutdown).await;

    let _ = stop_metrics.send(());
    if let Some(task) = metrics {
        let _ = task.await;
    }
    housekeeping.abort();
    let _ = housekeeping.await;
    checkpoints.abort();
    let _ = checkpoints.await;
    // The calls that drained are in the log: one last checkpoint holds
    // them, so a reader need not wait for the next replica's tick.
    let log = crate::audit_log::AuditLogService::new(&app);
    match tokio::time::timeout(Duration::from_secs(2), log.checkpoint_if_grown()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "no checkpoint at shutdown"),
        Err(_) => tracing::warn!("no checkpoint at shutdown: the ledger did not answer in time"),
    }
    if tokio::time::timeout(CLOSE_BOUND, app.close())
        .await
        .is_err()
    {
        tracing::warn!(
            bound_secs = CLOSE_BOUND.as_secs(),
            "the store or ledger did not close in time; exiting anyway"
        );
    }
    tracing::info!("server stopped");
    served
}

/// Every `decision_log.checkpoint_interval_secs`: a checkpoint is signed
/// when the log grew, and entries past their retention lose their
/// details. Replicas each do it; the log keeps the first checkpoint of a
/// size, and erasing twice erases nothing more.
async fn keep_decision_log(app: Arc<App>) {
    let log = crate::audit_log::AuditLogService::new(&app);
    let every = Duration::from_secs(app.decision_log.checkpoint_interval_secs);
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = log.checkpoint_if_grown().await {
            tracing::warn!(error = %e, "could not sign a decision-log checkpoint");
        }
        match log.apply_retention(app.decision_log.retention_days).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(erased = n, "decision-log details past retention erased"),
            Err(e) => tracing::warn!(error = %e, "could not apply the decision log's retention"),
        }
    }
}

/// Every minute: in-process limit state is pruned, so it follows the
/// active tenants and subjects, not history; replay material older than
/// the idempotency window is dropped from the ledger (a retry that late is
/// refused anyway).
async fn housekeep(app: Arc<App>) {
    let window_ms = (app.billing.idempotency_window_secs as i64).saturating_mul(1000);
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        app.limiter.housekeep(jiff::Timestamp::now());
        if let Err(e) = app
            .ledger
            .expire_replays(crate::clock::now_ms() - window_ms)
            .await
        {
            tracing::warn!(error = %e, "could not expire replay material");
        }
    }
}
