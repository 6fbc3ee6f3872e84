//! Client connections, for every listener (HTTP, gRPC, metrics): how many may be open, how
//! long one may stay silent or stalled, and the stages of a shutdown.
//!
//! - Each accepted connection holds a permit of one semaphore shared by the listeners
//!   (`limits.max_connections`); past the limit a new connection is closed at once, so that
//!   silent clients cannot take every file descriptor.
//! - Reads and writes go through [`Guarded`]: a read that waits longer than
//!   `limits.handshake_timeout_ms` for a connection's first bytes, or `limits.idle_timeout_ms`
//!   later (an idle HTTP/2 or gRPC connection), fails, and so does a write that waits longer
//!   than `limits.idle_timeout_ms` (a client that stopped reading its answer). The transport
//!   then closes the connection.
//! - An HTTP/1 connection (`Guarded::with_header_deadline`) also fails its reads once no
//!   request's head arrived for `limits.header_read_timeout_ms` while none was in flight: a
//!   client that trickles its headers (slowloris), or a kept-alive connection left idle. Its
//!   service counts the requests in `Requests`. Like the other deadlines, its timer is
//!   re-armed once a period, not for every request as hyper's own header timeout was (a
//!   small model's service serves 1.03 times the requests/s at 64 connections for it,
//!   `docs/benchmarks.md`).
//! - [`Shutdown`] tells servers when to stop accepting and let connections finish, and when to
//!   drop whatever is left: `limits.request_timeout_ms` later, or at once on a second signal.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

use crate::config::LimitsConfig;

/// The connection limit and deadlines shared by a service's listeners. Clones share the limit.
#[derive(Debug, Clone)]
pub struct Connections {
    permits: Arc<Semaphore>,
    handshake: Duration,
    idle: Duration,
    header_read: Duration,
}

impl Connections {
    /// Connections under `limits`.
    pub fn new(limits: &LimitsConfig) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            handshake: Duration::from_millis(limits.handshake_timeout_ms),
            idle: Duration::from_millis(limits.idle_timeout_ms),
            header_read: Duration::from_millis(limits.header_read_timeout_ms),
        }
    }

    /// How long an HTTP/1 request's headers may take (`limits.header_read_timeout_ms`).
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read
    }

    /// The next connection on `listener` that fits under the limit. Connections past it are
    /// closed as they come; failures to accept (out of file descriptors) are logged and
    /// retried after a pause, never returned.
    pub async fn accept(&self, listener: &TcpListener) -> Guarded<TcpStream> {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(permit) => return self.guard(stream, permit),
                Err(_) => tracing::debug!("connection limit reached: a new connection is closed"),
            }
        }
    }

    /// `stream` under the deadlines, holding `permit` until it is dropped.
    fn guard(&self, stream: TcpStream, permit: OwnedSemaphorePermit) -> Guarded<TcpStream> {
        // Answers are small and latency counts: no Nagle delay.
        let _ = stream.set_nodelay(true);
        Guarded {
            io: stream,
            read: Deadline::new(self.handshake),
            write: Deadline::new(self.idle),
            idle: self.idle,
            greeted: false,
            headers: None,
            _permit: permit,
        }
    }
}

/// A connection whose reads and writes fail once they wait too long (see the module docs).
#[derive(Debug)]
pub struct Guarded<IO> {
    io: IO,
    read: Deadline,
    write: Deadline,
    /// The read deadline once the first bytes have arrived.
    idle: Duration,
    greeted: bool,
    /// HTTP/1's header deadline, when the connection has one.
    headers: Option<HeaderDeadline>,
    _permit: OwnedSemaphorePermit,
}

impl<IO> Guarded<IO> {
    /// The connection with HTTP/1's header deadline: its reads fail once no request's head
    /// arrived for between `after` and twice `after` while no request was in flight. Its
    /// service reports the requests through the returned [`Requests`]. The deadline is off
    /// for a connection that opens with the HTTP/2 preface (HTTP/2 connections that stay
    /// silent close after `limits.idle_timeout_ms`).
    pub(crate) fn with_header_deadline(mut self, after: Duration) -> (Self, Arc<Requests>) {
        let requests = Arc::new(Requests::default());
        let deadline = Deadline::new(after);
        let seen = requests.counts();
        self.headers = Some(HeaderDeadline { requests: Arc::clone(&requests), deadline, seen });
        (self, requests)
    }
}

/// The requests of one HTTP/1 connection, as its header deadline sees them: how many heads
/// arrived (wrapping, in the high 32 bits) and how many are still in flight (the low 32), in
/// one word, so that a request changes both with one atomic addition.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    counts: AtomicU64,
}

/// One request's share of [`Requests::counts`]: one more head, one more in flight.
const BEGUN: u64 = (1 << 32) | 1;

impl Requests {
    /// A request's head arrived: it is in flight until the returned guard is dropped (the
    /// answer is done, or the connection dropped it).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.counts.fetch_add(BEGUN, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    fn counts(&self) -> u64 {
        self.counts.load(Ordering::Relaxed)
    }
}

/// A request in flight on its connection ([`Requests::begin`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Requests>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.counts.fetch_sub(1, Ordering::Relaxed);
    }
}

/// HTTP/1's header deadline ([`Guarded::with_header_deadline`]): a [`Deadline`] on the
/// connection's pending reads whose progress is a request's head arriving, or a request in
/// flight.
#[derive(Debug)]
struct HeaderDeadline {
    requests: Arc<Requests>,
    deadline: Deadline,
    /// [`Requests::counts`] when progress was last noted.
    seen: u64,
}

impl HeaderDeadline {
    /// A read is pending: fails once a whole period passed with no head arriving and no
    /// request in flight.
    fn poll_pending(&mut self, context: &mut Context<'_>) -> io::Result<()> {
        let counts = self.requests.counts();
        if counts != self.seen || counts & u64::from(u32::MAX) != 0 {
            self.seen = counts;
            self.deadline.progressed();
        }
        self.deadline.poll_pending(context).map_err(|_| {
            let after = self.deadline.after.as_millis();
            io::Error::new(io::ErrorKind::TimedOut, format!("no request headers for {after} ms"))
        })
    }
}

/// The first bytes of every HTTP/2 connection with prior knowledge (RFC 9113, section 3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// How long an operation may stay pending without progress. The timer is armed when the
/// operation first waits, and re-armed only when it fires after progress was made: a busy
/// connection pays for a clock read and a timer reset once per `after`, not per request. A
/// connection is thus closed between `after` and twice `after` into its silence.
///
/// The timer is polled when armed, and then only when it has fired or another task waits on
/// the operation: polled by one task, it wakes that task when it fires, so that polling it
/// again at every wait of a busy connection (several a request) would only register the same
/// waker again.
#[derive(Debug)]
struct Deadline {
    after: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
    progressed: bool,
    /// The waker the timer wakes, once polled since it was armed.
    waker: Option<Waker>,
}

impl Deadline {
    fn new(after: Duration) -> Self {
        let sleep = Box::pin(tokio::time::sleep(after));
        Self { after, sleep, armed: false, progressed: false, waker: None }
    }

    /// The operation is pending: fails once a whole period of the timer passed without
    /// progress.
    fn poll_pending(&mut self, context: &mut Context<'_>) -> io::Result<()> {
        if !self.armed {
            self.rearm();
        }
        let registered = self.waker.as_ref().is_some_and(|waker| waker.will_wake(context.waker()));
        if registered && !self.sleep.is_elapsed() {
            return Ok(());
        }
        while self.sleep.as_mut().poll(context).is_ready() {
            if !self.progressed {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no progress for {} ms", self.after.as_millis()),
                ));
            }
            self.rearm();
        }
        self.waker = Some(context.waker().clone());
        Ok(())
    }

    fn rearm(&mut self) {
        self.sleep.as_mut().reset(Instant::now() + self.after);
        self.armed = true;
        self.progressed = false;
        self.waker = None;
    }

    fn progressed(&mut self) {
        self.progressed = true;
    }
}

impl<IO> Guarded<IO> {
    /// What a pending write does: fails past its deadline.
    fn write_pending<T>(&mut self, context: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.write.poll_pending(context) {
            Ok(()) => Poll::Pending,
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    /// Settles a write-side poll: progress disarms the deadline, a wait arms it.
    fn after_write<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        context: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.write.progressed();
                Poll::Ready(result)
            }
            Poll::Pending => self.write_pending(context),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(context, buf) {
            Poll::Ready(result) => {
                this.read.progressed();
                if !this.greeted {
                    this.greeted = true;
                    this.read.after = this.idle;
                    if buf.filled()[before..].starts_with(HTTP2_PREFACE) {
                        this.headers = None;
                    }
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                this.read.poll_pending(context)?;
                if let Some(headers) = &mut this.headers {
                    headers.poll_pending(context)?;
                }
                Poll::Pending
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(context, buf);
        self.after_write(polled, context)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(context, bufs);
        self.after_write(polled, context)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(context);
        self.after_write(polled, context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(context);
        self.after_write(polled, context)
    }
}

impl tonic::transport::server::Connected for Guarded<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Where a shutdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Accepting and serving.
    Serving,
    /// No new connections; the open ones finish what they were sent and close.
    Stopping,
    /// Whatever is still open is dropped.
    Abort,
}

/// The shutdown as servers see it: they wait for [`Shutdown::stopping`] to stop accepting,
/// and for [`Shutdown::aborted`] to drop the connections left.
#[derive(Debug, Clone)]
pub struct Shutdown {
    stage: watch::Receiver<Stage>,
}

impl Shutdown {
    /// A shutdown driven through the returned sender, and the shutdown itself.
    pub fn new() -> (watch::Sender<Stage>, Self) {
        let (sender, stage) = watch::channel(Stage::Serving);
        (sender, Self { stage })
    }

    /// Resolves once servers should stop accepting (or the sender is gone).
    pub async fn stopping(&self) {
        self.reached(Stage::Stopping).await;
    }

    /// Resolves once servers should drop every connection left (or the sender is gone).
    pub async fn aborted(&self) {
        self.reached(Stage::Abort).await;
    }

    async fn reached(&self, stage: Stage) {
        let mut watched = self.stage.clone();
        let _ = watched.wait_for(|&now| now >= stage).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn limits(max_connections: usize) -> LimitsConfig {
        LimitsConfig {
            max_connections,
            handshake_timeout_ms: 100,
            request_timeout_ms: 100,
            idle_timeout_ms: 200,
            ..LimitsConfig::default()
        }
    }

    /// A listener on a free port and the connections of `limits`.
    async fn listen(limits: &LimitsConfig) -> (TcpListener, Connections) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        (listener, Connections::new(limits))
    }

    #[tokio::test]
    async fn a_silent_connection_fails_its_read_after_the_handshake_timeout() {
        let (listener, connections) = listen(&limits(4)).await;
        let address = listener.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let mut server = connections.accept(&listener).await;
        let started = Instant::now();
        let error = server.read(&mut [0; 16]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn after_the_first_bytes_reads_wait_for_the_idle_timeout() {
        let (listener, connections) = listen(&limits(4)).await;
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let mut server = connections.accept(&listener).await;
        client.write_all(b"hello").await.unwrap();
        assert_eq!(server.read(&mut [0; 16]).await.unwrap(), 5);
        let started = Instant::now();
        let error = server.read(&mut [0; 16]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn the_header_deadline_waits_while_a_request_is_in_flight_and_fails_after() {
        // Only the header deadline is near.
        let far =
            LimitsConfig { handshake_timeout_ms: 60_000, idle_timeout_ms: 60_000, ..limits(4) };
        let (listener, connections) = listen(&far).await;
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let server = connections.accept(&listener).await;
        let (mut server, requests) = server.with_header_deadline(Duration::from_millis(100));
        client.write_all(b"G").await.unwrap();
        assert_eq!(server.read(&mut [0; 16]).await.unwrap(), 1);
        // A head arrived, and its answer takes longer than three periods.
        let in_flight = requests.begin();
        let mut byte = [0; 1];
        for _ in 0..3 {
            let read = tokio::time::timeout(Duration::from_millis(150), server.read(&mut byte));
            assert!(read.await.is_err(), "no deadline while a request is in flight");
        }
        drop(in_flight);
        let done = Instant::now();
        let error = server.read(&mut [0; 16]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("no request headers"), "{error}");
        let waited = done.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_write_the_client_never_reads_fails_after_the_idle_timeout() {
        let (listener, connections) = listen(&limits(4)).await;
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let mut server = connections.accept(&listener).await;
        // More than the socket buffers hold: the write stalls once they are full.
        let answer = vec![0u8; 64 << 20];
        let error = server.write_all(&answer).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_at_once() {
        let (listener, connections) = listen(&limits(1)).await;
        let address = listener.local_addr().unwrap();
        let _first_client = TcpStream::connect(address).await.unwrap();
        let first = connections.accept(&listener).await;
        let mut refused = TcpStream::connect(address).await.unwrap();
        let accepting = tokio::spawn({
            let connections = connections.clone();
            async move {
                let listener = listener;
                let _ = connections.accept(&listener).await;
            }
        });
        let read = tokio::time::timeout(Duration::from_secs(2), refused.read(&mut [0; 1])).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "the connection over the limit is closed: {read:?}"
        );
        drop(first);
        accepting.abort();
    }
}
