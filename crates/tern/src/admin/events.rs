//! `GET /api/v1/events`: the dashboard's live feed, as Server-Sent Events.
//!
//! Every second an `event: stats` whose data is the broker's metrics snapshot (the JSON of
//! `GET /api/v1/stats`) with `"time"`, the wall-clock time in milliseconds since the epoch.
//! Every [`KEEPALIVE_TICKS`] seconds a comment line goes first, for proxies that close quiet
//! streams (the stats alone would do today; the comment keeps the stream alive if a later
//! version sends events only on change).
//!
//! The body is pulled: hyper asks for the next frame only when the socket takes more, and the
//! ticker skips the ticks a slow client missed, so a slow or stalled reader costs one pending
//! frame, never a queue. The stream ends when the client goes away (hyper drops the body) or
//! when the admin server shuts down (`shutdown` is cancelled).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::Frame;
use serde::Serialize;
use tern_core::Broker;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::Body;

/// Time between two `stats` events.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);
/// Ticks between two keep-alive comments.
pub(crate) const KEEPALIVE_TICKS: u32 = 15;
/// The `Content-Type` of the stream.
pub(crate) const CONTENT_TYPE: &str = "text/event-stream";

/// The answer to `GET /api/v1/events` on `broker`: 200, `text/event-stream`, never cached or
/// buffered by a proxy; the stream ends when `shutdown` is cancelled.
pub(crate) fn response(broker: Broker, shutdown: CancellationToken) -> Response<Body> {
    let mut response = Response::new(stream(broker, shutdown));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx and others: pass each event on at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The SSE body for `GET /api/v1/events` on `broker`, ended by `shutdown`.
pub(crate) fn stream(broker: Broker, shutdown: CancellationToken) -> Body {
    EventStream::new(broker, shutdown, INTERVAL).boxed_unsync()
}

/// The stream itself (a `hyper` body of its own making).
struct EventStream {
    broker: Broker,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    ticks: Interval,
    /// Ticks sent so far.
    sent: u32,
    /// Whether the opening lines went out.
    opened: bool,
}

impl EventStream {
    fn new(broker: Broker, shutdown: CancellationToken, every: Duration) -> Self {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Self {
            broker,
            shutdown: Box::pin(shutdown.cancelled_owned()),
            ticks,
            sent: 0,
            opened: false,
        }
    }

    /// One tick's text: maybe a keep-alive comment, then the `stats` event.
    fn tick(&mut self) -> Bytes {
        let mut text = String::with_capacity(1024);
        if self.sent > 0 && self.sent.is_multiple_of(KEEPALIVE_TICKS) {
            text.push_str(": keep-alive\n\n");
        }
        self.sent = self.sent.wrapping_add(1);
        text.push_str("event: stats\ndata: ");
        text.push_str(&stats_json(&self.broker));
        text.push_str("\n\n");
        Bytes::from(text)
    }
}

impl hyper::body::Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        if !this.opened {
            this.opened = true;
            // How long an EventSource waits before reconnecting, and a first line that lets
            // the client know the stream is open before the first tick.
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b"retry: 2000\n: tern events\n\n",
            )))));
        }
        match this.ticks.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(this.tick())))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}

/// The data of one `stats` event: the snapshot and the time. One line (JSON has no raw
/// newlines), as an SSE `data:` field must be.
fn stats_json(broker: &Broker) -> String {
    #[derive(Serialize)]
    struct Stats<T: Serialize> {
        #[serde(flatten)]
        snapshot: T,
        time: u64,
    }
    let time = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let stats = Stats {
        snapshot: crate::metrics_view::snapshot(broker),
        time,
    };
    serde_json::to_string(&stats).unwrap_or_else(|e| {
        tracing::warn!("admin API: cannot encode the stats event: {e}");
        format!("{{\"time\":{time}}}")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::future::poll_fn;

    use hyper::body::Body as _;

    use super::*;

    async fn next_text(body: &mut EventStream) -> Option<String> {
        let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        let data = frame.unwrap().into_data().unwrap();
        Some(String::from_utf8(data.to_vec()).unwrap())
    }

    /// The JSON of the `data:` line of a `stats` event.
    fn data_of(text: &str) -> serde_json::Value {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("a data line");
        serde_json::from_str(line).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn opens_then_sends_stats_every_tick_with_keepalives() {
        let broker = Broker::new(tern_core::BrokerConfig::default());
        let shutdown = CancellationToken::new();
        let mut body = EventStream::new(broker, shutdown.clone(), INTERVAL);
        assert_eq!(
            next_text(&mut body).await.unwrap(),
            "retry: 2000\n: tern events\n\n"
        );
        let start = tokio::time::Instant::now();
        let first = next_text(&mut body).await.unwrap();
        assert!(first.starts_with("event: stats\ndata: {"), "{first}");
        assert!(first.ends_with("}\n\n"), "{first}");
        let data = data_of(&first);
        assert!(data["time"].as_u64().unwrap() > 1_600_000_000_000, "{data}");
        // The snapshot of GET /api/v1/stats, flattened beside the time.
        assert_eq!(data["connections.count"], 0, "{data}");
        assert_eq!(data["messages.received"], 0, "{data}");
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first tick is immediate"
        );
        for n in 1..KEEPALIVE_TICKS {
            let text = next_text(&mut body).await.unwrap();
            assert!(text.starts_with("event: stats\n"), "tick {n}: {text}");
        }
        assert_eq!(start.elapsed(), INTERVAL * (KEEPALIVE_TICKS - 1));
        let text = next_text(&mut body).await.unwrap();
        assert!(text.starts_with(": keep-alive\n\nevent: stats\n"), "{text}");
        shutdown.cancel();
        assert!(next_text(&mut body).await.is_none(), "ends at shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_skips_ticks_instead_of_queueing_them() {
        let broker = Broker::new(tern_core::BrokerConfig::default());
        let mut body = EventStream::new(broker, CancellationToken::new(), INTERVAL);
        next_text(&mut body).await.unwrap();
        next_text(&mut body).await.unwrap();
        // The reader stalls for a minute: one event is ready at once, then the next comes a
        // tick later, not 60 queued ones.
        tokio::time::advance(Duration::from_secs(60)).await;
        let before = tokio::time::Instant::now();
        next_text(&mut body).await.unwrap();
        assert_eq!(before.elapsed(), Duration::ZERO);
        next_text(&mut body).await.unwrap();
        assert_eq!(before.elapsed(), INTERVAL);
    }
}
