//! The worker: pulls jobs for free handler slots only and runs them until shut down.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use jobfleet_core::topology;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditSink;
use crate::error::{WorkerError, WorkerErrorKind};
use crate::execute::Runtime;
use crate::handler::Handler;
use crate::settings::QueueSettings;
use crate::stats::{StatsSnapshot, WorkerStats};

/// How long the process may take to exit after a second shutdown signal.
const HARD_STOP: Duration = Duration::from_secs(3);

/// How long one pull request waits on the server for jobs. A pull request still open at
/// shutdown is drained (its jobs handed back) rather than abandoned, so this also bounds how
/// long an idle worker takes to stop.
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// How long after its expiry a pull request still open is given up on. The server ends
/// every pull request by its expiry; one still open later was lost with a server (a killed
/// consumer leader, a restart), and the client library alone would wait 5 s more.
const PULL_LOST_AFTER: Duration = Duration::from_millis(500);

/// How often an open pull request checks whether the connection was re-established since it
/// was sent (a restarted server forgets its pull requests).
const RECONNECT_CHECK: Duration = Duration::from_millis(100);

/// Options of a worker. Obtain with [`Worker::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct WorkerBuilder {
    client: async_nats::Client,
    queue: String,
    concurrency: usize,
    grace_period: Duration,
    worker_id: Option<String>,
    metrics_addr: Option<std::net::SocketAddr>,
    failpoints: crate::failpoint::Failpoints,
}

impl WorkerBuilder {
    /// Installs a fault-injection hook, called at each [`Failpoint`](crate::Failpoint) (for
    /// fault tests: the hook usually exits the process there). Feature `failpoints` only.
    #[cfg(feature = "failpoints")]
    pub fn failpoint(mut self, hook: crate::FailpointHook) -> Self {
        self.failpoints.hook = Some(hook);
        self
    }

    /// Serves Prometheus metrics (see the crate docs' list) over HTTP on `addr`, e.g.
    /// `0.0.0.0:9464`; port 0 picks a free port ([`Worker::metrics_addr`] tells which).
    pub fn metrics_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// Jobs run at once by this process. Default 32. The queue's `max_in_flight` caps the
    /// whole fleet.
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.concurrency = jobs;
        self
    }

    /// How long running jobs may finish after shutdown begins before they are handed back
    /// to the queue. Default 30 s.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// The identity recorded in audit events. Default `<hostname>:<pid>`.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// Reads the queue's settings and binds to its consumer.
    ///
    /// # Errors
    ///
    /// [`WorkerErrorKind::UnknownQueue`] when the queue or its consumer does not exist;
    /// [`WorkerErrorKind::InvalidConfig`] for a concurrency of 0 or unreadable settings;
    /// [`WorkerErrorKind::Unavailable`] when JetStream does not answer.
    pub async fn build(self, handler: impl Handler) -> Result<Worker, WorkerError> {
        if self.concurrency == 0 {
            return Err(WorkerError::new(
                WorkerErrorKind::InvalidConfig,
                "concurrency must be at least 1",
            ));
        }
        let js = jetstream::new(self.client.clone());
        let settings = QueueSettings::load(&js, &self.queue).await?;
        let stream_name = settings.name.stream_name();
        let mut stream = js.get_stream(&stream_name).await.map_err(|e| {
            WorkerError::with_source(
                WorkerErrorKind::Unavailable,
                "cannot read the queue's stream",
                e,
            )
        })?;
        let stream_config = stream
            .info()
            .await
            .map_err(|e| {
                WorkerError::with_source(
                    WorkerErrorKind::Unavailable,
                    "cannot read the queue's stream",
                    e,
                )
            })?
            .config
            .clone();
        let schedules = stream_config.allow_message_schedules;
        let max_age = Some(stream_config.max_age).filter(|age| !age.is_zero());
        let consumer: PullConsumer = stream
            .get_consumer(topology::WORKER_CONSUMER)
            .await
            .map_err(|e| {
                WorkerError::with_source(
                    WorkerErrorKind::UnknownQueue,
                    format!(
                        "queue {} has no `{}` consumer (declare the queue)",
                        settings.name,
                        topology::WORKER_CONSUMER
                    ),
                    e,
                )
            })?;
        // The lease the server actually applies: the consumer's ack_wait, or its shortest
        // backoff step when an operator set one (JetStream then uses backoff[0]).
        let mut settings = settings;
        let effective = consumer
            .cached_info()
            .config
            .backoff
            .iter()
            .copied()
            .min()
            .unwrap_or(consumer.cached_info().config.ack_wait);
        if !effective.is_zero() {
            settings.worker.ack_wait = effective;
        }
        let metrics = match self.metrics_addr {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                WorkerError::with_source(
                    WorkerErrorKind::InvalidConfig,
                    format!("cannot serve metrics on {addr}"),
                    e,
                )
            })?),
            None => None,
        };
        let worker_id = self.worker_id.unwrap_or_else(default_worker_id);
        let stats = Arc::new(WorkerStats::default());
        let audit = AuditSink::new(js.clone(), settings.audit);
        let progress = audit
            .wants(jobfleet_core::AuditEventKind::Progress)
            .then(|| Arc::new(crate::context::ProgressSink::new(audit.clone(), &worker_id)));
        let runtime = Runtime {
            queue: std::sync::Arc::from(settings.name.as_str()),
            client: self.client,
            audit,
            progress,
            js,
            settings,
            schedules,
            max_age,
            handler: Arc::new(handler),
            worker_id,
            stats,
            abort: CancellationToken::new(),
            leases: Arc::new(crate::lease::LeaseKeeper::default()),
            failpoints: self.failpoints,
        };
        Ok(Worker {
            runtime: Arc::new(runtime),
            consumer,
            concurrency: self.concurrency,
            grace_period: self.grace_period,
            metrics,
        })
    }
}

/// A worker process's runtime for one queue.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use jobfleet_worker::{handler_fn, Outcome, Worker};
///
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let worker = Worker::builder(client, "emails")
///     .concurrency(64)
///     .build(handler_fn(|job| async move {
///         println!("job {} attempt {}", job.id(), job.attempt());
///         Ok(Outcome::Done)
///     }))
///     .await?;
/// worker.run_until_signal().await; // SIGTERM/SIGINT: graceful; a second one: at once
/// # Ok(())
/// # }
/// ```
pub struct Worker {
    runtime: Arc<Runtime>,
    consumer: PullConsumer,
    concurrency: usize,
    grace_period: Duration,
    metrics: Option<tokio::net::TcpListener>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.runtime.settings.name)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Options for a worker of `queue` on `client`.
    pub fn builder(client: async_nats::Client, queue: impl Into<String>) -> WorkerBuilder {
        WorkerBuilder {
            client,
            queue: queue.into(),
            concurrency: 32,
            grace_period: Duration::from_secs(30),
            worker_id: None,
            metrics_addr: None,
            failpoints: crate::failpoint::Failpoints::default(),
        }
    }

    /// Where metrics are served, when [`WorkerBuilder::metrics_addr`] was set.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<WorkerStats> {
        Arc::clone(&self.runtime.stats)
    }

    /// A handle that ends the grace period early: running jobs are handed back at once, as on
    /// a second signal in [`Worker::run_until_signal`]. For hosts that handle signals
    /// themselves and call [`Worker::run`].
    pub fn abort_handle(&self) -> AbortHandle {
        AbortHandle(self.runtime.abort.clone())
    }

    /// Runs until `shutdown` resolves, then stops pulling, lets running jobs finish within
    /// the grace period, hands back the rest (NAK, so others run them at once), and flushes
    /// the connection.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> StatsSnapshot {
        let stop = CancellationToken::new();
        if let Some(listener) = self.metrics.take() {
            let stats = Arc::clone(&self.runtime.stats);
            tokio::spawn(crate::metrics::serve(
                listener,
                stats,
                Arc::clone(&self.runtime.queue),
                stop.clone(),
            ));
        }
        let tracker = TaskTracker::new();
        tracker.spawn(crate::mover::run_mover(
            Arc::clone(&self.runtime),
            stop.clone(),
        ));
        // Lease renewals stop only once every job is settled, after the grace period.
        let leases_done = CancellationToken::new();
        let keeper = {
            let (runtime, done) = (Arc::clone(&self.runtime), leases_done.clone());
            let every = runtime.settings.worker.ack_wait / 3;
            tokio::spawn(async move {
                runtime
                    .leases
                    .run(runtime.client.clone(), every, done)
                    .await
            })
        };
        let pulling = self.pull_loop(stop.clone(), tracker.clone());
        tokio::pin!(pulling);
        tokio::select! {
            () = &mut pulling => {}
            () = shutdown => {
                stop.cancel();
                pulling.await;
            }
        }
        tracker.close();
        if tokio::time::timeout(self.grace_period, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?self.grace_period, "grace period over; handing back unfinished jobs");
            self.runtime.abort.cancel();
            tracker.wait().await;
        }
        leases_done.cancel();
        let _ = keeper.await;
        // Bounded: a flush waits for the connection, which may be down for good.
        match tokio::time::timeout(Duration::from_secs(5), self.runtime.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "flush at shutdown failed"),
            Err(_) => tracing::warn!(
                "flush at shutdown timed out; unsent acknowledgements are redelivered later"
            ),
        }
        self.runtime.stats.snapshot()
    }

    /// [`Worker::run`] until SIGTERM or SIGINT. A second signal hands back running jobs at
    /// once instead of waiting for the grace period, and ends the process within 3 s (a third
    /// ends it at once); anything still unsettled then is redelivered after its lease.
    pub async fn run_until_signal(self) -> StatsSnapshot {
        use tokio::signal::unix::{SignalKind, signal};
        // Listeners installed once, so no signal is missed between two waits.
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
        let abort = self.runtime.abort.clone();
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            next_signal(&mut term, &mut int).await;
            tracing::info!("shutting down: no new jobs; running jobs may finish");
            let _ = first_tx.send(());
            next_signal(&mut term, &mut int).await;
            tracing::warn!(
                "second signal: handing back running jobs; exiting within {HARD_STOP:?}"
            );
            abort.cancel();
            tokio::select! {
                () = tokio::time::sleep(HARD_STOP) => {}
                () = next_signal(&mut term, &mut int) => {}
            }
            // Whatever is still unsettled is redelivered after its lease.
            std::process::exit(130);
        });
        self.run(async move {
            let _ = first_rx.await;
        })
        .await
    }

    async fn pull_loop(&self, stop: CancellationToken, tracker: TaskTracker) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut backoff = Duration::from_millis(100);
        loop {
            // Pull only for free slots: a job is never buffered where its lease runs unused.
            let first = tokio::select! {
                permit = Arc::clone(&slots).acquire_owned() => permit.expect("semaphore open"),
                () = stop.cancelled() => return,
            };
            let mut permits: Vec<OwnedSemaphorePermit> = vec![first];
            // Under load most slots are held by jobs that finish in a moment: give them a few
            // turns to, so one pull asks for many jobs rather than one round trip per job.
            for _ in 0..8 {
                while let Ok(permit) = Arc::clone(&slots).try_acquire_owned() {
                    permits.push(permit);
                }
                if permits.len() * 2 >= self.concurrency {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let connects = self.runtime.client.statistics();
            let generation = connects.connects.load(std::sync::atomic::Ordering::Relaxed);
            let lost_at = tokio::time::Instant::now() + PULL_EXPIRES + PULL_LOST_AFTER;
            let request = self
                .consumer
                .fetch()
                .max_messages(permits.len())
                .expires(PULL_EXPIRES)
                .messages();
            // Not raced against shutdown: once sent, a pull request must be drained, or the
            // server delivers jobs to an inbox nobody reads (leased until their ack wait).
            let mut batch = match request.await {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(error = %err, "pull failed; retrying");
                    drop(permits);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            let mut watch = tokio::time::interval(RECONNECT_CHECK);
            watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let next = tokio::select! {
                    next = batch.next() => next,
                    () = stop.cancelled() => {
                        // Bounded: a request lost with its server would otherwise be
                        // waited on until the library's own timer, 5 s past its expiry.
                        let _ = tokio::time::timeout_at(
                            lost_at,
                            hand_back_rest(&self.runtime, &mut batch),
                        )
                        .await;
                        return;
                    }
                    _ = watch.tick() => {
                        let reconnected = connects
                            .connects
                            .load(std::sync::atomic::Ordering::Relaxed)
                            != generation;
                        // While disconnected, wait for the reconnect rather than queue more
                        // pull requests in the client's buffer.
                        let connected = self.runtime.client.connection_state()
                            == async_nats::connection::State::Connected;
                        let overdue = connected && tokio::time::Instant::now() >= lost_at;
                        if !reconnected && !overdue {
                            continue;
                        }
                        // The request is probably gone with its server: pull again now. Any
                        // job it still brings is worked all the same, in the background.
                        tracing::info!(reconnected, "open pull request given up on; pulling again");
                        tracker.spawn(work_rest(
                            Arc::clone(&self.runtime),
                            batch,
                            Arc::clone(&slots),
                            tracker.clone(),
                            stop.clone(),
                        ));
                        drop(permits);
                        break;
                    }
                };
                match next {
                    Some(Ok(message)) => {
                        backoff = Duration::from_millis(100);
                        let permit = permits
                            .pop()
                            .expect("the server sends at most the slots asked for");
                        // Boxed: the job's future is a few KB, and a spawn would copy it
                        // several times over; moving a pointer is free.
                        let job = Box::pin(Arc::clone(&self.runtime).process(message, permit));
                        tracker.spawn(job);
                    }
                    Some(Err(err)) => {
                        // No responders, MaxWaiting exceeded, consumer deleted...: the pull
                        // was answered with an error status. Back off before pulling again.
                        tracing::warn!(error = %err, "pull answered with an error; retrying");
                        drop(permits);
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = stop.cancelled() => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        break;
                    }
                    None => break,
                }
            }
        }
    }
}

/// Works the jobs a given-up pull request still brings (it was not lost after all): each
/// waits for a free slot with its lease kept alive, then runs like any other. Neither handed
/// back (a copy whose original's ack is lost in a failover would run twice) nor NAKed (that
/// would use up an attempt). Once shutdown begins, the rest are handed back. Ends with the
/// request (at the latest at the client library's own timer, 5 s past its expiry).
async fn work_rest(
    runtime: Arc<Runtime>,
    mut batch: jetstream::consumer::pull::Batch,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    while let Some(Ok(message)) = batch.next().await {
        let held = runtime.leases.hold(message.reply.as_ref());
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit.expect("semaphore open"),
            () = stop.cancelled() => {
                drop(held);
                runtime.hand_back(message).await;
                WorkerStats::bump(&runtime.stats.released);
                continue;
            }
        };
        drop(held);
        tracker.spawn(Box::pin(Arc::clone(&runtime).process(message, permit)));
    }
}

/// At shutdown, jobs already on their way to this process go straight back (without using up
/// an attempt), until the open pull request ends or is overdue.
async fn hand_back_rest(runtime: &Runtime, batch: &mut jetstream::consumer::pull::Batch) {
    while let Some(Ok(message)) = batch.next().await {
        runtime.hand_back(message).await;
        WorkerStats::bump(&runtime.stats.released);
    }
}

/// Hands back a worker's running jobs at once; see [`Worker::abort_handle`].
#[derive(Debug, Clone)]
pub struct AbortHandle(CancellationToken);

impl AbortHandle {
    /// Stops waiting for running jobs: each is handed back to the queue (without using up an
    /// attempt) and [`Worker::run`] returns once they are settled.
    pub fn abort(&self) {
        self.0.cancel();
    }
}

async fn next_signal(
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}
