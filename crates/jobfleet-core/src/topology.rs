//! Queue topology: how a queue name maps to JetStream streams, subjects and consumers.
//!
//! A queue `<q>` is:
//!
//! | Thing | Name |
//! |---|---|
//! | Work stream (WorkQueue retention) | `JOBFLEET_Q_<q>`, subjects `jobfleet.q.<q>.ready` and `jobfleet.q.<q>.sched.*` |
//! | Durable pull consumer, filtered on the ready subject | `workers` |
//! | Ready subject (jobs that may run now) | `jobfleet.q.<q>.ready` |
//! | Schedule subject of a delayed job (no consumer filters it) | `jobfleet.q.<q>.sched.<job-id>` |
//! | Dead-letter stream (limits retention) | `JOBFLEET_DLQ_<q>`, subjects `jobfleet.dlq.<q>.*` |
//! | Dead-letter subject of a job | `jobfleet.dlq.<q>.<job-id>` |
//!
//! and every queue shares the audit stream `JOBFLEET_AUDIT` with subjects `jobfleet.audit.*`,
//! one subject per job: `jobfleet.audit.<job-id>`, so a job's history is read by subject
//! without scanning and without knowing its queue.

use std::fmt;

use crate::error::{ConfigError, ConfigErrorKind};
use crate::job_id::JobId;

/// Prefix of every queue's work stream name (`JOBFLEET_Q_<q>`).
pub const QUEUE_STREAM_PREFIX: &str = "JOBFLEET_Q_";
/// Name of the stream that holds every queue's audit events.
pub const AUDIT_STREAM: &str = "JOBFLEET_AUDIT";
/// Subject filter of the audit stream.
pub const AUDIT_SUBJECTS: &str = "jobfleet.audit.*";
/// Name of the durable pull consumer that every worker of a queue binds to.
pub const WORKER_CONSUMER: &str = "workers";
/// Stream metadata key that marks a stream as a jobfleet queue and carries the protocol version.
pub const METADATA_PROTOCOL: &str = "jobfleet.protocol";
/// Protocol version written to [`METADATA_PROTOCOL`].
pub const PROTOCOL_VERSION: &str = "1";
/// Stream metadata key holding the queue's worker defaults as JSON ([`crate::WorkerDefaults`]).
pub const METADATA_WORKER: &str = "jobfleet.worker";
/// Stream metadata key holding the queue's audit level (`full`, `terminal`, `off`).
pub const METADATA_AUDIT: &str = "jobfleet.audit";

/// Longest queue name accepted; stream names must stay well under JetStream's 255 bytes
/// because they also appear in file paths.
pub const MAX_QUEUE_NAME_LEN: usize = 64;

/// Name of the stream that durably captures the max-deliveries advisories of every queue's
/// worker consumer; each queue's mover consumer handles each advisory once.
pub const ADVISORY_STREAM: &str = "JOBFLEET_ADVISORIES";

/// Subject of a job's audit events.
pub fn audit_subject(job: &JobId) -> String {
    format!("jobfleet.audit.{job}")
}

/// A validated queue name: 1 to 64 ASCII letters, digits, `-` or `_`.
///
/// These are the characters that are safe both in a JetStream stream name (which becomes a
/// directory name) and as a single subject token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(String);

impl QueueName {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::InvalidName`] when the name is empty, too long, or has a character
    /// other than ASCII letters, digits, `-` and `_`.
    pub fn new(name: impl Into<String>) -> Result<Self, ConfigError> {
        let name = name.into();
        let problem = if name.is_empty() {
            Some("must not be empty".to_owned())
        } else if name.len() > MAX_QUEUE_NAME_LEN {
            Some(format!(
                "must be at most {MAX_QUEUE_NAME_LEN} characters, got {}",
                name.len()
            ))
        } else {
            name.chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
                .map(|c| format!("{c:?} is not allowed (use ASCII letters, digits, `-`, `_`)"))
        };
        match problem {
            Some(problem) => Err(ConfigError::new(
                ConfigErrorKind::InvalidName,
                "name",
                problem,
            )),
            None => Ok(Self(name)),
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The work stream: `JOBFLEET_Q_<q>`.
    pub fn stream_name(&self) -> String {
        format!("{QUEUE_STREAM_PREFIX}{}", self.0)
    }

    /// The subject of jobs that may run now: `jobfleet.q.<q>.ready`.
    pub fn ready_subject(&self) -> String {
        format!("jobfleet.q.{}.ready", self.0)
    }

    /// The schedule subject of a delayed job: `jobfleet.q.<q>.sched.<job-id>`.
    pub fn schedule_subject(&self, job: &JobId) -> String {
        format!("jobfleet.q.{}.sched.{job}", self.0)
    }

    /// The wildcard that covers every schedule subject of this queue.
    pub fn schedule_subjects(&self) -> String {
        format!("jobfleet.q.{}.sched.*", self.0)
    }

    /// The dead-letter stream: `JOBFLEET_DLQ_<q>`.
    pub fn dead_letter_stream_name(&self) -> String {
        format!("JOBFLEET_DLQ_{}", self.0)
    }

    /// The dead-letter subject of a job: `jobfleet.dlq.<q>.<job-id>`.
    pub fn dead_letter_subject(&self, job: &JobId) -> String {
        format!("jobfleet.dlq.{}.{job}", self.0)
    }

    /// The advisory JetStream sends when a job of this queue reached the worker consumer's
    /// `max_deliver` without an outcome (its workers died or hung every time).
    pub fn max_deliveries_advisory_subject(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{WORKER_CONSUMER}",
            self.stream_name()
        )
    }

    /// The durable consumer on [`ADVISORY_STREAM`] through which this queue's workers move
    /// such jobs to the dead-letter stream: `mover_<q>`.
    pub fn mover_consumer(&self) -> String {
        format!("mover_{}", self.0)
    }

    /// The wildcard that covers every dead-letter subject of this queue.
    pub fn dead_letter_subjects(&self) -> String {
        format!("jobfleet.dlq.{}.*", self.0)
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for QueueName {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for QueueName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_safe_names() {
        for name in ["a", "emails", "Billing_v2", "web-hooks", &"x".repeat(64)] {
            assert!(QueueName::new(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_unsafe_names_with_invalid_name() {
        for name in ["", "a.b", "a b", "a*", "a>", "ü", "a/b", &"x".repeat(65)] {
            let err = QueueName::new(name).unwrap_err();
            assert_eq!(err.kind(), ConfigErrorKind::InvalidName, "{name}");
            assert_eq!(err.field(), "name");
        }
    }

    #[test]
    fn derives_names_and_subjects() {
        let q = QueueName::new("emails").unwrap();
        let id: JobId = "0193a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b".parse().unwrap();
        assert_eq!(q.stream_name(), "JOBFLEET_Q_emails");
        assert_eq!(q.ready_subject(), "jobfleet.q.emails.ready");
        assert_eq!(
            q.schedule_subject(&id),
            "jobfleet.q.emails.sched.0193a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b"
        );
        assert_eq!(q.dead_letter_stream_name(), "JOBFLEET_DLQ_emails");
        assert_eq!(q.dead_letter_subjects(), "jobfleet.dlq.emails.*");
        assert_eq!(
            audit_subject(&id),
            "jobfleet.audit.0193a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b"
        );
    }
}
