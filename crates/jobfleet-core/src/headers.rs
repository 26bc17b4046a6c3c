//! Names of the NATS headers that carry a job's metadata.
//!
//! The payload stays raw bytes; everything else travels in headers, so a worker never parses
//! an envelope. Headers of our own never start with `Nats-` (reserved by the server).
//! [`crate::JobMeta`] encodes and decodes the full set.

/// The job id (a UUID, see [`crate::JobId`]). An immediate enqueue carries the id only as
/// `Nats-Msg-Id`; every other message (schedules drop `Nats-Msg-Id`; retries and dead-letter
/// copies have message ids of their own) carries this header, which readers prefer.
pub const JOB_ID: &str = "Jobfleet-Id";
/// JetStream's de-duplication header: the job id on an immediate enqueue.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
/// An optional application-defined job type (e.g. `send_email`) for routing inside a queue.
pub const JOB_TYPE: &str = "Jobfleet-Type";
/// Attempts consumed by earlier incarnations of this job (a retry re-published as a schedule
/// starts a new JetStream delivery count). A decimal integer, `0` when absent. The attempt
/// number of a delivery is `Jobfleet-Prior-Attempts + delivered`.
pub const PRIOR_ATTEMPTS: &str = "Jobfleet-Prior-Attempts";
/// How many times the job was redriven from the dead-letter stream (its "life"). A decimal
/// integer, `0` when absent. Audit events of each life are kept apart by it.
pub const LIFE: &str = "Jobfleet-Life";
/// The job's attempt limit, overriding the queue default. A decimal integer >= 1.
pub const MAX_ATTEMPTS: &str = "Jobfleet-Max-Attempts";
/// The per-attempt timeout in milliseconds, overriding the queue default. A decimal integer >= 1.
pub const TIMEOUT_MS: &str = "Jobfleet-Timeout-Ms";
/// When the job was accepted, RFC 3339 UTC. Absent on an immediate enqueue, whose JetStream
/// timestamp is the enqueue time.
pub const ENQUEUED_AT: &str = "Jobfleet-Enqueued-At";
/// When a delayed job becomes runnable, RFC 3339 UTC. Present only on delayed jobs.
pub const RUN_AT: &str = "Jobfleet-Run-At";
/// The caller's idempotency key, when the id was derived from one (informational).
pub const IDEMPOTENCY_KEY: &str = "Jobfleet-Idempotency-Key";
/// Media type of the payload. Absent means `application/json`.
pub const CONTENT_TYPE: &str = "Content-Type";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state.
pub const TRACESTATE: &str = "tracestate";

/// Added to dead-lettered copies: why the job died.
pub const DEAD_REASON: &str = "Jobfleet-Dead-Reason";
/// Added to dead-lettered copies: attempts made.
pub const DEAD_ATTEMPTS: &str = "Jobfleet-Dead-Attempts";
/// Added to dead-lettered copies: when the job died, RFC 3339 UTC.
pub const DEAD_AT: &str = "Jobfleet-Dead-At";
/// Added to dead-lettered copies: the work stream sequence the job had.
pub const DEAD_ORIGINAL_SEQUENCE: &str = "Jobfleet-Dead-Original-Sequence";

/// The default payload media type.
pub const DEFAULT_CONTENT_TYPE: &str = "application/json";
