//! What a handler sees of the job it runs.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use jobfleet_core::{AuditEvent, AuditEventKind, JobId, JobMeta};
use time::OffsetDateTime;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::audit::AuditSink;
use crate::lease::Lease;
use crate::outcome::HandlerError;

/// One attempt of a job: its payload, metadata, and the runtime's controls.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub(crate) meta: JobMeta,
    pub(crate) queue: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) timeout: Duration,
    pub(crate) stream_sequence: u64,
    pub(crate) payload: Bytes,
    pub(crate) headers: HeaderMap,
    pub(crate) cancel: CancellationToken,
    pub(crate) lease: Lease,
    pub(crate) progress: Option<Arc<ProgressSink>>,
}

/// Writes `progress` audit events for the jobs of one worker.
#[derive(Debug)]
pub(crate) struct ProgressSink {
    audit: AuditSink,
    worker: String,
}

impl ProgressSink {
    pub(crate) fn new(audit: AuditSink, worker: &str) -> Self {
        Self {
            audit,
            worker: worker.to_owned(),
        }
    }
}

impl JobContext {
    /// The job id.
    pub fn id(&self) -> JobId {
        self.meta.id
    }

    /// The queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The job's attempt limit.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether a failure of this attempt dead-letters the job.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// This attempt's timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// When the job was accepted.
    pub fn enqueued_at(&self) -> OffsetDateTime {
        self.meta.enqueued_at
    }

    /// The application job type, if any.
    pub fn job_type(&self) -> Option<&str> {
        self.meta.job_type.as_deref()
    }

    /// The job's full metadata.
    pub fn meta(&self) -> &JobMeta {
        &self.meta
    }

    /// Sequence of this incarnation in the work stream.
    pub fn stream_sequence(&self) -> u64 {
        self.stream_sequence
    }

    /// All headers of the message, application headers included.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }

    /// The raw payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The payload decoded as JSON.
    ///
    /// # Errors
    ///
    /// A permanent [`HandlerError`] (the job is dead-lettered, since a retry cannot fix it)
    /// when the payload is not valid JSON for `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_slice(&self.payload).map_err(|err| {
            HandlerError::permanent(format!("invalid payload: {err}")).with_class("InvalidPayload")
        })
    }

    /// Reports progress (any small JSON value, e.g. `{"done": 40, "of": 100}`) and extends
    /// the lease: recorded as a `progress` audit event, so `job_status` and the dashboard
    /// show it while the job runs. Recorded only when the queue's audit level is `full`;
    /// otherwise, and if NATS cannot take it right now, the report is dropped (it is
    /// informational).
    pub async fn report_progress(&self, value: serde_json::Value) {
        self.lease.extend().await;
        let Some(sink) = &self.progress else {
            return;
        };
        let mut event = AuditEvent::new(
            AuditEventKind::Progress,
            self.meta.id,
            &*self.queue,
            OffsetDateTime::now_utc(),
            self.attempt,
        );
        event.life = self.meta.life;
        event.job_type.clone_from(&self.meta.job_type);
        event.stream_seq = Some(self.stream_sequence);
        event.worker = Some(sink.worker.clone());
        event.trace_id = self.meta.trace_id().map(str::to_owned);
        event.result = Some(value);
        sink.audit.record(&event).await;
    }

    /// Resolves when the attempt is cancelled (timeout or worker shutdown).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Whether the attempt has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Extends the lease now. The runtime already does this on a timer while the handler
    /// runs; call it to report progress from a long step.
    pub async fn progress(&self) {
        self.lease.extend().await;
    }
}
