//! Running one delivery: decode, guard attempts, keep the lease, run the handler under its
//! timeout with panic capture, then settle the outcome (the only place outcomes become acks).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::header::{NATS_MESSAGE_ID, NATS_SCHEDULE, NATS_SCHEDULE_TARGET};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, AckKind};
use futures::FutureExt;
use jobfleet_core::{AuditEvent, AuditEventKind, JobMeta, format_timestamp, headers};
use time::OffsetDateTime;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::audit::AuditSink;
use crate::context::JobContext;
use crate::copy_headers::carried_headers;
use crate::dead_letter::{Death, publish_dead_letter};
use crate::failpoint::Failpoint;
use crate::handler::Handler;
use crate::lease::Lease;
use crate::outcome::{HandlerError, Outcome};
use crate::settings::QueueSettings;
use crate::stats::WorkerStats;

/// Everything the jobs of one worker share.
pub(crate) struct Runtime {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) settings: QueueSettings,
    /// The queue's name, shared with every job's context.
    pub(crate) queue: Arc<str>,
    pub(crate) schedules: bool,
    /// The work stream's age limit: a scheduled retry must fire before it.
    pub(crate) max_age: Option<Duration>,
    pub(crate) audit: AuditSink,
    /// Where `JobContext::progress` reports go; `None` unless the audit level is `full`.
    pub(crate) progress: Option<Arc<crate::context::ProgressSink>>,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) worker_id: String,
    pub(crate) stats: Arc<WorkerStats>,
    /// Renews the leases of the deliveries being worked.
    pub(crate) leases: Arc<crate::lease::LeaseKeeper>,
    /// Cancelled when the shutdown grace period is over: unfinished jobs are handed back.
    pub(crate) abort: CancellationToken,
    /// Fault-injection hooks (feature `failpoints`; empty otherwise).
    pub(crate) failpoints: crate::failpoint::Failpoints,
}

/// Longest delay a scheduled retry may have (the protocol's one-year cap).
const MAX_SCHEDULED_DELAY: Duration = Duration::from_secs(366 * 24 * 3600);
/// Tries to store a retry schedule while its outcome is unknown.
const SCHEDULE_TRIES: usize = 5;

/// How publishing a retry schedule went.
enum Sent {
    Stored,
    Refused(String),
    Unknown(String),
}

/// What an attempt came to.
enum Verdict {
    Success(Option<serde_json::Value>),
    Retry {
        after: Option<Duration>,
        error: String,
    },
    Dead {
        reason: String,
    },
}

/// The facts of one delivery.
struct Delivery {
    message: jetstream::Message,
    meta: JobMeta,
    attempt: u32,
    max_attempts: u32,
    sequence: u64,
}

impl Runtime {
    /// Processes one delivery; `permit` is its handler slot, released as soon as the handler
    /// is done (settling, i.e. the terminal audit event and the ack, runs after that without
    /// holding a slot: it waits on the server, not on this process, and the consumer's
    /// `max_ack_pending` bounds how many jobs are unsettled).
    pub(crate) async fn process(
        self: Arc<Self>,
        message: jetstream::Message,
        permit: OwnedSemaphorePermit,
    ) {
        let _in_flight = InFlight::enter(Arc::clone(&self.stats));
        let Ok(info) = message.info() else {
            // Not a JetStream delivery (unparsable ack subject): nothing to run it by.
            tracing::error!(subject = %message.subject, "delivery without JetStream metadata");
            let reason = "delivery without JetStream metadata";
            return Box::pin(self.dead_letter_raw(message, None, reason, 0, 0)).await;
        };
        let (sequence, delivered, published) =
            (info.stream_sequence, info.delivered, info.published);
        let delivered = u32::try_from(delivered).unwrap_or(u32::MAX);
        let decoded = decode_meta(&message, published);
        let meta = match decoded {
            Ok(meta) => meta,
            Err(err) => {
                let reason = format!("malformed job: {err}");
                return Box::pin(
                    self.dead_letter_malformed(message, &reason, delivered, sequence, published),
                )
                .await;
            }
        };
        // A job may lower the queue's limit, never raise it (the consumer's max_deliver is
        // sized from the queue's).
        let queue_limit = self.settings.worker.max_attempts;
        let max_attempts = meta
            .max_attempts
            .map_or(queue_limit, |m| m.min(queue_limit));
        let attempt = meta.prior_attempts.saturating_add(delivered);
        let delivery = Delivery {
            message,
            meta,
            attempt,
            max_attempts,
            sequence,
        };
        if delivered > 1 && Box::pin(self.already_finished(&delivery)).await {
            return;
        }
        if attempt > max_attempts {
            // The previous attempt never reported back (its worker died): do not run it again.
            let reason = format!(
                "attempts exhausted: attempt {attempt} of {max_attempts} (the previous attempt did not finish)"
            );
            return Box::pin(self.settle(delivery, Verdict::Dead { reason }, None)).await;
        }
        self.run(delivery, permit).await;
    }

    /// On a redelivery, whether the job already ended in this life (its worker recorded the
    /// terminal event but died, or its ack was lost, before the ack reached the server): then
    /// the delivery is settled the same way again, without running the job a second time.
    /// One read of the job's last audit event, on redeliveries only.
    async fn already_finished(&self, delivery: &Delivery) -> bool {
        if !self.audit.wants(AuditEventKind::Succeeded) {
            return false;
        }
        let Ok(Some(status)) = crate::status::job_status(&self.js, delivery.meta.id).await else {
            return false;
        };
        if !status.is_finished() || status.last.life != delivery.meta.life {
            return false;
        }
        tracing::info!(job_id = %delivery.meta.id, event = status.last.event.as_str(), "redelivered after it ended; settling again without running");
        let settled = if status.last.event == AuditEventKind::Succeeded {
            delivery.message.double_ack().await
        } else {
            // Its dead-letter copy exists (it is written before the terminal event).
            delivery.message.double_ack_with(AckKind::Term).await
        };
        if let Err(err) = settled {
            tracing::warn!(job_id = %delivery.meta.id, error = %err, "settling a finished job's redelivery not confirmed");
        }
        true
    }

    /// Runs one attempt with its lease kept alive from start to final acknowledgement
    /// (settling waits on audit and dead-letter publishes, which can outlast a short lease).
    async fn run(self: Arc<Self>, delivery: Delivery, permit: OwnedSemaphorePermit) {
        let lease = Lease::new(self.client.clone(), delivery.message.reply.clone());
        let _held = self.leases.hold(delivery.message.reply.as_ref());
        Arc::clone(&self).attempt(delivery, lease, permit).await;
    }

    async fn attempt(
        self: Arc<Self>,
        delivery: Delivery,
        lease: Lease,
        permit: OwnedSemaphorePermit,
    ) {
        let timeout = delivery
            .meta
            .timeout
            .unwrap_or(self.settings.worker.timeout);
        WorkerStats::bump(&self.stats.started);
        if delivery.attempt == delivery.meta.prior_attempts + 1 {
            // First delivery of this incarnation: how long it waited to be picked up.
            let ready_at = delivery.meta.run_at.unwrap_or(delivery.meta.enqueued_at);
            let waited = OffsetDateTime::now_utc() - ready_at;
            self.stats
                .queue_wait
                .observe(Duration::try_from(waited).unwrap_or_default());
        }
        if self.audit.wants(AuditEventKind::Started) {
            self.audit
                .record(&self.event(&delivery, AuditEventKind::Started))
                .await;
        }

        let cancel = CancellationToken::new();
        let context = JobContext {
            meta: delivery.meta.clone(),
            queue: Arc::clone(&self.queue),
            attempt: delivery.attempt,
            max_attempts: delivery.max_attempts,
            timeout,
            stream_sequence: delivery.sequence,
            payload: delivery.message.payload.clone(),
            headers: delivery.message.headers.clone().unwrap_or_default(),
            cancel: cancel.clone(),
            lease,
            progress: self.progress.clone(),
        };
        // The job's span carries the producer's trace id, so logs of an attempt join its trace.
        let span = tracing::info_span!(
            "job",
            job_id = %delivery.meta.id,
            queue = %self.settings.name,
            attempt = delivery.attempt,
            trace_id = delivery.meta.trace_id().unwrap_or(""),
        );
        // Exported spans (with an OpenTelemetry layer) are children of the producer's span;
        // without such a layer this is a type-id check.
        if let Some(traceparent) = &delivery.meta.traceparent {
            jobfleet_telemetry::set_remote_parent(
                &span,
                traceparent,
                delivery.meta.tracestate.as_deref(),
            );
        }
        let started = Instant::now();
        // The call itself inside the unwind guard: a handler may panic before its future exists.
        let call = {
            let handler = Arc::clone(&self.handler);
            async move { handler.call(context).await }
        };
        let handler = AssertUnwindSafe(call.instrument(span.clone())).catch_unwind();
        let result = tokio::select! {
            result = tokio::time::timeout(timeout, handler) => Some(result),
            () = self.abort.cancelled() => None,
        };
        cancel.cancel();
        drop(permit);
        let elapsed = started.elapsed();
        self.stats.handler_duration.observe(elapsed);
        let _entered = span.enter();
        let verdict = match result {
            None => return Box::pin(self.release(delivery)).await,
            Some(Err(_elapsed)) => retry_on(
                HandlerError::new(format!("timed out after {timeout:?}")).with_class("Timeout"),
            ),
            Some(Ok(Err(panic))) => {
                retry_on(HandlerError::new(panic_message(&*panic)).with_class("Panic"))
            }
            Some(Ok(Ok(Err(error)))) if error.is_permanent() => Verdict::Dead {
                reason: error.to_string(),
            },
            Some(Ok(Ok(Err(error)))) => retry_on(error),
            Some(Ok(Ok(Ok(outcome)))) => match outcome {
                Outcome::Done => Verdict::Success(None),
                Outcome::DoneWith(value) => Verdict::Success(Some(value)),
                Outcome::Retry { after } => Verdict::Retry {
                    after,
                    error: "retry requested by the handler".to_owned(),
                },
                Outcome::Fail { reason } => Verdict::Dead { reason },
            },
        };
        drop(_entered);
        self.settle(delivery, verdict, Some(elapsed)).await;
    }

    /// Maps a verdict to acknowledgements and audit events: the one place that does.
    async fn settle(&self, delivery: Delivery, verdict: Verdict, elapsed: Option<Duration>) {
        let verdict = match verdict {
            Verdict::Retry { error, .. } if delivery.attempt >= delivery.max_attempts => {
                Verdict::Dead {
                    reason: format!("attempts exhausted ({}): {error}", delivery.max_attempts),
                }
            }
            other => other,
        };
        let duration_ms = elapsed.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        match verdict {
            Verdict::Success(result) => {
                if self.audit.wants(AuditEventKind::Succeeded) {
                    let mut event = self.event(&delivery, AuditEventKind::Succeeded);
                    event.duration_ms = duration_ms;
                    event.result = result;
                    // The terminal event first: if this worker dies before the ack, the
                    // redelivery finds it and is acked without running again.
                    if !Box::pin(self.audit.record(&event)).await {
                        return Box::pin(self.keep_for_later(&delivery)).await;
                    }
                    self.failpoints.hit(
                        Failpoint::AfterTerminalEventStored,
                        delivery.meta.id,
                        delivery.attempt,
                    );
                }
                if let Err(err) = delivery.message.ack().await {
                    tracing::warn!(job_id = %delivery.meta.id, error = %err, "ack not sent; the job will run again");
                }
                WorkerStats::bump(&self.stats.succeeded);
            }
            Verdict::Retry { after, error } => {
                let delay = after.unwrap_or_else(|| {
                    self.settings
                        .worker
                        .backoff
                        .delay(delivery.attempt, delivery.meta.id.jitter_seed())
                });
                let mut event = self.event(&delivery, AuditEventKind::Retried);
                event.duration_ms = duration_ms;
                event.error = Some(error);
                event.retry_in_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                self.audit.record(&event).await;
                // Boxed, like every rare path here, so the future spawned per job stays small.
                Box::pin(self.retry(&delivery, delay)).await;
                WorkerStats::bump(&self.stats.retried);
            }
            Verdict::Dead { reason } => {
                let mut event = self.event(&delivery, AuditEventKind::DeadLettered);
                event.duration_ms = duration_ms;
                event.error = Some(reason.clone());
                let headers = delivery.message.headers.clone().unwrap_or_default();
                let attempts = delivery.attempt.min(delivery.max_attempts);
                let Delivery {
                    message,
                    meta,
                    sequence,
                    ..
                } = delivery;
                Box::pin(self.finish_dead(
                    message,
                    Some(&meta),
                    &headers,
                    &reason,
                    attempts,
                    sequence,
                    Some(event),
                ))
                .await;
            }
        }
    }

    /// Schedules the next attempt: a delayed NAK for short delays; for long ones a one-shot
    /// schedule carrying the attempts used so far, stored before this delivery is acked.
    async fn retry(&self, delivery: &Delivery, delay: Duration) {
        if delay <= self.settings.worker.nak_delay_limit || !self.schedules {
            if let Err(err) = delivery.message.ack_with(AckKind::Nak(Some(delay))).await {
                tracing::warn!(job_id = %delivery.meta.id, error = %err, "nak not sent; redelivered after the lease");
            }
            return;
        }
        // A schedule is a message like any other: it must fire before the stream's max_age
        // deletes it, and within the protocol's one-year cap. Retrying early beats losing it.
        let limit = self.max_age.map_or(MAX_SCHEDULED_DELAY, |age| {
            age.saturating_sub(Duration::from_secs(60))
                .min(MAX_SCHEDULED_DELAY)
        });
        let delay = delay.min(limit).max(Duration::from_millis(1));
        let Some(run_at) = OffsetDateTime::now_utc()
            .checked_add(time::Duration::try_from(delay).unwrap_or(time::Duration::ZERO))
        else {
            let _ = delivery
                .message
                .ack_with(AckKind::Nak(Some(self.settings.worker.nak_delay_limit)))
                .await;
            return;
        };
        let mut meta = delivery.meta.clone();
        meta.prior_attempts = delivery.attempt;
        meta.run_at = Some(run_at);
        let mut headers = carried_headers(delivery.message.headers.as_ref(), false);
        for (name, value) in meta.to_headers() {
            headers.insert(name, value);
        }
        headers.insert(NATS_SCHEDULE, format!("@at {}", format_timestamp(run_at)));
        headers.insert(NATS_SCHEDULE_TARGET, self.settings.name.ready_subject());
        headers.insert(
            NATS_MESSAGE_ID,
            format!("{}.retry.{}", meta.id, delivery.attempt),
        );
        let subject = self.settings.name.schedule_subject(&meta.id);
        // Until a definite answer: a timed-out publish may be stored, and falling back to a
        // NAK then would leave two live copies of the job. The message id dedupes repeats.
        let mut backoff = Duration::from_millis(100);
        let mut sent = Sent::Unknown(String::new());
        for _ in 0..SCHEDULE_TRIES {
            let publish = self.js.publish_with_headers(
                subject.clone(),
                headers.clone(),
                delivery.message.payload.clone(),
            );
            sent = match publish.await {
                Ok(ack) => match ack.await {
                    Ok(_) => Sent::Stored,
                    Err(err)
                        if matches!(
                            err.kind(),
                            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
                        ) =>
                    {
                        Sent::Unknown(err.to_string())
                    }
                    Err(err) => Sent::Refused(err.to_string()),
                },
                Err(err) => Sent::Unknown(err.to_string()),
            };
            if !matches!(sent, Sent::Unknown(_)) {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        match sent {
            Sent::Stored => {
                // Confirmed, so that a lost ack cannot leave the original to run as well.
                if let Err(err) = delivery.message.double_ack().await {
                    tracing::warn!(job_id = %meta.id, error = %err, "ack after scheduling a retry not confirmed");
                }
            }
            Sent::Refused(err) | Sent::Unknown(err) => {
                // Keep the job with a delayed NAK, capped so its slot frees soon. After an
                // unknown outcome the schedule may exist too: at-least-once, not exactly-once.
                tracing::warn!(job_id = %meta.id, error = %err, "retry schedule not stored; using a delayed nak");
                let _ = delivery
                    .message
                    .ack_with(AckKind::Nak(Some(self.settings.worker.nak_delay_limit)))
                    .await;
            }
        }
    }

    /// Dead-letters a job whose headers do not decode. If its id still reads, the copy is
    /// filed under that id and the job gets its terminal audit event like any other.
    async fn dead_letter_malformed(
        &self,
        message: jetstream::Message,
        reason: &str,
        delivered: u32,
        sequence: u64,
        published: OffsetDateTime,
    ) {
        let headers = message.headers.clone().unwrap_or_default();
        let id = [headers::JOB_ID, headers::NATS_MSG_ID]
            .into_iter()
            .find_map(|name| {
                headers
                    .get(name)?
                    .as_str()
                    .trim()
                    .parse::<jobfleet_core::JobId>()
                    .ok()
            });
        let Some(id) = id else {
            return self
                .finish_dead(message, None, &headers, reason, delivered, sequence, None)
                .await;
        };
        let meta = JobMeta::new(id, published);
        let mut event = AuditEvent::new(
            AuditEventKind::DeadLettered,
            id,
            self.settings.name.as_str(),
            OffsetDateTime::now_utc(),
            delivered,
        );
        event.stream_seq = Some(sequence);
        event.worker = Some(self.worker_id.clone());
        event.error = Some(reason.to_owned());
        self.finish_dead(
            message,
            Some(&meta),
            &headers,
            reason,
            delivered,
            sequence,
            Some(event),
        )
        .await;
    }

    /// Dead-letters a delivery whose headers could not be decoded.
    async fn dead_letter_raw(
        &self,
        message: jetstream::Message,
        meta: Option<&JobMeta>,
        reason: &str,
        attempts: u32,
        sequence: u64,
    ) {
        let headers = message.headers.clone().unwrap_or_default();
        self.finish_dead(message, meta, &headers, reason, attempts, sequence, None)
            .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_dead(
        &self,
        message: jetstream::Message,
        meta: Option<&JobMeta>,
        headers: &HeaderMap,
        reason: &str,
        attempts: u32,
        sequence: u64,
        event: Option<AuditEvent>,
    ) {
        let death = Death {
            reason,
            attempts,
            stream_sequence: sequence,
        };
        let payload = message.payload.clone();
        if let Err(err) = publish_dead_letter(
            &self.js,
            &self.settings.name,
            meta,
            headers,
            payload,
            &death,
        )
        .await
        {
            // Not stored: the job must stay. It comes back after a short delay.
            tracing::error!(sequence, error = %err, "dead-letter copy not stored; job kept");
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            return;
        }
        let attempt = event.as_ref().map_or(attempts, |e| e.attempt);
        if let Some(meta) = meta {
            self.failpoints
                .hit(Failpoint::AfterDeadLetterStored, meta.id, attempt);
        }
        let recorded = event.is_some();
        if let Some(event) = event
            && !self.audit.record(&event).await
        {
            tracing::error!(
                sequence,
                "terminal audit event not stored; the job will be offered again"
            );
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            return;
        }
        if recorded && let Some(meta) = meta {
            self.failpoints
                .hit(Failpoint::AfterTerminalEventStored, meta.id, attempt);
        }
        if let Err(err) = message.double_ack_with(AckKind::Term).await {
            tracing::warn!(sequence, error = %err, "terminate after dead-lettering not confirmed");
        }
        WorkerStats::bump(&self.stats.dead_lettered);
        tracing::warn!(sequence, reason, "job dead-lettered");
    }

    /// A terminal event could not be stored: the job is not settled now, but offered again
    /// shortly (a delayed NAK), so no job ends without its terminal event.
    async fn keep_for_later(&self, delivery: &Delivery) {
        tracing::error!(job_id = %delivery.meta.id, "terminal audit event not stored; the job will be offered again");
        let _ = delivery
            .message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await;
    }

    /// Hands an unfinished job back at shutdown, for another worker to run now.
    async fn release(&self, delivery: Delivery) {
        self.hand_back(delivery.message).await;
        WorkerStats::bump(&self.stats.released);
    }

    /// Gives a delivery back to the queue without using up an attempt (a NAK would: the
    /// delivery already counted). A copy goes back on the ready subject with this delivery
    /// not counted in `Jobfleet-Prior-Attempts`, then the delivery is acked; a plain NAK is
    /// the fallback when the copy cannot be stored.
    pub(crate) async fn hand_back(&self, message: jetstream::Message) {
        let copied = async {
            let info = message.info().map_err(|e| e.to_string())?;
            let (sequence, delivered) = (
                info.stream_sequence,
                u32::try_from(info.delivered).unwrap_or(u32::MAX),
            );
            let mut meta = decode_meta(&message, info.published).map_err(|e| e.to_string())?;
            meta.prior_attempts = meta
                .prior_attempts
                .saturating_add(delivered.saturating_sub(1));
            let mut headers = carried_headers(message.headers.as_ref(), false);
            for (name, value) in meta.to_headers() {
                headers.insert(name, value);
            }
            headers.insert(
                NATS_MESSAGE_ID,
                format!("{}.release.{sequence}.{delivered}", meta.id),
            );
            let ack = self
                .js
                .publish_with_headers(
                    self.settings.name.ready_subject(),
                    headers,
                    message.payload.clone(),
                )
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map(drop).map_err(|e| e.to_string())
        };
        match copied.await {
            Ok(()) => {
                if let Err(err) = message.double_ack().await {
                    tracing::warn!(error = %err, "handed-back job's ack not confirmed; it may run twice");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "hand-back copy not stored; falling back to a NAK");
                let _ = message.ack_with(AckKind::Nak(None)).await;
            }
        }
    }

    fn event(&self, delivery: &Delivery, kind: AuditEventKind) -> AuditEvent {
        let mut event = AuditEvent::new(
            kind,
            delivery.meta.id,
            self.settings.name.as_str(),
            OffsetDateTime::now_utc(),
            delivery.attempt,
        );
        event.job_type.clone_from(&delivery.meta.job_type);
        event.life = delivery.meta.life;
        event.stream_seq = Some(delivery.sequence);
        event.worker = Some(self.worker_id.clone());
        event.trace_id = delivery.meta.trace_id().map(str::to_owned);
        event
    }
}

/// The job's metadata from a delivery's headers, in one pass: `HeaderMap::get(&str)`
/// allocates a name per lookup, and decoding looks up a dozen names per job.
fn decode_meta(
    message: &jetstream::Message,
    published: OffsetDateTime,
) -> Result<JobMeta, jobfleet_core::HeaderError> {
    let pairs: Vec<(&str, &str)> = message
        .headers
        .iter()
        .flat_map(async_nats::HeaderMap::iter)
        .filter_map(|(name, values)| Some((name.as_ref(), values.first()?.as_str())))
        .collect();
    JobMeta::from_headers(
        |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
        published,
    )
}

/// Counts a delivery in the in-flight gauge for as long as it is held.
struct InFlight(Arc<WorkerStats>);

impl InFlight {
    fn enter(stats: Arc<WorkerStats>) -> Self {
        stats
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn retry_on(error: HandlerError) -> Verdict {
    Verdict::Retry {
        after: None,
        error: error.to_string(),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    format!("handler panicked: {detail}")
}
