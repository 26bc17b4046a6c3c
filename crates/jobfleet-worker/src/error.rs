//! Errors of the worker runtime.

use std::fmt;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a worker could not start or keep running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerErrorKind {
    /// The queue (its stream or its `workers` consumer) does not exist.
    UnknownQueue,
    /// The queue's stored settings or the worker's options are invalid.
    InvalidConfig,
    /// JetStream did not answer.
    Unavailable,
}

/// A worker could not start or keep running.
#[derive(Debug)]
pub struct WorkerError {
    kind: WorkerErrorKind,
    message: String,
    source: Option<Source>,
}

impl WorkerError {
    pub(crate) fn new(kind: WorkerErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: WorkerErrorKind,
        message: impl Into<String>,
        source: impl Into<Source>,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> WorkerErrorKind {
        self.kind
    }
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WorkerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}
