//! Running Python handlers for the Rust runtime: the [`Handler`] of a queue, a pool of
//! threads for `def` handlers and a bridge to the asyncio loop for `async def` ones.
//!
//! No runtime thread ever waits for the GIL: Python is called only from the pool's threads,
//! from the bridge's submitter thread and from the asyncio loop's thread, which each attach
//! once and release the GIL whenever they wait for work.
//!
//! A Python handler is called through its `invoke` wrapper (built in `jobfleet._invoke`),
//! which catches the handler's exceptions and returns its verdict as a small tuple:
//!
//! | `invoke` returns | Outcome |
//! |---|---|
//! | `None` | `Outcome::Done` |
//! | `(1, json)` | `Outcome::DoneWith(json)` (a small result recorded in the audit event) |
//! | `(2, delay_seconds or None)` | `Outcome::Retry { after }` |
//! | `(3, reason)` | `Outcome::Fail { reason }`: dead-lettered now |
//! | `(4, class, message)` | `Err(HandlerError)` with that class: retried under the policy |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use futures::future::BoxFuture;
use jobfleet_worker::{Handler, HandlerError, HandlerResult, JobContext, Outcome};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use tokio::sync::{Notify, oneshot};

use crate::context::JobContext as PyJobContext;
use crate::host::HostShared;

/// One Python handler of a queue.
pub(crate) struct Route {
    /// The job type it handles (its name).
    pub(crate) name: String,
    /// Its `invoke` wrapper: `invoke(ctx) -> verdict`, a coroutine function when async.
    pub(crate) invoke: Arc<Py<PyAny>>,
    pub(crate) is_async: bool,
}

/// The handler the runtime runs for one queue: picks the Python handler by job type.
pub(crate) struct PyHandler {
    pub(crate) by_type: HashMap<String, Arc<Route>>,
    /// The queue's only handler, which runs every job of the queue whatever its type.
    pub(crate) only: Option<Arc<Route>>,
    pub(crate) pool: Option<Arc<SyncPool>>,
    pub(crate) bridge: Option<Arc<AsyncBridge>>,
    pub(crate) host: Arc<HostShared>,
}

impl Handler for PyHandler {
    fn call(&self, job: JobContext) -> BoxFuture<'static, HandlerResult> {
        let route = self.only.clone().or_else(|| {
            job.job_type()
                .and_then(|job_type| self.by_type.get(job_type))
                .cloned()
        });
        let Some(route) = route else {
            let message = match job.job_type() {
                Some(job_type) => format!("no handler for job type {job_type:?} on this queue"),
                None => "the job has no type, and this queue has several handlers".to_owned(),
            };
            return Box::pin(async move {
                Err(HandlerError::new(message).with_class("UnknownJobType"))
            });
        };
        if route.is_async {
            let bridge = self.bridge.clone().expect("an async route has a bridge");
            Box::pin(bridge.run(route, job))
        } else {
            let pool = self.pool.clone().expect("a sync route has a pool");
            Box::pin(pool.run(route, job, Arc::clone(&self.host)))
        }
    }
}

/// The verdict tuple of an `invoke` wrapper as a handler result (see the module docs).
fn verdict(value: &Bound<'_, PyAny>) -> HandlerResult {
    if value.is_none() {
        return Ok(Outcome::Done);
    }
    let parsed = || -> PyResult<HandlerResult> {
        let tuple = value.cast::<PyTuple>()?;
        let tag: u8 = tuple.get_item(0)?.extract()?;
        Ok(match tag {
            1 => {
                let json: String = tuple.get_item(1)?.extract()?;
                match serde_json::from_str(&json) {
                    Ok(result) => Ok(Outcome::DoneWith(result)),
                    Err(_) => Ok(Outcome::Done),
                }
            }
            2 => {
                let delay: Option<f64> = tuple.get_item(1)?.extract()?;
                let after = delay.and_then(|d| Duration::try_from_secs_f64(d).ok());
                Ok(Outcome::Retry { after })
            }
            3 => Ok(Outcome::fail(tuple.get_item(1)?.extract::<String>()?)),
            _ => {
                let class: String = tuple.get_item(1)?.extract()?;
                let message: String = tuple.get_item(2)?.extract()?;
                Err(HandlerError::new(message).with_class(class))
            }
        })
    };
    parsed().unwrap_or_else(|err| {
        Err(
            HandlerError::new(format!("a handler wrapper returned {value}: {err}"))
                .with_class("TypeError"),
        )
    })
}

/// A Python exception that escaped an `invoke` wrapper (a `BaseException`, or a broken
/// wrapper), as a retryable error.
fn escaped(py: Python<'_>, err: &PyErr) -> HandlerError {
    let class = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".to_owned());
    let message = err
        .value(py)
        .str()
        .map(|s| s.to_string())
        .unwrap_or_default();
    HandlerError::new(message).with_class(class)
}

// ---- sync handlers --------------------------------------------------------------------------

/// Where one sync call is.
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const ABANDONED: u8 = 3;

/// The state of one call on the pool, shared by the waiting job and the thread running it.
#[derive(Default)]
pub(crate) struct CallState {
    state: AtomicU8,
    finished: Notify,
}

impl CallState {
    /// Claims a queued call for a thread; false when it was abandoned before it started.
    fn start(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn finish(&self) {
        self.state.store(DONE, Ordering::Release);
        self.finished.notify_one();
    }

    /// Abandons the call; returns the state it was in.
    fn abandon(&self) -> u8 {
        match self
            .state
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => QUEUED,
            Err(state) => state,
        }
    }

    /// Resolves when the thread has returned from the handler.
    pub(crate) async fn finished(&self) {
        loop {
            let notified = self.finished.notified();
            if self.state.load(Ordering::Acquire) == DONE {
                return;
            }
            notified.await;
        }
    }
}

struct SyncCall {
    invoke: Arc<Py<PyAny>>,
    context: JobContext,
    state: Arc<CallState>,
    reply: oneshot::Sender<HandlerResult>,
}

/// A fixed set of threads that run `def` handlers. Each thread attaches to the interpreter
/// once (so `threading.local` state lives as long as the thread) and releases the GIL while
/// it waits for the next job.
pub(crate) struct SyncPool {
    sender: Mutex<Option<mpsc::Sender<SyncCall>>>,
}

impl SyncPool {
    pub(crate) fn start(threads: usize) -> std::io::Result<Arc<Self>> {
        let (sender, receiver) = mpsc::channel::<SyncCall>();
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("jobfleet-sync-{n}"))
                .spawn(move || pool_thread(&receiver))?;
        }
        Ok(Arc::new(Self {
            sender: Mutex::new(Some(sender)),
        }))
    }

    /// Lets the threads end once the calls queued now are done.
    pub(crate) fn close(&self) {
        self.sender.lock().expect("pool lock").take();
    }

    async fn run(
        self: Arc<Self>,
        route: Arc<Route>,
        job: JobContext,
        host: Arc<HostShared>,
    ) -> HandlerResult {
        let (reply, result) = oneshot::channel();
        let state = Arc::new(CallState::default());
        let job_id = job.id().to_string();
        let call = SyncCall {
            invoke: Arc::clone(&route.invoke),
            context: job,
            state: Arc::clone(&state),
            reply,
        };
        let sent = self
            .sender
            .lock()
            .expect("pool lock")
            .as_ref()
            .map(|sender| sender.send(call).is_ok());
        if sent != Some(true) {
            return Err(HandlerError::new("the worker is stopping").with_class("WorkerStopping"));
        }
        let guard = Overrun {
            state,
            host,
            handler: route.name.clone(),
            job_id,
            armed: true,
        };
        let result = result.await.unwrap_or_else(|_| {
            Err(
                HandlerError::new("the handler's thread ended without a result")
                    .with_class("Panic"),
            )
        });
        guard.disarm();
        result
    }
}

fn pool_thread(receiver: &Mutex<mpsc::Receiver<SyncCall>>) {
    Python::attach(|py| {
        loop {
            let next = py.detach(|| receiver.lock().expect("pool lock").recv());
            let Ok(call) = next else { return };
            if !call.state.start() {
                continue; // abandoned (timed out or handed back) before a thread was free
            }
            let result = PyJobContext::new_bound(py, call.context)
                .and_then(|context| call.invoke.call1(py, (context,)))
                .map_or_else(|err| Err(escaped(py, &err)), |v| verdict(v.bind(py)));
            call.state.finish();
            let _ = call.reply.send(result);
        }
    });
}

/// Watches a sync call that the runtime stopped waiting for (timeout or hand-back): Python
/// cannot interrupt a thread, so if the handler is still running it is reported, and when it
/// has not returned after the host's `recycle_after`, the worker recycles itself.
struct Overrun {
    state: Arc<CallState>,
    host: Arc<HostShared>,
    handler: String,
    job_id: String,
    armed: bool,
}

impl Overrun {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Overrun {
    fn drop(&mut self) {
        if self.armed && self.state.abandon() == RUNNING {
            self.host
                .overrun(Arc::clone(&self.state), &self.handler, &self.job_id);
        }
    }
}

// ---- async handlers -------------------------------------------------------------------------

enum AsyncMessage {
    Start(Box<AsyncStart>),
    Cancel(u64),
}

struct AsyncStart {
    key: u64,
    invoke: Arc<Py<PyAny>>,
    context: JobContext,
    reply: oneshot::Sender<HandlerResult>,
}

/// Hands `async def` handlers to the asyncio loop of a Python `AsyncRunner` (which runs them
/// as tasks and reports back through [`Completion`]). One submitter thread takes the GIL
/// once per batch of jobs, so a burst costs one loop wake-up, not one per job.
pub(crate) struct AsyncBridge {
    sender: Mutex<Option<mpsc::Sender<AsyncMessage>>>,
    next_key: AtomicU64,
}

impl AsyncBridge {
    pub(crate) fn start(runner: Py<PyAny>) -> std::io::Result<Arc<Self>> {
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("jobfleet-async-submit".into())
            .spawn(move || submitter_thread(&Mutex::new(receiver), &runner))?;
        Ok(Arc::new(Self {
            sender: Mutex::new(Some(sender)),
            next_key: AtomicU64::new(0),
        }))
    }

    pub(crate) fn close(&self) {
        self.sender.lock().expect("bridge lock").take();
    }

    fn send(&self, message: AsyncMessage) -> bool {
        self.sender
            .lock()
            .expect("bridge lock")
            .as_ref()
            .is_some_and(|sender| sender.send(message).is_ok())
    }

    async fn run(self: Arc<Self>, route: Arc<Route>, job: JobContext) -> HandlerResult {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (reply, result) = oneshot::channel();
        let started = self.send(AsyncMessage::Start(Box::new(AsyncStart {
            key,
            invoke: Arc::clone(&route.invoke),
            context: job,
            reply,
        })));
        if !started {
            return Err(HandlerError::new("the worker is stopping").with_class("WorkerStopping"));
        }
        // Dropped by the runtime at a timeout or a hand-back: the task is cancelled.
        let guard = CancelTask {
            bridge: Arc::clone(&self),
            key,
            armed: true,
        };
        let result = result.await.unwrap_or_else(|_| {
            Err(
                HandlerError::new("the asyncio loop did not run the handler")
                    .with_class("RuntimeError"),
            )
        });
        guard.disarm();
        result
    }
}

struct CancelTask {
    bridge: Arc<AsyncBridge>,
    key: u64,
    armed: bool,
}

impl CancelTask {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelTask {
    fn drop(&mut self) {
        if self.armed {
            self.bridge.send(AsyncMessage::Cancel(self.key));
        }
    }
}

/// Most jobs handed to the loop in one call.
const BATCH: usize = 512;

fn submitter_thread(receiver: &Mutex<mpsc::Receiver<AsyncMessage>>, runner: &Py<PyAny>) {
    Python::attach(|py| {
        loop {
            // Only this thread receives: the lock is for the GIL-free closure's sake.
            let Ok(first) = py.detach(|| receiver.lock().expect("bridge lock").recv()) else {
                return;
            };
            let receiver = receiver.lock().expect("bridge lock");
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            drop(receiver);
            if let Err(err) = submit(py, runner, batch) {
                // The loop is gone: the jobs' completions were dropped, so their attempts
                // end with an error and are retried.
                err.write_unraisable(py, None);
            }
        }
    });
}

fn submit(py: Python<'_>, runner: &Py<PyAny>, batch: Vec<AsyncMessage>) -> PyResult<()> {
    let starts = PyList::empty(py);
    let mut cancels = Vec::new();
    for message in batch {
        match message {
            AsyncMessage::Start(start) => {
                let AsyncStart {
                    key,
                    invoke,
                    context,
                    reply,
                } = *start;
                let context = PyJobContext::new_bound(py, context)?;
                let done = Bound::new(
                    py,
                    Completion {
                        reply: Mutex::new(Some(reply)),
                    },
                )?;
                starts.append((key, invoke.bind(py), context, done))?;
            }
            AsyncMessage::Cancel(key) => cancels.push(key),
        }
    }
    // Starts first: a cancel in the same batch is for a job started in it or before.
    if !starts.is_empty() {
        runner.call_method1(py, "submit", (starts,))?;
    }
    if !cancels.is_empty() {
        runner.call_method1(py, "cancel", (cancels,))?;
    }
    Ok(())
}

/// Called by the asyncio loop with an async handler's verdict.
#[pyclass(frozen, module = "jobfleet._native")]
pub(crate) struct Completion {
    reply: Mutex<Option<oneshot::Sender<HandlerResult>>>,
}

#[pymethods]
impl Completion {
    fn __call__(&self, result: &Bound<'_, PyAny>) {
        if let Some(reply) = self.reply.lock().expect("completion lock").take() {
            let _ = reply.send(verdict(result));
        }
    }
}
