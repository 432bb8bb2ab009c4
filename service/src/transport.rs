//! What an unauthenticated client can make the server hold, bounded.
//!
//! Authentication runs inside each method, after tonic has read the
//! request message, so everything before it must be bounded by the
//! transport: how many connections ([`limit_connections`]), how many
//! streams per connection and how long they live (HTTP/2 settings set in
//! `grpc::run`), and how large a message may grow while it arrives
//! ([`MessageLimitLayer`]).
//!
//! tonic reserves a buffer of the *declared* length as soon as a message's
//! 5-byte prefix arrives, so a client can make the server reserve 4 MiB
//! per stream by sending 5 bytes. [`LimitedBody`] reads the prefix first:
//! a declared length above the method's limit is refused at once with
//! `RESOURCE_EXHAUSTED` / `MESSAGE_TOO_LARGE`, and a message that does not
//! arrive in one piece reserves its length from one server-wide budget
//! (`transport.max_buffered_request_bytes`) until it is complete, so
//! stalled half-sent messages cannot add up to more than the budget
//! however many connections carry them.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::config::MessageLimits;
use crate::error::ServiceError;

/// Counters of the transport limits, for metrics and tests.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages refused for their declared size.
    pub too_large: AtomicU64,
    /// Messages refused because the buffer budget was spent.
    pub buffers_full: AtomicU64,
    /// Connections closed on accept because the limit was reached.
    pub connections_refused: AtomicU64,
    /// Connections open now.
    pub connections: AtomicUsize,
    /// Bytes of the budget held by partly received messages now.
    pub buffered_bytes: AtomicUsize,
}

/// The server-wide budget of bytes reserved for partly received messages.
#[derive(Debug)]
pub struct BufferBudget {
    max: usize,
    stats: Arc<TransportStats>,
}

impl BufferBudget {
    /// A budget of `max` bytes, accounted in `stats`.
    pub fn new(max: usize, stats: Arc<TransportStats>) -> Arc<BufferBudget> {
        Arc::new(BufferBudget { max, stats })
    }

    fn try_take(&self, n: usize) -> bool {
        self.stats
            .buffered_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.stats.buffered_bytes.fetch_sub(n, Ordering::AcqRel);
    }
}

/// A request body that enforces its method's message limit and reserves
/// partly received messages from the [`BufferBudget`]. Its errors are
/// statuses, which tonic passes to the client unchanged.
pub struct LimitedBody {
    inner: Body,
    limit: usize,
    budget: Arc<BufferBudget>,
    /// The current message's 5-byte prefix, as far as it has arrived.
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
    /// Budget held for the current message.
    held: usize,
    /// Set once an error was returned: the body then ends.
    failed: bool,
}

impl LimitedBody {
    fn new(inner: Body, limit: usize, budget: Arc<BufferBudget>) -> LimitedBody {
        LimitedBody {
            inner,
            limit,
            budget,
            prefix: [0; 5],
            prefix_len: 0,
            remaining: 0,
            held: 0,
            failed: false,
        }
    }

    /// The length the current message's prefix declares.
    fn declared(&self) -> usize {
        let [_, a, b, c, d] = self.prefix;
        u32::from_be_bytes([a, b, c, d]) as usize
    }

    fn release(&mut self) {
        if self.held > 0 {
            self.budget.give_back(self.held);
            self.held = 0;
        }
    }

    /// Follows the gRPC framing (a flag byte, a 4-byte big-endian length,
    /// the message) through one chunk of data.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), ServiceError> {
        while !data.is_empty() {
            if self.remaining == 0 {
                let take = (5 - self.prefix_len).min(data.len());
                self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
                self.prefix_len += take;
                data = &data[take..];
                if self.prefix_len == 5 {
                    self.prefix_len = 0;
                    let declared = self.declared();
                    if declared > self.limit {
                        self.budget.stats.too_large.fetch_add(1, Ordering::Relaxed);
                        return Err(ServiceError::MessageTooLarge { limit: self.limit });
                    }
                    self.remaining = declared;
                }
            } else {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                data = &data[take..];
                if self.remaining == 0 {
                    self.release();
                }
            }
        }
        // A message that did not arrive whole in this chunk waits in
        // tonic's buffer, which reserved its declared length: account it.
        if self.remaining > 0 && self.held == 0 {
            let declared = self.declared();
            if !self.budget.try_take(declared) {
                self.budget
                    .stats
                    .buffers_full
                    .fetch_add(1, Ordering::Relaxed);
                return Err(ServiceError::RequestBuffersFull);
            }
            self.held = declared;
        }
        Ok(())
    }
}

impl Drop for LimitedBody {
    fn drop(&mut self) {
        self.release();
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Err(e) = self.scan(data)
        {
            self.failed = true;
            self.release();
            return Poll::Ready(Some(Err(Status::from(e))));
        }
        if frame.is_none() {
            self.release();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps every request body in a [`LimitedBody`] with its service's limit.
#[derive(Clone)]
pub struct MessageLimitLayer {
    limits: MessageLimits,
    budget: Arc<BufferBudget>,
}

impl MessageLimitLayer {
    /// A layer with per-service `limits` sharing `budget`.
    pub fn new(limits: MessageLimits, budget: Arc<BufferBudget>) -> MessageLimitLayer {
        MessageLimitLayer { limits, budget }
    }
}

impl<S> tower_layer::Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> MessageLimit<S> {
        MessageLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`MessageLimitLayer`] makes.
#[derive(Clone)]
pub struct MessageLimit<S> {
    inner: S,
    layer: MessageLimitLayer,
}

impl<S> tower_service::Service<http::Request<Body>> for MessageLimit<S>
where
    S: tower_service::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let limit = self.layer.limits.for_path(request.uri().path());
        let budget = Arc::clone(&self.layer.budget);
        self.inner
            .call(request.map(|body| Body::new(LimitedBody::new(body, limit, budget))))
    }
}

/// An accepted connection holding one of the server's connection slots
/// until it closes.
pub struct LimitedConnection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    stats: Arc<TransportStats>,
}

impl Drop for LimitedConnection {
    fn drop(&mut self) {
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Admits accepted connections while fewer than `max` are open; beyond
/// that a connection is closed as soon as it is accepted (before TLS or
/// HTTP/2 cost anything), so the kernel's backlog never fills with
/// clients that would wait for nothing.
pub fn limit_connections(
    accepted: impl tokio_stream::Stream<Item = std::io::Result<TcpStream>>,
    max: usize,
    stats: Arc<TransportStats>,
) -> impl tokio_stream::Stream<Item = std::io::Result<LimitedConnection>> {
    use tokio_stream::StreamExt as _;
    let slots = Arc::new(Semaphore::new(max));
    accepted.filter_map(move |accepted| match accepted {
        Err(e) => Some(Err(e)),
        Ok(stream) => match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                stats.connections.fetch_add(1, Ordering::Relaxed);
                Some(Ok(LimitedConnection {
                    stream,
                    _slot: slot,
                    stats: Arc::clone(&stats),
                }))
            }
            Err(_) => {
                stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("connection limit reached; closing a new connection");
                None
            }
        },
    })
}

impl Connected for LimitedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(limit: usize, budget: &Arc<BufferBudget>) -> LimitedBody {
        LimitedBody::new(Body::empty(), limit, Arc::clone(budget))
    }

    fn frame(len: u32) -> Vec<u8> {
        let mut f = vec![0u8];
        f.extend_from_slice(&len.to_be_bytes());
        f
    }

    #[test]
    fn a_declared_length_above_the_limit_is_refused_from_its_prefix() {
        let budget = BufferBudget::new(1 << 20, Arc::default());
        let mut b = body(100, &budget);
        // The prefix split over two chunks, nothing of the message yet.
        assert!(b.scan(&frame(101)[..3]).is_ok());
        assert!(matches!(
            b.scan(&frame(101)[3..]),
            Err(ServiceError::MessageTooLarge { limit: 100 })
        ));
        let mut b = body(100, &budget);
        let mut whole = frame(100);
        whole.extend_from_slice(&[7; 100]);
        whole.extend_from_slice(&frame(3));
        whole.extend_from_slice(&[1, 2, 3]);
        assert!(b.scan(&whole).is_ok(), "two messages within the limit");
        assert_eq!(budget.stats.buffered_bytes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn partly_received_messages_hold_budget_until_complete_or_dropped() {
        let budget = BufferBudget::new(150, Arc::default());
        let used = || budget.stats.buffered_bytes.load(Ordering::SeqCst);
        let mut a = body(100, &budget);
        let mut start = frame(100);
        start.extend_from_slice(&[0; 40]);
        a.scan(&start).expect("first partial message");
        assert_eq!(used(), 100, "the declared length is held");
        // A second partial message would pass the budget: refused.
        let mut b = body(100, &budget);
        assert!(matches!(
            b.scan(&start),
            Err(ServiceError::RequestBuffersFull)
        ));
        // A small message that arrives whole needs no budget at all.
        let mut c = body(100, &budget);
        let mut small = frame(10);
        small.extend_from_slice(&[0; 10]);
        c.scan(&small).expect("whole message");
        // The first completes: its budget is free again.
        a.scan(&[0; 60]).expect("rest");
        assert_eq!(used(), 0);
        let mut d = body(100, &budget);
        d.scan(&start).expect("room again");
        assert_eq!(used(), 100);
        drop(d);
        assert_eq!(used(), 0, "a dropped stream gives its budget back");
    }
}
