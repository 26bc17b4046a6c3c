//! Fault tests with real worker processes: SIGKILL mid-job, a job that crashes its worker
//! every time, and SIGTERM under load. Timing is in multiples of the queue's ack wait.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jobfleet_core::{AuditEventKind, JobId, QueueConfig, RetrySchedule, headers as h};
use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_testkit::{NatsServer, eventually, eventually_async, send_signal};
use jobfleet_worker::{job_history, job_status};

const ACK_WAIT: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(60);

fn queue(name: &str, max_attempts: u32) -> QueueConfig {
    let mut queue = QueueConfig::new(name);
    queue.worker.ack_wait = ACK_WAIT;
    queue.worker.max_attempts = max_attempts;
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

/// Starts the worker binary on `queue` with extra flags; its stderr is inherited for debugging.
fn worker(server: &NatsServer, queue: &str, flags: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_jobfleet-worker-noop"))
        // A URL list, as a cluster deployment passes it (docker-compose.yml does).
        .args([
            "--queue",
            queue,
            "--nats-url",
            &format!("{0},{0}", server.url()),
        ])
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start the worker binary")
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    eventually("the worker to exit", timeout, || {
        child.try_wait().ok().flatten()
    })
}

async fn stored(producer: &Producer, queue: &str) -> u64 {
    let mut stream = producer
        .jetstream()
        .get_stream(format!("JOBFLEET_Q_{queue}"))
        .await
        .unwrap();
    stream.info().await.unwrap().state.messages
}

async fn in_flight(producer: &Producer, queue: &str) -> usize {
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = producer
        .jetstream()
        .get_consumer_from_stream("workers", format!("JOBFLEET_Q_{queue}"))
        .await
        .unwrap();
    consumer.info().await.unwrap().num_ack_pending
}

#[tokio::test]
async fn a_killed_workers_job_comes_back_after_the_ack_wait_and_completes() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("killed", 5)).await;
    let job = producer.enqueue("killed", Job::bytes("{}")).await.unwrap();

    let mut slow = worker(&server, "killed", &["--sleep-ms", "60000"]);
    eventually_async("the job to be leased", WAIT, || async {
        (in_flight(&producer, "killed").await == 1).then_some(())
    })
    .await;
    send_signal(slow.id(), "KILL");
    let killed_at = Instant::now();
    wait_exit(&mut slow, WAIT);

    let mut fast = worker(&server, "killed", &[]);
    let status = eventually_async("the job to succeed", WAIT, || async {
        job_status(producer.jetstream(), job.id)
            .await
            .unwrap()
            .filter(|s| s.last.event == AuditEventKind::Succeeded)
    })
    .await;
    assert!(
        killed_at.elapsed() >= ACK_WAIT.mul_f64(2.0 / 3.0),
        "redelivered only once the lease expired"
    );
    assert_eq!(status.last.attempt, 2, "the killed attempt counts");
    eventually_async("the queue to empty", WAIT, || async {
        (stored(&producer, "killed").await == 0).then_some(())
    })
    .await;
    send_signal(fast.id(), "TERM");
    assert!(wait_exit(&mut fast, WAIT).success());
}

#[tokio::test]
async fn a_job_that_crashes_its_worker_every_time_ends_dead_lettered() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("crashy", 2)).await;
    let good = producer
        .enqueue("crashy", Job::bytes("fine"))
        .await
        .unwrap();
    let poison = producer
        .enqueue("crashy", Job::bytes("boom"))
        .await
        .unwrap();

    // Each process dies inside the handler of the poison job; the next one picks it up after
    // the lease expires. With 2 attempts allowed, the third delivery is dead-lettered unrun.
    let mut crashes = 0;
    let dead = loop {
        let mut child = worker(
            &server,
            "crashy",
            &["--crash-on", "boom", "--concurrency", "1"],
        );
        // Poll both the process and the audit trail, with a deadline.
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Ok(Some(exit)) = child.try_wait() {
                break Err(exit);
            }
            let dead = job_status(producer.jetstream(), poison.id).await.unwrap();
            if let Some(dead) = dead.filter(|s| s.last.event == AuditEventKind::DeadLettered) {
                break Ok(dead);
            }
            assert!(
                Instant::now() < deadline,
                "neither a crash nor a dead letter within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        match status {
            Ok(dead) => {
                send_signal(child.id(), "TERM");
                assert!(wait_exit(&mut child, WAIT).success());
                break dead;
            }
            Err(exit) => {
                assert_eq!(exit.code(), Some(86), "crashed as asked");
                crashes += 1;
                assert!(
                    crashes <= 2,
                    "a third crash means the attempt limit was not enforced"
                );
            }
        }
    };
    assert_eq!(crashes, 2);
    assert!(
        dead.last
            .error
            .as_deref()
            .unwrap()
            .contains("attempts exhausted"),
        "{:?}",
        dead.last.error
    );
    let good_status = job_status(producer.jetstream(), good.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(good_status.last.event, AuditEventKind::Succeeded);
    let dlq = producer
        .jetstream()
        .get_stream("JOBFLEET_DLQ_crashy")
        .await
        .unwrap();
    let copy = dlq
        .direct_get_last_for_subject(format!("jobfleet.dlq.crashy.{}", poison.id))
        .await
        .unwrap();
    assert_eq!(&copy.payload[..], b"boom");
    assert_eq!(
        copy.headers.get(h::DEAD_ATTEMPTS).map(|v| v.as_str()),
        Some("2")
    );
    eventually_async("the queue to empty", WAIT, || async {
        (stored(&producer, "crashy").await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sigterm_under_load_loses_nothing_and_duplicates_nothing() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("rolling", 5)).await;
    let results = producer
        .enqueue_batch("rolling", (0..200).map(|i| Job::bytes(format!("{i}"))))
        .await
        .unwrap();
    let ids: Vec<JobId> = results.into_iter().map(|r| r.unwrap().id).collect();

    let grace = Duration::from_secs(10);
    let mut first = worker(
        &server,
        "rolling",
        &[
            "--sleep-ms",
            "200",
            "--concurrency",
            "8",
            "--grace-seconds",
            "10",
        ],
    );
    eventually_async("some progress", WAIT, || async {
        (stored(&producer, "rolling").await <= 180).then_some(())
    })
    .await;
    send_signal(first.id(), "TERM");
    let stopping = Instant::now();
    let exit = wait_exit(&mut first, WAIT);
    assert!(exit.success(), "graceful exit, got {exit:?}");
    assert!(
        stopping.elapsed() < grace,
        "stopped within the grace period ({:?})",
        stopping.elapsed()
    );
    assert_eq!(
        in_flight(&producer, "rolling").await,
        0,
        "nothing left leased to the stopped worker"
    );

    let mut second = worker(&server, "rolling", &["--concurrency", "16"]);
    eventually_async("the queue to drain", WAIT, || async {
        (stored(&producer, "rolling").await == 0).then_some(())
    })
    .await;
    send_signal(second.id(), "TERM");
    assert!(wait_exit(&mut second, WAIT).success());

    let mut runs: HashMap<AuditEventKind, usize> = HashMap::new();
    for id in &ids {
        let history = job_history(producer.jetstream(), *id).await.unwrap();
        let started = history
            .iter()
            .filter(|e| e.event == AuditEventKind::Started)
            .count();
        let succeeded = history
            .iter()
            .filter(|e| e.event == AuditEventKind::Succeeded)
            .count();
        assert_eq!(
            (started, succeeded),
            (1, 1),
            "job {id} ran once and succeeded once: {history:?}"
        );
        *runs.entry(AuditEventKind::Succeeded).or_default() += succeeded;
    }
    assert_eq!(runs[&AuditEventKind::Succeeded], 200);
}
