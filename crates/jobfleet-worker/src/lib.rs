//! The jobfleet pull-worker runtime: runs a queue's jobs with leases, retries, dead letters,
//! audit events, timeouts and graceful shutdown, so handlers only do the work.
//!
//! A [`Worker`] binds to its queue's `workers` consumer and pulls only as many jobs as it has
//! free handler slots. While a handler runs, the lease is extended with progress acks; a dead
//! worker's jobs come back after the queue's `ack_wait`. What a handler returns is mapped to
//! acknowledgements in one place (see [`Outcome`]).
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use jobfleet_worker::{handler_fn, HandlerError, JobContext, Outcome, Worker};
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct Email { to: String }
//!
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let worker = Worker::builder(client, "emails")
//!     .concurrency(32)
//!     .build(handler_fn(|job: JobContext| async move {
//!         let email: Email = job.json()?;            // invalid JSON: dead-lettered, not retried
//!         if email.to.ends_with("@invalid") {
//!             return Ok(Outcome::fail("bad address"));  // straight to the dead-letter stream
//!         }
//!         if job.attempt() < 2 {
//!             return Ok(Outcome::retry_after(Duration::from_secs(5)));
//!         }
//!         Err(HandlerError::new("smtp down"))           // retried under the queue's schedule
//!     }))
//!     .await?;
//! let stats = worker.run_until_signal().await;
//! println!("{} jobs succeeded", stats.succeeded);
//! # Ok(())
//! # }
//! ```
//!
//! # Metrics
//!
//! With [`WorkerBuilder::metrics_addr`], the worker serves Prometheus text on that address:
//! `jobfleet_jobs_total{queue,outcome}`, `jobfleet_attempts_started_total`,
//! `jobfleet_jobs_in_flight`, and the histograms `jobfleet_handler_duration_seconds` and
//! `jobfleet_queue_wait_seconds`. Each job runs in a `tracing` span (`job_id`, `queue`,
//! `attempt`, and the producer's W3C `trace_id`).
//!
//! # Middleware
//!
//! The runtime always wraps a handler in its own layers: the job's `tracing` span (parented
//! on the producer's W3C `traceparent` when spans are exported with OpenTelemetry), its
//! timeout, panic capture and metrics. Compose anything else with tower: a handler is a
//! `tower::Service` ([`Handler::into_service`]), and a `Service` of jobs is a handler
//! ([`service_handler`]), so a `ServiceBuilder` stack sits between the runtime and your code:
//!
//! ```text
//!   runtime: span > timeout > panic capture > metrics > outcome -> ack
//!     ServiceBuilder layers, outermost first (concurrency_limit, timeout, map_request, ...)
//!       your handler
//! ```
//!
//! ```
//! use jobfleet_worker::{Handler, JobContext, Outcome, handler_fn, service_handler};
//!
//! let handler = handler_fn(|_job: JobContext| async { Ok(Outcome::Done) });
//! let handler = service_handler(
//!     tower::ServiceBuilder::new()
//!         .concurrency_limit(4) // across all of this worker's slots
//!         .service(handler.into_service()),
//! );
//! // Worker::builder(client, "emails").build(handler)
//! # fn is_handler(_: impl Handler) {}
//! # is_handler(handler);
//! ```
//!
//! # Errors
//!
//! Starting a worker fails with a [`WorkerError`] ([`WorkerErrorKind`]). Handlers return
//! [`HandlerError`]s, which are retried unless [permanent](HandlerError::permanent).
//!
//! # Feature flags
//!
//! None yet.

mod audit;
mod context;
mod copy_headers;
mod dead_letter;
mod error;
mod execute;
mod failpoint;
mod handler;
mod lease;
mod metrics;
mod middleware;
mod mover;
mod outcome;
mod redrive;
mod settings;
mod stats;
mod status;
mod worker;

pub use context::JobContext;
pub use error::{WorkerError, WorkerErrorKind};
pub use failpoint::Failpoint;
#[cfg(feature = "failpoints")]
pub use failpoint::FailpointHook;
pub use handler::{Handler, HandlerFn, HandlerResult, handler_fn};
pub use metrics::Histogram;
pub use middleware::{
    HandlerService, HandlerServiceFuture, IntoHandlerError, ServiceError, ServiceHandler,
    service_handler,
};
pub use outcome::{HandlerError, Outcome};
pub use redrive::{
    DeadLetter, RedriveReport, RedriveSelection, dead_letter, dead_letters, dead_letters_page,
    delete_dead_letters, redrive,
};
pub use stats::{StatsSnapshot, WorkerStats};
pub use status::{JobStatus, job_history, job_status};
pub use worker::{AbortHandle, Worker, WorkerBuilder};

/// The README's Rust examples, compiled as doctests so they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
