//! Inspecting and operating queues: list, stats, pause/resume, purge.
//!
//! Everything here is read from (or applied to) JetStream directly; there is no jobfleet
//! server state. Counters are point-in-time; rates come from comparing two snapshots
//! ([`QueueStats::rates_since`]).

use std::time::Duration;

use async_nats::jetstream::consumer;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{
    self, ConsumerErrorKind, DirectGetErrorKind, PurgeErrorKind, StorageType,
};
use futures::TryStreamExt;
use jobfleet_core::{QueueName, WorkerDefaults, topology};
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{QueueAdminError, QueueAdminErrorKind};

/// A queue's state at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// The queue's name.
    pub name: String,
    /// Free text from the declaration.
    pub description: Option<String>,
    /// Jobs ready to run, not yet handed to a worker.
    pub ready: u64,
    /// Jobs held by workers right now (delivered, not yet settled).
    pub in_flight: u64,
    /// Delayed jobs waiting for their time (and retries waiting as schedules).
    pub scheduled: u64,
    /// Jobs in the dead-letter stream.
    pub dead: u64,
    /// When the oldest ready job was stored; `None` when none is ready.
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_ready_at: Option<OffsetDateTime>,
    /// Age of the oldest ready job at [`observed_at`](Self::observed_at).
    #[serde(serialize_with = "serialize_seconds")]
    pub oldest_ready_age: Option<Duration>,
    /// Whether workers are paused (no jobs are handed out).
    pub paused: bool,
    /// Pull requests currently waiting on the queue: roughly the number of idle worker
    /// processes.
    pub waiting_pulls: u64,
    /// Messages ever stored in the work stream (enqueues, re-published retries, redrives).
    pub stored_total: u64,
    /// Messages ever removed from the work stream (settled, moved, purged).
    pub removed_total: u64,
    /// Jobs ever stored in the dead-letter stream.
    pub dead_total: u64,
    /// Bytes held by the work stream.
    pub bytes: u64,
    /// Stream copies kept by the cluster.
    pub replicas: usize,
    /// `file` or `memory`.
    pub storage: &'static str,
    /// Most jobs stored at once; `None` when unlimited.
    pub max_jobs: Option<u64>,
    /// Fleet-wide cap on jobs in flight.
    pub max_in_flight: u64,
    /// How long a worker may hold a job without a sign of life.
    #[serde(serialize_with = "serialize_seconds_plain")]
    pub ack_wait: Duration,
    /// The workers' defaults for this queue (attempts, retry schedule, timeout).
    pub worker: Option<WorkerDefaults>,
    /// When this snapshot was taken.
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
}

/// Rates between two snapshots of a queue, per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueueRates {
    /// Messages stored per second (enqueues and re-published retries).
    pub stored_per_sec: f64,
    /// Messages removed per second (mostly jobs that finished).
    pub removed_per_sec: f64,
    /// Jobs dead-lettered per second.
    pub dead_per_sec: f64,
    /// The interval the rates cover, in seconds.
    pub interval_secs: f64,
}

impl QueueStats {
    /// Rates of change from an `earlier` snapshot of the same queue; `None` when the
    /// snapshots are not in order.
    pub fn rates_since(&self, earlier: &QueueStats) -> Option<QueueRates> {
        let secs = (self.observed_at - earlier.observed_at).as_seconds_f64();
        if secs <= 0.0 {
            return None;
        }
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        Some(QueueRates {
            stored_per_sec: rate(self.stored_total, earlier.stored_total),
            removed_per_sec: rate(self.removed_total, earlier.removed_total),
            dead_per_sec: rate(self.dead_total, earlier.dead_total),
            interval_secs: secs,
        })
    }
}

fn serialize_seconds<S: serde::Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_some(&d.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}

fn serialize_seconds_plain<S: serde::Serializer>(
    value: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

fn parse_name(queue: &str) -> Result<QueueName, QueueAdminError> {
    QueueName::new(queue).map_err(|err| {
        QueueAdminError::with_source(
            QueueAdminErrorKind::UnknownQueue,
            format!("invalid queue name {queue:?}"),
            err,
        )
    })
}

/// `Rejected` when JetStream answered with an error, `Unavailable` when it did not answer.
fn refused_or_unavailable(
    refused: bool,
    what: String,
    err: impl Into<async_nats::Error>,
) -> QueueAdminError {
    let kind = if refused {
        QueueAdminErrorKind::Rejected
    } else {
        QueueAdminErrorKind::Unavailable
    };
    QueueAdminError::with_source(kind, what, err.into())
}

fn unavailable(what: String, err: impl Into<async_nats::Error>) -> QueueAdminError {
    QueueAdminError::with_source(QueueAdminErrorKind::Unavailable, what, err.into())
}

/// The work stream of `queue`, checked to be a jobfleet queue.
async fn queue_stream(
    js: &async_nats::jetstream::Context,
    name: &QueueName,
) -> Result<stream::Stream, QueueAdminError> {
    // `get_stream` reads the stream's info once; `cached_info` is that reading.
    let stream = js
        .get_stream(name.stream_name())
        .await
        .map_err(|err| match err.kind() {
            GetStreamErrorKind::JetStream(e) if e.code() == 404 => QueueAdminError::new(
                QueueAdminErrorKind::UnknownQueue,
                format!("queue {name:?} does not exist"),
            ),
            _ => unavailable(format!("cannot read queue {name:?}"), err),
        })?;
    let info = stream.cached_info();
    if !info
        .config
        .metadata
        .contains_key(topology::METADATA_PROTOCOL)
    {
        return Err(QueueAdminError::new(
            QueueAdminErrorKind::UnknownQueue,
            format!("stream {} is not a jobfleet queue", info.config.name),
        ));
    }
    Ok(stream)
}

/// The names of every jobfleet queue on the server, sorted.
///
/// # Errors
///
/// [`QueueAdminErrorKind::Unavailable`] when JetStream does not answer.
pub async fn list_queues(
    js: &async_nats::jetstream::Context,
) -> Result<Vec<String>, QueueAdminError> {
    let infos: Vec<stream::Info> = js
        .streams()
        .try_collect()
        .await
        .map_err(|err| unavailable("cannot list streams".to_owned(), err))?;
    let mut names: Vec<String> = infos
        .into_iter()
        .filter(|info| {
            info.config
                .metadata
                .contains_key(topology::METADATA_PROTOCOL)
        })
        .filter_map(|info| {
            let queue = info
                .config
                .name
                .strip_prefix(topology::QUEUE_STREAM_PREFIX)?;
            QueueName::new(queue).ok()?;
            Some(queue.to_owned())
        })
        .collect();
    names.sort();
    Ok(names)
}

/// A snapshot of `queue`: backlog, in flight, scheduled, dead, oldest waiting age, totals.
///
/// # Errors
///
/// [`QueueAdminErrorKind::UnknownQueue`] when there is no such queue; `Unavailable` when
/// JetStream does not answer.
pub async fn queue_stats(
    js: &async_nats::jetstream::Context,
    queue: &str,
) -> Result<QueueStats, QueueAdminError> {
    let name = parse_name(queue)?;
    let stream = queue_stream(js, &name).await?;
    let info = stream.cached_info().clone();
    let consumer: consumer::Info = stream
        .consumer_info(topology::WORKER_CONSUMER)
        .await
        .map_err(|err| unavailable(format!("cannot read the workers of queue {name:?}"), err))?;
    let (dead, dead_total) = match js.get_stream(name.dead_letter_stream_name()).await {
        Ok(mut dlq) => {
            let state = &dlq
                .info()
                .await
                .map_err(|err| unavailable(format!("cannot read dead letters of {name:?}"), err))?
                .state;
            (state.messages, state.last_sequence)
        }
        Err(err) if matches!(err.kind(), GetStreamErrorKind::JetStream(e) if e.code() == 404) => {
            (0, 0)
        }
        Err(err) => {
            return Err(unavailable(
                format!("cannot read dead letters of {name:?}"),
                err,
            ));
        }
    };
    let observed_at = OffsetDateTime::now_utc();
    let ready = consumer.num_pending;
    let in_flight = consumer.num_ack_pending as u64;
    let oldest_ready_at = if ready == 0 {
        None
    } else {
        match stream
            .direct_get_next_for_subject(
                name.ready_subject(),
                Some(consumer.delivered.stream_sequence + 1),
            )
            .await
        {
            Ok(message) => Some(message.time),
            Err(err) if err.kind() == DirectGetErrorKind::NotFound => None,
            Err(err) => {
                return Err(unavailable(
                    format!("cannot read the oldest job of {name:?}"),
                    err,
                ));
            }
        }
    };
    let worker = info
        .config
        .metadata
        .get(topology::METADATA_WORKER)
        .and_then(|json| serde_json::from_str(json).ok());
    Ok(QueueStats {
        name: name.to_string(),
        description: info.config.description.clone(),
        ready,
        in_flight,
        scheduled: info.state.messages.saturating_sub(ready + in_flight),
        dead,
        oldest_ready_at,
        oldest_ready_age: oldest_ready_at
            .map(|at| (observed_at - at).try_into().unwrap_or(Duration::ZERO)),
        paused: consumer.paused,
        waiting_pulls: consumer.num_waiting as u64,
        stored_total: info.state.last_sequence,
        removed_total: info.state.last_sequence.saturating_sub(info.state.messages),
        dead_total,
        bytes: info.state.bytes,
        replicas: info.config.num_replicas,
        storage: match info.config.storage {
            StorageType::Memory => "memory",
            StorageType::File => "file",
        },
        max_jobs: u64::try_from(info.config.max_messages).ok(),
        max_in_flight: u64::try_from(consumer.config.max_ack_pending).unwrap_or(0),
        ack_wait: consumer.config.ack_wait,
        worker,
        observed_at,
    })
}

/// Stops handing out `queue`'s jobs until [`resume_queue`] (or until `until`, when given).
/// Enqueueing goes on; running jobs finish. Returns whether the queue is now paused.
///
/// # Errors
///
/// [`QueueAdminErrorKind::UnknownQueue`]; `Unavailable`; `Rejected` when the server refuses
/// (pausing needs nats-server 2.11 or later).
pub async fn pause_queue(
    js: &async_nats::jetstream::Context,
    queue: &str,
    until: Option<OffsetDateTime>,
) -> Result<bool, QueueAdminError> {
    let name = parse_name(queue)?;
    let stream = queue_stream(js, &name).await?;
    // "Paused" without an end: far enough that nobody waits for it, within RFC 3339.
    let until = until.unwrap_or_else(|| OffsetDateTime::now_utc() + time::Duration::days(36_500));
    let response = stream
        .pause_consumer(topology::WORKER_CONSUMER, until)
        .await
        .map_err(|err| {
            let refused = matches!(err.kind(), ConsumerErrorKind::JetStream(_));
            refused_or_unavailable(refused, format!("cannot pause queue {name:?}"), err)
        })?;
    Ok(response.paused)
}

/// Lets workers take `queue`'s jobs again. Returns whether the queue is still paused.
///
/// # Errors
///
/// As [`pause_queue`].
pub async fn resume_queue(
    js: &async_nats::jetstream::Context,
    queue: &str,
) -> Result<bool, QueueAdminError> {
    let name = parse_name(queue)?;
    let stream = queue_stream(js, &name).await?;
    let response = stream
        .resume_consumer(topology::WORKER_CONSUMER)
        .await
        .map_err(|err| {
            let refused = matches!(err.kind(), ConsumerErrorKind::JetStream(_));
            refused_or_unavailable(refused, format!("cannot resume queue {name:?}"), err)
        })?;
    Ok(response.paused)
}

/// Deletes every job waiting in `queue` (ready and scheduled) and returns how many.
///
/// This destroys accepted work on purpose: purged jobs get no terminal audit event. Jobs
/// in flight may still finish (their acknowledgement then finds nothing to delete).
///
/// # Errors
///
/// [`QueueAdminErrorKind::UnknownQueue`]; `Unavailable`; `Rejected`.
pub async fn purge_queue(
    js: &async_nats::jetstream::Context,
    queue: &str,
) -> Result<u64, QueueAdminError> {
    let name = parse_name(queue)?;
    let stream = queue_stream(js, &name).await?;
    let response = stream.purge().await.map_err(|err| {
        let refused = matches!(err.kind(), PurgeErrorKind::JetStream(_));
        refused_or_unavailable(refused, format!("cannot purge queue {name:?}"), err)
    })?;
    Ok(response.purged)
}
