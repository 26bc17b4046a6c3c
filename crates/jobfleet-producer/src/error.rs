//! Error types, one per operation, each with a `#[non_exhaustive]` kind.

use std::fmt;

use jobfleet_core::{ConfigError, JobId};

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

macro_rules! operation_error {
    ($(#[$meta:meta])* $name:ident, $kind:ident) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name {
            kind: $kind,
            message: String,
            source: Option<Source>,
        }

        impl $name {
            pub(crate) fn new(kind: $kind, message: impl Into<String>) -> Self {
                Self { kind, message: message.into(), source: None }
            }

            pub(crate) fn with_source(
                kind: $kind,
                message: impl Into<String>,
                source: impl Into<Source>,
            ) -> Self {
                Self { kind, message: message.into(), source: Some(source.into()) }
            }

            /// What went wrong; match on this, not on the message.
            pub fn kind(&self) -> $kind {
                self.kind
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.message)
            }
        }

        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
            }
        }
    };
}

/// Why connecting failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// The options are inconsistent or a file they name cannot be used.
    InvalidOptions,
    /// The server rejected the credentials.
    Authentication,
    /// TLS could not be set up or negotiated.
    Tls,
    /// No server answered in time, or the address is unreachable.
    Unreachable,
}

operation_error!(
    /// Connecting to NATS failed.
    ConnectError,
    ConnectErrorKind
);

/// Why an enqueue failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnqueueErrorKind {
    /// No jobfleet queue of that name exists (declare it first).
    UnknownQueue,
    /// The job (payload plus headers) exceeds the queue's or the server's size limit.
    PayloadTooLarge,
    /// The queue reached its `max_messages` or `max_bytes`; retry later.
    StreamFull,
    /// An option is invalid (the message names it).
    InvalidOption,
    /// The payload could not be serialized.
    InvalidPayload,
    /// The connection to NATS is down and did not come back within the enqueue deadline.
    /// The job was not stored (or, if a publish reached the server before the outage, it
    /// was stored exactly once: retrying with the same id is always safe).
    NotConnected,
    /// No acknowledgement arrived within the enqueue deadline although connected; the job
    /// may or may not be stored. Retrying with the same id is safe.
    Timeout,
    /// The server refused the job for another reason (e.g. permissions).
    Rejected,
}

/// Enqueueing a job failed.
#[derive(Debug)]
pub struct EnqueueError {
    kind: EnqueueErrorKind,
    message: String,
    job_id: Option<JobId>,
    source: Option<Source>,
}

impl EnqueueError {
    pub(crate) fn new(kind: EnqueueErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            job_id: None,
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: EnqueueErrorKind,
        message: impl Into<String>,
        source: impl Into<Source>,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            job_id: None,
            source: Some(source.into()),
        }
    }

    pub(crate) fn for_job(mut self, id: JobId) -> Self {
        self.job_id = Some(id);
        self
    }

    /// What went wrong; match on this, not on the message.
    pub fn kind(&self) -> EnqueueErrorKind {
        self.kind
    }

    /// The id the job was given, when it got that far. After `Timeout` or `NotConnected` the
    /// job may be stored: enqueue the same [`crate::Job`] again (it keeps its id) or a job with
    /// this id, and JetStream drops the repeat within the queue's duplicate window.
    pub fn job_id(&self) -> Option<JobId> {
        self.job_id
    }
}

impl fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EnqueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Why declaring a queue failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProvisionErrorKind {
    /// The declaration is invalid; [`ProvisionError::config_error`] names the field.
    InvalidConfig,
    /// A stream with the queue's name exists but is not a jobfleet queue stream.
    Conflict,
    /// JetStream refused the change (limits, permissions, cluster unavailable).
    Rejected,
    /// JetStream did not answer.
    Unavailable,
}

operation_error!(
    /// Declaring (creating or updating) a queue failed.
    ProvisionError,
    ProvisionErrorKind
);

impl ProvisionError {
    /// The validation error, for [`ProvisionErrorKind::InvalidConfig`].
    pub fn config_error(&self) -> Option<&ConfigError> {
        self.source
            .as_deref()
            .and_then(|s| s.downcast_ref::<ConfigError>())
    }
}

impl From<ConfigError> for ProvisionError {
    fn from(err: ConfigError) -> Self {
        Self::with_source(ProvisionErrorKind::InvalidConfig, err.to_string(), err)
    }
}

/// Why inspecting or operating a queue failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueAdminErrorKind {
    /// There is no queue of that name (or the name is invalid).
    UnknownQueue,
    /// JetStream refused the operation (permissions, server version, cluster state).
    Rejected,
    /// JetStream did not answer.
    Unavailable,
}

operation_error!(
    /// Listing, inspecting, pausing, resuming or purging a queue failed.
    QueueAdminError,
    QueueAdminErrorKind
);
