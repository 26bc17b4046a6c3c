//! What every request handler shares.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use jobfleet_core::JobId;
use jobfleet_producer::{Producer, QueueStats};

use crate::config::GatewayConfig;
use crate::metrics::GatewayMetrics;

/// How often a queue's stats are kept for rates and charts, at most.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How many samples a queue keeps (5 minutes at one per 5 s).
const SAMPLES_KEPT: usize = 60;

/// The gateway's shared state: a producer (and so a NATS connection) and settings.
#[derive(Debug, Clone)]
pub struct GatewayState {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) producer: Producer,
    pub(crate) config: GatewayConfig,
    pub(crate) metrics: GatewayMetrics,
    /// Job ids being published right now: a second request with the same idempotency key
    /// meanwhile gets 409 instead of racing the first.
    pub(crate) publishing: Mutex<HashSet<JobId>>,
    pub(crate) samples: Mutex<HashMap<String, VecDeque<QueueStats>>>,
    pub(crate) shutting_down: AtomicBool,
}

impl GatewayState {
    /// State serving requests with `producer`'s connection.
    pub fn new(producer: Producer, config: GatewayConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                producer,
                config,
                metrics: GatewayMetrics::default(),
                publishing: Mutex::new(HashSet::new()),
                samples: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn producer(&self) -> &Producer {
        &self.inner.producer
    }

    pub(crate) fn js(&self) -> &jetstream::Context {
        self.inner.producer.jetstream()
    }

    pub(crate) fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// Marks the gateway as stopping: `/readyz` answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    pub(crate) fn nats_connected(&self) -> bool {
        self.inner.producer.client().connection_state() == async_nats::connection::State::Connected
    }

    /// Keeps `stats` as a sample (at most one per 5 s per queue) and returns the samples of
    /// the last 5 minutes, oldest first.
    pub(crate) fn record_sample(&self, stats: &QueueStats) -> Vec<QueueStats> {
        let Ok(mut samples) = self.inner.samples.lock() else {
            return Vec::new();
        };
        let series = samples.entry(stats.name.clone()).or_default();
        let due = series.back().is_none_or(|last| {
            (stats.observed_at - last.observed_at).unsigned_abs() >= SAMPLE_EVERY
        });
        if due {
            series.push_back(stats.clone());
            while series.len() > SAMPLES_KEPT {
                series.pop_front();
            }
        }
        series.iter().cloned().collect()
    }
}

/// Holds a job id in [`Inner::publishing`] until dropped.
pub(crate) struct PublishingGuard {
    state: GatewayState,
    id: JobId,
}

impl PublishingGuard {
    /// Claims `id`; `None` when another request is publishing it right now.
    pub(crate) fn claim(state: &GatewayState, id: JobId) -> Option<Self> {
        let mut set = state.inner.publishing.lock().ok()?;
        set.insert(id).then(|| Self {
            state: state.clone(),
            id,
        })
    }
}

impl Drop for PublishingGuard {
    fn drop(&mut self) {
        if let Ok(mut set) = self.state.inner.publishing.lock() {
            set.remove(&self.id);
        }
    }
}
