//! tower middleware around handlers, run by a real `Worker` against a real nats-server: a
//! `ServiceBuilder` stack limits the worker and its outcomes are acted on; tower's timeout and
//! a permanent error keep their meaning through the adapters.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobfleet_core::{AuditEventKind, JobId, QueueConfig, RetrySchedule};
use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_testkit::{NatsServer, eventually_async};
use jobfleet_worker::{
    Handler, HandlerError, JobContext, Outcome, StatsSnapshot, Worker, WorkerStats, handler_fn,
    job_history, job_status, service_handler,
};
use tokio::sync::{Semaphore, oneshot};
use tower::ServiceBuilder;

const WAIT: Duration = Duration::from_secs(30);

/// Fast, jitter-free retries; a runtime timeout longer than any wait of these tests, so only
/// tower's timeout can cut a job short here.
fn queue(name: &str, max_attempts: u32) -> QueueConfig {
    let mut queue = QueueConfig::new(name);
    queue.worker.ack_wait = Duration::from_secs(2);
    queue.worker.max_attempts = max_attempts;
    queue.worker.timeout = Duration::from_secs(120);
    queue.worker.backoff = RetrySchedule {
        initial: Duration::from_millis(100),
        factor: 2.0,
        max: Duration::from_secs(1),
        jitter: 0.0,
    };
    queue
}

async fn setup(server: &NatsServer, config: &QueueConfig) -> Producer {
    let producer = Producer::connect(ConnectOptions::new(server.url()))
        .await
        .unwrap();
    producer.declare_queue(config).await.unwrap();
    producer
}

/// A worker with 8 slots running in the background until stopped.
struct Running {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<StatsSnapshot>,
    stats: Arc<WorkerStats>,
}

impl Running {
    async fn start(server: &NatsServer, queue: &str, handler: impl Handler) -> Self {
        let client = async_nats::connect(server.url()).await.unwrap();
        let worker = Worker::builder(client, queue)
            .concurrency(8)
            .grace_period(Duration::from_secs(10))
            .build(handler)
            .await
            .unwrap();
        let stats = worker.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        Self { stop, done, stats }
    }

    async fn until(&self, what: &str, done: impl Fn(StatsSnapshot) -> bool) {
        eventually_async(what, WAIT, || async {
            done(self.stats.snapshot()).then_some(())
        })
        .await;
    }

    async fn stop(self) -> StatsSnapshot {
        let _ = self.stop.send(());
        self.done.await.unwrap()
    }
}

async fn last_event(producer: &Producer, id: JobId) -> AuditEventKind {
    job_status(producer.jetstream(), id)
        .await
        .unwrap()
        .expect("audited")
        .last
        .event
}

#[tokio::test]
async fn a_service_builder_stack_limits_the_worker_and_its_outcomes_are_honoured() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("stacked", 3)).await;
    let mut jobs = Vec::new();
    for i in 0..10 {
        let payload = if i == 4 { "fail" } else { "ok" };
        jobs.push(
            producer
                .enqueue("stacked", Job::bytes(payload))
                .await
                .unwrap()
                .id,
        );
    }

    // The handler holds every job at a gate the test opens, and counts how many it runs at once.
    let gate = Arc::new(Semaphore::new(0));
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let handler = {
        let (gate, running, most) = (Arc::clone(&gate), Arc::clone(&running), Arc::clone(&most));
        handler_fn(move |job: JobContext| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let (gate, running) = (Arc::clone(&gate), Arc::clone(&running));
            async move {
                drop(gate.acquire().await.unwrap());
                running.fetch_sub(1, Ordering::SeqCst);
                if job.payload().as_ref() == b"fail" {
                    return Ok(Outcome::fail("asked to fail"));
                }
                Ok(Outcome::Done)
            }
        })
    };
    let seen = Arc::new(Mutex::new(Vec::<JobId>::new()));
    let stack = ServiceBuilder::new()
        .map_request({
            let seen = Arc::clone(&seen);
            move |job: JobContext| {
                seen.lock().unwrap().push(job.id());
                job
            }
        })
        .concurrency_limit(2)
        .service(handler.into_service());
    let worker = Running::start(&server, "stacked", service_handler(stack)).await;

    // All 8 slots hold a job, but the limit lets only 2 into the handler.
    eventually_async("8 attempts begun, 2 running", WAIT, || async {
        (worker.stats.snapshot().started == 8 && running.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    assert_eq!(most.load(Ordering::SeqCst), 2);
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "the others wait for readiness"
    );

    gate.add_permits(1_000);
    worker
        .until("9 successes and a dead letter", |s| {
            s.succeeded == 9 && s.dead_lettered == 1
        })
        .await;
    let stats = worker.stop().await;
    assert_eq!((stats.retried, stats.started), (0, 10));
    assert_eq!(most.load(Ordering::SeqCst), 2, "never more than the limit");
    let seen: HashSet<JobId> = seen.lock().unwrap().iter().copied().collect();
    assert_eq!(
        seen,
        jobs.iter().copied().collect(),
        "each job through map_request"
    );
    for (i, id) in jobs.iter().enumerate() {
        let expected = if i == 4 {
            AuditEventKind::DeadLettered
        } else {
            AuditEventKind::Succeeded
        };
        assert_eq!(last_event(&producer, *id).await, expected, "job {i}");
    }
}

#[tokio::test]
async fn tower_timeouts_are_retried_and_permanent_errors_still_dead_letter_at_once() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("tower-errors", 2)).await;
    let hangs = producer
        .enqueue("tower-errors", Job::bytes("hang"))
        .await
        .unwrap()
        .id;
    let bad = producer
        .enqueue("tower-errors", Job::bytes("bad"))
        .await
        .unwrap()
        .id;
    let handler = handler_fn(|job: JobContext| async move {
        if job.payload().as_ref() == b"hang" {
            std::future::pending::<()>().await;
        }
        Err(HandlerError::permanent("no such account"))
    });
    // `Timeout` boxes errors: the handler's own error must come back out of the box intact.
    let stack = ServiceBuilder::new()
        .timeout(Duration::from_millis(200))
        .service(handler.into_service());
    let worker = Running::start(&server, "tower-errors", service_handler(stack)).await;
    worker
        .until("both jobs dead-lettered", |s| s.dead_lettered == 2)
        .await;
    let stats = worker.stop().await;
    assert_eq!(stats.retried, 1, "only the hanging job is retried");

    let history = job_history(producer.jetstream(), bad).await.unwrap();
    let dead = history.last().unwrap();
    assert_eq!(
        (dead.event, dead.attempt),
        (AuditEventKind::DeadLettered, 1)
    );
    assert!(
        history.iter().all(|e| e.event != AuditEventKind::Retried),
        "a permanent error is not retried"
    );

    let history = job_history(producer.jetstream(), hangs).await.unwrap();
    let retried = history
        .iter()
        .find(|e| e.event == AuditEventKind::Retried)
        .expect("the timed-out attempt retried");
    assert_eq!(retried.attempt, 1);
    assert!(
        retried
            .error
            .as_deref()
            .unwrap_or("")
            .starts_with("Timeout"),
        "{:?}",
        retried.error
    );
    let dead = history.last().unwrap();
    assert_eq!(
        (dead.event, dead.attempt),
        (AuditEventKind::DeadLettered, 2)
    );
}

#[tokio::test]
async fn a_handler_turned_service_turned_handler_runs_like_the_handler() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("round-trip", 3)).await;
    let job = producer
        .enqueue("round-trip", Job::bytes("{}"))
        .await
        .unwrap()
        .id;
    let handler = handler_fn(|job: JobContext| async move {
        Ok(if job.attempt() == 1 {
            Outcome::retry_after(Duration::from_millis(50))
        } else {
            Outcome::DoneWith(serde_json::json!({"attempt": job.attempt()}))
        })
    });
    // No middleware at all: the adapters alone must not change what the handler means.
    let worker = Running::start(
        &server,
        "round-trip",
        service_handler(handler.into_service()),
    )
    .await;
    worker
        .until("the job to succeed", |s| s.succeeded == 1)
        .await;
    let stats = worker.stop().await;
    assert_eq!(stats.retried, 1);
    let status = job_status(producer.jetstream(), job)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.last.event, AuditEventKind::Succeeded);
    assert_eq!(status.last.result, Some(serde_json::json!({"attempt": 2})));
}
