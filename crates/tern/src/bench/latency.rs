//! Latency histograms (HDR, microseconds).
//!
//! A histogram of three significant digits up to a minute takes about 140 KB; one per
//! subscriber would cost 140 MB for a thousand subscribers. Instead, each task buffers a few
//! hundred samples locally and adds them, one lock per batch, to one of a few shared
//! histograms (shards), which are merged at the end.

use std::sync::{Arc, Mutex, PoisonError};

use hdrhistogram::Histogram;

/// The largest latency recorded exactly (µs); larger ones are recorded as this.
const HIGHEST_US: u64 = 60_000_000;
/// Samples a task keeps before adding them to its shard.
const BATCH: usize = 256;

/// A new, empty histogram of microseconds.
pub(crate) fn histogram() -> Histogram<u64> {
    // The bounds are constants that the crate accepts.
    #[allow(clippy::unwrap_used)]
    Histogram::new_with_bounds(1, HIGHEST_US, 3).unwrap()
}

/// The shared histograms of one measurement.
#[derive(Debug, Clone)]
pub(crate) struct LatencySink {
    shards: Arc<Vec<Mutex<Histogram<u64>>>>,
}

impl LatencySink {
    /// A sink of `shards` histograms.
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            shards: Arc::new(
                (0..shards.max(1))
                    .map(|_| Mutex::new(histogram()))
                    .collect(),
            ),
        }
    }

    /// A recorder for task number `task`.
    pub(crate) fn recorder(&self, task: usize) -> LatencyRecorder {
        LatencyRecorder {
            sink: self.clone(),
            shard: task % self.shards.len(),
            samples: Vec::with_capacity(BATCH),
        }
    }

    /// Every sample recorded so far (recorders flush when dropped).
    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            // Same bounds on both sides: adding cannot fail.
            let _ = all.add(&*shard);
        }
        all
    }
}

/// One task's buffer of samples.
#[derive(Debug)]
pub(crate) struct LatencyRecorder {
    sink: LatencySink,
    shard: usize,
    samples: Vec<u64>,
}

impl LatencyRecorder {
    /// Records one latency in microseconds.
    pub(crate) fn record(&mut self, us: u64) {
        self.samples.push(us);
        if self.samples.len() >= BATCH {
            self.flush();
        }
    }

    /// Adds the buffered samples to the shared histogram.
    pub(crate) fn flush(&mut self) {
        if self.samples.is_empty() {
            return;
        }
        let mut h = self.sink.shards[self.shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for &us in &self.samples {
            h.saturating_record(us.min(HIGHEST_US));
        }
        self.samples.clear();
    }
}

impl Drop for LatencyRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Percentiles of a histogram, as reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub(crate) struct Percentiles {
    /// Number of samples.
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    /// The percentiles of `h` (all zero when it is empty).
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorders_reach_the_merged_histogram() {
        let sink = LatencySink::new(3);
        for task in 0..5 {
            let mut r = sink.recorder(task);
            for us in 1..=1000 {
                r.record(us);
            }
        }
        let p = Percentiles::of(&sink.merged());
        assert_eq!((p.count, p.min, p.max), (5000, 1, 1000));
        assert!((499..=501).contains(&p.p50), "{p:?}");
    }
}
