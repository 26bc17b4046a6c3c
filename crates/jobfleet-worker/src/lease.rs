//! Keeping a delivery's lease alive with progress acknowledgements (`+WPI`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::Subject;
use tokio_util::sync::CancellationToken;

/// The lease of one delivery: progress acks go to its reply subject.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    client: async_nats::Client,
    reply: Option<Subject>,
}

impl Lease {
    pub(crate) fn new(client: async_nats::Client, reply: Option<Subject>) -> Self {
        Self { client, reply }
    }

    /// Resets the server's ack timer for this delivery.
    pub(crate) async fn extend(&self) {
        if let Some(reply) = &self.reply
            && let Err(err) = self.client.publish(reply.clone(), "+WPI".into()).await
        {
            tracing::debug!(error = %err, "progress ack not sent");
        }
    }
}

/// Renews the leases of every delivery a worker holds, from one task of its own: a handler
/// that blocks its thread cannot starve its own lease, and no job pays for a timer.
#[derive(Debug, Default)]
pub(crate) struct LeaseKeeper {
    held: Mutex<HashMap<u64, (Subject, Instant)>>,
    next_key: AtomicU64,
}

/// A delivery registered with a [`LeaseKeeper`]; dropping it stops the renewals.
#[derive(Debug)]
pub(crate) struct Held<'a> {
    keeper: &'a LeaseKeeper,
    key: u64,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.keeper.lock().remove(&self.key);
    }
}

impl LeaseKeeper {
    /// Keeps `reply`'s lease alive until the returned guard is dropped.
    pub(crate) fn hold(&self, reply: Option<&Subject>) -> Option<Held<'_>> {
        let reply = reply?.clone();
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, (reply, Instant::now()));
        Some(Held { keeper: self, key })
    }

    /// Every `every`, extends the leases held longer than half of it, until `stop`.
    pub(crate) async fn run(
        &self,
        client: async_nats::Client,
        every: Duration,
        stop: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => return,
            }
            let due: Vec<Subject> = {
                let held = self.lock();
                let cutoff = Instant::now().checked_sub(every / 2);
                held.values()
                    .filter(|(_, since)| cutoff.is_none_or(|c| *since <= c))
                    .map(|(reply, _)| reply.clone())
                    .collect()
            };
            for reply in due {
                if let Err(err) = client.publish(reply, "+WPI".into()).await {
                    tracing::debug!(error = %err, "progress ack not sent");
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Subject, Instant)>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
