//! The `jobfleet._native` extension module: a thin binding of the jobfleet crates for the
//! `jobfleet` Python package, which is its only user (the module is private).
//!
//! - [`client::Client`]: a connection with a producer: enqueue (blocking or with a
//!   callback), declare queues, job status and history, dead letters.
//! - [`host::WorkerHost`]: the Rust workers of some queues, running Python handlers
//!   ([`dispatch`]).
//! - [`context::JobContext`]: one attempt, as a handler sees it.
//! - [`errors`]: the one mapping from Rust error kinds to `jobfleet.errors` exceptions.
//!
//! The GIL is released whenever Rust waits (network, locks, other threads), and no tokio
//! runtime thread ever waits for it.

mod client;
mod context;
mod dispatch;
mod errors;
mod host;
mod runtime;

use std::sync::Mutex;

use pyo3::prelude::*;

/// The telemetry of a worker process, once set up.
static TELEMETRY: Mutex<Option<jobfleet_telemetry::TelemetryGuard>> = Mutex::new(None);

/// The private native module behind the `jobfleet` Python package.
#[pymodule(name = "_native")]
mod native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::client::Client;
    #[pymodule_export]
    use crate::context::JobContext;
    #[pymodule_export]
    use crate::dispatch::Completion;
    #[pymodule_export]
    use crate::host::WorkerHost;

    /// Sets up the Rust side's logs (stderr, filtered by `RUST_LOG`) and, when
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, trace export, for a worker process. Only the
    /// first call in a process does anything; returns whether it was that call.
    #[pyfunction]
    fn init_telemetry(service_name: &str) -> bool {
        let mut telemetry = super::TELEMETRY.lock().expect("telemetry lock");
        static DONE: std::sync::Once = std::sync::Once::new();
        let mut first = false;
        DONE.call_once(|| {
            *telemetry = Some(jobfleet_telemetry::init(service_name));
            first = true;
        });
        first
    }

    /// Flushes and stops trace export (at the end of a worker process).
    #[pyfunction]
    fn shutdown_telemetry(py: Python<'_>) {
        let guard = super::TELEMETRY.lock().expect("telemetry lock").take();
        py.detach(move || drop(guard));
    }

    /// Runs the Rust `jobfleet` command line with `args` (the first is the program name) and
    /// returns its exit code. Blocks with the GIL released.
    #[pyfunction]
    fn run_cli(py: Python<'_>, args: Vec<String>) -> i32 {
        let args = args.into_iter().map(std::ffi::OsString::from).collect();
        py.detach(move || jobfleet_cli::run(args))
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
