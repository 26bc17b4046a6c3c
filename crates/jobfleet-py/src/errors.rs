//! Rust errors as Python exceptions: the one place that maps them.
//!
//! The exception classes are defined (and documented) in Python, in `jobfleet.errors`; this
//! module picks the class for each error kind and raises it with the message, the causes
//! (`source()` chain) and, for enqueue errors, the job id.
//!
//! | Rust | Python (`jobfleet.errors`) |
//! |---|---|
//! | `EnqueueErrorKind::UnknownQueue`, `WorkerErrorKind::UnknownQueue`, `QueueAdminErrorKind::UnknownQueue` | `UnknownQueue` |
//! | `EnqueueErrorKind::PayloadTooLarge` | `PayloadTooLarge` |
//! | `EnqueueErrorKind::StreamFull` | `QueueFull` |
//! | `EnqueueErrorKind::InvalidOption`, `ConnectErrorKind::InvalidOptions`, `ProvisionErrorKind::InvalidConfig`, `WorkerErrorKind::InvalidConfig` | `InvalidOption` |
//! | `EnqueueErrorKind::InvalidPayload` | `InvalidPayload` |
//! | `EnqueueErrorKind::NotConnected` | `NotConnected` |
//! | `EnqueueErrorKind::Timeout` | `EnqueueTimeout` |
//! | `EnqueueErrorKind::Rejected`, `ProvisionErrorKind::Rejected`, `QueueAdminErrorKind::Rejected` | `Rejected` |
//! | `ConnectErrorKind::Unreachable`, `ConnectErrorKind::Tls` | `ConnectFailed` |
//! | `ConnectErrorKind::Authentication` | `AuthenticationFailed` |
//! | `ProvisionErrorKind::Conflict` | `QueueConflict` |
//! | `*::Unavailable` | `Unavailable` |
//! | anything else (a kind added later) | `JobfleetError` |

use std::error::Error;

use jobfleet_producer::{
    ConnectError, ConnectErrorKind, EnqueueError, EnqueueErrorKind, ProvisionError,
    ProvisionErrorKind, QueueAdminError, QueueAdminErrorKind,
};
use jobfleet_worker::{WorkerError, WorkerErrorKind};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The class of `jobfleet.errors` for a Rust error.
fn class_of(err: &(dyn Error + 'static)) -> &'static str {
    if let Some(err) = err.downcast_ref::<EnqueueError>() {
        return match err.kind() {
            EnqueueErrorKind::UnknownQueue => "UnknownQueue",
            EnqueueErrorKind::PayloadTooLarge => "PayloadTooLarge",
            EnqueueErrorKind::StreamFull => "QueueFull",
            EnqueueErrorKind::InvalidOption => "InvalidOption",
            EnqueueErrorKind::InvalidPayload => "InvalidPayload",
            EnqueueErrorKind::NotConnected => "NotConnected",
            EnqueueErrorKind::Timeout => "EnqueueTimeout",
            EnqueueErrorKind::Rejected => "Rejected",
            _ => "JobfleetError",
        };
    }
    if let Some(err) = err.downcast_ref::<ConnectError>() {
        return match err.kind() {
            ConnectErrorKind::InvalidOptions => "InvalidOption",
            ConnectErrorKind::Authentication => "AuthenticationFailed",
            ConnectErrorKind::Tls | ConnectErrorKind::Unreachable => "ConnectFailed",
            _ => "JobfleetError",
        };
    }
    if let Some(err) = err.downcast_ref::<ProvisionError>() {
        return match err.kind() {
            ProvisionErrorKind::InvalidConfig => "InvalidOption",
            ProvisionErrorKind::Conflict => "QueueConflict",
            ProvisionErrorKind::Rejected => "Rejected",
            ProvisionErrorKind::Unavailable => "Unavailable",
            _ => "JobfleetError",
        };
    }
    if let Some(err) = err.downcast_ref::<QueueAdminError>() {
        return match err.kind() {
            QueueAdminErrorKind::UnknownQueue => "UnknownQueue",
            QueueAdminErrorKind::Rejected => "Rejected",
            QueueAdminErrorKind::Unavailable => "Unavailable",
            _ => "JobfleetError",
        };
    }
    if let Some(err) = err.downcast_ref::<WorkerError>() {
        return match err.kind() {
            WorkerErrorKind::UnknownQueue => "UnknownQueue",
            WorkerErrorKind::InvalidConfig => "InvalidOption",
            WorkerErrorKind::Unavailable => "Unavailable",
            _ => "JobfleetError",
        };
    }
    "JobfleetError"
}

/// The message and its causes, `outer: inner: innermost`, skipping a cause that only repeats.
fn message_of(err: &(dyn Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}

/// Converts any of the bound crates' errors into the matching `jobfleet.errors` exception.
pub(crate) fn to_py(py: Python<'_>, err: &(dyn Error + 'static)) -> PyErr {
    let job_id = err
        .downcast_ref::<EnqueueError>()
        .and_then(EnqueueError::job_id)
        .map(|id| id.to_string());
    raise(py, class_of(err), message_of(err), job_id)
}

/// An exception of class `class` from `jobfleet.errors`.
pub(crate) fn raise(
    py: Python<'_>,
    class: &str,
    message: impl Into<String>,
    job_id: Option<String>,
) -> PyErr {
    let message = message.into();
    let build = || -> PyResult<PyErr> {
        let class = py.import("jobfleet.errors")?.getattr(class)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("job_id", job_id)?;
        Ok(PyErr::from_value(class.call((message,), Some(&kwargs))?))
    };
    // If even that fails (the package is broken), the import error says why.
    build().unwrap_or_else(|err| err)
}

/// `InvalidOption` with `message`.
pub(crate) fn invalid_option(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, "InvalidOption", message, None)
}
