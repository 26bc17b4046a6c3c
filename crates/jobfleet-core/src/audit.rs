//! The audit event schema (version 1).
//!
//! Every lifecycle step of a job is one JSON message on `jobfleet.audit.<job-id>` in the
//! `JOBFLEET_AUDIT` stream, with `Nats-Msg-Id` set to [`AuditEvent::message_id`] so a
//! repeated write (a worker that died between recording and acking) is dropped by JetStream.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::AuditDecodeError;
use crate::job_id::JobId;

/// Version of the schema below; readers must ignore events with a higher major version and
/// unknown fields in this one.
pub const AUDIT_SCHEMA_VERSION: u32 = 1;

/// A lifecycle step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEventKind {
    /// Stored in the work stream (or as a schedule, for a delayed job).
    Enqueued,
    /// A worker began an attempt.
    Started,
    /// An attempt failed and another will follow.
    Retried,
    /// Terminal: the handler succeeded.
    Succeeded,
    /// Terminal: copied to the dead-letter stream and removed from the work stream.
    DeadLettered,
    /// A dead job was put back on its queue (a new life begins; not terminal).
    Redriven,
    /// A running handler reported progress (`result` holds what it reported; level `full`
    /// only).
    Progress,
}

impl AuditEventKind {
    /// Whether this event ends a job's life. Every accepted job gets exactly one, per life.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::DeadLettered)
    }

    /// Every kind this version knows.
    const ALL: [Self; 7] = [
        Self::Enqueued,
        Self::Started,
        Self::Retried,
        Self::Succeeded,
        Self::DeadLettered,
        Self::Redriven,
        Self::Progress,
    ];

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueued => "enqueued",
            Self::Started => "started",
            Self::Retried => "retried",
            Self::Succeeded => "succeeded",
            Self::DeadLettered => "dead_lettered",
            Self::Redriven => "redriven",
            Self::Progress => "progress",
        }
    }
}

/// How much of a queue's lifecycle is written to the audit stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditLevel {
    /// Every event.
    #[default]
    Full,
    /// Only terminal events (succeeded, dead-lettered) and redrives.
    Terminal,
    /// Nothing; job status lookups will find nothing.
    Off,
}

impl AuditLevel {
    /// Whether an event of `kind` is recorded at this level.
    pub fn records(self, kind: AuditEventKind) -> bool {
        match self {
            Self::Full => true,
            Self::Terminal => kind.is_terminal() || kind == AuditEventKind::Redriven,
            Self::Off => false,
        }
    }

    /// The name used in configuration and stream metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Terminal => "terminal",
            Self::Off => "off",
        }
    }

    /// Parses the name used in configuration and stream metadata.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "full" => Some(Self::Full),
            "terminal" => Some(Self::Terminal),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// Schema version, [`AUDIT_SCHEMA_VERSION`].
    pub v: u32,
    /// What happened.
    pub event: AuditEventKind,
    /// The job.
    pub job_id: JobId,
    /// The job's queue.
    pub queue: String,
    /// When it happened (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The attempt this event belongs to (1-based); 0 for `enqueued` and `redriven`.
    pub attempt: u32,
    /// How many times the job was redriven from the dead-letter stream before this event
    /// (its "life"); 0 for a job that never died.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub life: u32,
    /// The job type, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    /// Work stream sequence of the job, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_seq: Option<u64>,
    /// Identity of the worker process that acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Handler run time in milliseconds, for events that end an attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Error class and message, for `retried` and `dead_lettered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Delay before the next attempt in milliseconds, for `retried`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// When a delayed job becomes runnable, for `enqueued`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub run_at: Option<OffsetDateTime>,
    /// A small handler result, for `succeeded`; the reported value, for `progress`. A
    /// `null` that was written reads back as `Some(Value::Null)`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub result: Option<serde_json::Value>,
    /// W3C trace id of the attempt, when traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl AuditEvent {
    /// Reads a stored event as `docs/protocol.md` (section 6) asks of readers: `Ok(None)` for
    /// an event to skip, one of a newer schema version or of a kind this version does not
    /// know; fields it does not know are ignored.
    ///
    /// # Errors
    ///
    /// [`AuditDecodeError`] when the payload is not an audit event (not JSON, a field
    /// missing or of the wrong type).
    pub fn decode(payload: &[u8]) -> Result<Option<Self>, AuditDecodeError> {
        #[derive(Deserialize)]
        struct Probe<'a> {
            v: u64,
            #[serde(borrow)]
            event: Cow<'a, str>,
        }
        let probe: Probe<'_> = serde_json::from_slice(payload).map_err(AuditDecodeError::new)?;
        let known = AuditEventKind::ALL
            .iter()
            .any(|kind| kind.as_str() == probe.event);
        if probe.v > u64::from(AUDIT_SCHEMA_VERSION) || !known {
            return Ok(None);
        }
        serde_json::from_slice(payload)
            .map(Some)
            .map_err(AuditDecodeError::new)
    }

    /// A bare event; fill the optional fields as needed.
    pub fn new(
        event: AuditEventKind,
        job_id: JobId,
        queue: impl Into<String>,
        at: OffsetDateTime,
        attempt: u32,
    ) -> Self {
        Self {
            v: AUDIT_SCHEMA_VERSION,
            event,
            job_id,
            queue: queue.into(),
            at,
            attempt,
            life: 0,
            job_type: None,
            stream_seq: None,
            worker: None,
            duration_ms: None,
            error: None,
            retry_in_ms: None,
            run_at: None,
            result: None,
            trace_id: None,
        }
    }

    /// The `Nats-Msg-Id` of this event. Terminal events share one id per life,
    /// `<job-id>.<life>.terminal`, so a job that ran twice (a redelivery after a lost ack)
    /// still has exactly one terminal event; others are `<job-id>.<life>.<event>.<attempt>`.
    pub fn message_id(&self) -> String {
        if self.event.is_terminal() {
            format!("{}.{}.terminal", self.job_id, self.life)
        } else if self.event == AuditEventKind::Progress {
            // Every report is kept: its time makes the id unique.
            format!(
                "{}.{}.progress.{}.{}",
                self.job_id,
                self.life,
                self.attempt,
                self.at.unix_timestamp_nanos()
            )
        } else {
            format!(
                "{}.{}.{}.{}",
                self.job_id,
                self.life,
                self.event.as_str(),
                self.attempt
            )
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A field that is present is `Some`, even when it is `null` (plain `Option` would read `None`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn serializes_the_documented_shape() {
        let id: JobId = "0193a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b".parse().unwrap();
        let mut event = AuditEvent::new(
            AuditEventKind::Retried,
            id,
            "emails",
            datetime!(2026-11-23 13:00:00 UTC),
            2,
        );
        event.error = Some("TimeoutError: smtp".into());
        event.retry_in_ms = Some(4000);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "v": 1, "event": "retried", "job_id": "0193a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b",
                "queue": "emails", "at": "2026-11-23T13:00:00Z", "attempt": 2,
                "error": "TimeoutError: smtp", "retry_in_ms": 4000
            })
        );
        let back: AuditEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        assert_eq!(
            event.message_id(),
            "0193a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b.0.retried.2"
        );
        let mut done = AuditEvent::new(AuditEventKind::Succeeded, id, "emails", event.at, 3);
        let first = done.message_id();
        done.attempt = 4;
        assert_eq!(
            done.message_id(),
            first,
            "one terminal event per life, whatever the attempt"
        );
        done.life = 1;
        assert_ne!(done.message_id(), first);
    }

    #[test]
    fn readers_ignore_unknown_fields() {
        let text = r#"{"v":1,"event":"succeeded","job_id":"0193a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b",
            "queue":"q","at":"2026-11-23T13:00:00.123Z","attempt":1,"future_field":true}"#;
        let event: AuditEvent = serde_json::from_str(text).unwrap();
        assert!(event.event.is_terminal());
    }

    #[test]
    fn readers_skip_unknown_kinds_and_newer_versions() {
        let text = |v: u32, kind: &str| {
            format!(
                r#"{{"v":{v},"event":"{kind}","job_id":"0193a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b",
                "queue":"q","at":"2026-11-23T13:00:00Z","attempt":1}}"#
            )
        };
        assert!(
            AuditEvent::decode(text(1, "started").as_bytes())
                .unwrap()
                .is_some()
        );
        assert!(
            AuditEvent::decode(text(1, "paused").as_bytes())
                .unwrap()
                .is_none()
        );
        assert!(
            AuditEvent::decode(text(2, "started").as_bytes())
                .unwrap()
                .is_none()
        );
        assert!(AuditEvent::decode(b"{\"v\":1}").is_err());
        assert!(AuditEvent::decode(b"not json").is_err());
    }

    #[test]
    fn levels_filter_events() {
        use AuditEventKind::*;
        assert!(AuditLevel::Full.records(Started));
        assert!(!AuditLevel::Terminal.records(Started));
        assert!(AuditLevel::Terminal.records(DeadLettered));
        assert!(!AuditLevel::Off.records(Succeeded));
        for level in [AuditLevel::Full, AuditLevel::Terminal, AuditLevel::Off] {
            assert_eq!(AuditLevel::parse(level.as_str()), Some(level));
        }
    }
}
