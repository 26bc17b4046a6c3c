//! Counters of a running worker.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::metrics::Histogram;

/// Live counters of one worker process, readable while it runs.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub(crate) started: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) in_flight: AtomicI64,
    pub(crate) handler_duration: Histogram,
    pub(crate) queue_wait: Histogram,
}

/// A snapshot of [`WorkerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Attempts begun.
    pub started: u64,
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Attempts that failed and were scheduled again.
    pub retried: u64,
    /// Jobs moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Jobs handed back unfinished at shutdown.
    pub released: u64,
}

impl WorkerStats {
    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            started: self.started.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
        }
    }

    /// Handler run times observed.
    pub fn handler_duration(&self) -> &Histogram {
        &self.handler_duration
    }

    /// Times from a job's storage (or its scheduled time) to the start of an attempt.
    pub fn queue_wait(&self) -> &Histogram {
        &self.queue_wait
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
