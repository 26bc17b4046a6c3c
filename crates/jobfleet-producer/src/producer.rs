//! The producer: enqueue single jobs and pipelined batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::HeaderMap;
use async_nats::header::{NATS_MESSAGE_ID, NATS_SCHEDULE, NATS_SCHEDULE_TARGET};
use async_nats::jetstream::{self, publish::PublishAck};
use futures::stream::{FuturesUnordered, StreamExt};
use jobfleet_core::{
    AuditEvent, AuditEventKind, JobId, JobMeta, QueueConfig, QueueFile, format_timestamp, topology,
};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::connect::ConnectOptions;
use crate::error::{ConnectError, EnqueueError, EnqueueErrorKind, ProvisionError};
use crate::job::Job;
use crate::provision::{Declared, declare_queue};
use crate::publish::{Failure, Outgoing, Publisher};
use crate::queue_info::{QueueCache, QueueInfo};
use crate::refusals::Refusals;

/// Publishes in flight at once during [`Producer::enqueue_batch`], by default.
pub const DEFAULT_BATCH_WINDOW: usize = 1024;

/// A job the queue has stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Enqueued {
    /// The job's id.
    pub id: jobfleet_core::JobId,
    /// The queue.
    pub queue: String,
    /// Sequence in the queue's stream (of the schedule, for a delayed job).
    pub sequence: u64,
    /// True when the job id was already stored within the duplicate window, so nothing new
    /// was stored (an idempotent repeat).
    pub duplicate: bool,
    /// When a delayed job becomes runnable.
    pub run_at: Option<OffsetDateTime>,
}

/// Counters about a producer's publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ProducerStats {
    /// Publish attempts repeated because an acknowledgement did not come.
    pub publish_retries: u64,
}

/// Enqueues jobs into jobfleet queues. Cheap to clone; clones share one connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use jobfleet_producer::{ConnectOptions, Job, Producer};
///
/// let producer = Producer::connect(ConnectOptions::from_env()).await?;
/// let job = producer.enqueue("emails", Job::json(&serde_json::json!({"to": "a@b.c"}))?).await?;
/// println!("stored {} at sequence {}", job.id, job.sequence);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    publisher: Publisher,
    queues: QueueCache,
    batch_window: usize,
}

impl Producer {
    /// Connects to NATS.
    ///
    /// # Errors
    ///
    /// [`ConnectError`] when the options are invalid, the server is unreachable, or it
    /// rejects the credentials.
    ///
    /// A publish or queue lookup the server refuses for want of permission fails at its
    /// first timeout with [`EnqueueErrorKind::Rejected`], naming the refused subject, rather
    /// than being retried until the enqueue deadline as an outage.
    pub async fn connect(options: ConnectOptions) -> Result<Self, ConnectError> {
        let refusals = Arc::new(Refusals::new(options.reply_prefix()));
        let client = options
            .connect_recording(Some(Arc::clone(&refusals)))
            .await?;
        Ok(Self::build(client, &options, refusals))
    }

    /// A producer on an existing connection, with the timeouts of `options` (its address and
    /// credentials are not used). The server's permission refusals are not visible on a
    /// connection made elsewhere, so a refused enqueue fails only at the enqueue deadline.
    pub fn with_client(client: async_nats::Client, options: &ConnectOptions) -> Self {
        let refusals = Arc::new(Refusals::new(options.reply_prefix()));
        Self::build(client, options, refusals)
    }

    fn build(
        client: async_nats::Client,
        options: &ConnectOptions,
        refusals: Arc<Refusals>,
    ) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(options.publish_timeout)
            .max_ack_inflight(DEFAULT_BATCH_WINDOW * 8)
            .build(client.clone());
        Self {
            inner: Arc::new(Inner {
                publisher: Publisher {
                    client,
                    js,
                    deadline: options.enqueue_deadline,
                    retries: AtomicU64::new(0),
                    refusals,
                },
                queues: QueueCache::default(),
                batch_window: DEFAULT_BATCH_WINDOW,
            }),
        }
    }

    /// The underlying NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.publisher.client
    }

    /// The underlying JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.publisher.js
    }

    /// Counters since this producer was created.
    pub fn stats(&self) -> ProducerStats {
        ProducerStats {
            publish_retries: self.inner.publisher.retries.load(Ordering::Relaxed),
        }
    }

    /// Creates or updates a queue (see [`crate::declare_queue`]).
    ///
    /// # Errors
    ///
    /// [`ProvisionError`] when the declaration is invalid or JetStream refuses it.
    pub async fn declare_queue(&self, config: &QueueConfig) -> Result<Declared, ProvisionError> {
        let declared = declare_queue(self.jetstream(), config).await?;
        self.inner.queues.forget(&config.name);
        Ok(declared)
    }

    /// Declares every queue of a [`QueueFile`], in order.
    ///
    /// # Errors
    ///
    /// The first queue's [`ProvisionError`]; queues before it are declared.
    pub async fn declare_queues(&self, file: &QueueFile) -> Result<Vec<Declared>, ProvisionError> {
        let mut out = Vec::with_capacity(file.queue.len());
        for queue in &file.queue {
            out.push(self.declare_queue(queue).await?);
        }
        Ok(out)
    }

    /// Enqueues one job, returning once JetStream has stored it.
    ///
    /// # Errors
    ///
    /// [`EnqueueError`]; its kind tells unknown queue, payload too large, stream full,
    /// invalid option, not connected, timeout and rejection apart.
    pub async fn enqueue(&self, queue: &str, job: Job) -> Result<Enqueued, EnqueueError> {
        let info = self.queue(queue).await?;
        let (meta, outgoing) = prepare(&info, &job, OffsetDateTime::now_utc())?;
        match self.inner.publisher.publish(&outgoing).await {
            Ok((ack, resent)) => Ok(self.accepted(&info, meta, &job, &ack, resent).await),
            Err(err) => {
                self.on_error(queue, &err);
                Err(err.for_job(meta.id))
            }
        }
    }

    /// Checks `jobs` against `queue` as [`Producer::enqueue`] would (options, payload size,
    /// delays the queue accepts) without storing anything: for callers that want a batch
    /// stored whole or refused whole. Returns the index and error of the first invalid job.
    ///
    /// # Errors
    ///
    /// The outer error when the queue itself cannot be used (e.g. `UnknownQueue`).
    pub async fn check<'a>(
        &self,
        queue: &str,
        jobs: impl IntoIterator<Item = &'a Job>,
    ) -> Result<Result<(), (usize, EnqueueError)>, EnqueueError> {
        let info = self.queue(queue).await?;
        let now = OffsetDateTime::now_utc();
        for (index, job) in jobs.into_iter().enumerate() {
            if let Err(err) = prepare(&info, job, now) {
                return Ok(Err((index, err)));
            }
        }
        Ok(Ok(()))
    }

    /// Enqueues many jobs into one queue, pipelining up to 1024 publishes at once.
    ///
    /// Returns one result per job, in input order: each job is stored or not on its own. If
    /// the connection fails mid-batch, sending pauses; jobs not yet sent when no progress
    /// was made for the enqueue deadline fail with `NotConnected` (they were not stored).
    ///
    /// # Errors
    ///
    /// The outer error only when the queue itself cannot be used (e.g. `UnknownQueue`);
    /// then nothing was published.
    pub async fn enqueue_batch(
        &self,
        queue: &str,
        jobs: impl IntoIterator<Item = Job>,
    ) -> Result<Vec<Result<Enqueued, EnqueueError>>, EnqueueError> {
        let info = self.queue(queue).await?;
        let now = OffsetDateTime::now_utc();
        let jobs = jobs.into_iter();
        let mut results: Vec<Option<Result<Enqueued, EnqueueError>>> = Vec::new();
        results.resize_with(jobs.size_hint().0, || None);

        let publisher = &self.inner.publisher;
        let info_ref = &info;
        let mut in_flight = FuturesUnordered::new();
        let mut jobs = jobs.enumerate();
        // Set when a publish fails for want of a connection: stop sending until the jobs in
        // flight are settled, then resume only if the connection made progress meanwhile.
        let mut stalled = false;
        let mut last_progress = Instant::now();
        let started = std::time::Instant::now();
        loop {
            // Jobs are prepared as they are sent, so a large batch is never held twice.
            while !stalled && in_flight.len() < self.inner.batch_window {
                let Some((index, job)) = jobs.next() else {
                    break;
                };
                if index >= results.len() {
                    results.push(None);
                }
                let prepared = job
                    .prepare(&info.name, info.max_attempts, info.max_age, now)
                    .and_then(|meta| {
                        let msg = outgoing(&info, &meta, &job)?;
                        Ok((meta, msg))
                    });
                let (meta, msg) = match prepared {
                    Ok(prepared) => prepared,
                    Err(err) => {
                        results[index] = Some(Err(err));
                        continue;
                    }
                };
                // Once the server has refused a subject, the rest of the batch for it is
                // refused without sending (and without waiting out a timeout each).
                if let Some(refused) = publisher.refused(started, &msg.subject) {
                    results[index] = Some(Err(refused.for_job(meta.id)));
                    continue;
                }
                let sent = std::time::Instant::now();
                let first = publisher.send(msg).await;
                stalled = matches!(first, Err(Failure::Retry(_)));
                in_flight.push(async move {
                    let attempt = match first {
                        Ok(ack) => ack.await.map_err(crate::publish::classify),
                        Err(failure) => Err(failure),
                    };
                    let (result, hiccup) = match attempt {
                        Ok(ack) => (Ok((ack, false)), false),
                        Err(Failure::Fatal(err)) => (Err(err), false),
                        // Rebuild the message (same id) and run the full retry loop, boxed
                        // so that the common path's future stays small; unless the server
                        // refused it.
                        Err(Failure::Retry(_)) => match outgoing(info_ref, &meta, &job) {
                            Ok(msg)
                                if let Some(refused) = publisher.refused(sent, &msg.subject) =>
                            {
                                (Err(refused), false)
                            }
                            Ok(msg) => (
                                Box::pin(publisher.publish(&msg))
                                    .await
                                    .map(|(ack, _)| (ack, true)),
                                true,
                            ),
                            Err(err) => (Err(err), true),
                        },
                    };
                    (index, meta, job, result, hiccup)
                });
            }
            match in_flight.next().await {
                Some((index, meta, job, result, hiccup)) => {
                    stalled |= hiccup;
                    results[index] = Some(match result {
                        Ok((ack, resent)) => {
                            last_progress = Instant::now();
                            Ok(self.accepted(&info, meta, &job, &ack, resent).await)
                        }
                        Err(err) => {
                            self.on_error(queue, &err);
                            Err(err.for_job(meta.id))
                        }
                    });
                }
                None if !stalled => break,
                None => {
                    let connected = self.client().connection_state()
                        == async_nats::connection::State::Connected;
                    if connected && last_progress.elapsed() < publisher.deadline {
                        stalled = false;
                        continue;
                    }
                    for (index, job) in jobs.by_ref() {
                        if index >= results.len() {
                            results.push(None);
                        }
                        let id = job
                            .idempotency_key
                            .as_deref()
                            .map_or(job.id, |k| JobId::from_idempotency_key(&info.name, k));
                        results[index] = Some(Err(EnqueueError::new(
                            EnqueueErrorKind::NotConnected,
                            "not sent: the connection to NATS failed during the batch and did not recover in time",
                        )
                        .for_job(id)));
                    }
                    break;
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every job has a result"))
            .collect())
    }

    async fn queue(&self, name: &str) -> Result<Arc<QueueInfo>, EnqueueError> {
        self.inner.queues.get(&self.inner.publisher, name).await
    }

    fn on_error(&self, queue: &str, err: &EnqueueError) {
        if err.kind() == EnqueueErrorKind::UnknownQueue {
            self.inner.queues.forget(queue);
        }
    }

    /// Records the `enqueued` audit event (when the queue's level asks for it) and builds the
    /// result. The audit publish is not awaited: `enqueued` is informational, and waiting
    /// would double the enqueue latency. Terminal events are the workers' and are awaited.
    ///
    /// `resent`: the job was published more than once, so a `duplicate` acknowledgement may
    /// be of this very call's first copy. For an id this call minted (no idempotency key, no
    /// explicit id) that is certain, and the job is reported as new.
    async fn accepted(
        &self,
        info: &QueueInfo,
        meta: JobMeta,
        job: &Job,
        ack: &PublishAck,
        resent: bool,
    ) -> Enqueued {
        let minted_here = job.idempotency_key.is_none() && !job.explicit_id;
        let duplicate = ack.duplicate && !(resent && minted_here);
        // After a resend the event is written even for a duplicate: its message id makes a
        // repeat harmless, and skipping it could leave the job without one.
        if (!ack.duplicate || resent) && info.audit.records(AuditEventKind::Enqueued) {
            let mut event = AuditEvent::new(
                AuditEventKind::Enqueued,
                meta.id,
                info.name.as_str(),
                meta.enqueued_at,
                0,
            );
            event.stream_seq = Some(ack.sequence);
            event.job_type.clone_from(&meta.job_type);
            event.run_at = meta.run_at;
            self.publish_audit(&event).await;
        }
        Enqueued {
            id: meta.id,
            queue: info.name.as_str().to_owned(),
            sequence: ack.sequence,
            duplicate,
            run_at: meta.run_at,
        }
    }

    async fn publish_audit(&self, event: &AuditEvent) {
        let payload = match serde_json::to_vec(event) {
            Ok(json) => json,
            Err(err) => return tracing::warn!(error = %err, "cannot encode audit event"),
        };
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, event.message_id().as_str());
        let outgoing = Outgoing {
            stream: Arc::from(topology::AUDIT_STREAM),
            subject: topology::audit_subject(&event.job_id),
            headers,
            payload: payload.into(),
        };
        // Dropping the acknowledgement future hands it to async-nats' background acker.
        let failure = match self.inner.publisher.send(outgoing).await {
            Ok(ack) => return drop(ack),
            Err(Failure::Retry(err)) => err.to_string(),
            Err(Failure::Fatal(err)) => err.to_string(),
        };
        tracing::warn!(job_id = %event.job_id, error = %failure, "cannot record enqueued audit event");
    }
}

/// Validates a job and turns it into its metadata and the message to publish.
fn prepare(
    info: &QueueInfo,
    job: &Job,
    now: OffsetDateTime,
) -> Result<(JobMeta, Outgoing), EnqueueError> {
    let meta = job.prepare(&info.name, info.max_attempts, info.max_age, now)?;
    let msg = outgoing(info, &meta, job)?;
    Ok((meta, msg))
}

/// The message that enqueues `job` with metadata `meta` (the same every time it is built).
fn outgoing(info: &QueueInfo, meta: &JobMeta, job: &Job) -> Result<Outgoing, EnqueueError> {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, meta.id.to_string());
    let pairs = if meta.run_at.is_some() {
        meta.to_headers()
    } else {
        meta.to_enqueue_headers()
    };
    for (name, value) in pairs {
        headers.insert(name, value);
    }
    for (name, value) in &job.headers {
        headers.append(name.as_str(), value.as_str());
    }
    let subject = match meta.run_at {
        Some(_) if !info.schedules => {
            return Err(EnqueueError::new(
                EnqueueErrorKind::InvalidOption,
                format!(
                    "queue {} is bounded (max_messages or max_bytes), and bounded queues cannot hold delayed jobs",
                    info.name
                ),
            ));
        }
        Some(run_at) => {
            headers.insert(
                NATS_SCHEDULE,
                format!("@at {}", format_timestamp(run_at)).as_str(),
            );
            headers.insert(NATS_SCHEDULE_TARGET, info.ready_subject.as_str());
            info.name.schedule_subject(&meta.id)
        }
        None => info.ready_subject.clone(),
    };
    if let Some(limit) = info.max_message_size {
        let size = job.payload.len() + header_bytes(&headers);
        if size > limit {
            return Err(EnqueueError::new(
                EnqueueErrorKind::PayloadTooLarge,
                format!(
                    "the job is {size} bytes; queue {} accepts at most {limit}",
                    info.name
                ),
            ));
        }
    }
    Ok(Outgoing {
        stream: Arc::clone(&info.stream),
        subject,
        headers,
        payload: job.payload.clone(),
    })
}

/// Bytes the headers take on the wire (`NATS/1.0\r\n`, `name: value\r\n` each, `\r\n`).
fn header_bytes(headers: &HeaderMap) -> usize {
    12 + headers
        .iter()
        .map(|(name, values)| {
            values
                .iter()
                .map(|v| AsRef::<str>::as_ref(name).len() + 2 + v.as_str().len() + 2)
                .sum::<usize>()
        })
        .sum::<usize>()
}
