//! Declaring queues against a real nats-server: idempotent, updates in place, reports what
//! it cannot change, rejects bad declarations by field.

use std::time::Duration;

use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy};
use jobfleet_core::{
    AuditEvent, AuditEventKind, ConfigErrorKind, QueueConfig, QueueFile, StorageKind, topology,
};
use jobfleet_producer::{ConnectOptions, EnqueueErrorKind, Job, Producer, ProvisionErrorKind};
use jobfleet_testkit::{NatsServer, eventually_async};

async fn producer(server: &NatsServer) -> Producer {
    Producer::connect(ConnectOptions::new(server.url()))
        .await
        .unwrap()
}

#[tokio::test]
async fn declaring_creates_the_topology_and_is_idempotent() {
    let server = NatsServer::start();
    let producer = producer(&server).await;
    let first = producer
        .declare_queue(&QueueConfig::new("emails"))
        .await
        .unwrap();
    assert!(first.created && first.changed.is_empty() && first.is_fully_applied());

    let js = producer.jetstream();
    let work = js
        .get_stream("JOBFLEET_Q_emails")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(work.retention, RetentionPolicy::WorkQueue);
    assert_eq!(
        work.subjects,
        ["jobfleet.q.emails.ready", "jobfleet.q.emails.sched.*"]
    );
    assert!(work.allow_message_schedules);
    assert_eq!(
        work.metadata
            .get(topology::METADATA_PROTOCOL)
            .map(String::as_str),
        Some("1")
    );
    let dlq = js
        .get_stream("JOBFLEET_DLQ_emails")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(dlq.retention, RetentionPolicy::Limits);
    assert_eq!(dlq.max_age, Duration::from_secs(14 * 24 * 3600));
    js.get_stream(topology::AUDIT_STREAM).await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("workers", "JOBFLEET_Q_emails")
        .await
        .unwrap();
    let info = consumer.cached_info();
    assert_eq!(info.config.filter_subject, "jobfleet.q.emails.ready");
    assert_eq!(info.config.ack_wait, Duration::from_secs(30));
    assert_eq!(info.config.max_deliver, 11);
    assert_eq!(info.config.max_ack_pending, 1000);

    let again = producer
        .declare_queue(&QueueConfig::new("emails"))
        .await
        .unwrap();
    assert!(
        !again.created && again.changed.is_empty() && again.is_fully_applied(),
        "{again:?}"
    );
}

#[tokio::test]
async fn changed_declaration_updates_what_it_can_and_reports_the_rest() {
    let server = NatsServer::start();
    let producer = producer(&server).await;
    producer
        .declare_queue(&QueueConfig::new("reports"))
        .await
        .unwrap();

    let mut changed = QueueConfig::new("reports");
    changed.max_age = Some(Duration::from_secs(3600));
    changed.worker.ack_wait = Duration::from_secs(10);
    changed.worker.max_in_flight = 64;
    changed.storage = StorageKind::Memory;
    let declared = producer.declare_queue(&changed).await.unwrap();
    for field in [
        "stream.max_age",
        "stream.metadata",
        "consumer.ack_wait",
        "consumer.max_ack_pending",
    ] {
        assert!(
            declared.changed.iter().any(|c| c == field),
            "{field} missing from {:?}",
            declared.changed
        );
    }
    assert_eq!(declared.not_applied.len(), 2, "{:?}", declared.not_applied);
    assert!(
        declared
            .not_applied
            .iter()
            .all(|n| n.field.ends_with(".storage"))
    );

    let consumer: async_nats::jetstream::consumer::PullConsumer = producer
        .jetstream()
        .get_consumer_from_stream("workers", "JOBFLEET_Q_reports")
        .await
        .unwrap();
    assert_eq!(
        consumer.cached_info().config.ack_wait,
        Duration::from_secs(10)
    );
    let again = producer.declare_queue(&changed).await.unwrap();
    assert!(again.changed.is_empty(), "{:?}", again.changed);
}

#[tokio::test]
async fn bounded_queue_rejects_when_full_and_refuses_delayed_jobs() {
    let server = NatsServer::start();
    let producer = producer(&server).await;
    let mut bounded = QueueConfig::new("bounded");
    bounded.max_bytes = Some(1 << 20);
    producer.declare_queue(&bounded).await.unwrap();
    let config = producer
        .jetstream()
        .get_stream("JOBFLEET_Q_bounded")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(
        config.discard,
        DiscardPolicy::New,
        "a full queue must reject, not delete accepted jobs"
    );
    let err = producer
        .enqueue("bounded", Job::bytes("x").delay(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), EnqueueErrorKind::InvalidOption);
    producer.enqueue("bounded", Job::bytes("x")).await.unwrap();
}

#[tokio::test]
async fn invalid_declarations_name_their_field() {
    let server = NatsServer::start();
    let producer = producer(&server).await;
    let mut bad = QueueConfig::new("ok");
    bad.worker.max_attempts = 0;
    let err = producer.declare_queue(&bad).await.unwrap_err();
    assert_eq!(err.kind(), ProvisionErrorKind::InvalidConfig);
    let config_err = err.config_error().unwrap();
    assert_eq!(
        (config_err.kind(), config_err.field()),
        (ConfigErrorKind::InvalidValue, "worker.max_attempts")
    );

    let err = producer
        .declare_queue(&QueueConfig::new("a.b"))
        .await
        .unwrap_err();
    assert_eq!(
        err.config_error().unwrap().kind(),
        ConfigErrorKind::InvalidName
    );

    // Three replicas on a single server: JetStream refuses, and says why.
    let mut replicated = QueueConfig::new("replicated");
    replicated.replicas = 3;
    let err = producer.declare_queue(&replicated).await.unwrap_err();
    assert_eq!(err.kind(), ProvisionErrorKind::Rejected);
}

#[tokio::test]
async fn foreign_stream_with_the_queue_name_is_a_conflict() {
    let server = NatsServer::start();
    let producer = producer(&server).await;
    producer
        .jetstream()
        .create_stream(async_nats::jetstream::stream::Config {
            name: "JOBFLEET_Q_taken".into(),
            subjects: vec!["elsewhere".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let err = producer
        .declare_queue(&QueueConfig::new("taken"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ProvisionErrorKind::Conflict);
}

#[tokio::test]
async fn queues_from_a_toml_file() {
    let server = NatsServer::start();
    let producer = producer(&server).await;
    let file = QueueFile::from_toml(
        r#"
        [[queue]]
        name = "a"
        [[queue]]
        name = "b"
        worker = { max_attempts = 3 }
        audit = { level = "off" }
        "#,
    )
    .unwrap();
    let declared = producer.declare_queues(&file).await.unwrap();
    assert_eq!(
        declared
            .iter()
            .map(|d| d.queue.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    let err = producer
        .enqueue("b", Job::bytes("x").max_attempts(4))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        EnqueueErrorKind::InvalidOption,
        "per-queue limits are read back from the stream"
    );
}

#[tokio::test]
async fn enqueue_records_an_enqueued_audit_event_when_the_level_is_full() {
    let server = NatsServer::start();
    let producer = producer(&server).await;
    producer
        .declare_queue(&QueueConfig::new("audited"))
        .await
        .unwrap();
    let mut quiet = QueueConfig::new("quiet");
    quiet.audit.level = jobfleet_core::AuditLevel::Terminal;
    producer.declare_queue(&quiet).await.unwrap();

    let job = producer
        .enqueue("audited", Job::bytes("x").job_type("t"))
        .await
        .unwrap();
    let repeat = producer
        .enqueue("audited", Job::bytes("x").id(job.id))
        .await
        .unwrap();
    assert!(repeat.duplicate);
    let silent = producer.enqueue("quiet", Job::bytes("x")).await.unwrap();

    let audit = producer
        .jetstream()
        .get_stream(topology::AUDIT_STREAM)
        .await
        .unwrap();
    let subject = topology::audit_subject(&job.id);
    let message = eventually_async("the enqueued event", Duration::from_secs(5), || {
        let audit = audit.clone();
        let subject = subject.clone();
        async move { audit.get_last_raw_message_by_subject(&subject).await.ok() }
    })
    .await;
    let event: AuditEvent = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(event.event, AuditEventKind::Enqueued);
    assert_eq!(
        (event.job_id, event.queue.as_str(), event.stream_seq),
        (job.id, "audited", Some(job.sequence))
    );
    assert_eq!(event.job_type.as_deref(), Some("t"));

    // The duplicate added nothing, and the terminal-only queue recorded nothing.
    let mut audit = audit;
    let state = audit.info().await.unwrap().state.clone();
    assert_eq!(state.messages, 1);
    assert!(
        audit
            .get_last_raw_message_by_subject(&topology::audit_subject(&silent.id))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn bounding_an_unbounded_queue_is_reported_and_the_rest_applied() {
    let server = NatsServer::start();
    let producer = producer(&server).await;
    producer
        .declare_queue(&QueueConfig::new("grows"))
        .await
        .unwrap();
    let mut bounded = QueueConfig::new("grows");
    bounded.max_messages = Some(10);
    bounded.max_age = Some(Duration::from_secs(3600));
    let declared = producer.declare_queue(&bounded).await.unwrap();
    assert_eq!(
        declared
            .not_applied
            .iter()
            .map(|n| n.field.as_str())
            .collect::<Vec<_>>(),
        ["stream.max_messages"]
    );
    assert!(
        declared.changed.iter().any(|c| c == "stream.max_age"),
        "{:?}",
        declared.changed
    );
    let config = producer
        .jetstream()
        .get_stream("JOBFLEET_Q_grows")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(
        (config.max_messages, config.max_age),
        (-1, Duration::from_secs(3600))
    );
    assert!(config.allow_message_schedules);
}

#[tokio::test]
async fn the_audit_stream_follows_the_most_replicated_queue() {
    let cluster = jobfleet_testkit::NatsCluster::start(3);
    let producer = Producer::connect(ConnectOptions::new(cluster.urls()))
        .await
        .unwrap();
    producer
        .declare_queue(&QueueConfig::new("single"))
        .await
        .unwrap();
    let mut replicated = QueueConfig::new("triple");
    replicated.replicas = 3;
    let declared = producer.declare_queue(&replicated).await.unwrap();
    assert!(
        declared.changed.iter().any(|c| c == "audit.replicas"),
        "{:?}",
        declared.changed
    );
    let audit = producer
        .jetstream()
        .get_stream(topology::AUDIT_STREAM)
        .await
        .unwrap();
    assert_eq!(audit.cached_info().config.num_replicas, 3);
    assert_eq!(
        declared
            .not_applied
            .iter()
            .map(|n| n.field.as_str())
            .collect::<Vec<_>>(),
        ["advisories.replicas"],
        "the shared advisory stream's replica count is reported, not changed"
    );
}
