//! The task that drives one network connection: it reads and decodes, feeds the protocol state
//! machine, and writes what the state machine produces (see `tern_core::Connection`'s driving
//! contract).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_util::task::AtomicWaker;
use tern_codec::Decoder;
use tern_core::{Broker, Connection, ConnectionInfo, RateExceeded, Wake};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::auth::{Deciding, Exchange, SharedAuthenticator};
use crate::deadlines::Registration;
use crate::limits::{PublishLimiter, whole_publish_len};

/// Smallest read buffer; an idle connection keeps only this much (a PINGREQ is 2 bytes). 64
/// rather than 128 saves 64 bytes per idle connection (`bench/idle-connections.py`); a larger
/// CONNECT takes one more read, and the buffer doubles while reads fill it.
const MIN_READ_BUFFER: usize = 64;
/// Largest read buffer, reached by doubling while reads fill the buffer.
const MAX_READ_BUFFER: usize = 64 * 1024;
/// Stop pulling deliveries into the write buffer above this many bytes: the rest waits in the
/// session queue, where the queue limits apply.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// A write buffer grown larger than this is released once it has been flushed.
const KEEP_WRITE_BUFFER: usize = 16 * 1024;
/// How long a closing connection may take to flush what is left.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closed connection keeps reading (and discarding) what the client still sends.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Wakes the connection task when deliveries arrive, a store operation it waits for is
/// settled, or the session is taken over. A flag and the task's waker rather than a `Notify`:
/// waiting on a `Notify` keeps a waiter node (64 bytes) in every connection's task.
#[derive(Default)]
pub(crate) struct TaskWaker {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for TaskWaker {
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl crate::deadlines::Wakeable for TaskWaker {
    fn wake_up(&self) {
        Wake::wake(self);
    }
}

impl TaskWaker {
    /// Ready once woken since the last time it was ready (a wake before the wait counts).
    fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.task.register(cx.waker());
        // A wake between the check above and the registration found no waker to wake.
        if self.woken.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// The deadlines of a server's connections.
pub(crate) type Deadlines = crate::deadlines::Deadlines<TaskWaker>;

/// Tells the connections of a listener to close (server shutdown, the listener removed): a
/// flag each connection checks on every turn of its loop, and the wakers of all of them.
/// Waiting on the listener's cancellation token instead took that token's lock three times on
/// every turn, about a sixth of what a connection spends writing one delivery at low load.
#[derive(Default)]
pub(crate) struct Closing {
    closed: AtomicBool,
    waiting: Mutex<Waiting>,
}

/// The wakers of a listener's connections. Weak: an ended connection's is dropped at the next
/// compaction, when the list has doubled since the last one.
#[derive(Default)]
struct Waiting {
    wakers: Vec<Weak<TaskWaker>>,
    compact_at: usize,
}

impl Closing {
    /// Has `waker` woken by [`Closing::close`]; a connection registers before checking
    /// [`Closing::is_closed`] for the first time.
    fn register(&self, waker: &Arc<TaskWaker>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.wakers.len() >= waiting.compact_at {
            waiting.wakers.retain(|w| w.strong_count() > 0);
            waiting.compact_at = (waiting.wakers.len() * 2).max(64);
        }
        waiting.wakers.push(Arc::downgrade(waker));
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Makes every connection close, those to come included.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let wakers = std::mem::take(
            &mut self
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .wakers,
        );
        for waker in wakers.iter().filter_map(Weak::upgrade) {
            waker.wake();
        }
    }
}

/// What the connections of a listener share.
pub(crate) struct Shared {
    pub(crate) broker: Broker,
    /// Server shutdown or the listener's removal, for connections being set up.
    pub(crate) shutdown: CancellationToken,
    /// The same, for established connections.
    pub(crate) closing: Arc<Closing>,
    /// The connections' deadlines (CONNECT, keep-alive, authentication expiry).
    pub(crate) deadlines: Arc<Deadlines>,
    /// Whether connections and disconnections are logged at info level.
    pub(crate) log_connections: bool,
    /// The authentication sources (the listener's own, or the server's).
    pub(crate) authenticator: SharedAuthenticator,
    /// Names a client in logs when it has no address (a Unix socket's client: `unix:PATH`).
    pub(crate) unaddressed: Box<str>,
}

/// Runs one connection to its end, then drops `guard` (its place under the connection limits).
///
/// An idle connection costs little more than this future, so its size matters: everything it
/// keeps is set up here and captured by the `async` block, which uses it in place (an `async fn`
/// would keep each argument and, separately, the local it is moved to), and whatever a
/// connection rarely needs (rate limiting, authentication, a paused read) is boxed.
pub(crate) fn drive<S, G>(
    stream: S,
    info: ConnectionInfo,
    shared: Arc<Shared>,
    guard: G,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    G: Send + 'static,
{
    let waker = Arc::new(TaskWaker::default());
    shared.closing.register(&waker);
    let started = Instant::now();
    let mut conn = Connection::new(shared.broker.clone(), info, waker.clone(), started);
    // Message rate and bandwidth limits (`None` without them: no state, no clock reads).
    let mut limiter = PublishLimiter::new(shared.broker.config(), started);
    let mut decoder = Decoder::new(shared.broker.config().max_packet_size);
    let mut io = Io {
        stream,
        rbuf: BytesMut::with_capacity(MIN_READ_BUFFER),
        wbuf: BytesMut::new(),
        deciding: None,
        paused: None,
        waker,
        unflushed: false,
        want_read: false,
    };
    async move {
        // Whether the connection was logged as connected, then how it ended.
        let mut announced = crate::logging::Ending::NotAnnounced;
        let mut read_chunk = MIN_READ_BUFFER;
        let mut shutting_down = false;
        // The deadline registered with the server's timer, registered again only when the
        // state machine's comes earlier; a later one is registered when the first wakes the
        // task (`deadlines`).
        let mut armed: Option<Registration> = None;
        // What an authentication exchange keeps between steps.
        let mut exchange: Option<Box<Exchange>> = None;

        // Set by `Io::poll_event` when this task is the first polled since its worker woke
        // up: it may have run ahead of others that became readable before it
        // (`runtime::first_since_unpark`). It yields at the top of the loop, where awaiting
        // keeps no branch's future alive in the task.
        let mut step_back = false;

        loop {
            if std::mem::take(&mut step_back) {
                yield_once().await;
            }
            if conn.wants_handoff() {
                // A PUBLISH just read woke other connections: they write their copies first.
                yield_once().await;
                let now = Instant::now();
                conn.handle_handoff();
                io.decode(&mut decoder, &mut conn, &mut limiter, now);
                continue;
            }
            if !shutting_down && shared.closing.is_closed() {
                shutting_down = true;
                announced.end(crate::logging::Ending::ServerShutdown);
                conn.handle_shutdown(Instant::now());
            }
            {
                // In a block: a `now` still in scope at the wait below would take room in the
                // task in debug builds.
                let now = Instant::now();
                if armed.is_some_and(|r| now >= r.at) {
                    armed = None;
                    if io.paused.is_some() {
                        // What is held back in the buffer counts for keep-alive.
                        conn.handle_input_pending(now);
                    }
                    conn.handle_timeout(now);
                    if conn.is_closing() {
                        announced.end(crate::logging::Ending::TimedOut);
                    }
                }
                while io.wbuf.len() < WRITE_HIGH_WATER
                    && conn.poll_transmit(now, &mut io.wbuf, WRITE_HIGH_WATER)
                {}
            }
            if shared.log_connections
                && announced == crate::logging::Ending::NotAnnounced
                && conn.is_connected()
            {
                announced = crate::logging::Ending::Open;
                crate::logging::log_connected(&conn, &shared.unaddressed);
            }
            if conn.is_closing() {
                break;
            }
            if io.deciding.is_none()
                && let Some(request) = conn.poll_auth_request()
            {
                io.deciding = Some(
                    shared
                        .authenticator
                        .load_full()
                        .decide(request, exchange.take()),
                );
            }
            if let Some(deadline) = conn.poll_timeout()
                && armed.is_none_or(|r| deadline < r.at)
            {
                if let Some(old) = armed {
                    shared.deadlines.cancel(old, &io.waker);
                }
                armed = Some(shared.deadlines.register(deadline, &io.waker));
            }
            if io.rbuf.capacity() - io.rbuf.len() < read_chunk / 2 {
                io.rbuf.reserve(read_chunk);
            }
            io.want_read = !conn.awaits_auth_decision() && io.paused.is_none();
            match poll_fn(|cx| io.poll_event(cx)).await {
                Event::StepBack => step_back = true,
                Event::Written(Ok(Written { bytes, flushed })) if bytes > 0 || flushed => {
                    shared.broker.metrics().add_bytes_written(bytes);
                    io.unflushed = !flushed;
                    if io.wbuf.is_empty() && io.wbuf.capacity() > KEEP_WRITE_BUFFER {
                        io.wbuf = BytesMut::new();
                    }
                }
                // An error, or a stream that takes no more.
                Event::Written(_) => {
                    announced.end(crate::logging::Ending::SocketError);
                    conn.handle_connection_lost(Instant::now());
                }
                Event::Decided((decision, kept)) => {
                    io.deciding = None;
                    exchange = kept;
                    let now = Instant::now();
                    conn.handle_auth_decision(decision, now);
                    // Packets the client sent after CONNECT wait in the buffer until it is in.
                    io.decode(&mut decoder, &mut conn, &mut limiter, now);
                }
                Event::Read(Ok(0)) => {
                    announced.end(crate::logging::Ending::ClosedByClient);
                    conn.handle_connection_lost(Instant::now());
                }
                Event::Read(Err(_)) => {
                    announced.end(crate::logging::Ending::SocketError);
                    conn.handle_connection_lost(Instant::now());
                }
                Event::Read(Ok(n)) => {
                    let now = Instant::now();
                    shared.broker.metrics().add_bytes_received(n);
                    read_chunk = next_read_chunk(read_chunk, n);
                    conn.arm_handoff(now);
                    io.decode(&mut decoder, &mut conn, &mut limiter, now);
                    if io.rbuf.is_empty() && io.rbuf.capacity() > read_chunk * 4 {
                        io.rbuf = BytesMut::with_capacity(read_chunk);
                    }
                }
                Event::Resumed => {
                    let now = Instant::now();
                    io.decode(&mut decoder, &mut conn, &mut limiter, now);
                }
                Event::Woken => {}
            }
        }
        if let Some(registration) = armed {
            shared.deadlines.cancel(registration, &io.waker);
        }

        // The closing steps run in a future allocated now: their state (a timer, the writes)
        // would otherwise take room in every connection's task (see the size test below).
        let written = Box::pin(io.close()).await;
        shared.broker.metrics().add_bytes_written(written);
        conn.handle_connection_lost(Instant::now());
        crate::logging::log_disconnected(&conn, announced);
        drop(guard);
    }
}

/// The read size after a read of `n` bytes when `chunk` was asked for: doubled while reads
/// fill it, halved when they use less than an eighth of it, and back to the smallest as soon
/// as only a trickle arrives (pings, acknowledgements), which is what an idle connection sends.
/// A busy connection keeps its buffer between reads: shrinking it whenever a read happened to
/// end on a packet boundary cost a new allocation and many more, smaller reads per message
/// (QoS 1 point-to-point went from 1.2 to 3 µs of CPU per delivery).
fn next_read_chunk(chunk: usize, n: usize) -> usize {
    if n >= chunk {
        (chunk * 2).min(MAX_READ_BUFFER)
    } else if n < MIN_READ_BUFFER {
        MIN_READ_BUFFER
    } else if n < chunk / 8 {
        chunk / 2
    } else {
        chunk
    }
}

/// What the connection's loop waits on: the stream and its buffers, an authentication decision
/// being made, a rate limit's pause, the task's waker. In one place so that the loop's wait,
/// [`Io::poll_event`], borrows one thing: a `select!` over them kept each branch's future (64
/// bytes in all) in every connection's task.
struct Io<S> {
    /// Read and written in turn, never both at once (`Io::poll_event`): no split halves, whose
    /// shared state would take another allocation per connection.
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// An authentication decision being made.
    deciding: Option<Deciding>,
    /// The pause of reading a rate limit imposes while the next PUBLISH waits for its tokens.
    paused: Option<Pin<Box<tokio::time::Sleep>>>,
    waker: Arc<TaskWaker>,
    /// Bytes written since the last flush. A TCP socket needs none, but a TLS or WebSocket
    /// stream may accept a write while keeping part of it buffered when the socket is full:
    /// without a flush that tail would wait for the next write.
    unflushed: bool,
    /// Whether to read in the next wait.
    want_read: bool,
}

/// What ended a wait of the connection's loop.
enum Event {
    /// This is the first connection its worker polls since waking up to events: it steps back
    /// once (`runtime::first_since_unpark`).
    StepBack,
    Written(std::io::Result<Written>),
    Decided(<Deciding as Future>::Output),
    Read(std::io::Result<usize>),
    /// A rate limit's pause is over.
    Resumed,
    /// Deliveries, the server's timer, the session taken over.
    Woken,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    /// Decodes and handles every complete packet read ([`decode_all`]), and pauses reading
    /// while a rate limit holds the next PUBLISH back.
    fn decode(
        &mut self,
        decoder: &mut Decoder,
        conn: &mut Connection,
        limiter: &mut Option<Box<PublishLimiter>>,
        now: Instant,
    ) {
        let until = decode_all(decoder, &mut self.rbuf, conn, limiter, now);
        self.paused = until.map(|at| Box::pin(tokio::time::sleep_until(at.into())));
    }

    /// Flushes what is left (a CONNACK refusal, a DISCONNECT) and shuts the stream down, then
    /// lingers, each step bounded in time; returns the bytes written.
    async fn close(&mut self) -> usize {
        let pending = self.wbuf.len();
        let mut sleep = std::pin::pin!(tokio::time::sleep(CLOSE_FLUSH_TIMEOUT));
        tokio::select! {
            biased;
            _ = async {
                self.stream.write_all_buf(&mut self.wbuf).await?;
                self.stream.shutdown().await
            } => {}
            () = &mut sleep => {}
        }
        let written = pending - self.wbuf.len();
        // Lingering close: closing a socket with unread input makes the kernel reset the
        // connection, which can destroy the DISCONNECT or CONNACK still in flight. Read and
        // discard until the client closes, for a bounded time.
        sleep
            .as_mut()
            .reset(tokio::time::Instant::now() + LINGER_TIMEOUT);
        tokio::select! {
            biased;
            () = async {
                loop {
                    self.rbuf.clear();
                    match self.stream.read_buf(&mut self.rbuf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            } => {}
            () = &mut sleep => {}
        }
        written
    }

    /// The first of these that is ready, in this order (every one not ready registers the task
    /// to be woken): the step back, writing, an authentication decision, reading, the end of a
    /// pause, a wake-up.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if crate::runtime::first_since_unpark() {
            return Poll::Ready(Event::StepBack);
        }
        if (!self.wbuf.is_empty() || self.unflushed)
            && let Poll::Ready(result) = poll_write_or_flush(&mut self.stream, &mut self.wbuf, cx)
        {
            return Poll::Ready(Event::Written(result));
        }
        if let Poll::Ready(decided) = poll_slot(&mut self.deciding, cx) {
            return Poll::Ready(Event::Decided(decided));
        }
        if self.want_read
            // The future only borrows: dropping it when the read is pending loses nothing.
            && let Poll::Ready(result) =
                std::pin::pin!(self.stream.read_buf(&mut self.rbuf)).poll(cx)
        {
            return Poll::Ready(Event::Read(result));
        }
        if let Poll::Ready(()) = poll_slot(&mut self.paused, cx) {
            return Poll::Ready(Event::Resumed);
        }
        self.waker.poll_woken(cx).map(|()| Event::Woken)
    }
}

/// Ready on its second poll: the task goes to the back of the scheduler's queue, behind the
/// tasks it has woken. (`tokio::task::yield_now` would also wait for the next poll of the I/O
/// driver, a system call.)
fn yield_once() -> impl Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |cx| {
        if std::mem::replace(&mut yielded, true) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

/// What one write step did.
struct Written {
    bytes: usize,
    /// Whether the stream was flushed (after writing all of `wbuf`).
    flushed: bool,
}

/// Writes what `wbuf` holds and, once it is empty, flushes the stream, in the same step when
/// it can (a TCP stream's flush does nothing): one turn of the connection's loop fewer per
/// write. Zero bytes written and no flush: the stream takes no more.
fn poll_write_or_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    wbuf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<Written>> {
    let mut bytes = 0;
    if !wbuf.is_empty() {
        bytes = ready!(Pin::new(&mut *writer).poll_write(cx, wbuf))?;
        wbuf.advance(bytes);
        if !wbuf.is_empty() || bytes == 0 {
            return Poll::Ready(Ok(Written {
                bytes,
                flushed: false,
            }));
        }
    }
    match Pin::new(writer).poll_flush(cx) {
        Poll::Ready(result) => Poll::Ready(result.map(|()| Written {
            bytes,
            flushed: true,
        })),
        // Written but not flushed yet: the next turn tries again.
        Poll::Pending if bytes > 0 => Poll::Ready(Ok(Written {
            bytes,
            flushed: false,
        })),
        Poll::Pending => Poll::Pending,
    }
}

/// Polls the future in `slot`, for a branch enabled only when there is one.
fn poll_slot<F: Future + Unpin>(slot: &mut Option<F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    match slot {
        Some(future) => Pin::new(future).poll(cx),
        None => Poll::Pending,
    }
}

/// Decodes and handles every complete packet in `buf`; a decoding error ends the connection.
/// Returns the instant until which reading pauses when a rate limit holds the next PUBLISH
/// back (it stays in `buf`; TCP pushes back on the client once the buffers are full).
fn decode_all(
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    conn: &mut Connection,
    limiter: &mut Option<Box<PublishLimiter>>,
    now: Instant,
) -> Option<Instant> {
    while !conn.is_closing() && !conn.awaits_auth_decision() && !conn.wants_handoff() {
        if let Some(limiter) = limiter.as_deref_mut()
            && conn.is_connected()
            && let Some(len) = whole_publish_len(decoder, buf)
            && let Err(until) = limiter.admit(len, now)
        {
            if limiter.action() == RateExceeded::Disconnect {
                conn.handle_rate_exceeded(now);
                return None;
            }
            conn.handle_input_pending(now);
            return Some(until);
        }
        match decoder.decode(buf) {
            Ok(Some(packet)) => {
                if let tern_codec::Packet::Publish(publish) = &packet {
                    crate::logging::log_publish(conn.client_id(), publish);
                }
                conn.handle_packet(packet, now);
            }
            Ok(None) => {
                // Make room for the rest of a large packet in one allocation, once the client
                // is in: before that, a header alone must not make the broker reserve up to
                // `max_packet_size` (the buffer grows with what actually arrives instead).
                if conn.is_connected()
                    && let Ok(Some(len)) = decoder.frame_len(buf)
                {
                    buf.reserve(len.saturating_sub(buf.len()));
                }
                return None;
            }
            Err(error) => {
                conn.handle_decode_error(error, decoder.version(), now);
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tern_core::BrokerConfig;

    use super::*;

    struct CountWakes(AtomicUsize);

    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_read_size_follows_the_traffic() {
        // Reads that fill the buffer double it, up to the largest.
        assert_eq!(next_read_chunk(MIN_READ_BUFFER, MIN_READ_BUFFER), 128);
        assert_eq!(
            next_read_chunk(MAX_READ_BUFFER, MAX_READ_BUFFER),
            MAX_READ_BUFFER
        );
        // A steady stream of mid-sized reads keeps its size: no shrinking between bursts.
        assert_eq!(next_read_chunk(1024, 300), 1024);
        // Mostly empty reads halve it; a trickle (a PINGREQ) sends it back to the smallest.
        assert_eq!(next_read_chunk(4096, 100), 2048);
        assert_eq!(next_read_chunk(MAX_READ_BUFFER, 2), MIN_READ_BUFFER);
    }

    #[test]
    fn a_wake_before_the_wait_counts_and_a_wake_during_it_wakes_the_task() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let task_waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&task_waker);
        let waker = TaskWaker::default();

        Wake::wake(&waker);
        assert_eq!(waker.poll_woken(&mut cx), Poll::Ready(()));
        assert_eq!(waker.poll_woken(&mut cx), Poll::Pending);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);

        Wake::wake(&waker);
        Wake::wake(&waker);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "one wake-up for both");
        assert_eq!(waker.poll_woken(&mut cx), Poll::Ready(()));
        assert_eq!(waker.poll_woken(&mut cx), Poll::Pending);
    }

    /// The task of a plain MQTT connection is this future in an allocation with tokio's task
    /// header and trailer (112 bytes), rounded up to 128 bytes. An idle connection costs little
    /// more than its task (`bench/idle-connections.py`), so a larger future should be a
    /// decision, not an accident (see `drive`).
    #[tokio::test]
    async fn a_plain_connection_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        let shared = Arc::new(Shared {
            broker: Broker::new(BrokerConfig::default()),
            shutdown: CancellationToken::new(),
            closing: Arc::default(),
            deadlines: Arc::default(),
            log_connections: false,
            authenticator: SharedAuthenticator::default(),
            unaddressed: "test".into(),
        });
        // The server's guard is an `Option<Box<_>>` too.
        let task = drive(stream, ConnectionInfo::default(), shared, None::<Box<()>>);
        let size = std::mem::size_of_val(&task);
        // Tokio adds 112 bytes of its own to the task (120 with `--cfg tokio_unstable`, which
        // tokio-console needs) and rounds it up to 128: up to 520 bytes the task takes 640
        // either way. It took 896 with a `Sleep` of its own (before `deadlines`), a `select!`
        // whose branches kept 64 bytes of futures (before `Io::poll_event`) and the closing
        // steps inline (before `Io::close`).
        assert!(size <= 520, "the connection future is {size} bytes");
        drop(client);
    }
}
