//! The process's tokio runtime, and waiting on it from Python without holding the GIL.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::errors;

/// How often a thread waiting on Rust checks for Python signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// The runtime and the process it was created in.
static RUNTIME: OnceLock<(u32, Runtime)> = OnceLock::new();

/// The shared runtime, created on first use.
///
/// # Errors
///
/// `UsedAfterFork` in a child process forked after the runtime started: its threads and
/// connections stayed with the parent.
pub(crate) fn runtime(py: Python<'_>) -> PyResult<&'static Runtime> {
    let (pid, runtime) = RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("jobfleet-rt")
            .build()
            .expect("start the tokio runtime");
        (std::process::id(), runtime)
    });
    if *pid != std::process::id() {
        return Err(errors::raise(
            py,
            "UsedAfterFork",
            "jobfleet was started before this process was forked; create the App (and connect) in the child process",
            None,
        ));
    }
    Ok(runtime)
}

/// Runs `future` to completion on the runtime with the GIL released, checking for Python
/// signals every 100 ms: Ctrl-C raises `KeyboardInterrupt` and drops the future.
pub(crate) fn wait<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let runtime = runtime(py)?;
    let mut future = std::pin::pin!(future);
    loop {
        let done = py.detach(|| {
            runtime.block_on(async { tokio::time::timeout(SIGNAL_CHECK, future.as_mut()).await })
        });
        match done {
            Ok(output) => return Ok(output),
            Err(_elapsed) => py.check_signals()?,
        }
    }
}

/// The runtime if it was started in this process (for code that runs without the GIL).
pub(crate) fn existing() -> Option<&'static Runtime> {
    RUNTIME
        .get()
        .filter(|(pid, _)| *pid == std::process::id())
        .map(|(_, runtime)| runtime)
}
