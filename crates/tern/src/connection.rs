//! The task that drives one network connection: it reads and decodes, feeds the protocol state
//! machine, and writes what the state machine produces (see `tern_core::Connection`'s driving
//! contract).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tern_codec::Decoder;
use tern_core::{Broker, Connection, ConnectionInfo, RateExceeded, Wake};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::{Deciding, Exchange, SharedAuthenticator};
use crate::limits::{PublishLimiter, whole_publish_len};

/// Smallest read buffer; an idle connection keeps only this much (a PINGREQ is 2 bytes).
const MIN_READ_BUFFER: usize = 128;
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

/// Wakes the connection task when deliveries arrive or the session is taken over.
struct TaskWaker(Notify);

impl Wake for TaskWaker {
    fn wake(&self) {
        self.0.notify_one();
    }
}

/// Runs one connection to its end. `unaddressed` names the client in logs when `info` has no
/// address (a Unix socket's client: the listener, `unix:PATH`).
pub(crate) async fn drive<S>(
    stream: S,
    broker: Broker,
    info: ConnectionInfo,
    shutdown: CancellationToken,
    log_connections: bool,
    authenticator: SharedAuthenticator,
    unaddressed: &(dyn std::fmt::Display + Sync),
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = info.remote_addr;
    let mut announced = false;
    let waker = Arc::new(TaskWaker(Notify::new()));
    let started = Instant::now();
    let mut conn = Connection::new(broker.clone(), info, waker.clone(), started);
    // Message rate and bandwidth limits (`None` without them: no state, no clock reads), and
    // the pause of reading they impose while the next PUBLISH waits for its tokens.
    let mut limiter = PublishLimiter::new(broker.config(), started);
    let mut paused: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut decoder = Decoder::new(broker.config().max_packet_size);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut rbuf = BytesMut::with_capacity(MIN_READ_BUFFER);
    let mut read_chunk = MIN_READ_BUFFER;
    let mut wbuf = BytesMut::new();
    let mut shutting_down = false;
    // Bytes written since the last flush. A TCP socket needs none, but a TLS or WebSocket
    // stream may accept a write while keeping part of it buffered when the socket is full:
    // without a flush that tail would wait for the next write.
    let mut unflushed = false;
    // One timer, moved only when the deadline comes earlier; a later deadline just lets it fire
    // early, and the state machine re-arms it.
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let sleep = tokio::time::sleep_until(far());
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    // An authentication decision being made, and what the exchange keeps between steps.
    let mut deciding: Option<Deciding> = None;
    let mut exchange: Option<Box<Exchange>> = None;

    loop {
        let now = Instant::now();
        while wbuf.len() < WRITE_HIGH_WATER && conn.poll_transmit(now, &mut wbuf, WRITE_HIGH_WATER)
        {
        }
        if log_connections && !announced && conn.is_connected() {
            announced = true;
            tracing::info!(
                "client {} connected from {} (MQTT {})",
                conn.client_id(),
                peer.map_or_else(|| unaddressed.to_string(), |p| p.to_string()),
                conn.version()
            );
        }
        if conn.is_closing() {
            break;
        }
        if deciding.is_none()
            && let Some(request) = conn.poll_auth_request()
        {
            deciding = Some(authenticator.load_full().decide(request, exchange.take()));
        }
        if let Some(deadline) = conn.poll_timeout()
            && armed.is_none_or(|a| deadline < a)
        {
            sleep.as_mut().reset(deadline.into());
            armed = Some(deadline);
        }
        if rbuf.capacity() - rbuf.len() < read_chunk / 2 {
            rbuf.reserve(read_chunk);
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                conn.handle_shutdown(Instant::now());
            }
            result = write_or_flush(&mut writer, &mut wbuf), if !wbuf.is_empty() || unflushed => {
                match result {
                    Err(_) | Ok(Some(0)) => conn.handle_connection_lost(Instant::now()),
                    Ok(Some(_)) => {
                        unflushed = true;
                        if wbuf.is_empty() && wbuf.capacity() > KEEP_WRITE_BUFFER {
                            wbuf = BytesMut::new();
                        }
                    }
                    Ok(None) => unflushed = false,
                }
            }
            (decision, kept) = async { deciding.as_mut().expect("guarded").await },
                if deciding.is_some() =>
            {
                deciding = None;
                exchange = kept;
                let now = Instant::now();
                conn.handle_auth_decision(decision, now);
                // Packets the client sent after CONNECT wait in the buffer until it is in.
                let until = decode_all(&mut decoder, &mut rbuf, &mut conn, &mut limiter, now);
                paused = pause_until(until);
            }
            result = reader.read_buf(&mut rbuf),
                if !conn.awaits_auth_decision() && paused.is_none() =>
            {
                let now = Instant::now();
                match result {
                    Ok(0) | Err(_) => conn.handle_connection_lost(now),
                    Ok(n) => {
                        if n >= read_chunk && read_chunk < MAX_READ_BUFFER {
                            read_chunk *= 2;
                        }
                        let until =
                            decode_all(&mut decoder, &mut rbuf, &mut conn, &mut limiter, now);
                        paused = pause_until(until);
                        if rbuf.is_empty() && rbuf.capacity() > MIN_READ_BUFFER * 4 {
                            rbuf = BytesMut::with_capacity(MIN_READ_BUFFER);
                            read_chunk = MIN_READ_BUFFER;
                        }
                    }
                }
            }
            () = async { paused.as_mut().expect("guarded").await }, if paused.is_some() => {
                let now = Instant::now();
                let until = decode_all(&mut decoder, &mut rbuf, &mut conn, &mut limiter, now);
                paused = pause_until(until);
            }
            () = waker.0.notified() => {}
            () = &mut sleep, if armed.is_some() => {
                armed = None;
                sleep.as_mut().reset(far());
                let now = Instant::now();
                if paused.is_some() {
                    // What is held back in the buffer counts for keep-alive.
                    conn.handle_input_pending(now);
                }
                conn.handle_timeout(now);
            }
        }
    }

    // Flush what is left (a CONNACK refusal, a DISCONNECT), bounded in time.
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, async {
        writer.write_all_buf(&mut wbuf).await?;
        writer.shutdown().await
    })
    .await;
    // Lingering close: closing a socket with unread input makes the kernel reset the
    // connection, which can destroy the DISCONNECT or CONNACK still in flight. Read and discard
    // until the client closes, for a bounded time.
    let _ = tokio::time::timeout(LINGER_TIMEOUT, async {
        loop {
            rbuf.clear();
            match reader.read_buf(&mut rbuf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    conn.handle_connection_lost(Instant::now());
    if announced {
        tracing::info!("client {} disconnected", conn.client_id());
    }
}

/// Writes what `wbuf` holds (`Some(bytes written)`), or, once it is empty, flushes the stream
/// (`None`).
async fn write_or_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    wbuf: &mut BytesMut,
) -> std::io::Result<Option<usize>> {
    if wbuf.is_empty() {
        writer.flush().await.map(|()| None)
    } else {
        writer.write_buf(wbuf).await.map(Some)
    }
}

/// A timer for a pause of reading until `until`, if there is one.
fn pause_until(until: Option<Instant>) -> Option<Pin<Box<tokio::time::Sleep>>> {
    until.map(|at| Box::pin(tokio::time::sleep_until(at.into())))
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
    while !conn.is_closing() && !conn.awaits_auth_decision() {
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
            Ok(Some(packet)) => conn.handle_packet(packet, now),
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
