//! `WorkerHost`: runs the Rust workers of one or more queues with Python handlers.
//!
//! The host builds one [`Worker`] per queue on the client's connection, runs them in the
//! background until [`WorkerHost::stop`] (graceful: the runtime's grace period) or
//! [`WorkerHost::abort`] (running jobs handed back at once), and lets a Python thread wait
//! for the end without holding the GIL. Signals are the Python caller's business
//! (`jobfleet.worker` installs handlers that call `stop` and `abort`).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use jobfleet_worker::{AbortHandle, StatsSnapshot, Worker};
use pyo3::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::dispatch::{AsyncBridge, CallState, PyHandler, Route, SyncPool};
use crate::errors;
use crate::runtime::{runtime, wait};

/// Counters of one queue's worker: queue, started, succeeded, retried, dead-lettered, handed
/// back.
type QueueStats = (String, u64, u64, u64, u64, u64);

/// What the worker threads share with the host.
pub(crate) struct HostShared {
    stop: CancellationToken,
    aborts: Mutex<Vec<AbortHandle>>,
    finished: Mutex<Option<Vec<QueueStats>>>,
    finished_changed: Condvar,
    recycle: Mutex<Option<String>>,
    recycle_after: Duration,
}

impl HostShared {
    /// A sync handler still runs after the runtime stopped waiting for it (see
    /// `dispatch::Overrun`): report it, and recycle the worker if it does not return in time.
    pub(crate) fn overrun(self: &Arc<Self>, call: Arc<CallState>, handler: &str, job_id: &str) {
        tracing::warn!(
            handler,
            job_id,
            "sync handler still running after its job's timeout; a Python thread cannot be interrupted, so it keeps its thread until it returns"
        );
        let Some(runtime) = crate::runtime::existing() else {
            return;
        };
        let (shared, handler, job_id) = (Arc::clone(self), handler.to_owned(), job_id.to_owned());
        runtime.spawn(async move {
            if tokio::time::timeout(shared.recycle_after, call.finished())
                .await
                .is_err()
            {
                shared.recycle(format!(
                    "sync handler {handler} did not return {:?} after job {job_id} timed out",
                    shared.recycle_after
                ));
            }
        });
    }

    /// Stops the worker gracefully so that its process can be replaced.
    fn recycle(&self, reason: String) {
        let mut recycle = self.recycle.lock().expect("host lock");
        if recycle.is_none() && !self.stop.is_cancelled() {
            tracing::error!(reason, "recycling the worker: stopping gracefully");
            *recycle = Some(reason);
            self.stop.cancel();
        }
    }

    fn abort(&self) {
        self.stop.cancel();
        for handle in self.aborts.lock().expect("host lock").iter() {
            handle.abort();
        }
    }
}

/// The queues, handlers and options of a host not started yet.
struct Plan {
    client: async_nats::Client,
    queues: Vec<(String, Vec<Arc<Route>>)>,
    concurrency: usize,
    threads: usize,
    grace: Duration,
    metrics_port: Option<u16>,
    runner: Option<Py<PyAny>>,
}

/// The workers of a set of queues, with Python handlers.
#[pyclass(frozen, module = "jobfleet._native")]
pub(crate) struct WorkerHost {
    shared: Arc<HostShared>,
    plan: Mutex<Option<Plan>>,
    metrics: Mutex<Vec<String>>,
}

#[pymethods]
impl WorkerHost {
    /// `queues`: `[(queue, [(job_type, invoke, is_async), ...]), ...]`.
    #[new]
    #[pyo3(signature = (client, queues, *, concurrency=32, threads=None, grace_period=30.0,
        metrics_port=None, runner=None, recycle_after=10.0))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn new(
        py: Python<'_>,
        client: &Client,
        queues: Vec<(String, Vec<(String, Py<PyAny>, bool)>)>,
        concurrency: usize,
        threads: Option<usize>,
        grace_period: f64,
        metrics_port: Option<u16>,
        runner: Option<Py<PyAny>>,
        recycle_after: f64,
    ) -> PyResult<Self> {
        let invalid = |message: &str| Err(errors::invalid_option(py, message));
        if concurrency == 0 {
            return invalid("`concurrency` must be at least 1");
        }
        if threads == Some(0) {
            return invalid("`threads` must be at least 1");
        }
        let Ok(grace) = Duration::try_from_secs_f64(grace_period) else {
            return invalid("`grace_period` must be a finite number of seconds >= 0");
        };
        let Ok(recycle_after) = Duration::try_from_secs_f64(recycle_after) else {
            return invalid("`recycle_after` must be a finite number of seconds >= 0");
        };
        if queues.is_empty() {
            return invalid("no queues to work");
        }
        let mut plan_queues = Vec::with_capacity(queues.len());
        for (queue, handlers) in queues {
            if handlers.is_empty() {
                return invalid(&format!("queue {queue:?} has no handlers"));
            }
            let routes: Vec<Arc<Route>> = handlers
                .into_iter()
                .map(|(name, invoke, is_async)| {
                    Arc::new(Route {
                        name,
                        invoke: Arc::new(invoke),
                        is_async,
                    })
                })
                .collect();
            if routes.iter().any(|r| r.is_async) && runner.is_none() {
                return invalid("async handlers need an asyncio runner");
            }
            plan_queues.push((queue, routes));
        }
        Ok(Self {
            shared: Arc::new(HostShared {
                stop: CancellationToken::new(),
                aborts: Mutex::new(Vec::new()),
                finished: Mutex::new(None),
                finished_changed: Condvar::new(),
                recycle: Mutex::new(None),
                recycle_after,
            }),
            plan: Mutex::new(Some(Plan {
                client: client.producer.client().clone(),
                queues: plan_queues,
                concurrency,
                threads: threads.unwrap_or(concurrency.min(64)),
                grace,
                metrics_port,
                runner,
            })),
            metrics: Mutex::new(Vec::new()),
        })
    }

    /// Binds every queue's worker (raising if a queue is missing) and starts them in the
    /// background.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let Some(plan) = self.plan.lock().expect("host lock").take() else {
            return Err(errors::invalid_option(
                py,
                "this worker host was already started",
            ));
        };
        let any = |is_async: bool| {
            plan.queues
                .iter()
                .any(|(_, routes)| routes.iter().any(|r| r.is_async == is_async))
        };
        let pool = if any(false) {
            Some(SyncPool::start(plan.threads).map_err(|e| {
                errors::raise(
                    py,
                    "JobfleetError",
                    format!("cannot start threads: {e}"),
                    None,
                )
            })?)
        } else {
            None
        };
        let bridge = match (&plan.runner, any(true)) {
            (Some(runner), true) => {
                Some(AsyncBridge::start(runner.clone_ref(py)).map_err(|e| {
                    errors::raise(
                        py,
                        "JobfleetError",
                        format!("cannot start a thread: {e}"),
                        None,
                    )
                })?)
            }
            _ => None,
        };
        let close = {
            let (pool, bridge) = (pool.clone(), bridge.clone());
            move || {
                if let Some(pool) = &pool {
                    pool.close();
                }
                if let Some(bridge) = &bridge {
                    bridge.close();
                }
            }
        };
        let mut builders = Vec::new();
        for (index, (queue, routes)) in plan.queues.into_iter().enumerate() {
            let only = (routes.len() == 1).then(|| Arc::clone(&routes[0]));
            let handler = PyHandler {
                by_type: routes
                    .iter()
                    .map(|r| (r.name.clone(), Arc::clone(r)))
                    .collect(),
                only,
                pool: pool.clone(),
                bridge: bridge.clone(),
                host: Arc::clone(&self.shared),
            };
            let mut builder = Worker::builder(plan.client.clone(), queue.clone())
                .concurrency(plan.concurrency)
                .grace_period(plan.grace);
            if let Some(port) = plan.metrics_port {
                // One port per queue: the first queue's is the one asked for.
                let port = if port == 0 {
                    0
                } else {
                    port.saturating_add(index as u16)
                };
                builder = builder.metrics_addr(std::net::SocketAddr::from(([0, 0, 0, 0], port)));
            }
            builders.push((queue, builder, handler));
        }
        let built = wait(py, async move {
            let mut workers = Vec::new();
            for (queue, builder, handler) in builders {
                workers.push((queue, builder.build(handler).await?));
            }
            Ok::<_, jobfleet_worker::WorkerError>(workers)
        });
        let workers = match built {
            Ok(Ok(workers)) => workers,
            Ok(Err(err)) => {
                close();
                return Err(errors::to_py(py, &err));
            }
            Err(err) => {
                close();
                return Err(err);
            }
        };
        {
            let mut aborts = self.shared.aborts.lock().expect("host lock");
            let mut metrics = self.metrics.lock().expect("host lock");
            for (_, worker) in &workers {
                aborts.push(worker.abort_handle());
                metrics.extend(worker.metrics_addr().map(|a| a.to_string()));
            }
        }
        let shared = Arc::clone(&self.shared);
        runtime(py)?.spawn(async move {
            let runs = workers.into_iter().map(|(queue, worker)| {
                let stop = shared.stop.clone();
                async move {
                    let stats: StatsSnapshot = worker.run(stop.cancelled_owned()).await;
                    (
                        queue,
                        stats.started,
                        stats.succeeded,
                        stats.retried,
                        stats.dead_lettered,
                        stats.released,
                    )
                }
            });
            let stats = futures::future::join_all(runs).await;
            close();
            *shared.finished.lock().expect("host lock") = Some(stats);
            shared.finished_changed.notify_all();
        });
        Ok(())
    }

    /// Waits until every worker has stopped, or `timeout` seconds; true when stopped. The GIL
    /// is released meanwhile, and Python signal handlers run every 100 ms.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = timeout
            .and_then(|t| Duration::try_from_secs_f64(t).ok())
            .map(|t| Instant::now() + t);
        loop {
            let step = deadline.map_or(Duration::from_millis(100), |d| {
                d.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100))
            });
            let finished = py.detach(|| {
                let guard = self.shared.finished.lock().expect("host lock");
                let (guard, _) = self
                    .shared
                    .finished_changed
                    .wait_timeout_while(guard, step, |f| f.is_none())
                    .expect("host lock");
                guard.is_some()
            });
            if finished {
                return Ok(true);
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// Begins the graceful shutdown: no new jobs; running ones may finish within the grace
    /// period, then are handed back.
    fn stop(&self) {
        self.shared.stop.cancel();
    }

    /// Hands back running jobs at once (and stops).
    fn abort(&self) {
        self.shared.abort();
    }

    /// Whether a shutdown has begun.
    #[getter]
    fn stopping(&self) -> bool {
        self.shared.stop.is_cancelled()
    }

    /// Why the worker recycled itself (a sync handler overran its timeout), if it did.
    #[getter]
    fn recycle_reason(&self) -> Option<String> {
        self.shared.recycle.lock().expect("host lock").clone()
    }

    /// The addresses metrics are served on, one per queue.
    #[getter]
    fn metrics_addrs(&self) -> Vec<String> {
        self.metrics.lock().expect("host lock").clone()
    }

    /// Counters per queue once stopped: `(queue, started, succeeded, retried,
    /// dead_lettered, released)`.
    #[getter]
    fn stats(&self) -> Option<Vec<QueueStats>> {
        self.shared.finished.lock().expect("host lock").clone()
    }
}
