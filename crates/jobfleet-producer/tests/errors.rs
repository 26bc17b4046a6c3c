//! Every typed error path of connecting and enqueueing, against a real nats-server.

use std::time::Duration;

use jobfleet_core::QueueConfig;
use jobfleet_producer::{ConnectErrorKind, ConnectOptions, EnqueueErrorKind, Job, Producer};
use jobfleet_testkit::NatsServer;

async fn producer_with(server: &NatsServer, deadline: Duration) -> Producer {
    let options = ConnectOptions::new(server.url())
        .publish_timeout(Duration::from_millis(250))
        .enqueue_deadline(deadline);
    Producer::connect(options).await.unwrap()
}

#[tokio::test]
async fn unknown_queue() {
    let server = NatsServer::start();
    let producer = producer_with(&server, Duration::from_secs(5)).await;
    let err = producer.enqueue("nope", Job::bytes("x")).await.unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::UnknownQueue);
    let err = producer
        .enqueue("not a name", Job::bytes("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::UnknownQueue);
    let err = producer
        .enqueue_batch("nope", [Job::bytes("x")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::UnknownQueue);
}

#[tokio::test]
async fn deleted_queue_is_reported_unknown_not_as_a_timeout() {
    let server = NatsServer::start();
    let producer = producer_with(&server, Duration::from_secs(30)).await;
    producer
        .declare_queue(&QueueConfig::new("gone"))
        .await
        .unwrap();
    producer.enqueue("gone", Job::bytes("x")).await.unwrap();
    producer
        .jetstream()
        .delete_stream("JOBFLEET_Q_gone")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = producer.enqueue("gone", Job::bytes("x")).await.unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::UnknownQueue);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "did not wait for the deadline"
    );
}

#[tokio::test]
async fn stream_that_is_not_a_jobfleet_queue_is_unknown() {
    let server = NatsServer::start();
    let producer = producer_with(&server, Duration::from_secs(5)).await;
    producer
        .jetstream()
        .create_stream(async_nats::jetstream::stream::Config {
            name: "JOBFLEET_Q_foreign".into(),
            subjects: vec!["foreign.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let err = producer
        .enqueue("foreign", Job::bytes("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::UnknownQueue);
}

#[tokio::test]
async fn payload_too_large_for_queue_and_for_server() {
    let server = NatsServer::start();
    let producer = producer_with(&server, Duration::from_secs(5)).await;
    let mut small = QueueConfig::new("small");
    small.max_payload = Some(1024);
    producer.declare_queue(&small).await.unwrap();
    producer
        .declare_queue(&QueueConfig::new("big"))
        .await
        .unwrap();

    producer
        .enqueue("small", Job::bytes(vec![b'x'; 100]))
        .await
        .unwrap();
    let err = producer
        .enqueue("small", Job::bytes(vec![b'x'; 2000]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::PayloadTooLarge);
    // Over the server's 1 MiB max_payload.
    let err = producer
        .enqueue("big", Job::bytes(vec![b'x'; 2 * 1024 * 1024]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::PayloadTooLarge);
    // Other work is unaffected.
    producer.enqueue("big", Job::bytes("fine")).await.unwrap();
}

#[tokio::test]
async fn stream_full() {
    let server = NatsServer::start();
    let producer = producer_with(&server, Duration::from_secs(5)).await;
    let mut tiny = QueueConfig::new("tiny");
    tiny.max_messages = Some(3);
    producer.declare_queue(&tiny).await.unwrap();
    for i in 0..3 {
        producer
            .enqueue("tiny", Job::bytes(format!("{i}")))
            .await
            .unwrap();
    }
    let err = producer
        .enqueue("tiny", Job::bytes("overflow"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::StreamFull);
    let results = producer
        .enqueue_batch("tiny", [Job::bytes("a"), Job::bytes("b")])
        .await
        .unwrap();
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err().kind() == EnqueueErrorKind::StreamFull)
    );
}

#[tokio::test]
async fn invalid_option_and_invalid_payload() {
    let server = NatsServer::start();
    let producer = producer_with(&server, Duration::from_secs(5)).await;
    let mut queue = QueueConfig::new("opts");
    queue.worker.max_attempts = 5;
    producer.declare_queue(&queue).await.unwrap();
    let err = producer
        .enqueue("opts", Job::bytes("x").max_attempts(6))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::InvalidOption);
    let err = producer
        .enqueue("opts", Job::bytes("x").header("Nats-Expected-Stream", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::InvalidOption);

    let not_json = std::collections::HashMap::from([((1, 2), "tuple keys are not JSON")]);
    let err = Job::json(&not_json).unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::InvalidPayload);
}

#[tokio::test]
async fn not_connected_when_the_server_stays_down() {
    let mut server = NatsServer::start();
    let producer = producer_with(&server, Duration::from_secs(2)).await;
    producer
        .declare_queue(&QueueConfig::new("down"))
        .await
        .unwrap();
    producer
        .enqueue("down", Job::bytes("warm the queue cache"))
        .await
        .unwrap();
    server.stop();
    let err = producer.enqueue("down", Job::bytes("x")).await.unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::NotConnected);
}

#[tokio::test]
async fn timeout_when_connected_but_unanswered() {
    let mut server = NatsServer::start();
    let producer = producer_with(&server, Duration::from_secs(2)).await;
    producer
        .declare_queue(&QueueConfig::new("frozen"))
        .await
        .unwrap();
    producer
        .enqueue("frozen", Job::bytes("warm the queue cache"))
        .await
        .unwrap();
    // A frozen server keeps the TCP connection open but answers nothing.
    server.pause();
    let err = producer
        .enqueue("frozen", Job::bytes("x"))
        .await
        .unwrap_err();
    server.resume();
    assert_eq!(err.kind(), EnqueueErrorKind::Timeout);
}

#[tokio::test]
async fn connect_errors() {
    let err = Producer::connect(
        ConnectOptions::new("nats://127.0.0.1:1").connection_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::Unreachable);

    let err = Producer::connect(
        ConnectOptions::new("nats://127.0.0.1:1").credentials_file("/no/such.creds"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::InvalidOptions);

    let err = Producer::connect(
        ConnectOptions::new("nats://127.0.0.1:1")
            .token("a")
            .user_and_password("u", "p"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::InvalidOptions);

    for bad_prefix in ["", "_INBOX_a.>", "_INBOX a", "a..b", "a.*"] {
        let err =
            Producer::connect(ConnectOptions::new("nats://127.0.0.1:1").inbox_prefix(bad_prefix))
                .await
                .unwrap_err();
        assert_eq!(
            err.kind(),
            ConnectErrorKind::InvalidOptions,
            "prefix {bad_prefix:?}"
        );
    }

    let server = NatsServer::builder().args(["--auth", "s3cret"]).start();
    let err = Producer::connect(ConnectOptions::new(server.url()).token("wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::Authentication);
    Producer::connect(ConnectOptions::new(server.url()).token("s3cret"))
        .await
        .expect("right token connects");
}

#[tokio::test]
async fn delayed_job_beyond_the_queues_max_age_is_refused() {
    let server = NatsServer::start();
    let producer = producer_with(&server, Duration::from_secs(5)).await;
    let mut short = QueueConfig::new("short");
    short.max_age = Some(Duration::from_secs(600));
    producer.declare_queue(&short).await.unwrap();
    let err = producer
        .enqueue("short", Job::bytes("x").delay(Duration::from_secs(900)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::InvalidOption);
    producer
        .enqueue("short", Job::bytes("x").delay(Duration::from_secs(30)))
        .await
        .unwrap();
}

#[tokio::test]
async fn server_side_size_limit_is_payload_too_large() {
    let server = NatsServer::start();
    let producer = producer_with(&server, Duration::from_secs(5)).await;
    producer
        .declare_queue(&QueueConfig::new("shrinks"))
        .await
        .unwrap();
    producer
        .enqueue("shrinks", Job::bytes("warm the cache"))
        .await
        .unwrap();
    // Another process lowers the limit; this producer's cached settings do not know yet.
    let admin = producer_with(&server, Duration::from_secs(5)).await;
    let mut smaller = QueueConfig::new("shrinks");
    smaller.max_payload = Some(256);
    admin.declare_queue(&smaller).await.unwrap();
    let err = producer
        .enqueue("shrinks", Job::bytes(vec![b'x'; 1024]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::PayloadTooLarge);
}
