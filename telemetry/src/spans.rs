//! Export that never makes a call wait: a bounded span queue drained by a
//! task of its own, and a metric exporter that counts what it fails to send.
//!
//! The SDK's own batch processor also bounds its queue, but it counts what
//! it drops only in its internal log; an operator needs the number on the
//! service's metrics (`ekyc_telemetry_dropped_total`), next to everything
//! else the collector would otherwise have told them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;

use crate::Dropped;

/// Spans per export request.
const BATCH: usize = 512;
/// How long a span may wait for a batch to fill before it is sent anyway.
const LINGER: Duration = Duration::from_secs(1);

/// What the export task is asked to do besides exporting.
enum Control {
    /// Export everything queued, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
    /// Export everything queued, answer, and stop.
    Shutdown(std::sync::mpsc::SyncSender<()>),
}

/// Queues ended spans (up to a bound) for a Tokio task that exports them in
/// batches; see the module docs.
#[derive(Debug)]
pub struct BoundedProcessor {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<Control>,
    dropped: Arc<Dropped>,
}

impl BoundedProcessor {
    /// Starts the export task on the current Tokio runtime.
    pub fn start<E: SpanExporter + 'static>(
        mut exporter: E,
        resource: &Resource,
        capacity: usize,
        export_timeout: Duration,
        dropped: Arc<Dropped>,
    ) -> BoundedProcessor {
        // The provider hands its resource to processors, not exporters; this
        // processor owns its exporter, so it sets it once here.
        exporter.set_resource(resource);
        let (spans, queue) = mpsc::channel(capacity.max(1));
        let (control, orders) = mpsc::unbounded_channel();
        tokio::spawn(export(
            exporter,
            queue,
            orders,
            export_timeout,
            Arc::clone(&dropped),
        ));
        BoundedProcessor {
            spans,
            control,
            dropped,
        }
    }

    /// Sends `order` and waits (blocking) up to `bound` for its answer.
    fn ask(
        &self,
        order: impl FnOnce(std::sync::mpsc::SyncSender<()>) -> Control,
        bound: Duration,
    ) -> OTelSdkResult {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.control
            .send(order(tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        rx.recv_timeout(bound)
            .map_err(|_| OTelSdkError::Timeout(bound))
    }
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.spans.try_send(span).is_err() {
            self.dropped.spans.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Control::Flush, Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Control::Shutdown, timeout)
    }
}

/// The export task: batches of up to [`BATCH`] spans, sent when full or
/// [`LINGER`] after the first one arrived; a batch that fails or exceeds
/// `timeout` is dropped and counted (the exporter retries within it).
async fn export<E: SpanExporter>(
    exporter: E,
    mut queue: mpsc::Receiver<SpanData>,
    mut orders: mpsc::UnboundedReceiver<Control>,
    timeout: Duration,
    dropped: Arc<Dropped>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let send = async |batch: &mut Vec<SpanData>| {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::replace(batch, Vec::with_capacity(BATCH));
        let n = spans.len() as u64;
        match tokio::time::timeout(timeout, exporter.export(spans)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                dropped.spans.fetch_add(n, Ordering::Relaxed);
                tracing::debug!(error = %e, spans = n, "span export failed");
            }
            Err(_) => {
                dropped.spans.fetch_add(n, Ordering::Relaxed);
                tracing::debug!(spans = n, "span export timed out");
            }
        }
    };
    loop {
        let deadline = tokio::time::sleep(LINGER);
        tokio::pin!(deadline);
        // Fill a batch, or wait out the linger once it holds something.
        loop {
            tokio::select! {
                span = queue.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= BATCH {
                            break;
                        }
                    }
                    None => {
                        send(&mut batch).await;
                        return;
                    }
                },
                order = orders.recv() => {
                    while let Ok(span) = queue.try_recv() {
                        batch.push(span);
                        if batch.len() >= BATCH {
                            send(&mut batch).await;
                        }
                    }
                    send(&mut batch).await;
                    match order {
                        Some(Control::Flush(done)) => {
                            let _ = done.send(());
                        }
                        Some(Control::Shutdown(done)) => {
                            let _ = exporter.shutdown();
                            let _ = done.send(());
                            return;
                        }
                        None => return,
                    }
                }
                () = &mut deadline, if !batch.is_empty() => break,
            }
        }
        send(&mut batch).await;
    }
}

/// The OTLP metric exporter, counting the exports it could not make.
pub struct CountingMetricExporter<E> {
    pub(crate) inner: E,
    pub(crate) dropped: Arc<Dropped>,
}

impl<E: PushMetricExporter> PushMetricExporter for CountingMetricExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        if let Err(e) = &result {
            self.dropped.metric_exports.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "metric export failed");
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
