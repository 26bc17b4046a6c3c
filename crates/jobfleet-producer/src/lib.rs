//! Enqueue jobs into jobfleet queues on NATS JetStream, and declare those queues.
//!
//! A job is acknowledged ([`Enqueued`]) only after JetStream has stored it. Every job carries
//! its id as `Nats-Msg-Id`, so a publish whose acknowledgement was lost is retried safely, and
//! an idempotency key ([`Job::idempotency_key`]) makes a repeated enqueue a no-op. Delayed
//! jobs are stored as one-shot JetStream schedules (nats-server 2.12+).
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use jobfleet_producer::{ConnectOptions, Job, Producer, QueueConfig};
//! use std::time::Duration;
//!
//! let producer = Producer::connect(ConnectOptions::new("nats://127.0.0.1:4222")).await?;
//! producer.declare_queue(&QueueConfig::new("emails")).await?;
//!
//! let now = producer.enqueue("emails", Job::json(&serde_json::json!({"to": "a@b.c"}))?).await?;
//! let later = producer
//!     .enqueue("emails", Job::bytes("hi").delay(Duration::from_secs(60)).idempotency_key("welcome:42"))
//!     .await?;
//! let many = producer.enqueue_batch("emails", (0..1000).map(|i| Job::bytes(i.to_string()))).await?;
//! assert!(many.iter().all(Result::is_ok));
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Each operation has its own error type with a `#[non_exhaustive]` kind to match on:
//! [`ConnectError`] / [`ConnectErrorKind`], [`EnqueueError`] / [`EnqueueErrorKind`],
//! [`ProvisionError`] / [`ProvisionErrorKind`].
//!
//! # Feature flags
//!
//! None yet.

mod connect;
mod error;
mod job;
mod producer;
mod provision;
mod publish;
mod queue_info;
mod queues;
mod refusals;

pub use connect::ConnectOptions;
pub use error::{
    ConnectError, ConnectErrorKind, EnqueueError, EnqueueErrorKind, ProvisionError,
    ProvisionErrorKind, QueueAdminError, QueueAdminErrorKind,
};
pub use job::{Job, MAX_IDEMPOTENCY_KEY_LEN, MAX_JOB_DURATION};
pub use jobfleet_core::{JobId, QueueConfig, QueueFile};
pub use producer::{DEFAULT_BATCH_WINDOW, Enqueued, Producer, ProducerStats};
pub use provision::{AUDIT_MAX_AGE, Declared, NotApplied, declare_queue};
pub use queues::{
    QueueRates, QueueStats, list_queues, pause_queue, purge_queue, queue_stats, resume_queue,
};
