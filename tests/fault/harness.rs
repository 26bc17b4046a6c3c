//! What the scenarios share: worker processes to kill and restart, load generators that
//! record what was accepted, the execution log, fault timing and the summary row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobfleet_core::{JobId, QueueConfig, QueueName, RetrySchedule};
use jobfleet_producer::{Job, Producer};
use jobfleet_testkit::send_signal;

/// The queues' ack wait: every fault timing is a multiple of it.
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(2);

/// How long a scenario may take to settle after its load and faults end.
pub(crate) const SETTLE: Duration = Duration::from_secs(120);

/// Milliseconds since the Unix epoch (the execution log's clock).
pub(crate) fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A queue with the suite's timings: `ack_wait` [`ACK_WAIT`], quick retries, audit full.
pub(crate) fn fault_queue(name: &str, max_attempts: u32) -> QueueConfig {
    let mut queue = QueueConfig::new(name);
    queue.worker.ack_wait = ACK_WAIT;
    queue.worker.max_attempts = max_attempts;
    queue.worker.timeout = Duration::from_secs(30);
    queue.worker.backoff = RetrySchedule {
        initial: Duration::from_millis(100),
        factor: 2.0,
        max: Duration::from_millis(500),
        jitter: 0.0,
    };
    queue.audit.level = jobfleet_core::AuditLevel::Full;
    queue
}

/// What the producers were told. `attempted` holds every id a producer tried to store;
/// `accepted` those it got a PubAck (or a 202) for.
#[derive(Debug, Default, Clone)]
pub(crate) struct Ledger {
    pub(crate) attempted: Vec<JobId>,
    pub(crate) accepted: Vec<JobId>,
    /// When each acceptance arrived (unix ms), for recovery times.
    pub(crate) accepted_at: Vec<u128>,
    /// Answers that were neither acceptance nor a retried outage, by HTTP status (gateway
    /// loads only).
    pub(crate) refused: HashMap<u16, usize>,
    /// Publishes retried after an error or an outage answer.
    pub(crate) retries: usize,
    /// When a NATS server was crashed (unix ms), for the checker's explanations.
    pub(crate) server_crashes: Vec<u128>,
    /// Each attempted job's payload kind.
    pub(crate) kinds: HashMap<JobId, &'static str>,
}

impl Ledger {
    /// The attempted jobs of `kind`.
    pub(crate) fn of_kind(&self, kind: &str) -> Vec<JobId> {
        self.attempted
            .iter()
            .copied()
            .filter(|id| self.kinds.get(id).is_some_and(|k| *k == kind))
            .collect()
    }
}

pub(crate) type SharedLedger = Arc<Mutex<Ledger>>;

/// A copy of the ledger as it is now (so no lock is held across the checker's reads).
pub(crate) fn snapshot(ledger: &SharedLedger) -> Ledger {
    ledger.lock().expect("ledger").clone()
}

/// One line of the execution log.
#[derive(Debug, Clone)]
pub(crate) struct Execution {
    pub(crate) at_ms: u128,
    pub(crate) id: JobId,
    pub(crate) attempt: u32,
    pub(crate) pid: u32,
    pub(crate) queue: String,
}

/// Reads an execution log (written by the fault worker and the Python fault app).
pub(crate) fn read_executions(path: &Path) -> Vec<Execution> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut parts = line.split(' ');
            let mut next = || {
                parts
                    .next()
                    .unwrap_or_else(|| panic!("bad log line {line:?}"))
            };
            Execution {
                at_ms: next().parse().expect("time"),
                id: next().parse().expect("job id"),
                attempt: next().parse().expect("attempt"),
                pid: next().parse().expect("pid"),
                queue: next().to_owned(),
            }
        })
        .collect()
}

/// How a worker process is started again after it was killed.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSpec {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
}

impl WorkerSpec {
    /// The Rust fault worker on `queue`.
    pub(crate) fn rust(urls: &str, queue: &str, exec_log: &Path, extra: &[&str]) -> Self {
        let mut args = vec![
            "--nats-url".to_owned(),
            urls.to_owned(),
            "--queue".to_owned(),
            queue.to_owned(),
            "--exec-log".to_owned(),
            exec_log.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Self {
            program: PathBuf::from(env!("CARGO_BIN_EXE_jobfleet-fault-worker")),
            args,
            // The panics in these workers are the faults injected; their backtraces (CI
            // may set RUST_BACKTRACE) would bury the run's real failures in the log.
            env: vec![
                ("RUST_LOG".into(), "error".into()),
                ("RUST_BACKTRACE".into(), "0".into()),
            ],
        }
    }

    fn spawn(&self) -> Child {
        Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.program.display()))
    }
}

/// Worker processes that are killed on drop, so a failed scenario leaves none behind.
#[derive(Debug)]
pub(crate) struct Fleet {
    workers: Vec<(WorkerSpec, Child)>,
    /// Exit statuses of processes that ended, by code (`None`: killed by a signal).
    pub(crate) exits: Vec<Option<i32>>,
}

impl Fleet {
    pub(crate) fn start(specs: Vec<WorkerSpec>) -> Self {
        let workers = specs
            .into_iter()
            .map(|spec| {
                let child = spec.spawn();
                (spec, child)
            })
            .collect();
        Self {
            workers,
            exits: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.workers.len()
    }

    /// SIGKILLs worker `index` and starts it again at once.
    pub(crate) fn kill_and_restart(&mut self, index: usize) {
        let (spec, child) = &mut self.workers[index];
        let _ = child.kill();
        let status = child.wait().expect("reap the killed worker");
        self.exits.push(status.code());
        *child = spec.spawn();
    }

    /// SIGTERMs worker `index`, waits (up to `timeout`) for its graceful exit, and starts it
    /// again. Returns how long the exit took.
    pub(crate) fn terminate_and_restart(&mut self, index: usize, timeout: Duration) -> Duration {
        let (spec, child) = &mut self.workers[index];
        let began = Instant::now();
        send_signal(child.id(), "TERM");
        let status = jobfleet_testkit::eventually("the worker's graceful exit", timeout, || {
            child.try_wait().ok().flatten()
        });
        assert!(status.success(), "a SIGTERMed worker exited with {status}");
        self.exits.push(status.code());
        let took = began.elapsed();
        *child = spec.spawn();
        took
    }

    /// Restarts every worker that has exited; returns how many were.
    pub(crate) fn restart_exited(&mut self) -> usize {
        let mut restarted = 0;
        for (spec, child) in &mut self.workers {
            if let Ok(Some(status)) = child.try_wait() {
                self.exits.push(status.code());
                *child = spec.spawn();
                restarted += 1;
            }
        }
        restarted
    }

    /// Stops every worker gracefully (SIGTERM, then SIGKILL after `timeout`).
    pub(crate) fn stop(&mut self, timeout: Duration) {
        for (_, child) in &mut self.workers {
            send_signal(child.id(), "TERM");
        }
        let deadline = Instant::now() + timeout;
        for (_, child) in &mut self.workers {
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, child) in &mut self.workers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The jobs of a load: their payload kinds in order.
pub(crate) fn plan(total: usize, special: &[(&'static str, usize)]) -> Vec<&'static str> {
    let mut kinds = vec!["good"; total];
    // Spread each special kind evenly through the load.
    for (slot, (kind, count)) in special.iter().enumerate() {
        for i in 0..*count {
            let index = ((i * total) / count + slot * 7 + 3) % total;
            kinds[index] = kind;
        }
    }
    kinds
}

/// Enqueues `kinds` with the Rust producer at `rate` jobs/s, each job retried with the same
/// id (so JetStream's duplicate window makes the retry safe) until it is stored or `give_up`
/// passes. Returns when every job is accepted or given up on.
pub(crate) async fn produce(
    producer: Producer,
    queue: String,
    kinds: Vec<&'static str>,
    rate: f64,
    ledger: SharedLedger,
    give_up: Duration,
) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, kind) in kinds.into_iter().enumerate() {
        tokio::time::sleep_until(started + interval * u32::try_from(n).expect("job count")).await;
        let id = JobId::new();
        {
            let mut ledger = ledger.lock().expect("ledger");
            ledger.attempted.push(id);
            ledger.kinds.insert(id, kind);
        }
        let producer = producer.clone();
        let queue = queue.clone();
        let ledger = Arc::clone(&ledger);
        tasks.spawn(async move {
            let deadline = tokio::time::Instant::now() + give_up;
            loop {
                let job = Job::json(&serde_json::json!({"kind": kind, "n": n}))
                    .expect("payload")
                    .id(id);
                match producer.enqueue(&queue, job).await {
                    Ok(_) => {
                        let mut ledger = ledger.lock().expect("ledger");
                        ledger.accepted.push(id);
                        ledger.accepted_at.push(unix_ms());
                        return;
                    }
                    Err(_) if tokio::time::Instant::now() < deadline => {
                        ledger.lock().expect("ledger").retries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(_) => return,
                }
            }
        });
        // Keep the set from growing without bound on a long outage.
        while tasks.len() > 2000 {
            if let Some(joined) = tasks.join_next().await {
                joined.expect("an enqueue task");
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("an enqueue task");
    }
}

/// How the gateway load treats an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnRefusal {
    /// Retry 429/503/connection errors with the same idempotency key until `give_up`.
    Retry,
    /// Record 429 (and anything else) as refused and move on.
    Record,
}

/// Enqueues `kinds` through the gateway at `base`, `clients` requests at a time and at most
/// `rate` jobs/s (`None`: as fast as it answers). Each job has the idempotency key `<tag>-<n>`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn produce_http(
    base: String,
    queue: String,
    tag: String,
    kinds: Vec<&'static str>,
    rate: Option<f64>,
    clients: usize,
    on_refusal: OnRefusal,
    ledger: SharedLedger,
    give_up: Duration,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let queue_name = QueueName::new(&queue).expect("queue name");
    let started = tokio::time::Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(clients));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, kind) in kinds.into_iter().enumerate() {
        if let Some(rate) = rate {
            tokio::time::sleep_until(started + Duration::from_secs_f64(n as f64 / rate)).await;
        }
        let permit = Arc::clone(&gate).acquire_owned().await.expect("gate");
        let key = format!("{tag}-{n}");
        let id = JobId::from_idempotency_key(&queue_name, &key);
        {
            let mut ledger = ledger.lock().expect("ledger");
            ledger.attempted.push(id);
            ledger.kinds.insert(id, kind);
        }
        let http = http.clone();
        let url = format!("{base}/v1/queues/{queue}/jobs");
        let ledger = Arc::clone(&ledger);
        tasks.spawn(async move {
            let _permit = permit;
            let deadline = tokio::time::Instant::now() + give_up;
            loop {
                let answer = http
                    .post(&url)
                    .header("Idempotency-Key", &key)
                    .json(&serde_json::json!({"kind": kind, "n": n}))
                    .send()
                    .await;
                let status = answer.as_ref().map(|a| a.status().as_u16()).ok();
                match status {
                    Some(202) => {
                        let body: serde_json::Value =
                            answer.expect("answer").json().await.expect("a 202 body");
                        let stored: JobId = body["id"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .expect("the 202 names the job id");
                        assert_eq!(stored, id, "the id follows from the idempotency key");
                        let mut ledger = ledger.lock().expect("ledger");
                        ledger.accepted.push(id);
                        ledger.accepted_at.push(unix_ms());
                        return;
                    }
                    // 409: the previous try of this key (whose answer this client gave up
                    // on) is still being stored; ask again.
                    Some(code @ (409 | 429 | 503 | 504))
                        if on_refusal == OnRefusal::Retry
                            && tokio::time::Instant::now() < deadline =>
                    {
                        let _ = code;
                        ledger.lock().expect("ledger").retries += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None if tokio::time::Instant::now() < deadline => {
                        ledger.lock().expect("ledger").retries += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    other => {
                        *ledger
                            .lock()
                            .expect("ledger")
                            .refused
                            .entry(other.unwrap_or(0))
                            .or_insert(0) += 1;
                        return;
                    }
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("an enqueue task");
    }
}

/// Waits until the queue stream is empty (every job acked, terminated or dead-lettered).
pub(crate) async fn wait_drained(
    js: &async_nats::jetstream::Context,
    queue: &str,
    timeout: Duration,
) {
    let stream = format!("{}{queue}", jobfleet_core::topology::QUEUE_STREAM_PREFIX);
    jobfleet_testkit::eventually_async(&format!("queue {queue} to drain"), timeout, || {
        let js = js.clone();
        let stream = stream.clone();
        async move {
            let mut stream = js.get_stream(&stream).await.ok()?;
            let info = stream.info().await.ok()?;
            (info.state.messages == 0).then_some(())
        }
    })
    .await;
}

/// How long work and enqueueing stalled after the faults: for each fault, the longest pause
/// between consecutive jobs started (from the execution log), and between consecutive jobs
/// accepted, from the fault until 20 s after it; the worst of each. Pauses after the last
/// activity are not counted (a fault after the work was done; a real stall fails the
/// scenario's drain wait instead).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Recovery {
    pub(crate) work: Option<Duration>,
    pub(crate) enqueue: Option<Duration>,
}

impl Recovery {
    pub(crate) fn max(self, other: Self) -> Self {
        let max = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Self {
            work: max(self.work, other.work),
            enqueue: max(self.enqueue, other.enqueue),
        }
    }
}

pub(crate) fn recovery(
    faults: &[u128],
    executions: &[Execution],
    accepted_at: &[u128],
) -> Recovery {
    const WINDOW_MS: u128 = 20_000;
    let worst = |times: &[u128]| {
        let mut times = times.to_vec();
        times.sort_unstable();
        faults
            .iter()
            .filter_map(|&t| {
                let mut previous = t;
                let mut longest = None;
                for &x in times.iter().filter(|&&x| x > t && x <= t + WINDOW_MS) {
                    longest = Some(longest.unwrap_or(0).max(x - previous));
                    previous = x;
                }
                longest
            })
            .max()
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
    };
    let starts: Vec<u128> = executions.iter().map(|e| e.at_ms).collect();
    Recovery {
        work: worst(&starts),
        enqueue: worst(accepted_at),
    }
}

/// What every scenario sets up: a producer on the servers with its queues declared, a
/// scratch directory, and the execution log the workers append to.
pub(crate) struct Scene {
    pub(crate) urls: String,
    pub(crate) producer: Producer,
    pub(crate) log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Scene {
    pub(crate) async fn new(urls: &str, queues: &[QueueConfig]) -> Self {
        let producer = Producer::connect(jobfleet_producer::ConnectOptions::new(urls))
            .await
            .expect("connect the producer");
        for queue in queues {
            producer
                .declare_queue(queue)
                .await
                .unwrap_or_else(|e| panic!("declare {}: {e}", queue.name));
        }
        let dir = tempfile::Builder::new()
            .prefix("jobfleet-fault-")
            .tempdir()
            .expect("a scratch directory");
        Self {
            urls: urls.to_owned(),
            producer,
            log: dir.path().join("exec.log"),
            _dir: dir,
        }
    }

    pub(crate) fn js(&self) -> &async_nats::jetstream::Context {
        self.producer.jetstream()
    }

    /// `n` Rust fault workers on `queue`, with `extra` arguments.
    pub(crate) fn rust_workers(&self, n: usize, queue: &str, extra: &[&str]) -> Vec<WorkerSpec> {
        (0..n)
            .map(|_| WorkerSpec::rust(&self.urls, queue, &self.log, extra))
            .collect()
    }

    /// Enqueues `kinds` into `queue` at `rate` jobs/s in the background ([`produce`], each
    /// job retried for up to 90 s).
    pub(crate) fn load(
        &self,
        queue: &str,
        kinds: Vec<&'static str>,
        rate: f64,
        ledger: &SharedLedger,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(produce(
            self.producer.clone(),
            queue.to_owned(),
            kinds,
            rate,
            Arc::clone(ledger),
            Duration::from_secs(90),
        ))
    }

    /// Waits until `queue` drained, then runs the checker on it.
    pub(crate) async fn verdict(
        &self,
        queue: &str,
        ledger: &SharedLedger,
    ) -> crate::checker::Verdict {
        wait_drained(self.js(), queue, SETTLE).await;
        let executions = read_executions(&self.log);
        crate::checker::check(self.js(), queue, &snapshot(ledger), &executions).await
    }
}

/// One line of the summary table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) accepted: usize,
    pub(crate) lost: usize,
    pub(crate) duplicates: usize,
    pub(crate) unexplained: usize,
    pub(crate) dead_lettered: usize,
    pub(crate) faults: usize,
    pub(crate) recover: Recovery,
    pub(crate) notes: String,
}

impl Row {
    pub(crate) fn from_verdict(
        verdict: &crate::checker::Verdict,
        faults: usize,
        recover: Recovery,
        notes: impl Into<String>,
    ) -> Self {
        Self {
            accepted: verdict.accepted,
            lost: verdict.lost.len(),
            duplicates: verdict.duplicates,
            unexplained: verdict.unexplained_duplicates.len(),
            dead_lettered: verdict.dead_lettered,
            faults,
            recover,
            notes: notes.into(),
        }
    }

    /// Adds another queue's figures (scenarios that check two queues).
    pub(crate) fn merge(mut self, other: &Row) -> Self {
        self.accepted += other.accepted;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.unexplained += other.unexplained;
        self.dead_lettered += other.dead_lettered;
        self.faults += other.faults;
        self.recover = self.recover.max(other.recover);
        self
    }
}
