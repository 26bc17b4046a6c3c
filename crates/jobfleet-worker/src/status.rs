//! A job's status and history, read from the audit stream by id without scanning.

use async_nats::jetstream::{
    self,
    stream::{DirectGetErrorKind, LastRawMessageErrorKind},
};
use jobfleet_core::{AuditEvent, JobId, topology};

use crate::error::{WorkerError, WorkerErrorKind};

/// A job's latest audit event, with a convenience for terminal states.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobStatus {
    /// The latest event.
    pub last: AuditEvent,
}

impl JobStatus {
    /// Whether the job has ended (succeeded or dead-lettered).
    pub fn is_finished(&self) -> bool {
        self.last.event.is_terminal()
    }
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> WorkerError {
    WorkerError::with_source(
        WorkerErrorKind::Unavailable,
        "cannot read the audit stream",
        err,
    )
}

/// The job's latest audit event (one "last message by subject" read from the stream leader),
/// or `None` if none was recorded (unknown id, audit off, or aged out).
///
/// # Errors
///
/// [`WorkerErrorKind::Unavailable`] when the audit stream cannot be read.
pub async fn job_status(
    js: &jetstream::Context,
    id: JobId,
) -> Result<Option<JobStatus>, WorkerError> {
    let stream = js
        .get_stream(topology::AUDIT_STREAM)
        .await
        .map_err(unavailable)?;
    match stream
        .get_last_raw_message_by_subject(&topology::audit_subject(&id))
        .await
    {
        Ok(message) => Ok(Some(JobStatus {
            last: decode(&message.payload)?,
        })),
        Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(err) => Err(unavailable(err)),
    }
}

/// Every audit event of the job, oldest first (one direct get per event).
///
/// # Errors
///
/// [`WorkerErrorKind::Unavailable`] when the audit stream cannot be read.
pub async fn job_history(
    js: &jetstream::Context,
    id: JobId,
) -> Result<Vec<AuditEvent>, WorkerError> {
    let stream = js
        .get_stream(topology::AUDIT_STREAM)
        .await
        .map_err(unavailable)?;
    let subject = topology::audit_subject(&id);
    let mut events = Vec::new();
    let mut next = 1;
    loop {
        match stream
            .direct_get_next_for_subject(subject.clone(), Some(next))
            .await
        {
            Ok(message) => {
                events.push(decode(&message.payload)?);
                next = message.sequence + 1;
            }
            Err(err) if err.kind() == DirectGetErrorKind::NotFound => return Ok(events),
            Err(err) => return Err(unavailable(err)),
        }
    }
}

fn decode(payload: &[u8]) -> Result<AuditEvent, WorkerError> {
    serde_json::from_slice(payload).map_err(|e| {
        WorkerError::with_source(
            WorkerErrorKind::InvalidConfig,
            "an audit event does not follow schema v1",
            e,
        )
    })
}
