//! The worker runtime against a real nats-server: success, retries on both paths, dead
//! letters, timeouts, panics, leases, shutdown and a server restart.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use jobfleet_core::{AuditEventKind, QueueConfig, RetrySchedule, headers as h, topology};
use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_testkit::{NatsServer, eventually_async};
use jobfleet_worker::{
    HandlerError, JobContext, Outcome, StatsSnapshot, Worker, handler_fn, job_history, job_status,
};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(30);

/// A queue with fast, exact (jitter-free) retries and a short lease, for tests.
fn fast_queue(name: &str) -> QueueConfig {
    let mut queue = QueueConfig::new(name);
    queue.worker.ack_wait = Duration::from_secs(2);
    queue.worker.max_attempts = 3;
    queue.worker.backoff = RetrySchedule {
        initial: Duration::from_millis(200),
        factor: 2.0,
        max: Duration::from_secs(5),
        jitter: 0.0,
    };
    queue
}

async fn setup(server: &NatsServer, queue: &QueueConfig) -> (Producer, jetstream::Context) {
    let producer = Producer::connect(ConnectOptions::new(server.url()))
        .await
        .unwrap();
    producer.declare_queue(queue).await.unwrap();
    let js = producer.jetstream().clone();
    (producer, js)
}

/// A worker running in the background until the returned sender fires or is dropped.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<StatsSnapshot>,
    stats: Arc<jobfleet_worker::WorkerStats>,
}

impl Running {
    async fn start(
        server: &NatsServer,
        queue: &str,
        handler: impl jobfleet_worker::Handler,
    ) -> Self {
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
        Self {
            stop: Some(stop),
            done,
            stats,
        }
    }

    async fn until(&self, what: &str, done: impl Fn(StatsSnapshot) -> bool) {
        eventually_async(what, WAIT, || async {
            done(self.stats.snapshot()).then_some(())
        })
        .await;
    }

    async fn stop(mut self) -> StatsSnapshot {
        let _ = self.stop.take().unwrap().send(());
        self.done.await.unwrap()
    }
}

async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

/// A handler that succeeds and counts its runs.
fn counting_handler() -> (Arc<AtomicU32>, impl jobfleet_worker::Handler) {
    let ran = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&ran);
    let handler = handler_fn(move |_job: JobContext| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok(Outcome::Done) }
    });
    (ran, handler)
}

/// Waits until `stream` holds `count` messages: a WorkQueue stream deletes acked jobs
/// asynchronously, a moment after a fire-and-forget ack.
async fn settles_at(js: &jetstream::Context, stream: &str, count: u64) {
    eventually_async(
        &format!("{stream} to hold {count} messages"),
        WAIT,
        || async { (stream_messages(js, stream).await == count).then_some(()) },
    )
    .await;
}

async fn dead_letters(
    js: &jetstream::Context,
    queue: &str,
) -> Vec<jetstream::message::StreamMessage> {
    let stream = js
        .get_stream(format!("JOBFLEET_DLQ_{queue}"))
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut next = 1;
    while let Ok(message) = stream
        .direct_get_next_for_subject(format!("jobfleet.dlq.{queue}.*"), Some(next))
        .await
    {
        next = message.sequence + 1;
        out.push(message);
    }
    out
}

#[tokio::test]
async fn every_job_succeeds_once_and_is_audited() {
    let server = NatsServer::start();
    let (producer, js) = setup(&server, &fast_queue("ok")).await;
    let results = producer
        .enqueue_batch(
            "ok",
            (0..50).map(|i| Job::json(&serde_json::json!({"n": i})).unwrap()),
        )
        .await
        .unwrap();
    let ids: Vec<_> = results.into_iter().map(|r| r.unwrap().id).collect();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = Arc::clone(&seen);
        handler_fn(move |job: JobContext| {
            let seen = Arc::clone(&seen);
            async move {
                let body: serde_json::Value = job.json()?;
                seen.lock()
                    .unwrap()
                    .push((job.id(), job.attempt(), body["n"].as_u64()));
                Ok(Outcome::DoneWith(serde_json::json!({"n": body["n"]})))
            }
        })
    };
    let worker = Running::start(&server, "ok", handler).await;
    worker.until("50 successes", |s| s.succeeded == 50).await;
    let stats = worker.stop().await;
    assert_eq!(
        (
            stats.started,
            stats.succeeded,
            stats.retried,
            stats.dead_lettered
        ),
        (50, 50, 0, 0)
    );
    assert_eq!(seen.lock().unwrap().len(), 50);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|(_, attempt, n)| *attempt == 1 && n.is_some())
    );
    settles_at(&js, "JOBFLEET_Q_ok", 0).await;

    for id in &ids {
        let status = job_status(&js, *id).await.unwrap().expect("audited");
        assert!(status.is_finished());
        assert_eq!(status.last.event, AuditEventKind::Succeeded);
        let history = job_history(&js, *id).await.unwrap();
        let kinds: Vec<_> = history.iter().map(|e| e.event).collect();
        assert_eq!(
            kinds,
            [
                AuditEventKind::Enqueued,
                AuditEventKind::Started,
                AuditEventKind::Succeeded
            ]
        );
        assert!(history[2].result.is_some() && history[2].worker.is_some());
    }
}

#[tokio::test]
async fn failing_twice_then_succeeding_follows_the_nak_schedule() {
    let server = NatsServer::start();
    let (producer, js) = setup(&server, &fast_queue("flaky")).await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let job = producer
        .enqueue("flaky", Job::bytes("{}").traceparent(traceparent))
        .await
        .unwrap();
    let attempts = Arc::new(Mutex::new(Vec::<(u32, Instant)>::new()));
    let handler = {
        let attempts = Arc::clone(&attempts);
        handler_fn(move |job: JobContext| {
            let attempts = Arc::clone(&attempts);
            async move {
                attempts
                    .lock()
                    .unwrap()
                    .push((job.attempt(), Instant::now()));
                if job.attempt() <= 2 {
                    Err(HandlerError::new("not yet"))
                } else {
                    Ok(Outcome::Done)
                }
            }
        })
    };
    let worker = Running::start(&server, "flaky", handler).await;
    worker
        .until("the third attempt to succeed", |s| s.succeeded == 1)
        .await;
    let stats = worker.stop().await;
    assert_eq!((stats.retried, stats.succeeded), (2, 1));

    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(attempts.iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2, 3]);
    // Schedule without jitter: 200 ms after attempt 1, 400 ms after attempt 2.
    for (i, expected) in [(1, 200u64), (2, 400)] {
        let gap = attempts[i].1 - attempts[i - 1].1;
        let expected = Duration::from_millis(expected);
        assert!(
            gap >= expected.mul_f64(0.9),
            "gap {gap:?} shorter than the schedule's {expected:?}"
        );
        assert!(
            gap <= expected + Duration::from_secs(1),
            "gap {gap:?} far beyond {expected:?}"
        );
    }
    let history = job_history(&js, job.id).await.unwrap();
    let retried: Vec<_> = history
        .iter()
        .filter(|e| e.event == AuditEventKind::Retried)
        .collect();
    assert_eq!(retried.len(), 2);
    let traced = history
        .iter()
        .filter(|e| e.trace_id.as_deref() == Some("0af7651916cd43dd8448eb211c80319c"))
        .count();
    assert_eq!(
        traced, 6,
        "every worker event carries the producer's trace id: {history:?}"
    );
    assert_eq!(retried[0].retry_in_ms, Some(200));
    assert!(retried[0].error.as_deref().unwrap().contains("not yet"));
    settles_at(&js, "JOBFLEET_Q_flaky", 0).await;
}

#[tokio::test]
async fn long_retry_delays_go_through_a_schedule_and_keep_counting_attempts() {
    let server = NatsServer::start();
    let mut queue = fast_queue("patient");
    queue.worker.nak_delay_limit = Duration::from_millis(100);
    let (producer, js) = setup(&server, &queue).await;
    let job = producer
        .enqueue("patient", Job::bytes("{}").header("tenant", "acme"))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = Arc::clone(&seen);
        handler_fn(move |job: JobContext| {
            let seen = Arc::clone(&seen);
            async move {
                let prior = job.header(h::PRIOR_ATTEMPTS).map(str::to_owned);
                seen.lock().unwrap().push((
                    job.id(),
                    job.attempt(),
                    Instant::now(),
                    prior,
                    job.header("tenant").map(str::to_owned),
                ));
                if job.attempt() == 1 {
                    Ok(Outcome::retry_after(Duration::from_millis(1500)))
                } else {
                    Ok(Outcome::Done)
                }
            }
        })
    };
    let worker = Running::start(&server, "patient", handler).await;
    // While the retry waits as a schedule, it holds no in-flight slot.
    eventually_async("the retry to be scheduled", WAIT, || async {
        let mut consumer: jetstream::consumer::PullConsumer = js
            .get_consumer_from_stream("workers", "JOBFLEET_Q_patient")
            .await
            .ok()?;
        let info = consumer.info().await.ok()?.clone();
        (worker.stats.snapshot().retried == 1 && info.num_ack_pending == 0).then_some(())
    })
    .await;
    worker
        .until("the second attempt", |s| s.succeeded == 1)
        .await;
    worker.stop().await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].0, seen[1].0),
        (job.id, job.id),
        "same job id after the schedule"
    );
    assert_eq!(
        (seen[0].1, seen[1].1),
        (1, 2),
        "the attempt count survives the re-publish"
    );
    assert_eq!(seen[1].3.as_deref(), Some("1"));
    assert_eq!(
        seen[1].4.as_deref(),
        Some("acme"),
        "application headers are kept"
    );
    assert!(seen[1].2 - seen[0].2 >= Duration::from_millis(1350));
    settles_at(&js, "JOBFLEET_Q_patient", 0).await;
}

#[tokio::test]
async fn permanent_failures_and_exhausted_attempts_are_dead_lettered() {
    let server = NatsServer::start();
    let (producer, js) = setup(&server, &fast_queue("doomed")).await;
    let fail = producer
        .enqueue("doomed", Job::bytes(r#"{"kind":"fail"}"#))
        .await
        .unwrap();
    let exhaust = producer
        .enqueue("doomed", Job::bytes(r#"{"kind":"error"}"#).max_attempts(2))
        .await
        .unwrap();
    let bad_json = producer
        .enqueue("doomed", Job::bytes("not json"))
        .await
        .unwrap();
    let handler = handler_fn(|job: JobContext| async move {
        let body: serde_json::Value = job.json()?;
        match body["kind"].as_str() {
            Some("fail") => Ok(Outcome::fail("recipient rejected")),
            _ => Err(HandlerError::new("smtp down")),
        }
    });
    let worker = Running::start(&server, "doomed", handler).await;
    worker
        .until("three dead letters", |s| s.dead_lettered == 3)
        .await;
    let stats = worker.stop().await;
    assert_eq!(
        (stats.started, stats.retried),
        (4, 1),
        "fail and bad JSON run once, exhaust twice"
    );
    settles_at(&js, "JOBFLEET_Q_doomed", 0).await;

    let dead = dead_letters(&js, "doomed").await;
    assert_eq!(dead.len(), 3);
    let find = |id: jobfleet_core::JobId| {
        dead.iter()
            .find(|m| m.headers.get(h::JOB_ID).map(|v| v.as_str()) == Some(id.to_string().as_str()))
            .expect("dead letter of the job")
    };
    let reason = |m: &jetstream::message::StreamMessage| {
        m.headers.get(h::DEAD_REASON).unwrap().as_str().to_owned()
    };
    assert_eq!(reason(find(fail.id)), "recipient rejected");
    assert!(
        reason(find(exhaust.id)).contains("attempts exhausted (2)"),
        "{}",
        reason(find(exhaust.id))
    );
    assert!(reason(find(bad_json.id)).contains("invalid payload"));
    assert_eq!(&find(fail.id).payload[..], br#"{"kind":"fail"}"#);
    assert_eq!(
        find(exhaust.id)
            .headers
            .get(h::DEAD_ATTEMPTS)
            .unwrap()
            .as_str(),
        "2"
    );

    for id in [fail.id, exhaust.id, bad_json.id] {
        let status = job_status(&js, id).await.unwrap().unwrap();
        assert_eq!(status.last.event, AuditEventKind::DeadLettered);
        let terminal = job_history(&js, id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event.is_terminal())
            .count();
        assert_eq!(terminal, 1, "exactly one terminal event");
    }
}

#[tokio::test]
async fn malformed_jobs_are_dead_lettered_without_running() {
    let server = NatsServer::start();
    let (_producer, js) = setup(&server, &fast_queue("raw")).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "not-a-uuid");
    js.publish_with_headers("jobfleet.q.raw.ready", headers, "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    // A readable id but a broken header: filed under its id, with its terminal event.
    let id = jobfleet_core::JobId::new();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id.to_string());
    headers.insert(h::MAX_ATTEMPTS, "zero");
    js.publish_with_headers("jobfleet.q.raw.ready", headers, "y".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let (ran, handler) = counting_handler();
    let worker = Running::start(&server, "raw", handler).await;
    worker
        .until("two dead letters", |s| s.dead_lettered == 2)
        .await;
    worker.stop().await;
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let dead = dead_letters(&js, "raw").await;
    assert_eq!(dead.len(), 2);
    for letter in &dead {
        assert!(
            letter
                .headers
                .get(h::DEAD_REASON)
                .unwrap()
                .as_str()
                .starts_with("malformed job")
        );
    }
    assert!(
        dead.iter()
            .any(|d| d.subject.as_str() == format!("jobfleet.dlq.raw.{id}"))
    );
    let status = job_status(&js, id)
        .await
        .unwrap()
        .expect("audited under its id");
    assert_eq!(status.last.event, AuditEventKind::DeadLettered);
    settles_at(&js, "JOBFLEET_Q_raw", 0).await;
}

#[tokio::test]
async fn a_hung_handler_is_cut_off_by_its_timeout_and_retried() {
    let server = NatsServer::start();
    let (producer, js) = setup(&server, &fast_queue("hung")).await;
    let job = producer
        .enqueue("hung", Job::bytes("{}").timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    let handler = handler_fn(|job: JobContext| async move {
        if job.attempt() == 1 {
            std::future::pending::<()>().await; // hangs forever
        }
        Ok(Outcome::Done)
    });
    let worker = Running::start(&server, "hung", handler).await;
    worker
        .until("the retry to succeed", |s| s.succeeded == 1)
        .await;
    worker.stop().await;
    let history = job_history(&js, job.id).await.unwrap();
    let retried = history
        .iter()
        .find(|e| e.event == AuditEventKind::Retried)
        .expect("a retry");
    assert!(
        retried.error.as_deref().unwrap().starts_with("Timeout"),
        "{:?}",
        retried.error
    );
}

#[tokio::test]
async fn a_panicking_handler_is_retried_and_the_worker_lives_on() {
    let server = NatsServer::start();
    let (producer, _js) = setup(&server, &fast_queue("panics")).await;
    producer.enqueue("panics", Job::bytes("{}")).await.unwrap();
    producer.enqueue("panics", Job::bytes("{}")).await.unwrap();
    let handler = handler_fn(|job: JobContext| async move {
        assert!(job.attempt() > 1, "first attempts panic");
        Ok(Outcome::Done)
    });
    let worker = Running::start(&server, "panics", handler).await;
    worker
        .until("both jobs to succeed", |s| s.succeeded == 2)
        .await;
    assert_eq!(worker.stop().await.retried, 2);
}

#[tokio::test]
async fn a_job_running_three_lease_periods_is_not_redelivered() {
    let server = NatsServer::start();
    let mut queue = fast_queue("long");
    queue.worker.ack_wait = Duration::from_secs(1);
    let (producer, js) = setup(&server, &queue).await;
    producer.enqueue("long", Job::bytes("{}")).await.unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let handler = {
        let runs = Arc::clone(&runs);
        handler_fn(move |_job: JobContext| {
            let runs = Arc::clone(&runs);
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3000)).await; // the job's own work
                Ok(Outcome::Done)
            }
        })
    };
    let worker = Running::start(&server, "long", handler).await;
    worker.until("the long job", |s| s.succeeded == 1).await;
    worker.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let consumer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("workers", "JOBFLEET_Q_long")
        .await
        .unwrap();
    assert_eq!(
        consumer.cached_info().delivered.consumer_sequence,
        1,
        "delivered exactly once"
    );
}

#[tokio::test]
async fn shutdown_lets_running_jobs_finish_and_pulls_no_more() {
    let server = NatsServer::start();
    let (producer, js) = setup(&server, &fast_queue("drain")).await;
    producer
        .enqueue_batch("drain", (0..20).map(|_| Job::bytes("{}")))
        .await
        .unwrap();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = handler_fn(move |job: JobContext| {
        let started_tx = started_tx.clone();
        async move {
            let _ = started_tx.send(job.id());
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(Outcome::Done)
        }
    });
    let worker = Running::start(&server, "drain", handler).await;
    started_rx.recv().await.expect("a job started");
    let stats = worker.stop().await;
    assert_eq!(stats.started, stats.succeeded, "every started job finished");
    assert!(stats.succeeded < 20, "it stopped pulling");
    assert_eq!(stats.released, 0);
    settles_at(&js, "JOBFLEET_Q_drain", 20 - stats.succeeded).await;
    let consumer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("workers", "JOBFLEET_Q_drain")
        .await
        .unwrap();
    assert_eq!(
        consumer.cached_info().num_ack_pending,
        0,
        "nothing left leased to the stopped worker"
    );
}

#[tokio::test]
async fn every_job_completes_across_a_server_restart() {
    let mut server = NatsServer::start();
    let (producer, js) = setup(&server, &fast_queue("restart")).await;
    let ids: Vec<_> = producer
        .enqueue_batch("restart", (0..200).map(|i| Job::bytes(format!("{i}"))))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect();
    let handler = handler_fn(|_job: JobContext| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(Outcome::Done)
    });
    let worker = Running::start(&server, "restart", handler).await;
    worker.until("some progress", |s| s.succeeded >= 20).await;
    server.restart();
    worker.until("every job", |s| s.succeeded >= 200).await;
    eventually_async("the queue to drain", WAIT, || async {
        (stream_messages(&js, "JOBFLEET_Q_restart").await == 0).then_some(())
    })
    .await;
    worker.stop().await;
    for id in ids {
        let history = job_history(&js, id).await.unwrap();
        let terminal: Vec<_> = history.iter().filter(|e| e.event.is_terminal()).collect();
        assert_eq!(
            terminal.len(),
            1,
            "job {id}: exactly one terminal event: {history:?}"
        );
        assert_eq!(terminal[0].event, AuditEventKind::Succeeded);
        assert_eq!(
            history.last().map(|e| e.event),
            Some(AuditEventKind::Succeeded),
            "status ends succeeded"
        );
    }
}

#[tokio::test]
async fn status_and_history_skip_audit_events_of_unknown_kinds() {
    let server = NatsServer::start();
    let queue = fast_queue("future");
    let (producer, js) = setup(&server, &queue).await;
    let id = producer
        .enqueue("future", jobfleet_producer::Job::bytes("x"))
        .await
        .unwrap()
        .id;
    let worker = Running::start(
        &server,
        "future",
        handler_fn(|_job: JobContext| async { Ok(Outcome::Done) }),
    )
    .await;
    worker.until("the job succeeds", |s| s.succeeded == 1).await;
    worker.stop().await;
    // A later writer records kinds (and a schema version) this reader does not know.
    let subject = jobfleet_core::topology::audit_subject(&id);
    for event in [
        serde_json::json!({"v": 1, "event": "teleported", "job_id": id.to_string(), "queue": "future", "at": "2026-01-01T00:00:00Z", "attempt": 1, "life": 1}),
        serde_json::json!({"v": 9, "event": "succeeded", "job_id": id.to_string(), "queue": "future", "at": "2026-01-01T00:00:00Z", "attempt": 1, "life": 1}),
    ] {
        js.publish(subject.clone(), serde_json::to_vec(&event).unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let status = job_status(&js, id).await.unwrap().expect("a status");
    assert_eq!(status.last.event, AuditEventKind::Succeeded);
    assert_eq!(status.last.v, 1);
    let kinds: Vec<_> = job_history(&js, id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        kinds,
        [
            AuditEventKind::Enqueued,
            AuditEventKind::Started,
            AuditEventKind::Succeeded
        ]
    );
}

#[tokio::test]
async fn status_of_unknown_job_is_none() {
    let server = NatsServer::start();
    let (_producer, js) = setup(&server, &fast_queue("none")).await;
    assert!(
        job_status(&js, jobfleet_core::JobId::new())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        job_history(&js, jobfleet_core::JobId::new())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn redrive_puts_dead_jobs_back_and_they_run_in_a_new_life() {
    let server = NatsServer::start();
    let (producer, js) = setup(&server, &fast_queue("revive")).await;
    let mut ids = Vec::new();
    for kind in ["a", "b", "c"] {
        ids.push(
            producer
                .enqueue("revive", Job::bytes(kind).job_type(kind))
                .await
                .unwrap()
                .id,
        );
    }
    // First life: every job fails for good. After a redrive (life 1) they succeed.
    let handler = handler_fn(|job: JobContext| async move {
        if job.meta().life == 0 {
            Ok(Outcome::fail("downstream said no"))
        } else {
            Ok(Outcome::Done)
        }
    });
    let worker = Running::start(&server, "revive", handler).await;
    worker
        .until("three dead letters", |s| s.dead_lettered == 3)
        .await;

    let dead = jobfleet_worker::dead_letters(&js, "revive").await.unwrap();
    assert_eq!(dead.len(), 3);
    assert!(
        dead.iter()
            .all(|d| d.reason == "downstream said no" && d.attempts == 1 && d.dead_at.is_some())
    );

    let one = jobfleet_worker::redrive(
        &js,
        "revive",
        jobfleet_worker::RedriveSelection::Ids(vec![ids[0]]),
    )
    .await
    .unwrap();
    assert_eq!((one.redriven.clone(), one.failed.len()), (vec![ids[0]], 0));
    worker.until("the redriven job", |s| s.succeeded == 1).await;

    let matching = jobfleet_worker::RedriveSelection::Matching(Box::new(|d| {
        d.meta.as_ref().and_then(|m| m.job_type.as_deref()) == Some("b")
    }));
    assert_eq!(
        jobfleet_worker::redrive(&js, "revive", matching)
            .await
            .unwrap()
            .redriven,
        vec![ids[1]]
    );
    assert_eq!(
        jobfleet_worker::redrive(&js, "revive", jobfleet_worker::RedriveSelection::All)
            .await
            .unwrap()
            .redriven,
        vec![ids[2]]
    );
    worker
        .until("every redriven job", |s| s.succeeded == 3)
        .await;
    worker.stop().await;

    assert!(
        jobfleet_worker::dead_letters(&js, "revive")
            .await
            .unwrap()
            .is_empty()
    );
    settles_at(&js, "JOBFLEET_Q_revive", 0).await;
    for id in ids {
        let history = job_history(&js, id).await.unwrap();
        let kinds: Vec<_> = history.iter().map(|e| (e.event, e.life)).collect();
        assert_eq!(
            kinds,
            [
                (AuditEventKind::Enqueued, 0),
                (AuditEventKind::Started, 0),
                (AuditEventKind::DeadLettered, 0),
                (AuditEventKind::Redriven, 1),
                (AuditEventKind::Started, 1),
                (AuditEventKind::Succeeded, 1),
            ],
            "job {id}"
        );
    }
}

#[tokio::test]
async fn a_job_left_undeliverable_by_max_deliver_is_moved_to_the_dead_letters() {
    let server = NatsServer::start();
    let mut queue = fast_queue("stuck");
    queue.worker.max_attempts = 1; // max_deliver = 2
    queue.worker.ack_wait = Duration::from_millis(300);
    let (producer, js) = setup(&server, &queue).await;
    let job = producer
        .enqueue("stuck", Job::bytes("payload"))
        .await
        .unwrap();

    // Two deliveries that never get an outcome, as if two workers died holding the job.
    let consumer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("workers", "JOBFLEET_Q_stuck")
        .await
        .unwrap();
    for delivery in 1..=2 {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .unwrap();
        let message = futures::StreamExt::next(&mut batch)
            .await
            .expect("a delivery")
            .unwrap();
        assert_eq!(message.info().unwrap().delivered, delivery);
    }
    // JetStream now keeps the job but will not deliver it again; the mover must act.
    let (ran, handler) = counting_handler();
    let worker = Running::start(&server, "stuck", handler).await;
    let status = eventually_async("the job to be dead-lettered", WAIT, || async {
        job_status(&js, job.id)
            .await
            .unwrap()
            .filter(|s| s.last.event == AuditEventKind::DeadLettered)
    })
    .await;
    worker.stop().await;
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(
        status
            .last
            .error
            .as_deref()
            .unwrap()
            .contains("no outcome after 2 deliveries")
    );
    settles_at(&js, "JOBFLEET_Q_stuck", 0).await;
    let dead = jobfleet_worker::dead_letters(&js, "stuck").await.unwrap();
    assert_eq!(
        (dead.len(), dead[0].id, &dead[0].payload[..]),
        (1, job.id, &b"payload"[..])
    );
    let mut mover: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("mover_stuck", topology::ADVISORY_STREAM)
        .await
        .unwrap();
    let mover = mover.info().await.unwrap();
    assert_eq!(
        (mover.num_pending, mover.num_ack_pending),
        (0, 0),
        "the advisory was handled"
    );
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_format() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = NatsServer::start();
    let (producer, _js) = setup(&server, &fast_queue("measured")).await;
    producer
        .enqueue_batch("measured", (0..5).map(|_| Job::bytes("{}")))
        .await
        .unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let worker = Worker::builder(client, "measured")
        .metrics_addr("127.0.0.1:0".parse().unwrap())
        .build(handler_fn(|_job: JobContext| async { Ok(Outcome::Done) }))
        .await
        .unwrap();
    let addr = worker.metrics_addr().expect("bound");
    let stats = worker.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    eventually_async("five successes", WAIT, || async {
        (stats.snapshot().succeeded == 5).then_some(())
    })
    .await;

    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    for line in [
        r#"jobfleet_jobs_total{queue="measured",outcome="succeeded"} 5"#,
        r#"jobfleet_attempts_started_total{queue="measured"} 5"#,
        r#"jobfleet_jobs_in_flight{queue="measured"} 0"#,
        r#"jobfleet_handler_duration_seconds_count{queue="measured"} 5"#,
        r#"jobfleet_queue_wait_seconds_count{queue="measured"} 5"#,
        r#"jobfleet_handler_duration_seconds_bucket{queue="measured",le="+Inf"} 5"#,
    ] {
        assert!(
            response.lines().any(|l| l == line),
            "missing {line:?} in:\n{response}"
        );
    }
    let _ = stop.send(());
    running.await.unwrap();
}

#[tokio::test]
async fn a_redelivery_after_the_terminal_event_is_settled_without_running_again() {
    let server = NatsServer::start();
    let mut queue = fast_queue("settled");
    queue.worker.ack_wait = Duration::from_millis(500);
    let (producer, js) = setup(&server, &queue).await;
    let job = producer.enqueue("settled", Job::bytes("{}")).await.unwrap();

    // A worker takes the job, records its terminal event, and dies before its ack lands.
    let consumer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("workers", "JOBFLEET_Q_settled")
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    futures::StreamExt::next(&mut batch)
        .await
        .expect("a delivery")
        .unwrap();
    let done = jobfleet_core::AuditEvent::new(
        AuditEventKind::Succeeded,
        job.id,
        "settled",
        time::OffsetDateTime::now_utc(),
        1,
    );
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", done.message_id());
    js.publish_with_headers(
        topology::audit_subject(&job.id),
        headers,
        serde_json::to_vec(&done).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let (ran, handler) = counting_handler();
    let worker = Running::start(&server, "settled", handler).await;
    settles_at(&js, "JOBFLEET_Q_settled", 0).await;
    worker.stop().await;
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "the finished job did not run again"
    );
    let terminal = job_history(&js, job.id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event.is_terminal())
        .count();
    assert_eq!(terminal, 1);
}

#[tokio::test]
async fn a_job_handed_back_at_shutdown_keeps_its_only_attempt() {
    let server = NatsServer::start();
    let mut queue = fast_queue("single_try");
    queue.worker.max_attempts = 1;
    let (producer, js) = setup(&server, &queue).await;
    let job = producer
        .enqueue("single_try", Job::bytes("{}"))
        .await
        .unwrap();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let slow = handler_fn(move |_job: JobContext| {
        let started_tx = started_tx.clone();
        async move {
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
            Ok(Outcome::Done)
        }
    });
    // A worker with no grace: the running job is handed back at once on shutdown.
    let client = async_nats::connect(server.url()).await.unwrap();
    let worker = Worker::builder(client, "single_try")
        .grace_period(Duration::ZERO)
        .build(slow)
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    started_rx.recv().await.expect("the job started");
    let _ = stop.send(());
    assert_eq!(running.await.unwrap().released, 1);

    let finisher = Running::start(
        &server,
        "single_try",
        handler_fn(|_job: JobContext| async { Ok(Outcome::Done) }),
    )
    .await;
    finisher
        .until("the handed-back job", |s| s.succeeded == 1)
        .await;
    finisher.stop().await;
    let status = job_status(&js, job.id).await.unwrap().unwrap();
    assert_eq!(
        status.last.event,
        AuditEventKind::Succeeded,
        "not dead-lettered for a hand-back"
    );
    assert_eq!(
        status.last.attempt, 1,
        "the interrupted attempt was not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_blocks_its_thread_keeps_its_lease() {
    let server = NatsServer::start();
    let mut queue = fast_queue("blocking");
    queue.worker.ack_wait = Duration::from_secs(1);
    let (producer, js) = setup(&server, &queue).await;
    producer
        .enqueue("blocking", Job::bytes("{}"))
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let handler = {
        let runs = Arc::clone(&runs);
        handler_fn(move |_job: JobContext| {
            runs.fetch_add(1, Ordering::SeqCst);
            // Blocks this runtime thread for three lease periods (as sync code or a foreign
            // call would); the lease is renewed from another task all the same.
            std::thread::sleep(Duration::from_secs(3));
            async { Ok(Outcome::Done) }
        })
    };
    let worker = Running::start(&server, "blocking", handler).await;
    worker.until("the blocking job", |s| s.succeeded == 1).await;
    worker.stop().await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "not redelivered while its worker lived"
    );
    let consumer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("workers", "JOBFLEET_Q_blocking")
        .await
        .unwrap();
    assert_eq!(consumer.cached_info().delivered.consumer_sequence, 1);
}

#[tokio::test]
async fn the_lease_follows_the_consumers_own_ack_wait() {
    let server = NatsServer::start();
    let mut queue = fast_queue("tuned");
    queue.worker.ack_wait = Duration::from_secs(30);
    let (producer, js) = setup(&server, &queue).await;
    // An operator shortens the consumer's lease by hand; the queue's metadata still says 30 s.
    let consumer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("workers", "JOBFLEET_Q_tuned")
        .await
        .unwrap();
    let mut config = consumer.cached_info().config.clone();
    config.ack_wait = Duration::from_secs(1);
    js.update_consumer_on_stream(config, "JOBFLEET_Q_tuned")
        .await
        .unwrap();
    producer.enqueue("tuned", Job::bytes("{}")).await.unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let handler = {
        let runs = Arc::clone(&runs);
        handler_fn(move |_job: JobContext| {
            runs.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(3)).await; // three of the real leases
                Ok(Outcome::Done)
            }
        })
    };
    let worker = Running::start(&server, "tuned", handler).await;
    worker.until("the job", |s| s.succeeded == 1).await;
    worker.stop().await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "renewed at the consumer's pace, not the metadata's"
    );
}

#[tokio::test]
async fn progress_reports_are_audited_in_order_at_level_full_only() {
    let server = NatsServer::start();
    let full = fast_queue("progress_full");
    let mut terminal = fast_queue("progress_terminal");
    terminal.audit.level = jobfleet_core::AuditLevel::Terminal;
    let (producer, js) = setup(&server, &full).await;
    producer.declare_queue(&terminal).await.unwrap();
    let handler = || {
        handler_fn(|job: JobContext| async move {
            for done in [1, 2] {
                job.report_progress(serde_json::json!({"done": done, "of": 2}))
                    .await;
            }
            Ok(Outcome::Done)
        })
    };
    let reported = producer
        .enqueue("progress_full", Job::bytes("{}"))
        .await
        .unwrap()
        .id;
    let unreported = producer
        .enqueue("progress_terminal", Job::bytes("{}"))
        .await
        .unwrap()
        .id;
    let a = Running::start(&server, "progress_full", handler()).await;
    let b = Running::start(&server, "progress_terminal", handler()).await;
    a.until("the reporting job", |s| s.succeeded == 1).await;
    b.until("the other job", |s| s.succeeded == 1).await;
    a.stop().await;
    b.stop().await;

    let history = job_history(&js, reported).await.unwrap();
    let kinds: Vec<_> = history.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [
            AuditEventKind::Enqueued,
            AuditEventKind::Started,
            AuditEventKind::Progress,
            AuditEventKind::Progress,
            AuditEventKind::Succeeded
        ]
    );
    assert_eq!(
        history[3].result,
        Some(serde_json::json!({"done": 2, "of": 2}))
    );
    assert!(history[2].worker.is_some());
    let kinds: Vec<_> = job_history(&js, unreported)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(kinds, [AuditEventKind::Succeeded]);
}

#[tokio::test]
async fn status_and_history_follow_the_lifecycle_when_enqueued_is_stored_late() {
    let server = NatsServer::start();
    let (_producer, js) = setup(&server, &fast_queue("late")).await;
    let id = jobfleet_core::JobId::new();
    let at = time::OffsetDateTime::now_utc();
    // As a quick worker can make it happen: `enqueued` (sent without awaiting its ack by the
    // producer) is stored after the job's later events.
    for (kind, attempt) in [
        (AuditEventKind::Started, 1),
        (AuditEventKind::Succeeded, 1),
        (AuditEventKind::Enqueued, 0),
    ] {
        let event = jobfleet_core::AuditEvent::new(kind, id, "late", at, attempt);
        js.publish(
            topology::audit_subject(&id),
            serde_json::to_vec(&event).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let status = job_status(&js, id).await.unwrap().unwrap();
    assert_eq!(status.last.event, AuditEventKind::Succeeded);
    assert!(status.is_finished());
    let kinds: Vec<_> = job_history(&js, id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        kinds,
        [
            AuditEventKind::Enqueued,
            AuditEventKind::Started,
            AuditEventKind::Succeeded
        ]
    );
}
