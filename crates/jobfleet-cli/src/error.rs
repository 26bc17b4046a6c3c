//! CLI failures and their exit codes.

use std::fmt;

/// Why a command failed; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CliErrorKind {
    /// Bad arguments, input or configuration: exit 2 (as clap's usage errors).
    Usage,
    /// The queue, job or dead letter does not exist: exit 3.
    NotFound,
    /// NATS or JetStream could not be reached or did not answer: exit 4.
    Unavailable,
    /// The server refused or the operation failed otherwise: exit 1.
    Failed,
}

impl CliErrorKind {
    /// The process exit code for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Failed => 1,
            Self::Usage => 2,
            Self::NotFound => 3,
            Self::Unavailable => 4,
        }
    }
}

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub struct CliError {
    kind: CliErrorKind,
    message: String,
}

impl CliError {
    /// An error of `kind`.
    pub fn new(kind: CliErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> CliErrorKind {
        self.kind
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The message of `err` followed by its causes, as `a: b: c`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl From<jobfleet_producer::ConnectError> for CliError {
    fn from(err: jobfleet_producer::ConnectError) -> Self {
        use jobfleet_producer::ConnectErrorKind as K;
        let kind = match err.kind() {
            K::InvalidOptions => CliErrorKind::Usage,
            K::Authentication => CliErrorKind::Failed,
            _ => CliErrorKind::Unavailable,
        };
        Self::new(kind, chain(&err))
    }
}

impl From<jobfleet_producer::EnqueueError> for CliError {
    fn from(err: jobfleet_producer::EnqueueError) -> Self {
        use jobfleet_producer::EnqueueErrorKind as K;
        let kind = match err.kind() {
            K::UnknownQueue => CliErrorKind::NotFound,
            K::InvalidOption | K::InvalidPayload | K::PayloadTooLarge => CliErrorKind::Usage,
            K::NotConnected | K::Timeout => CliErrorKind::Unavailable,
            _ => CliErrorKind::Failed,
        };
        let mut message = chain(&err);
        if let Some(id) = err.job_id() {
            message.push_str(&format!(" (job {id})"));
        }
        Self::new(kind, message)
    }
}

impl From<jobfleet_producer::ProvisionError> for CliError {
    fn from(err: jobfleet_producer::ProvisionError) -> Self {
        use jobfleet_producer::ProvisionErrorKind as K;
        let kind = match err.kind() {
            K::InvalidConfig => CliErrorKind::Usage,
            K::Unavailable => CliErrorKind::Unavailable,
            _ => CliErrorKind::Failed,
        };
        Self::new(kind, chain(&err))
    }
}

impl From<jobfleet_producer::QueueAdminError> for CliError {
    fn from(err: jobfleet_producer::QueueAdminError) -> Self {
        use jobfleet_producer::QueueAdminErrorKind as K;
        let kind = match err.kind() {
            K::UnknownQueue => CliErrorKind::NotFound,
            K::Unavailable => CliErrorKind::Unavailable,
            _ => CliErrorKind::Failed,
        };
        Self::new(kind, chain(&err))
    }
}

impl From<jobfleet_worker::WorkerError> for CliError {
    fn from(err: jobfleet_worker::WorkerError) -> Self {
        use jobfleet_worker::WorkerErrorKind as K;
        let kind = match err.kind() {
            K::UnknownQueue => CliErrorKind::NotFound,
            K::InvalidConfig => CliErrorKind::Usage,
            _ => CliErrorKind::Unavailable,
        };
        Self::new(kind, chain(&err))
    }
}

impl From<jobfleet_core::ConfigError> for CliError {
    fn from(err: jobfleet_core::ConfigError) -> Self {
        Self::new(CliErrorKind::Usage, chain(&err))
    }
}
