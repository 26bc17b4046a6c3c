//! `Client`: one NATS connection for enqueueing, declaring queues and reading job state.

use std::time::Duration;

use bytes::Bytes;
use jobfleet_core::{JobId, QueueConfig};
use jobfleet_producer::{ConnectOptions, Enqueued, Job, Producer};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use time::OffsetDateTime;

use crate::errors;
use crate::runtime::{runtime, wait};

/// What `enqueue` returns: id, queue, stream sequence, duplicate, run_at (Unix seconds).
type EnqueuedTuple = (String, String, u64, bool, Option<f64>);

/// What `declare_queue` returns: created, changed, not applied, differs.
type DeclaredTuple = (bool, Vec<String>, Vec<String>, Vec<String>);

/// A dead letter: id, sequence, reason, attempts, dead_at (RFC 3339), job type, headers,
/// payload.
type DeadLetterTuple = (
    String,
    u64,
    String,
    u32,
    Option<String>,
    Option<String>,
    Vec<(String, String)>,
    Py<PyBytes>,
);

/// A connection to NATS with a jobfleet producer on it. Cheap to share between threads.
#[pyclass(frozen, module = "jobfleet._native")]
pub(crate) struct Client {
    pub(crate) producer: Producer,
    url: String,
}

/// Per-job options, as Python passes them.
struct JobOptions {
    job_type: Option<String>,
    idempotency_key: Option<String>,
    delay: Option<f64>,
    run_at: Option<f64>,
    max_attempts: Option<u32>,
    timeout: Option<f64>,
    headers: Option<Vec<(String, String)>>,
    content_type: Option<String>,
}

impl JobOptions {
    fn into_job(self, py: Python<'_>, payload: Vec<u8>) -> PyResult<Job> {
        let seconds = |field: &str, value: f64| {
            Duration::try_from_secs_f64(value).map_err(|_| {
                errors::invalid_option(
                    py,
                    format!("`{field}` must be a finite number of seconds >= 0, got {value}"),
                )
            })
        };
        let mut job = Job::bytes(Bytes::from(payload));
        if let Some(job_type) = self.job_type {
            job = job.job_type(job_type);
        }
        if let Some(key) = self.idempotency_key {
            job = job.idempotency_key(key);
        }
        if let Some(delay) = self.delay {
            job = job.delay(seconds("delay", delay)?);
        }
        if let Some(at) = self.run_at {
            let nanos = (at * 1e9) as i128;
            let at = OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .ok()
                .filter(|_| at.is_finite())
                .ok_or_else(|| errors::invalid_option(py, "`run_at` is out of range"))?;
            job = job.run_at(at);
        }
        if let Some(attempts) = self.max_attempts {
            job = job.max_attempts(attempts);
        }
        if let Some(timeout) = self.timeout {
            job = job.timeout(seconds("timeout", timeout)?);
        }
        if let Some(content_type) = self.content_type {
            job = job.content_type(content_type);
        }
        for (name, value) in self.headers.unwrap_or_default() {
            job = job.header(name, value);
        }
        Ok(job)
    }
}

fn enqueued_tuple(enqueued: Enqueued) -> EnqueuedTuple {
    let run_at = enqueued
        .run_at
        .map(|at| at.unix_timestamp_nanos() as f64 / 1e9);
    (
        enqueued.id.to_string(),
        enqueued.queue,
        enqueued.sequence,
        enqueued.duplicate,
        run_at,
    )
}

fn job_id(py: Python<'_>, id: &str) -> PyResult<JobId> {
    id.parse()
        .map_err(|_| errors::invalid_option(py, format!("{id:?} is not a job id")))
}

#[pymethods]
impl Client {
    /// Connects to `url` (one URL or a comma-separated list). Credentials and TLS come from
    /// the environment as for every jobfleet process: `NATS_CREDS`, `NATS_TOKEN`,
    /// `NATS_USER`/`NATS_PASSWORD`, `NATS_CA`, `NATS_CERT`/`NATS_KEY`.
    #[staticmethod]
    #[pyo3(signature = (url, name=None))]
    fn connect(py: Python<'_>, url: String, name: Option<String>) -> PyResult<Self> {
        let mut options = ConnectOptions::from_env().urls(url.clone());
        if let Some(name) = name {
            options = options.name(name);
        }
        let producer = wait(py, Producer::connect(options))?.map_err(|e| errors::to_py(py, &e))?;
        Ok(Self { producer, url })
    }

    /// The URL this client connected to.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// Enqueues a job; returns once JetStream stored it.
    #[pyo3(signature = (queue, payload, *, job_type=None, idempotency_key=None, delay=None,
        run_at=None, max_attempts=None, timeout=None, headers=None, content_type=None))]
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &self,
        py: Python<'_>,
        queue: String,
        payload: Vec<u8>,
        job_type: Option<String>,
        idempotency_key: Option<String>,
        delay: Option<f64>,
        run_at: Option<f64>,
        max_attempts: Option<u32>,
        timeout: Option<f64>,
        headers: Option<Vec<(String, String)>>,
        content_type: Option<String>,
    ) -> PyResult<EnqueuedTuple> {
        let job = JobOptions {
            job_type,
            idempotency_key,
            delay,
            run_at,
            max_attempts,
            timeout,
            headers,
            content_type,
        }
        .into_job(py, payload)?;
        let producer = self.producer.clone();
        wait(py, async move { producer.enqueue(&queue, job).await })?
            .map(enqueued_tuple)
            .map_err(|e| errors::to_py(py, &e))
    }

    /// Enqueues a job in the background and calls `callback(result, None)` or
    /// `callback(None, exception)` from another thread when done.
    #[pyo3(signature = (queue, payload, callback, *, job_type=None, idempotency_key=None,
        delay=None, run_at=None, max_attempts=None, timeout=None, headers=None, content_type=None))]
    #[allow(clippy::too_many_arguments)]
    fn enqueue_async(
        &self,
        py: Python<'_>,
        queue: String,
        payload: Vec<u8>,
        callback: Py<PyAny>,
        job_type: Option<String>,
        idempotency_key: Option<String>,
        delay: Option<f64>,
        run_at: Option<f64>,
        max_attempts: Option<u32>,
        timeout: Option<f64>,
        headers: Option<Vec<(String, String)>>,
        content_type: Option<String>,
    ) -> PyResult<()> {
        let job = JobOptions {
            job_type,
            idempotency_key,
            delay,
            run_at,
            max_attempts,
            timeout,
            headers,
            content_type,
        }
        .into_job(py, payload)?;
        let producer = self.producer.clone();
        let runtime = runtime(py)?;
        runtime.spawn(async move {
            let result = producer.enqueue(&queue, job).await;
            // The callback needs the GIL, which a runtime thread must not wait for.
            tokio::task::spawn_blocking(move || {
                Python::attach(|py| {
                    let called = match result {
                        Ok(enqueued) => {
                            callback.call1(py, (Some(enqueued_tuple(enqueued)), py.None()))
                        }
                        Err(err) => {
                            let exception = errors::to_py(py, &err).into_value(py);
                            callback.call1(py, (py.None(), exception))
                        }
                    };
                    if let Err(err) = called {
                        err.write_unraisable(py, None);
                    }
                });
            });
        });
        Ok(())
    }

    /// Declares a queue from its JSON declaration (`QueueConfig`, as in the TOML file).
    ///
    /// With `update`, creates or updates it; otherwise only creates a missing queue, and for
    /// an existing one lists the `worker` settings named in the declaration that differ.
    /// Returns `(created, changed, not_applied, differs)`.
    fn declare_queue(
        &self,
        py: Python<'_>,
        config_json: &str,
        update: bool,
    ) -> PyResult<DeclaredTuple> {
        let config: QueueConfig = serde_json::from_str(config_json)
            .map_err(|e| errors::invalid_option(py, format!("invalid queue declaration: {e}")))?;
        config
            .validate()
            .map_err(|e| errors::invalid_option(py, e.to_string()))?;
        let raw: serde_json::Value = serde_json::from_str(config_json)
            .map_err(|e| errors::invalid_option(py, e.to_string()))?;
        let producer = self.producer.clone();
        let outcome = wait(py, async move {
            if !update {
                match jobfleet_producer::queue_stats(producer.jetstream(), &config.name).await {
                    Ok(stats) => return Ok(Err(differences(&raw, &config, stats.worker))),
                    Err(err)
                        if err.kind() == jobfleet_producer::QueueAdminErrorKind::UnknownQueue => {}
                    Err(err) => {
                        return Err(Box::new(err) as Box<dyn std::error::Error + Send + Sync>);
                    }
                }
            }
            match producer.declare_queue(&config).await {
                Ok(declared) => Ok(Ok(declared)),
                Err(err) => Err(Box::new(err) as Box<dyn std::error::Error + Send + Sync>),
            }
        })?
        .map_err(|e| errors::to_py(py, e.as_ref()))?;
        Ok(match outcome {
            Ok(declared) => {
                let not_applied = declared
                    .not_applied
                    .iter()
                    .map(|n| {
                        format!(
                            "{}: kept {} (declared {}): {}",
                            n.field, n.current, n.wanted, n.reason
                        )
                    })
                    .collect();
                (declared.created, declared.changed, not_applied, Vec::new())
            }
            Err(differs) => (false, Vec::new(), Vec::new(), differs),
        })
    }

    /// The job's latest audit event as JSON, or `None` when none is recorded.
    fn job_status(&self, py: Python<'_>, job_id_: &str) -> PyResult<Option<String>> {
        let id = job_id(py, job_id_)?;
        let js = self.producer.jetstream().clone();
        let status = wait(
            py,
            async move { jobfleet_worker::job_status(&js, id).await },
        )?
        .map_err(|e| errors::to_py(py, &e))?;
        Ok(status.map(|s| serde_json::to_string(&s.last).expect("audit events serialize")))
    }

    /// Every audit event of the job as JSON, oldest first.
    fn job_history(&self, py: Python<'_>, job_id_: &str) -> PyResult<Vec<String>> {
        let id = job_id(py, job_id_)?;
        let js = self.producer.jetstream().clone();
        let events = wait(
            py,
            async move { jobfleet_worker::job_history(&js, id).await },
        )?
        .map_err(|e| errors::to_py(py, &e))?;
        Ok(events
            .iter()
            .map(|e| serde_json::to_string(e).expect("audit events serialize"))
            .collect())
    }

    /// Up to `limit` dead letters of `queue` after dead-letter sequence `after`, oldest first.
    #[pyo3(signature = (queue, limit, after=0))]
    fn dead_letters(
        &self,
        py: Python<'_>,
        queue: String,
        limit: usize,
        after: u64,
    ) -> PyResult<Vec<DeadLetterTuple>> {
        let js = self.producer.jetstream().clone();
        let dead = wait(py, async move {
            jobfleet_worker::dead_letters_page(&js, &queue, after, limit, |_| true).await
        })?
        .map_err(|e| errors::to_py(py, &e))?;
        Ok(dead
            .into_iter()
            .map(|d| {
                let headers = d
                    .headers
                    .iter()
                    .flat_map(|(name, values)| {
                        let name: &str = name.as_ref();
                        values
                            .iter()
                            .map(move |v| (name.to_owned(), v.as_str().to_owned()))
                    })
                    .collect();
                (
                    d.id.to_string(),
                    d.sequence,
                    d.reason,
                    d.attempts,
                    d.dead_at.map(jobfleet_core::format_timestamp),
                    d.meta.and_then(|m| m.job_type),
                    headers,
                    PyBytes::new(py, &d.payload).unbind(),
                )
            })
            .collect())
    }

    /// Sends everything buffered and waits for the server to confirm.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let client = self.producer.client().clone();
        wait(py, async move { client.flush().await })?
            .map_err(|e| errors::raise(py, "NotConnected", format!("flush failed: {e}"), None))
    }

    fn __repr__(&self) -> String {
        format!("Client({:?})", self.url)
    }
}

/// The `worker` settings named in the raw declaration whose stored value differs.
fn differences(
    raw: &serde_json::Value,
    config: &QueueConfig,
    stored: Option<jobfleet_core::WorkerDefaults>,
) -> Vec<String> {
    let Some(named) = raw.get("worker").and_then(|w| w.as_object()) else {
        return Vec::new();
    };
    let declared = serde_json::to_value(config.worker).expect("worker settings serialize");
    let stored =
        serde_json::to_value(stored.unwrap_or_default()).expect("worker settings serialize");
    named
        .keys()
        .filter(|key| declared.get(key.as_str()) != stored.get(key.as_str()))
        .map(|key| {
            format!(
                "worker.{key}: the queue has {}, the app declares {}",
                stored.get(key.as_str()).unwrap_or(&serde_json::Value::Null),
                declared
                    .get(key.as_str())
                    .unwrap_or(&serde_json::Value::Null)
            )
        })
        .collect()
}
