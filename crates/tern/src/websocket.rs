//! MQTT over WebSocket (MQTT 5.0 and 3.1.1, section 6): the HTTP/1.1 upgrade on a listener's
//! path, then the WebSocket presented to the connection task as a plain byte stream.
//!
//! The upgrade request is read and answered here, with `httparse`, so that every refusal gets
//! an HTTP status a person can read (404 for another path, 426 for a plain HTTP request, 400
//! for a client that offers subprotocols but not MQTT's). After the `101 Switching Protocols`
//! answer, tungstenite runs the WebSocket protocol: frame parsing and unmasking, fragmented
//! messages, ping/pong and the close handshake. [`WsStream`] turns its messages back into bytes:
//! the MQTT decoder does not care where frames begin or end (MQTT-6.0.0-2).
//!
//! Decisions where the specification leaves a choice (documented in docs/CONFIGURATION.md):
//! - Subprotocol (MQTT-6.0.0-3, -4): `mqtt` is chosen whenever the client offers it; a client
//!   offering only the older `mqttv3.1` gets that one echoed (answering `mqtt` would make it
//!   fail the handshake). A request with no `Sec-WebSocket-Protocol` header is tolerated and
//!   answered without one. A request that offers subprotocols, none of them MQTT's, is refused
//!   with 400: such a client would fail the handshake anyway on an answer without its choice.
//! - A text frame breaks MQTT-6.0.0-1: the server closes the WebSocket with 1003 (unsupported
//!   data), and the connection ends as a lost connection (the Will is published). Frames
//!   RFC 6455 forbids (unknown opcodes, unmasked client frames...) close it with 1002.
//! - Frame and message size: at most the broker's maximum packet size plus 64 KiB (one
//!   packet of the maximum size and smaller packets batched with it); beyond that the WebSocket
//!   is closed with 1009 (message too big). tungstenite's 64 MiB default never applies.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use base64ct::Encoding as _;
use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;

/// The path WebSocket clients upgrade on when the listener does not set one.
pub const DEFAULT_PATH: &str = "/mqtt";

/// The subprotocol MQTT 3.1.1 and 5.0 define (MQTT-6.0.0-4).
const SUBPROTOCOL: &str = "mqtt";
/// The subprotocol name of MQTT 3.1 clients, still offered by some.
const SUBPROTOCOL_V31: &str = "mqttv3.1";

/// The most bytes an upgrade request (request line and headers) may take.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The most header lines an upgrade request may have.
const MAX_HEADERS: usize = 64;
/// What tungstenite keeps allocated to read frames into, and reads at most at once. Small,
/// because every idle WebSocket connection keeps it (tungstenite's default is 128 KiB).
const READ_BUFFER: usize = 8 * 1024;
/// What a WebSocket frame or message may carry beyond the maximum packet size: room for
/// smaller packets a client batches with a packet of the maximum size.
const MESSAGE_HEADROOM: usize = 64 * 1024;

/// A WebSocket listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketSettings {
    /// The path clients upgrade on (compared with the request's path, query string left
    /// out); `None` accepts every path, as Mosquitto does.
    pub path: Option<String>,
    /// How long the HTTP upgrade may take; `None` uses the broker's `connect_timeout`.
    pub upgrade_timeout: Option<Duration>,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            path: Some(DEFAULT_PATH.to_owned()),
            upgrade_timeout: None,
        }
    }
}

impl WebSocketSettings {
    /// The settings of a mosquitto.conf `protocol websockets` listener: any path, as Mosquitto.
    #[must_use]
    pub fn any_path() -> Self {
        Self {
            path: None,
            upgrade_timeout: None,
        }
    }
}

/// Checks a configured path: it starts with `/` and is made of visible ASCII characters,
/// without `?` or `#` (the query string is not part of the comparison).
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("must start with `/`, got `{path}`"));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '?' || *c == '#')
    {
        return Err(format!(
            "must be visible ASCII characters without `?` or `#`, got {c:?} in `{path}`"
        ));
    }
    Ok(())
}

/// Logs what a WebSocket listener serves, before its `listening on` line.
pub(crate) fn log_listener(addr: &dyn fmt::Display, settings: &WebSocketSettings) {
    match &settings.path {
        Some(path) => tracing::info!("WebSocket on {addr}: MQTT on path `{path}`"),
        None => tracing::info!("WebSocket on {addr}: MQTT on every path"),
    }
}

// ---------------------------------------------------------------------------------------------
// The upgrade.

/// Why an upgrade did not happen.
#[derive(Debug)]
pub(crate) enum UpgradeError {
    /// The request was answered with an HTTP error status.
    Refused {
        /// The status code sent.
        status: u16,
        /// Why, for the log.
        why: String,
    },
    /// The client closed the connection before its request was complete.
    Closed,
    /// Reading or writing failed.
    Io(io::Error),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { status, why } => write!(f, "refused with HTTP {status}: {why}"),
            Self::Closed => f.write_str("the client closed the connection before upgrading"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for UpgradeError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Runs the upgrade on `stream` within `deadline` (the listener's `upgrade_timeout`, else the
/// caller's default), logging a failure; `None` if there is no WebSocket to serve MQTT on.
pub(crate) async fn upgrade_within<S, P, L>(
    stream: S,
    settings: &WebSocketSettings,
    max_packet_size: u32,
    default_deadline: Duration,
    cancel: &CancellationToken,
    log: Option<(P, L)>,
) -> Option<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: fmt::Display,
    L: fmt::Display,
{
    let deadline = settings.upgrade_timeout.unwrap_or(default_deadline);
    let upgraded = tokio::select! {
        () = cancel.cancelled() => return None,
        result = tokio::time::timeout(deadline, accept(stream, settings, max_packet_size)) => result,
    };
    match upgraded {
        Ok(Ok(ws)) => return Some(ws),
        Ok(Err(e)) => {
            if let Some((peer, listener)) = log {
                tracing::info!("WebSocket upgrade from {peer} on {listener}: {e}");
            }
        }
        Err(_) => {
            if let Some((peer, listener)) = log {
                tracing::info!(
                    "WebSocket upgrade from {peer} on {listener} not done within {deadline:?}; \
                     closed"
                );
            }
        }
    }
    None
}

/// Reads the client's upgrade request and answers it: `101 Switching Protocols` and the
/// WebSocket, or an HTTP error (then the connection is closed).
pub(crate) async fn accept<S>(
    mut stream: S,
    settings: &WebSocketSettings,
    max_packet_size: u32,
) -> Result<WsStream<S>, UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    let (head_len, answer) = loop {
        if buf.capacity() == buf.len() {
            buf.reserve(1024);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(UpgradeError::Closed);
        }
        if let Some(parsed) = parse_request(&buf, settings) {
            break parsed;
        }
        if buf.len() >= MAX_REQUEST_HEAD {
            let refusal = Refusal::new(
                431,
                "Request Header Fields Too Large",
                format!("the upgrade request is longer than {MAX_REQUEST_HEAD} bytes"),
            );
            break (buf.len(), Err(refusal));
        }
    };
    match answer {
        Err(refusal) => {
            stream.write_all(refusal.response().as_bytes()).await?;
            let _ = stream.shutdown().await;
            Err(UpgradeError::Refused {
                status: refusal.status,
                why: refusal.message,
            })
        }
        Ok(upgrade) => {
            stream.write_all(upgrade.response().as_bytes()).await?;
            stream.flush().await?;
            // A client may send its first frames right behind the request.
            let early = buf.split_off(head_len);
            let config = Some(ws_config(max_packet_size));
            let ws = if early.is_empty() {
                WebSocketStream::from_raw_socket(stream, Role::Server, config).await
            } else {
                WebSocketStream::from_partially_read(stream, early.to_vec(), Role::Server, config)
                    .await
            };
            Ok(WsStream::new(ws))
        }
    }
}

/// tungstenite's settings for a listener whose packets are at most `max_packet_size` bytes.
fn ws_config(max_packet_size: u32) -> WebSocketConfig {
    let limit = usize::try_from(max_packet_size)
        .unwrap_or(usize::MAX)
        .saturating_add(MESSAGE_HEADROOM);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Each write of the connection task goes out at once as one message: the task already
        // batches everything that is ready into one write.
        .write_buffer_size(0)
        .max_frame_size(Some(limit))
        .max_message_size(Some(limit))
}

/// A successful upgrade: what the `101` answer carries.
#[derive(Debug, PartialEq, Eq)]
struct Upgrade {
    /// `Sec-WebSocket-Accept`.
    accept: String,
    /// The chosen subprotocol, if the client offered any.
    subprotocol: Option<&'static str>,
}

impl Upgrade {
    fn response(&self) -> String {
        let mut text = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            self.accept
        );
        if let Some(protocol) = self.subprotocol {
            text.push_str("Sec-WebSocket-Protocol: ");
            text.push_str(protocol);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text
    }
}

/// An HTTP error answer.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    status: u16,
    reason: &'static str,
    /// Extra header lines, each ending in CRLF.
    headers: &'static str,
    /// The body (plain text), also logged.
    message: String,
}

impl Refusal {
    fn new(status: u16, reason: &'static str, message: String) -> Self {
        Self {
            status,
            reason,
            headers: "",
            message,
        }
    }

    fn with_headers(mut self, headers: &'static str) -> Self {
        self.headers = headers;
        self
    }

    fn response(&self) -> String {
        let body = format!("{}\n", self.message);
        format!(
            "HTTP/1.1 {} {}\r\n{}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.status,
            self.reason,
            self.headers,
            body.len()
        )
    }
}

/// Parses the request in `buf`: `None` while it is incomplete, else the length of its head
/// and the answer to give.
fn parse_request(
    buf: &[u8],
    settings: &WebSocketSettings,
) -> Option<(usize, Result<Upgrade, Refusal>)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(len)) => Some((len, evaluate(&request, settings))),
        Err(httparse::Error::TooManyHeaders) => Some((
            buf.len(),
            Err(Refusal::new(
                431,
                "Request Header Fields Too Large",
                format!("the upgrade request has more than {MAX_HEADERS} header lines"),
            )),
        )),
        Err(e) => Some((
            buf.len(),
            Err(Refusal::new(
                400,
                "Bad Request",
                format!("malformed HTTP request: {e}"),
            )),
        )),
    }
}

/// Decides the answer to a complete upgrade request (RFC 6455 section 4.2.1).
fn evaluate(
    request: &httparse::Request<'_, '_>,
    settings: &WebSocketSettings,
) -> Result<Upgrade, Refusal> {
    if request.method != Some("GET") {
        return Err(Refusal::new(
            405,
            "Method Not Allowed",
            "a WebSocket upgrade is a GET request".to_owned(),
        )
        .with_headers("Allow: GET\r\n"));
    }
    if request.version != Some(1) {
        return Err(Refusal::new(
            400,
            "Bad Request",
            "a WebSocket upgrade needs HTTP/1.1".to_owned(),
        ));
    }
    let target = request.path.unwrap_or_default();
    let path = request_path(target);
    if let Some(expected) = &settings.path
        && path != expected
    {
        return Err(Refusal::new(
            404,
            "Not Found",
            format!("no MQTT endpoint at `{path}`: MQTT over WebSocket is served on `{expected}`"),
        ));
    }
    let headers: &[httparse::Header<'_>] = &request.headers[..];
    if !has_token(headers, "upgrade", "websocket") || !has_token(headers, "connection", "upgrade") {
        return Err(Refusal::new(
            426,
            "Upgrade Required",
            "this address serves MQTT over WebSocket: connect with a WebSocket client \
             (subprotocol `mqtt`)"
                .to_owned(),
        )
        .with_headers("Upgrade: websocket\r\nConnection: Upgrade\r\n"));
    }
    let version = header_values(headers, "sec-websocket-version").next();
    if version.map(str::trim) != Some("13") {
        return Err(Refusal::new(
            426,
            "Upgrade Required",
            format!(
                "WebSocket version {} is not supported: only version 13 (RFC 6455) is",
                version.unwrap_or("(none)")
            ),
        )
        .with_headers("Sec-WebSocket-Version: 13\r\n"));
    }
    let mut keys = header_values(headers, "sec-websocket-key");
    let key = match (keys.next().map(str::trim), keys.next()) {
        (Some(key), None) if is_valid_key(key) => key,
        _ => {
            return Err(Refusal::new(
                400,
                "Bad Request",
                "`Sec-WebSocket-Key` must be one base64-encoded 16-byte value".to_owned(),
            ));
        }
    };
    let subprotocol = choose_subprotocol(headers)?;
    Ok(Upgrade {
        accept: tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
        subprotocol,
    })
}

/// The path of a request target: the query string left out, and the scheme and authority of
/// an absolute URI.
fn request_path(target: &str) -> &str {
    let without_query = target.split(['?', '#']).next().unwrap_or_default();
    for scheme in ["http://", "https://", "ws://", "wss://"] {
        if let Some(rest) = strip_prefix_ignore_case(without_query, scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    without_query
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The values of every `name` header (case-insensitive), as text; values that are not UTF-8
/// are left out.
fn header_values<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

/// The comma-separated tokens of every `name` header.
fn header_tokens<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    header_values(headers, name)
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether a `name` header lists `token` (case-insensitive).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// A `Sec-WebSocket-Key` is the base64 encoding of 16 bytes (RFC 6455 section 4.1).
fn is_valid_key(key: &str) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24
        && matches!(
            base64ct::Base64::decode(key.as_bytes(), &mut decoded),
            Ok(bytes) if bytes.len() == 16
        )
}

/// The subprotocol to answer with (see the module documentation).
fn choose_subprotocol(headers: &[httparse::Header<'_>]) -> Result<Option<&'static str>, Refusal> {
    let offered: Vec<&str> = header_tokens(headers, "sec-websocket-protocol").collect();
    if offered.is_empty() {
        return Ok(None);
    }
    if offered.contains(&SUBPROTOCOL) {
        return Ok(Some(SUBPROTOCOL));
    }
    if offered.contains(&SUBPROTOCOL_V31) {
        return Ok(Some(SUBPROTOCOL_V31));
    }
    Err(Refusal::new(
        400,
        "Bad Request",
        format!(
            "none of the offered subprotocols ({}) is MQTT's: offer `mqtt`",
            offered.join(", ")
        ),
    ))
}

// ---------------------------------------------------------------------------------------------
// The byte stream.

/// A WebSocket carrying MQTT, read and written as bytes: what arrives in binary messages is
/// read in order whatever the frame boundaries; each write goes out as one binary message.
pub(crate) struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    pending: Bytes,
    /// Reading has failed, or the client broke MQTT-6.0.0-1: whatever still arrives is
    /// discarded until the close handshake ends.
    draining: bool,
    /// A close frame has been queued.
    close_sent: bool,
    /// tungstenite gave up on the stream (a protocol error, a frame too large): what the
    /// client still sends is read from the socket and discarded.
    broken: bool,
}

impl<S> WsStream<S> {
    fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
            draining: false,
            close_sent: false,
            broken: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Queues a close frame (written now if the socket takes it, else with the next flush).
    fn close(&mut self, code: CloseCode, reason: &'static str) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // An error here means the connection is gone: nothing to close.
        let _ = Pin::new(&mut self.ws).start_send(Message::Close(Some(frame)));
    }

    /// Turns a WebSocket error met while reading into the connection's I/O error, after
    /// closing the WebSocket with the matching code when it is a protocol matter.
    fn read_failed(&mut self, e: WsError) -> io::Error {
        self.draining = true;
        self.broken = !matches!(e, WsError::Io(_));
        match e {
            WsError::Io(e) => e,
            WsError::Capacity(e) => {
                self.close(CloseCode::Size, "message too big");
                io::Error::new(io::ErrorKind::InvalidData, e.to_string())
            }
            WsError::Protocol(e) => {
                self.close(CloseCode::Protocol, "");
                io::Error::new(io::ErrorKind::InvalidData, e.to_string())
            }
            WsError::Utf8(e) => {
                self.close(CloseCode::Invalid, "");
                io::Error::new(io::ErrorKind::InvalidData, e)
            }
            other => ws_to_io(other),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Reads and discards what the client still sends after tungstenite gave up, until the
    /// client closes (end of stream): closing a socket with unread input makes the kernel reset
    /// the connection, which can destroy the close frame still in flight. The caller bounds it
    /// in time.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 2048];
        for _ in 0..64 {
            let mut discard = ReadBuf::new(&mut scratch);
            ready!(Pin::new(self.ws.get_mut()).poll_read(cx, &mut discard))?;
            if discard.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
        // Let other tasks run before reading on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A WebSocket error met while writing, as an I/O error.
fn ws_to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
        }
        other => io::Error::other(other.to_string()),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.broken {
            return this.poll_discard(cx);
        }
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            // Reading also sends the pong of a ping, and the reply to a close frame.
            let message = match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                // The close handshake is over, or the connection is gone: end of stream.
                None => return Poll::Ready(Ok(())),
                Some(Ok(message)) => message,
                Some(Err(e)) => return Poll::Ready(Err(this.read_failed(e))),
            };
            match message {
                Message::Binary(data) if !this.draining => this.pending = data,
                Message::Text(_) if !this.draining => {
                    // MQTT-6.0.0-1.
                    this.draining = true;
                    this.close(
                        CloseCode::Unsupported,
                        "MQTT is carried in binary frames only",
                    );
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text frame: MQTT over WebSocket uses binary frames only",
                    )));
                }
                // Ping and pong (answered by tungstenite), a close frame (the stream ends
                // after tungstenite's reply), data after a failure.
                _ => {}
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Ready once what an earlier write left in tungstenite's buffer is on the socket: at
        // most one message waits there.
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(ws_to_io)?;
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(ws_to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(ws_to_io)
    }

    /// Starts the close handshake (1000, normal closure) and writes the close frame; the
    /// client's answer ends the read side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.close(CloseCode::Normal, "");
        Pin::new(&mut this.ws).poll_close(cx).map_err(ws_to_io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(request: &str, settings: &WebSocketSettings) -> Result<Upgrade, Refusal> {
        let (len, answer) =
            parse_request(request.as_bytes(), settings).expect("a complete request");
        assert_eq!(len, request.len());
        answer
    }

    fn request(path: &str, extra: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: broker\r\nUpgrade: websocket\r\nConnection: keep-alive, \
             Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: \
             13\r\n{extra}\r\n"
        )
    }

    #[test]
    fn accept_key_and_subprotocol() {
        let settings = WebSocketSettings::default();
        let ok = answer(
            &request("/mqtt", "Sec-WebSocket-Protocol: mqttv3.1, mqtt\r\n"),
            &settings,
        )
        .expect("upgrade");
        // RFC 6455 section 1.3's example key and answer.
        assert_eq!(ok.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(ok.subprotocol, Some("mqtt"));
        let v31 = answer(
            &request("/mqtt?x=1", "Sec-WebSocket-Protocol: mqttv3.1\r\n"),
            &settings,
        )
        .expect("upgrade");
        assert_eq!(v31.subprotocol, Some("mqttv3.1"));
        let none = answer(&request("/mqtt", ""), &settings).expect("upgrade");
        assert_eq!(none.subprotocol, None);
        let other = answer(
            &request(
                "/mqtt",
                "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: x\r\n",
            ),
            &settings,
        )
        .expect_err("refused");
        assert_eq!(other.status, 400);
        assert!(other.message.contains("chat, x"), "{}", other.message);
    }

    #[test]
    fn paths() {
        let settings = WebSocketSettings::default();
        assert_eq!(
            answer(&request("/", ""), &settings)
                .expect_err("404")
                .status,
            404
        );
        assert_eq!(
            answer(&request("/mqtt/", ""), &settings)
                .expect_err("404")
                .status,
            404
        );
        assert!(answer(&request("http://broker:8083/mqtt", ""), &settings).is_ok());
        let any = WebSocketSettings::any_path();
        assert!(answer(&request("/anything", ""), &any).is_ok());
        assert_eq!(request_path("ws://host"), "/");
        assert!(check_path("/mqtt").is_ok());
        assert!(check_path("mqtt").is_err());
        assert!(check_path("/a b").is_err());
        assert!(check_path("/a?b").is_err());
    }

    #[test]
    fn refusals() {
        let settings = WebSocketSettings::default();
        let post = request("/mqtt", "").replacen("GET", "POST", 1);
        assert_eq!(answer(&post, &settings).expect_err("405").status, 405);
        let plain = "GET /mqtt HTTP/1.1\r\nHost: broker\r\n\r\n";
        let refusal = answer(plain, &settings).expect_err("426");
        assert_eq!(refusal.status, 426);
        assert!(refusal.response().contains("Upgrade: websocket\r\n"));
        let old = request("/mqtt", "").replace("Version: 13", "Version: 8");
        let refusal = answer(&old, &settings).expect_err("426");
        assert!(refusal.response().contains("Sec-WebSocket-Version: 13\r\n"));
        let bad_key = request("/mqtt", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
        assert_eq!(answer(&bad_key, &settings).expect_err("400").status, 400);
        let http10 = request("/mqtt", "").replace("HTTP/1.1", "HTTP/1.0");
        assert_eq!(answer(&http10, &settings).expect_err("400").status, 400);
        assert!(parse_request(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n", &settings).is_none());
        let (_, garbage) = parse_request(b"\x10\x0c\x00\x04MQTT\x04", &settings).expect("done");
        assert_eq!(garbage.expect_err("400").status, 400);
    }

    #[test]
    fn refusal_response_is_well_formed() {
        let r = Refusal::new(404, "Not Found", "nothing here".to_owned());
        assert_eq!(
            r.response(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 13\r\nConnection: close\r\n\r\nnothing here\n"
        );
    }
}
