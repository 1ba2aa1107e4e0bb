//! The admin API's listener: hyper's HTTP/1.1 server, with bounds so that a client cannot hold
//! it: at most [`MAX_CONNECTIONS`] connections, the request head within [`HEAD_TIMEOUT`] (that
//! also closes connections idle between requests), the body within [`BODY_TIMEOUT`] and at most
//! [`super::router::MAX_BODY`] bytes, headers at most [`MAX_HEAD`] bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::AdminState;

/// The most connections open at once; more are closed as soon as they are accepted.
pub(crate) const MAX_CONNECTIONS: usize = 128;
/// How long a client has to send a request's head (and how long a connection may stay idle
/// between requests).
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's body.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head.
const MAX_HEAD: usize = 64 * 1024;

/// Binds the admin listener, as the MQTT listeners are bound (`SO_REUSEADDR`; an IPv6 address
/// listens for IPv6 only).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    crate::server::bind_tcp(addr, 128)
}

/// Accepts and serves connections until `cancel`.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                "admin API: connection from {peer} closed: already {MAX_CONNECTIONS} connections"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        super::router::handle(&state, request, peer).await,
                    )
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("admin API: connection from {peer}: {e}");
                    }
                }
                () = cancel.cancelled() => {
                    // Finish the request in progress, then close.
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
                }
            }
            drop(permit);
        });
    }
}
