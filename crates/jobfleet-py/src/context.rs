//! `JobContext`: what a Python handler sees of the attempt it runs (wrapped by
//! `jobfleet.JobContext`).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors;
use crate::runtime::{runtime, wait};

fn progress_value(py: Python<'_>, json: Option<&str>) -> PyResult<Option<serde_json::Value>> {
    json.map(serde_json::from_str)
        .transpose()
        .map_err(|e| errors::invalid_option(py, format!("progress must be JSON: {e}")))
}

async fn report(context: &jobfleet_worker::JobContext, value: Option<serde_json::Value>) {
    match value {
        Some(value) => context.report_progress(value).await,
        None => context.progress().await,
    }
}

/// One attempt of a job, as handed to a Python handler.
#[pyclass(frozen, module = "jobfleet._native")]
pub(crate) struct JobContext {
    pub(crate) inner: jobfleet_worker::JobContext,
}

impl JobContext {
    /// Wraps one attempt for Python.
    pub(crate) fn new_bound(
        py: Python<'_>,
        inner: jobfleet_worker::JobContext,
    ) -> PyResult<Bound<'_, Self>> {
        Bound::new(py, Self { inner })
    }
}

#[pymethods]
impl JobContext {
    /// The job id.
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// The queue.
    #[getter]
    fn queue(&self) -> &str {
        self.inner.queue()
    }

    /// This attempt's number, from 1.
    #[getter]
    fn attempt(&self) -> u32 {
        self.inner.attempt()
    }

    /// The job's attempt limit.
    #[getter]
    fn max_attempts(&self) -> u32 {
        self.inner.max_attempts()
    }

    /// The application job type, if any.
    #[getter]
    fn job_type(&self) -> Option<&str> {
        self.inner.job_type()
    }

    /// When the job was accepted, in Unix seconds.
    #[getter]
    fn enqueued_at(&self) -> f64 {
        self.inner.enqueued_at().unix_timestamp_nanos() as f64 / 1e9
    }

    /// This attempt's timeout, in seconds.
    #[getter]
    fn timeout(&self) -> f64 {
        self.inner.timeout().as_secs_f64()
    }

    /// The W3C `traceparent` the producer sent, if any.
    #[getter]
    fn traceparent(&self) -> Option<&str> {
        self.inner.meta().traceparent.as_deref()
    }

    /// The W3C trace id of the producer's trace, if any.
    #[getter]
    fn trace_id(&self) -> Option<&str> {
        self.inner.meta().trace_id()
    }

    /// The raw payload.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.payload())
    }

    /// Every header of the message (the last value of a repeated one).
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, values) in self.inner.headers().iter() {
            let name: &str = name.as_ref();
            if let Some(value) = values.last() {
                dict.set_item(name, value.as_str())?;
            }
        }
        Ok(dict)
    }

    /// Whether the attempt was cancelled (it timed out, or the worker is handing it back).
    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// Reports progress: with `value_json`, a `progress` audit event carrying that JSON (when
    /// the queue's audit level is `full`); always, a lease extension. Returns once done (the
    /// GIL released meanwhile), so a report made before the handler returns is recorded
    /// before the job's terminal event.
    #[pyo3(signature = (value_json=None))]
    fn progress(&self, py: Python<'_>, value_json: Option<&str>) -> PyResult<()> {
        let value = progress_value(py, value_json)?;
        let context = self.inner.clone();
        wait(py, async move { report(&context, value).await })
    }

    /// [`JobContext::progress`] in the background: calls `callback()` from another thread
    /// once done.
    #[pyo3(signature = (callback, value_json=None))]
    fn progress_async(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        value_json: Option<&str>,
    ) -> PyResult<()> {
        let value = progress_value(py, value_json)?;
        let context = self.inner.clone();
        runtime(py)?.spawn(async move {
            report(&context, value).await;
            // The callback needs the GIL, which a runtime thread must not wait for.
            tokio::task::spawn_blocking(move || {
                Python::attach(|py| {
                    if let Err(err) = callback.call0(py) {
                        err.write_unraisable(py, None);
                    }
                });
            });
        });
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "JobContext(id={}, queue={:?}, attempt={}/{})",
            self.inner.id(),
            self.inner.queue(),
            self.inner.attempt(),
            self.inner.max_attempts()
        )
    }
}
