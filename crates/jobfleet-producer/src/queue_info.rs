//! What a producer needs to know about a queue, read once from its stream and cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::GetStreamErrorKind};
use jobfleet_core::{AuditLevel, QueueName, topology};

use crate::error::{EnqueueError, EnqueueErrorKind};
use crate::publish::Publisher;

/// How long a queue's settings are trusted before they are read again.
const CACHE_TTL: Duration = Duration::from_secs(30);

/// A queue's facts as seen by a producer.
#[derive(Debug)]
pub(crate) struct QueueInfo {
    pub(crate) name: QueueName,
    /// The work stream's name.
    pub(crate) stream: Arc<str>,
    pub(crate) ready_subject: String,
    /// Largest message the stream accepts; `None` when only the server limit applies.
    pub(crate) max_message_size: Option<usize>,
    pub(crate) max_attempts: u32,
    /// The queue's age limit: delayed jobs must fire before it.
    pub(crate) max_age: Option<Duration>,
    /// Whether the stream accepts delayed jobs (only unbounded queues do).
    pub(crate) schedules: bool,
    pub(crate) audit: AuditLevel,
    loaded: Instant,
}

impl QueueInfo {
    /// Reads the queue's stream. Fails with `UnknownQueue` when there is none, or when the
    /// stream is not a jobfleet queue.
    async fn load(js: &jetstream::Context, name: &str) -> Result<Self, EnqueueError> {
        let name = QueueName::new(name).map_err(|err| {
            EnqueueError::with_source(
                EnqueueErrorKind::UnknownQueue,
                format!("invalid queue name {name:?}"),
                err,
            )
        })?;
        let stream = js
            .get_stream(name.stream_name())
            .await
            .map_err(|err| match err.kind() {
                GetStreamErrorKind::JetStream(e) if e.code() == 404 => EnqueueError::new(
                    EnqueueErrorKind::UnknownQueue,
                    format!("queue {name:?} does not exist (declare it first)"),
                ),
                // No answer, or 503 while JetStream elects a leader or restarts: like a lost
                // connection, worth retrying until the deadline.
                GetStreamErrorKind::Request => EnqueueError::with_source(
                    EnqueueErrorKind::NotConnected,
                    format!("cannot look up queue {name:?}"),
                    err,
                ),
                GetStreamErrorKind::JetStream(e) if e.code() == 503 => EnqueueError::with_source(
                    EnqueueErrorKind::NotConnected,
                    format!("JetStream is unavailable to look up queue {name:?}"),
                    err,
                ),
                _ => EnqueueError::with_source(
                    EnqueueErrorKind::Rejected,
                    format!("cannot look up queue {name:?}"),
                    err,
                ),
            })?;
        let config = &stream.cached_info().config;
        let metadata = &config.metadata;
        if metadata.get(topology::METADATA_PROTOCOL).is_none() {
            return Err(EnqueueError::new(
                EnqueueErrorKind::UnknownQueue,
                format!(
                    "stream {} exists but is not a jobfleet queue",
                    name.stream_name()
                ),
            ));
        }
        let max_attempts = metadata
            .get(topology::METADATA_WORKER)
            .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
            .and_then(|v| v.get("max_attempts")?.as_u64())
            .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let audit = metadata
            .get(topology::METADATA_AUDIT)
            .and_then(|level| AuditLevel::parse(level))
            .unwrap_or_default();
        Ok(Self {
            stream: Arc::from(name.stream_name()),
            ready_subject: name.ready_subject(),
            name,
            max_message_size: usize::try_from(config.max_message_size)
                .ok()
                .filter(|n| *n > 0),
            max_attempts,
            max_age: Some(config.max_age).filter(|age| !age.is_zero()),
            schedules: config.allow_message_schedules,
            audit,
            loaded: Instant::now(),
        })
    }
}

/// Queue facts by name, each reloaded after [`CACHE_TTL`].
#[derive(Debug, Default)]
pub(crate) struct QueueCache {
    entries: Mutex<HashMap<String, Arc<QueueInfo>>>,
}

impl QueueCache {
    /// The queue's facts, read from JetStream when not cached. Lookups that fail for want of
    /// a connection are retried until `deadline`, like publishes.
    pub(crate) async fn get(
        &self,
        publisher: &Publisher,
        name: &str,
    ) -> Result<Arc<QueueInfo>, EnqueueError> {
        if let Some(info) = self
            .lock()
            .get(name)
            .filter(|i| i.loaded.elapsed() < CACHE_TTL)
        {
            return Ok(Arc::clone(info));
        }
        let give_up = Instant::now() + publisher.deadline;
        let mut backoff = Duration::from_millis(50);
        let info = loop {
            let sent = Instant::now();
            match QueueInfo::load(&publisher.js, name).await {
                Err(err) if err.kind() == EnqueueErrorKind::NotConnected => {
                    let refused = QueueName::new(name).ok().and_then(|queue| {
                        let lookup = format!("$JS.API.STREAM.INFO.{}", queue.stream_name());
                        publisher.refusals.request_refused(sent, &lookup)
                    });
                    if let Some(why) = refused {
                        return Err(EnqueueError::new(
                            EnqueueErrorKind::Rejected,
                            format!("cannot look up queue {name:?}: {why}"),
                        ));
                    }
                    if Instant::now() + backoff >= give_up {
                        return Err(err);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                other => break Arc::new(other?),
            }
        };
        self.lock().insert(name.to_owned(), Arc::clone(&info));
        Ok(info)
    }

    /// Drops a queue's entry, after it turned out to be gone.
    pub(crate) fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<QueueInfo>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
