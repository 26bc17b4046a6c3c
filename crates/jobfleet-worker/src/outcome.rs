//! What a handler returns, and the one table that maps it to JetStream acknowledgements.
//!
//! | Handler returns | Attempts left | What the runtime does |
//! |---|---|---|
//! | `Ok(Outcome::Done)` / `Ok(Outcome::DoneWith(v))` | any | audit `succeeded` (awaited), then `+ACK` |
//! | `Ok(Outcome::Retry { after })` or `Err(e)` (not permanent) | yes | delay = `after` or the queue's retry schedule; delay <= `nak_delay_limit`: `-NAK {delay}`; longer: re-publish as a one-shot schedule, then `+ACK`; audit `retried` |
//! | the same | no | dead-letter, then `+TERM`; audit `dead_lettered` |
//! | `Ok(Outcome::Fail { reason })` or a permanent `Err` | any | dead-letter, then `+TERM`; audit `dead_lettered` |
//! | the handler times out or panics | | as a retryable `Err` |

use std::fmt;
use std::time::Duration;

/// A handler's verdict on one attempt.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The job is done.
    Done,
    /// The job is done; record this small result in the audit event.
    DoneWith(serde_json::Value),
    /// Try again, after `after` or, when `None`, after the queue's retry schedule's delay.
    /// Counts an attempt; with none left the job is dead-lettered.
    Retry {
        /// The delay before the next attempt.
        after: Option<Duration>,
    },
    /// Never retry: dead-letter the job now.
    Fail {
        /// Why, recorded with the dead letter.
        reason: String,
    },
}

impl Outcome {
    /// [`Outcome::Retry`] after the queue's schedule.
    pub fn retry() -> Self {
        Self::Retry { after: None }
    }

    /// [`Outcome::Retry`] after `delay`.
    pub fn retry_after(delay: Duration) -> Self {
        Self::Retry { after: Some(delay) }
    }

    /// [`Outcome::Fail`] with `reason`.
    pub fn fail(reason: impl Into<String>) -> Self {
        Self::Fail {
            reason: reason.into(),
        }
    }
}

/// An error from a handler: retried under the queue's policy unless permanent.
///
/// Any `std::error::Error` converts into it with `?`, keeping its type name as the error
/// class recorded in the audit stream.
pub struct HandlerError {
    class: String,
    message: String,
    permanent: bool,
}

impl HandlerError {
    /// A retryable error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            class: "Error".to_owned(),
            message: message.into(),
            permanent: false,
        }
    }

    /// An error that must not be retried: the job is dead-lettered now.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            class: "PermanentError".to_owned(),
            message: message.into(),
            permanent: true,
        }
    }

    /// Sets the error class (shown as `<class>: <message>` in audit events).
    #[must_use]
    pub fn with_class(mut self, class: impl Into<String>) -> Self {
        self.class = class.into();
        self
    }

    /// Whether the job must not be retried.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The error class.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(err: E) -> Self {
        let class = std::any::type_name::<E>()
            .rsplit("::")
            .next()
            .unwrap_or("Error")
            .to_owned();
        Self {
            class,
            message: err.to_string(),
            permanent: false,
        }
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}{}",
            self.class,
            self.message,
            if self.permanent { " (permanent)" } else { "" }
        )
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}
