//! The jobfleet wire protocol: everything a producer, a worker, the gateway or a program in
//! another language must agree on to exchange jobs over NATS JetStream.
//!
//! This crate does no I/O. It names the streams, subjects and headers of a queue
//! ([`topology`], [`headers`]), mints job ids ([`JobId`]), defines the audit event schema
//! ([`AuditEvent`]), the retry schedule ([`RetrySchedule`]) and the declarative queue
//! configuration ([`QueueConfig`]). The normative description is `docs/protocol.md`.
//!
//! # Examples
//!
//! ```
//! use jobfleet_core::{JobId, QueueName, RetrySchedule};
//! use std::time::Duration;
//!
//! let queue = QueueName::new("emails")?;
//! assert_eq!(queue.stream_name(), "JOBFLEET_Q_emails");
//! assert_eq!(queue.ready_subject(), "jobfleet.q.emails.ready");
//!
//! // The same idempotency key always gives the same job id on the same queue.
//! let a = JobId::from_idempotency_key(&queue, "order-42");
//! let b = JobId::from_idempotency_key(&queue, "order-42");
//! assert_eq!(a, b);
//!
//! let schedule = RetrySchedule::default();
//! assert!(schedule.delay(1, a.jitter_seed()) <= Duration::from_secs(1));
//! # Ok::<(), jobfleet_core::ConfigError>(())
//! ```
//!
//! # Errors
//!
//! Validation failures are [`ConfigError`]s whose [`ConfigErrorKind`] says what is wrong and
//! whose `field` names the offending setting; header decoding failures are [`HeaderError`]s, and
//! audit events that cannot be read are [`AuditDecodeError`]s.
//!
//! # Feature flags
//!
//! None yet.

mod audit;
mod error;
pub mod headers;
mod job_id;
mod job_meta;
mod queue_config;
mod retry;
mod timestamp;
pub mod topology;

pub use audit::{AUDIT_SCHEMA_VERSION, AuditEvent, AuditEventKind, AuditLevel};
pub use error::{AuditDecodeError, ConfigError, ConfigErrorKind, HeaderError, HeaderErrorKind};
pub use job_id::JobId;
pub use job_meta::JobMeta;
pub use queue_config::{
    AuditConfig, DeadLetterConfig, MIN_DUPLICATE_WINDOW, QueueConfig, QueueFile, StorageKind,
    WorkerDefaults,
};
pub use retry::{MAX_RETRY_DELAY, RetrySchedule};
pub use timestamp::{format_timestamp, parse_timestamp};
pub use topology::QueueName;
