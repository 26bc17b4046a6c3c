//! Enqueue against a real nats-server.

use std::time::Duration;

use async_nats::jetstream::consumer::{Consumer, pull};
use async_nats::jetstream::stream::Stream;
use futures::StreamExt;
use jobfleet_core::{JobId, JobMeta, QueueConfig, QueueName, headers, parse_timestamp};
use jobfleet_producer::{ConnectOptions, EnqueueErrorKind, Job, Producer};
use jobfleet_testkit::{NatsServer, eventually_async};
use time::OffsetDateTime;

async fn producer_for(server: &NatsServer) -> Producer {
    Producer::connect(ConnectOptions::new(server.url()))
        .await
        .expect("connect")
}

async fn declared(server: &NatsServer, config: QueueConfig) -> Producer {
    let producer = producer_for(server).await;
    producer.declare_queue(&config).await.expect("declare");
    producer
}

async fn work_stream(producer: &Producer, queue: &str) -> Stream {
    let name = QueueName::new(queue).unwrap().stream_name();
    producer.jetstream().get_stream(name).await.expect("stream")
}

async fn workers(producer: &Producer, queue: &str) -> Consumer<pull::Config> {
    work_stream(producer, queue)
        .await
        .get_consumer("workers")
        .await
        .expect("consumer")
}

async fn stored_messages(producer: &Producer, queue: &str) -> u64 {
    work_stream(producer, queue)
        .await
        .info()
        .await
        .expect("info")
        .state
        .messages
}

/// Pulls one job from the worker consumer, waiting up to `wait`.
async fn pull_one(
    consumer: &Consumer<pull::Config>,
    wait: Duration,
) -> Option<async_nats::jetstream::Message> {
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(wait)
        .messages()
        .await
        .expect("fetch");
    batch.next().await.map(|m| m.expect("message"))
}

fn meta_of(message: &async_nats::jetstream::Message) -> JobMeta {
    let headers = message.headers.as_ref().expect("headers");
    let stored_at = message.info().expect("jetstream message").published;
    JobMeta::from_headers(|name| headers.get(name).map(|v| v.as_str()), stored_at)
        .expect("valid job headers")
}

#[tokio::test]
async fn enqueued_job_carries_payload_and_headers() {
    let server = NatsServer::start();
    let producer = declared(&server, QueueConfig::new("emails")).await;
    let before = OffsetDateTime::now_utc();
    let job = Job::json(&serde_json::json!({"to": "a@example.com"}))
        .unwrap()
        .job_type("send_email")
        .max_attempts(3)
        .timeout(Duration::from_millis(2500))
        .traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .header("tenant", "acme");
    let enqueued = producer.enqueue("emails", job).await.expect("enqueue");
    assert_eq!(
        (enqueued.sequence, enqueued.duplicate, enqueued.run_at),
        (1, false, None)
    );

    let message = pull_one(&workers(&producer, "emails").await, Duration::from_secs(5))
        .await
        .expect("a job");
    assert_eq!(message.subject.as_str(), "jobfleet.q.emails.ready");
    assert_eq!(&message.payload[..], br#"{"to":"a@example.com"}"#);
    let meta = meta_of(&message);
    assert_eq!(meta.id, enqueued.id);
    assert_eq!(meta.id.as_uuid().get_version_num(), 7);
    assert_eq!(meta.job_type.as_deref(), Some("send_email"));
    assert_eq!(meta.max_attempts, Some(3));
    assert_eq!(meta.timeout, Some(Duration::from_millis(2500)));
    assert_eq!(meta.prior_attempts, 0);
    assert!(meta.enqueued_at >= before - Duration::from_millis(1));
    assert_eq!(meta.content_type(), "application/json");
    let headers = message.headers.as_ref().unwrap();
    assert_eq!(headers.get("tenant").map(|v| v.as_str()), Some("acme"));
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(enqueued.id.to_string().as_str())
    );
    assert!(headers.get(headers::TRACEPARENT).is_some());
    message.ack().await.unwrap();
}

#[tokio::test]
async fn same_idempotency_key_stores_one_job() {
    let server = NatsServer::start();
    let producer = declared(&server, QueueConfig::new("orders")).await;
    let first = producer
        .enqueue("orders", Job::bytes("a").idempotency_key("order-42"))
        .await
        .unwrap();
    let second = producer
        .enqueue("orders", Job::bytes("b").idempotency_key("order-42"))
        .await
        .unwrap();
    let other = producer
        .enqueue("orders", Job::bytes("c").idempotency_key("order-43"))
        .await
        .unwrap();
    assert_eq!(
        first.id,
        JobId::from_idempotency_key(&QueueName::new("orders").unwrap(), "order-42")
    );
    assert_eq!(
        (second.id, second.sequence, second.duplicate),
        (first.id, first.sequence, true)
    );
    assert!(!other.duplicate);
    assert_eq!(stored_messages(&producer, "orders").await, 2);

    // Still a no-op after the first job was worked and deleted (within the window).
    let consumer = workers(&producer, "orders").await;
    while let Some(m) = pull_one(&consumer, Duration::from_millis(500)).await {
        m.double_ack().await.unwrap();
    }
    let again = producer
        .enqueue("orders", Job::bytes("a").idempotency_key("order-42"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(stored_messages(&producer, "orders").await, 0);
}

#[tokio::test]
async fn delayed_job_reaches_the_ready_subject_only_at_its_time() {
    let server = NatsServer::start();
    let producer = declared(&server, QueueConfig::new("later")).await;
    let delay = Duration::from_secs(2);
    let enqueued = producer
        .enqueue("later", Job::bytes("x").delay(delay).idempotency_key("k"))
        .await
        .unwrap();
    let run_at = enqueued.run_at.expect("a delayed job reports its run time");

    let consumer = workers(&producer, "later").await;
    // Stored as a schedule, which the worker consumer does not see.
    assert_eq!(consumer.clone().info().await.unwrap().num_pending, 0);
    assert_eq!(stored_messages(&producer, "later").await, 1);

    let message = pull_one(&consumer, Duration::from_secs(10))
        .await
        .expect("the job fires");
    let received = OffsetDateTime::now_utc();
    assert!(
        received >= run_at,
        "delivered at {received}, before its run time {run_at}"
    );
    let meta = meta_of(&message);
    assert_eq!(
        meta.id, enqueued.id,
        "the id survives the schedule (Nats-Msg-Id does not)"
    );
    assert_eq!(
        meta.run_at.map(|t| t.unix_timestamp()),
        Some(run_at.unix_timestamp())
    );
    assert_eq!(message.subject.as_str(), "jobfleet.q.later.ready");
    let headers = message.headers.as_ref().unwrap();
    let stamped = parse_timestamp(headers.get(headers::RUN_AT).unwrap().as_str()).unwrap();
    assert_eq!(stamped.unix_timestamp(), run_at.unix_timestamp());
    message.double_ack().await.unwrap();

    // The schedule was one-shot: nothing else arrives and the stream ends empty.
    eventually_async(
        "the schedule to be purged",
        Duration::from_secs(5),
        || async { (stored_messages(&producer, "later").await == 0).then_some(()) },
    )
    .await;
    assert!(
        pull_one(&consumer, Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn run_at_in_the_past_enqueues_immediately() {
    let server = NatsServer::start();
    let producer = declared(&server, QueueConfig::new("now")).await;
    let enqueued = producer
        .enqueue(
            "now",
            Job::bytes("x").run_at(OffsetDateTime::now_utc() - Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(enqueued.run_at, None);
    assert!(
        pull_one(&workers(&producer, "now").await, Duration::from_secs(2))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn batch_of_ten_thousand_accounts_for_every_ack() {
    let server = NatsServer::start();
    let producer = declared(&server, QueueConfig::new("bulk")).await;
    let jobs: Vec<Job> = (0..10_000)
        .map(|i| Job::bytes(format!("{{\"n\":{i}}}")))
        .collect();
    let results = producer.enqueue_batch("bulk", jobs).await.expect("batch");
    assert_eq!(results.len(), 10_000);
    let mut sequences: Vec<u64> = results
        .iter()
        .map(|r| r.as_ref().expect("stored").sequence)
        .collect();
    let ids: std::collections::HashSet<_> =
        results.iter().map(|r| r.as_ref().unwrap().id).collect();
    assert_eq!(ids.len(), 10_000, "every job has its own id");
    sequences.sort_unstable();
    assert_eq!(
        sequences,
        (1..=10_000).collect::<Vec<u64>>(),
        "one stream sequence per job, none missing"
    );
    assert_eq!(stored_messages(&producer, "bulk").await, 10_000);
}

#[tokio::test]
async fn batch_reports_each_jobs_result_in_order() {
    let server = NatsServer::start();
    let producer = declared(&server, QueueConfig::new("mixed")).await;
    let jobs = vec![
        Job::bytes("ok-1"),
        Job::bytes("bad").max_attempts(0),
        Job::bytes("ok-2").idempotency_key("same"),
        Job::bytes("dup").idempotency_key("same"),
    ];
    let results = producer.enqueue_batch("mixed", jobs).await.unwrap();
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().kind(),
        EnqueueErrorKind::InvalidOption
    );
    let (a, b) = (results[2].as_ref().unwrap(), results[3].as_ref().unwrap());
    assert_eq!(a.id, b.id);
    assert!(
        a.duplicate != b.duplicate,
        "exactly one of the pair is the duplicate"
    );
    assert_eq!(stored_messages(&producer, "mixed").await, 2);
}

#[tokio::test]
async fn publish_retried_across_a_server_restart_is_stored_once() {
    let mut server = NatsServer::start();
    let options = ConnectOptions::new(server.url())
        .publish_timeout(Duration::from_millis(300))
        .enqueue_deadline(Duration::from_secs(60));
    let producer = Producer::connect(options).await.unwrap();
    producer
        .declare_queue(&QueueConfig::new("durable"))
        .await
        .unwrap();
    let warm = producer
        .enqueue("durable", Job::bytes("before the outage"))
        .await
        .unwrap();

    server.stop();
    let pending = {
        let producer = producer.clone();
        tokio::spawn(async move { producer.enqueue("durable", Job::bytes("survivor")).await })
    };
    // Wait until the enqueue has been retried at least twice while the server is down, so
    // several copies with the same id are buffered for the reconnect.
    eventually_async(
        "publish retries during the outage",
        Duration::from_secs(20),
        || async { (producer.stats().publish_retries >= 2).then_some(()) },
    )
    .await;
    server.restart();

    let enqueued = pending.await.unwrap().expect("stored after the restart");
    assert!(
        !enqueued.duplicate,
        "its own earlier copy is not reported as someone else's job"
    );
    assert_eq!(
        stored_messages(&producer, "durable").await,
        2,
        "the earlier job and one copy of the new one"
    );
    let consumer = workers(&producer, "durable").await;
    let mut ids = Vec::new();
    while let Some(message) = pull_one(&consumer, Duration::from_millis(500)).await {
        ids.push(meta_of(&message).id);
        message.double_ack().await.unwrap();
    }
    assert_eq!(ids, [warm.id, enqueued.id]);
    let audit = producer
        .jetstream()
        .get_stream(jobfleet_core::topology::AUDIT_STREAM)
        .await
        .unwrap();
    let subject = jobfleet_core::topology::audit_subject(&enqueued.id);
    eventually_async("the enqueued audit event", Duration::from_secs(10), || {
        let (audit, subject) = (audit.clone(), subject.clone());
        async move { audit.get_last_raw_message_by_subject(&subject).await.ok() }
    })
    .await;
}

#[tokio::test]
async fn batch_during_an_outage_returns_within_the_deadline() {
    let mut server = NatsServer::start();
    let options = ConnectOptions::new(server.url())
        .publish_timeout(Duration::from_millis(200))
        .enqueue_deadline(Duration::from_secs(2));
    let producer = Producer::connect(options).await.unwrap();
    producer
        .declare_queue(&QueueConfig::new("outage"))
        .await
        .unwrap();
    producer
        .enqueue("outage", Job::bytes("warm the cache"))
        .await
        .unwrap();
    server.stop();
    let jobs: Vec<Job> = (0..5000).map(|i| Job::bytes(format!("{i}"))).collect();
    let ids: Vec<JobId> = jobs.iter().map(Job::job_id).collect();
    let started = std::time::Instant::now();
    let results = producer.enqueue_batch("outage", jobs).await.unwrap();
    // Bounded by about one deadline per stall, not one per job.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(results.len(), 5000);
    for (result, id) in results.iter().zip(&ids) {
        let err = result
            .as_ref()
            .expect_err("nothing can be stored while the server is down");
        assert_eq!(err.kind(), EnqueueErrorKind::NotConnected);
        assert_eq!(
            err.job_id(),
            Some(*id),
            "the error names the job's id for a safe retry"
        );
    }
}

#[tokio::test]
async fn enqueue_works_on_an_r3_queue_in_a_three_node_cluster() {
    let cluster = jobfleet_testkit::NatsCluster::start(3);
    let producer = Producer::connect(ConnectOptions::new(cluster.urls()))
        .await
        .expect("a URL list connects");
    let mut queue = QueueConfig::new("replicated");
    queue.replicas = 3;
    producer.declare_queue(&queue).await.unwrap();
    let results = producer
        .enqueue_batch("replicated", (0..100).map(|i| Job::bytes(format!("{i}"))))
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok));
    let mut stream = work_stream(&producer, "replicated").await;
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.state.messages, 100);
    assert_eq!(
        info.cluster.as_ref().map(|c| c.replicas.len()),
        Some(2),
        "a leader and two replicas"
    );
}
