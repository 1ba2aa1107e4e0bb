//! Opening the store at start-up and closing it at shutdown.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tern_core::{Broker, BrokerConfig, Store};
use tern_store::{DiskStore, DurabilityMode, StoreOptions};

use crate::config::{Durability, PersistenceConfig};

/// A broker with its store (if persistence is on), its durable state restored.
pub(crate) struct Opened {
    pub(crate) broker: Broker,
    pub(crate) store: Option<Arc<DiskStore>>,
}

/// Opens the store in the data directory, recovers what it holds into a new broker, and logs
/// what was recovered. A damaged or unreadable store stops start-up with the store's message.
pub(crate) fn open(
    config: &PersistenceConfig,
    broker_config: BrokerConfig,
) -> anyhow::Result<Opened> {
    if !config.enabled {
        tracing::info!("persistence is off: sessions and retained messages live in memory only");
        return Ok(Opened {
            broker: Broker::new(broker_config),
            store: None,
        });
    }
    let started = Instant::now();
    let mut options = StoreOptions::default();
    options.durability = match config.durability {
        Durability::Fsync => DurabilityMode::Fsync,
        Durability::Flush => DurabilityMode::Flush,
    };
    options.commit_window = config.commit_window;
    options.max_batch = config.max_batch;
    #[cfg(feature = "fault-injection")]
    let options = inject_faults(options)?;
    let (store, snapshot) = tern_store::open(&config.data_dir, options)
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    let (sessions, retained) = (snapshot.sessions.len(), snapshot.retained.len());
    let deliveries: usize = snapshot.sessions.iter().map(|s| s.deliveries.len()).sum();
    let dyn_store: Arc<dyn Store> = store.clone();
    let broker = Broker::with_store(broker_config, Some(dyn_store));
    store.record_commit_latency(broker.metrics().store_commit.clone());
    broker.restore(snapshot, Instant::now());
    tracing::info!(
        "store {}: recovered {sessions} sessions, {deliveries} queued or in-flight messages and \
         {retained} retained messages in {:.0?}",
        store.file().display(),
        started.elapsed()
    );
    Ok(Opened {
        broker,
        store: Some(store),
    })
}

/// Test builds only (feature `fault-injection`): `TERN_STORE_FAIL_COMMITS=2,5` makes those
/// store commits fail (1-based, counting the commits that write something).
#[cfg(feature = "fault-injection")]
fn inject_faults(mut options: StoreOptions) -> anyhow::Result<StoreOptions> {
    let Some(list) = std::env::var_os("TERN_STORE_FAIL_COMMITS") else {
        return Ok(options);
    };
    let list = list.to_string_lossy();
    for n in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let n = n
            .parse()
            .with_context(|| format!("TERN_STORE_FAIL_COMMITS: `{n}` is not a commit number"))?;
        options = options.fail_commit(n);
    }
    tracing::warn!("fault injection: store commits {list} will fail");
    Ok(options)
}

/// Writes everything still pending and closes the store (graceful shutdown).
pub(crate) fn close(store: Option<Arc<DiskStore>>) {
    if let Some(store) = store {
        match store.close() {
            Ok(()) => tracing::info!("store closed"),
            Err(e) => tracing::error!("{e}"),
        }
    }
}

/// Forces a checkpoint (SIGUSR1), off the async runtime's threads.
pub(crate) async fn checkpoint(store: Arc<DiskStore>) {
    let result = tokio::task::spawn_blocking(move || store.checkpoint()).await;
    match result {
        Ok(Ok(())) => tracing::info!("store checkpoint done"),
        Ok(Err(e)) => tracing::error!("store checkpoint failed: {e}"),
        Err(e) => tracing::error!("store checkpoint failed: {e}"),
    }
}
