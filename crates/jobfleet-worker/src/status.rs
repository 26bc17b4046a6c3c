//! A job's status and history, read from the audit stream by id without scanning.

use async_nats::jetstream::{
    self,
    stream::{DirectGetErrorKind, LastRawMessageErrorKind},
};
use jobfleet_core::{AuditEvent, AuditEventKind, JobId, topology};

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
        Ok(message) => {
            let last = decode(&message.payload)?;
            if let Some(last) = last.as_ref()
                && last.event != AuditEventKind::Enqueued
            {
                return Ok(Some(JobStatus { last: last.clone() }));
            }
            // The producer records `enqueued` after the PubAck without waiting, so a quick
            // worker's events can be stored before it: put the history in lifecycle order.
            // The same when the last event is of a kind (or schema) this version does not
            // know: readers skip those (docs/protocol.md, section 6).
            let latest = job_history(js, id).await?.pop().or(last);
            Ok(latest.map(|last| JobStatus { last }))
        }
        Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(err) => Err(unavailable(err)),
    }
}

/// Where an event falls in a job's life: by life, then attempt (0 for `enqueued` and
/// `redriven`), then the order of events within an attempt.
fn lifecycle_position(event: &AuditEvent) -> (u32, u32, u8) {
    let within = match event.event {
        AuditEventKind::Enqueued | AuditEventKind::Redriven => 0,
        AuditEventKind::Started => 1,
        AuditEventKind::Progress => 2,
        AuditEventKind::Retried => 3,
        _ => 4,
    };
    (event.life, event.attempt, within)
}

/// Every audit event of the job in lifecycle order (one direct get per event).
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
                events.extend(decode(&message.payload)?);
                next = message.sequence + 1;
            }
            Err(err) if err.kind() == DirectGetErrorKind::NotFound => {
                // Stored order is almost always lifecycle order; `enqueued` may trail (see
                // `job_status`). A stable sort keeps the rest as stored.
                events.sort_by_key(lifecycle_position);
                return Ok(events);
            }
            Err(err) => return Err(unavailable(err)),
        }
    }
}

/// An event, or `None` for one to skip (unknown kind, newer schema).
fn decode(payload: &[u8]) -> Result<Option<AuditEvent>, WorkerError> {
    AuditEvent::decode(payload).map_err(|e| {
        WorkerError::with_source(
            WorkerErrorKind::InvalidConfig,
            "an audit event does not follow schema v1",
            e,
        )
    })
}
