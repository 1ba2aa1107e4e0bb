//! The async runtime that serves clients.

use std::io;

use tokio::runtime::{Builder, Runtime};

/// The multi-threaded runtime the broker runs on; `workers` overrides tokio's default of one
/// worker per core.
///
/// Its workers run woken tasks in the order they were woken. Tokio's default runs the last
/// task woken first (the "LIFO slot", made for message passing): when a worker wakes from
/// `epoll` to two readable connections, the second publisher's message was routed first and
/// the one that had waited longer paid for both, which put Tern's point-to-point latency at
/// p90 above Mosquitto's (docs/PERFORMANCE.md, "Latency at low rates"). Tokio offers the
/// switch only under `--cfg tokio_unstable`, which `.cargo/config.toml` sets; a build with
/// `RUSTFLAGS` of its own loses it, and the test below says so.
pub(crate) fn broker_runtime(workers: Option<usize>) -> io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    builder.enable_all().thread_name("tern-worker");
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};

    use tokio::sync::oneshot;

    use super::broker_runtime;

    #[test]
    fn woken_tasks_run_in_the_order_they_were_woken() {
        let runtime = broker_runtime(Some(1)).expect("runtime");
        let order = runtime.block_on(async {
            tokio::spawn(async {
                let order = Arc::new(Mutex::new(Vec::new()));
                let waiting = Arc::new(AtomicUsize::new(0));
                let mut senders = Vec::new();
                let mut tasks = Vec::new();
                for i in 0..3 {
                    let (tx, rx) = oneshot::channel::<()>();
                    senders.push(tx);
                    let (order, waiting) = (order.clone(), waiting.clone());
                    tasks.push(tokio::spawn(async move {
                        waiting.fetch_add(1, SeqCst);
                        rx.await.expect("woken");
                        order.lock().expect("lock").push(i);
                    }));
                }
                // Every task waits on its channel before any is woken.
                while waiting.load(SeqCst) < 3 {
                    tokio::task::yield_now().await;
                }
                // Woken one after the other from a task on the same (only) worker.
                for tx in senders {
                    tx.send(()).expect("send");
                }
                for task in tasks {
                    task.await.expect("task");
                }
                Arc::try_unwrap(order)
                    .expect("only owner")
                    .into_inner()
                    .expect("lock")
            })
            .await
            .expect("join")
        });
        assert_eq!(
            order,
            [0, 1, 2],
            "tasks ran last-woken first: built without `--cfg tokio_unstable` \
             (.cargo/config.toml; a RUSTFLAGS variable replaces it)"
        );
    }
}
