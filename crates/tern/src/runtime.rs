//! The async runtime that serves clients.

use std::cell::Cell;
use std::io;

use tokio::runtime::{Builder, Runtime};

thread_local! {
    /// Set when this worker thread comes back from waiting for events; cleared by the first
    /// connection it polls after that.
    static UNPARKED: Cell<bool> = const { Cell::new(false) };
}

/// The multi-threaded runtime the broker runs on; `workers` overrides tokio's default of one
/// worker per core.
pub(crate) fn broker_runtime(workers: Option<usize>) -> io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    builder
        .enable_all()
        .thread_name("tern-worker")
        .on_thread_unpark(|| UNPARKED.set(true));
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder.build()
}

/// Whether the task being polled is the first connection since its worker woke up to new
/// events; it should then step behind the tasks already queued (`connection::drive` does).
///
/// Tokio runs the task woken last first (the "LIFO slot", made for message passing: a
/// subscriber woken by a publisher writes its copy at once). But when a worker wakes to several
/// readable connections, tokio wakes their tasks in the order the events came, so the last
/// one to become readable ran first: of two messages that arrived together the later was routed
/// first, and the earlier also waited for the other's copy to be written, which put Tern's
/// point-to-point latency at p90 above Mosquitto's (docs/PERFORMANCE.md, "Latency at low
/// rates"). Turning the slot off (`disable_lifo_slot`) restored arrival order but lost the
/// immediate handoff: with clients subscribing and unsubscribing at the same time, each copy
/// then waited behind their tasks.
pub(crate) fn first_since_unpark() -> bool {
    UNPARKED.replace(false)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixStream;
    use tokio::sync::oneshot;

    use super::{broker_runtime, first_since_unpark};

    /// Bounds every wait of the test.
    const WAIT: Duration = Duration::from_secs(10);

    /// Two connections that become readable while the worker is busy are served in the order
    /// their data came, when the task that tokio polls first steps back as `drive` does.
    #[test]
    fn connections_readable_together_are_served_in_arrival_order() {
        let runtime = broker_runtime(Some(1)).expect("runtime");
        let order = runtime.block_on(async {
            let order = Arc::new(Mutex::new(Vec::new()));
            let mut writers = Vec::new();
            let mut tasks = Vec::new();
            let mut waiting = Vec::new();
            for name in ["first", "second"] {
                let (writer, reader) = UnixStream::pair().expect("socket pair");
                writers.push(writer);
                let (ready, ready_rx) = oneshot::channel();
                waiting.push(ready_rx);
                let order = order.clone();
                tasks.push(tokio::spawn(async move {
                    ready.send(()).expect("test waits");
                    reader.readable().await.expect("readable");
                    if first_since_unpark() {
                        tokio::task::yield_now().await;
                    }
                    order.lock().expect("lock").push(name);
                }));
            }
            for ready in waiting {
                ready.await.expect("task started");
            }
            // Hold the only worker until both sockets are readable, one after the other, so
            // that one poll of the I/O driver reports both.
            let (busy, busy_rx) = oneshot::channel();
            let (written, written_rx) = std::sync::mpsc::channel::<()>();
            let blocker = tokio::spawn(async move {
                busy.send(()).expect("test waits");
                written_rx.recv_timeout(WAIT).expect("sockets written");
            });
            busy_rx.await.expect("worker busy");
            for writer in &mut writers {
                writer.write_all(b"x").await.expect("write");
            }
            written.send(()).expect("blocker waits");
            blocker.await.expect("blocker");
            for task in tasks {
                tokio::time::timeout(WAIT, task)
                    .await
                    .expect("task ran in time")
                    .expect("task");
            }
            Arc::try_unwrap(order)
                .expect("only owner")
                .into_inner()
                .expect("lock")
        });
        assert_eq!(order, ["first", "second"]);
    }
}
