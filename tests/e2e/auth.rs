//! The shipped NATS authorization setup, `deploy/nats/auth.conf`: each role can do its own
//! work with the real producer and worker, and is refused everything else, which then has
//! changed nothing on the server.
//!
//! The server runs that very file, with the password variables it reads defined in front of
//! it. A refusal is recognised by the server's `-ERR 'Permissions Violation for ...'` on the
//! offending connection (async-nats reports it as a `ServerError` event; a refused request
//! gets no answer, so its call fails with a timeout), and "changed nothing" by comparing the
//! admin's view of every stream and consumer before and after.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use jobfleet_core::{AuditEventKind, JobId, QueueConfig, topology};
use jobfleet_producer::{
    ConnectErrorKind, ConnectOptions, EnqueueErrorKind, Job, Producer, list_queues, pause_queue,
    purge_queue, queue_stats, resume_queue,
};
use jobfleet_testkit::{NatsServer, eventually_async};
use jobfleet_worker::{
    HandlerError, JobContext, Outcome, RedriveSelection, Worker, dead_letter, dead_letters,
    delete_dead_letters, handler_fn, job_history, job_status, redrive,
};
use serde_json::{Value, json};

/// The shipped configuration, relative to the repository root.
const CONFIG: &str = "deploy/nats/auth.conf";
/// The users of [`CONFIG`] and the variable each one's password is read from.
const USERS: [(&str, &str); 7] = [
    ("admin", "JOBFLEET_ADMIN_PASSWORD"),
    ("producer-emails", "JOBFLEET_PRODUCER_EMAILS_PASSWORD"),
    ("producer-reports", "JOBFLEET_PRODUCER_REPORTS_PASSWORD"),
    ("worker-emails", "JOBFLEET_WORKER_EMAILS_PASSWORD"),
    ("worker-reports", "JOBFLEET_WORKER_REPORTS_PASSWORD"),
    ("reader", "JOBFLEET_READER_PASSWORD"),
    ("gateway", "JOBFLEET_GATEWAY_PASSWORD"),
];
/// Deadline of everything that should happen.
const WAIT: Duration = Duration::from_secs(30);
/// How long a request the server refuses is given before it counts as unanswered (an
/// allowed one is answered in milliseconds).
const REFUSED: Duration = Duration::from_secs(1);

/// The user's own reply inbox prefix (NATS_INBOX_PREFIX), as the config grants it.
fn inbox(user: &str) -> String {
    format!("_INBOX_{user}")
}

fn password(user: &str) -> String {
    format!("pw-{user}-not-a-secret")
}

/// A server running the shipped configuration, and the admin's connection to it.
struct Fleet {
    server: NatsServer,
    admin: Conn,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// Starts the server and declares the queues `emails` and `reports` as the admin.
    async fn start(emails: QueueConfig, reports: QueueConfig) -> Self {
        let shipped = std::fs::read_to_string(jobfleet_tests::repo_root().join(CONFIG))
            .unwrap_or_else(|e| panic!("read {CONFIG}: {e}"));
        let mut config = String::from("# Test passwords, then the shipped file.\n");
        for (user, variable) in USERS {
            config.push_str(&format!("{variable}: \"{}\"\n", password(user)));
        }
        // The kit sets the JetStream store with `-sd`, which nats-server refuses next to a
        // `store_dir` in the file: that one line is left out, everything else is as shipped.
        let mut dropped = 0;
        for line in shipped.lines() {
            if line.trim_start().starts_with("store_dir:") {
                dropped += 1;
                continue;
            }
            config.push_str(line);
            config.push('\n');
        }
        assert_eq!(dropped, 1, "{CONFIG} sets store_dir once");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.conf");
        std::fs::write(&path, config).unwrap();
        // The kit's own flags (address, ports, JetStream store) override the file's.
        let server = NatsServer::builder().config_file(path).start();
        let admin = Conn::connect(&server, "admin").await;
        let producer = Producer::with_client(admin.client.clone(), &options(&server));
        for queue in [emails, reports] {
            producer
                .declare_queue(&queue)
                .await
                .unwrap_or_else(|e| panic!("the admin declares queue {}: {e}", queue.name));
        }
        Self {
            server,
            admin,
            _dir: dir,
        }
    }

    async fn connect(&self, user: &str) -> Conn {
        Conn::connect(&self.server, user).await
    }

    /// What the server holds, as the admin sees it: every stream's configuration and
    /// messages, every consumer's configuration and delivery state. A refused operation must
    /// leave it exactly as it was.
    async fn snapshot(&self) -> Value {
        let js = jetstream::new(self.admin.client.clone());
        let list: Value = js.request("STREAM.LIST", &json!({})).await.unwrap();
        let mut out = serde_json::Map::new();
        for stream in list["streams"].as_array().expect("a stream list") {
            let name = stream["config"]["name"].as_str().unwrap();
            let consumers: Value = js
                .request(format!("CONSUMER.LIST.{name}"), &json!({}))
                .await
                .unwrap();
            let consumers: serde_json::Map<String, Value> = consumers["consumers"]
                .as_array()
                .expect("a consumer list")
                .iter()
                .map(|c| {
                    let state = json!({
                        "num_pending": c["num_pending"],
                        "num_ack_pending": c["num_ack_pending"],
                        "num_redelivered": c["num_redelivered"],
                        "delivered": c["delivered"]["stream_seq"],
                        "ack_floor": c["ack_floor"]["stream_seq"],
                        "paused": c["paused"],
                        "config": c["config"],
                    });
                    (c["name"].as_str().unwrap().to_owned(), state)
                })
                .collect();
            let state = &stream["state"];
            out.insert(
                name.to_owned(),
                json!({
                    "messages": state["messages"],
                    "first_seq": state["first_seq"],
                    "last_seq": state["last_seq"],
                    "config": stream["config"],
                    "consumers": consumers,
                }),
            );
        }
        Value::Object(out)
    }

    /// Messages in `stream`, as the admin sees them.
    async fn messages(&self, stream: &str) -> u64 {
        let js = jetstream::new(self.admin.client.clone());
        let mut stream = js.get_stream(stream).await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    /// Stores a job in `queue` as the admin and waits for its PubAck.
    async fn seed(&self, queue: &str) -> u64 {
        let js = jetstream::new(self.admin.client.clone());
        js.publish(format!("jobfleet.q.{queue}.ready"), "seed".into())
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence
    }

    /// Runs `op` as `conn`'s user and asserts that the server refused it: the call fails, the
    /// server reports a permissions violation for a publish to `subject` (or to a subject
    /// starting with it), and the admin's [`Fleet::snapshot`] is the same as before.
    async fn assert_refused<T, E: std::fmt::Display>(
        &self,
        conn: &Conn,
        what: &str,
        subject: &str,
        op: impl Future<Output = Result<T, E>>,
    ) {
        let before = self.snapshot().await;
        let result = tokio::time::timeout(WAIT, op)
            .await
            .unwrap_or_else(|_| panic!("{} {what}: no result within {WAIT:?}", conn.user));
        if result.is_ok() {
            panic!("{} {what}: succeeded, but must be refused", conn.user);
        }
        conn.wait_violation(what, "Publish", subject).await;
        let after = self.snapshot().await;
        assert_eq!(
            before, after,
            "{} {what}: refused, but the server's state changed",
            conn.user
        );
    }
}

/// Producer options for tests: short enough deadlines that a refused lookup fails fast.
fn options(server: &NatsServer) -> ConnectOptions {
    ConnectOptions::new(server.url())
        .publish_timeout(REFUSED)
        .enqueue_deadline(REFUSED * 2)
}

/// A connection as one user, recording the errors the server reports on it.
struct Conn {
    user: String,
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Conn {
    async fn connect(server: &NatsServer, user: &str) -> Self {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        let client =
            async_nats::ConnectOptions::with_user_and_password(user.into(), password(user))
                .custom_inbox_prefix(inbox(user))
                .event_callback(move |event| {
                    let sink = Arc::clone(&sink);
                    async move {
                        if let async_nats::Event::ServerError(err) = event {
                            sink.lock().unwrap().push(err.to_string());
                        }
                    }
                })
                .connect(server.url())
                .await
                .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"));
        Self {
            user: user.to_owned(),
            client,
            errors,
        }
    }

    /// A JetStream context whose requests give up after [`REFUSED`].
    fn js(&self) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(REFUSED)
            .build(self.client.clone())
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// Waits until the server reported a permissions violation of `kind` (`Publish` or
    /// `Subscription`) for a subject starting with `subject` on this connection.
    async fn wait_violation(&self, what: &str, kind: &str, subject: &str) {
        let needle = format!("Permissions Violation for {kind} to \"{subject}");
        eventually_async(
            &format!(
                "{} {what}: a permissions violation for {kind} to {subject}",
                self.user
            ),
            WAIT,
            || async {
                self.errors()
                    .iter()
                    .any(|e| e.contains(&needle))
                    .then_some(())
            },
        )
        .await;
    }

    /// Asserts that the server reported no error at all on this connection.
    fn assert_no_errors(&self, doing: &str) {
        let errors = self.errors();
        assert!(
            errors.is_empty(),
            "{} was refused something while {doing}: {errors:#?}",
            self.user
        );
    }
}

/// Queues with short leases and retry thresholds, so every worker path runs quickly.
fn queue(name: &str) -> QueueConfig {
    let mut queue = QueueConfig::new(name);
    queue.worker.ack_wait = Duration::from_secs(1);
    queue.worker.max_attempts = 3;
    queue.worker.nak_delay_limit = Duration::from_millis(500);
    queue
}

/// A raw pull request for one job of `stream`'s `consumer`, as a plain request: for pulls
/// that must be refused (an allowed one's delivery carries the job's subject, which the
/// client's request inbox cannot route, so it would time out too).
async fn request_next(
    client: &async_nats::Client,
    stream: &str,
    consumer: &str,
) -> Result<async_nats::Message, async_nats::RequestError> {
    let request = async_nats::Request::new()
        .payload(r#"{"batch":1,"expires":5000000000}"#.into())
        .timeout(Some(REFUSED));
    client
        .send_request(
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            request,
        )
        .await
}

/// The delivery state of a consumer, as the admin sees it.
async fn consumer_info(fleet: &Fleet, stream: &str, consumer: &str) -> jetstream::consumer::Info {
    let js = jetstream::new(fleet.admin.client.clone());
    js.get_stream_no_info(stream)
        .await
        .unwrap()
        .consumer_info(consumer)
        .await
        .unwrap()
}

/// Has `conn` pull the next job of `queue` and never settle it, as a worker that dies
/// holding it, and waits until the admin sees the consumer's `deliveries`-th delivery.
/// Returns that delivery's stream sequence.
async fn deliver_unsettled(fleet: &Fleet, conn: &Conn, queue: &str, deliveries: u64) -> u64 {
    let stream = format!("JOBFLEET_Q_{queue}");
    let js = jetstream::new(conn.client.clone());
    let consumer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream(topology::WORKER_CONSUMER, &stream)
        .await
        .unwrap_or_else(|e| panic!("{} binds to the workers of {queue}: {e}", conn.user));
    // The delivery counts once the server sends it; the batch is never read.
    let batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(10))
        .messages()
        .await
        .unwrap_or_else(|e| panic!("{} pulls from {queue}: {e}", conn.user));
    let sequence = eventually_async(
        &format!("delivery {deliveries} of {queue}"),
        WAIT,
        || async {
            let info = consumer_info(fleet, &stream, topology::WORKER_CONSUMER).await;
            (info.delivered.consumer_sequence == deliveries)
                .then_some(info.delivered.stream_sequence)
        },
    )
    .await;
    drop(batch);
    sequence
}

/// The handler of the happy-path test: the job type picks the path through the runtime.
fn path_handler() -> impl jobfleet_worker::Handler {
    handler_fn(|job: JobContext| async move {
        match (job.job_type(), job.attempt()) {
            (Some("fail"), _) => Ok(Outcome::fail("refused by the handler")),
            // A delayed NAK, then a redelivery (which reads the job's last audit event).
            (Some("nak"), 1) => Ok(Outcome::retry_after(Duration::from_millis(100))),
            // Longer than nak_delay_limit: re-published as a schedule.
            (Some("schedule"), 1) => Ok(Outcome::retry_after(Duration::from_secs(1))),
            (Some("error"), 1) => Err(HandlerError::new("transient")),
            (Some("progress"), _) => {
                job.report_progress(json!({"half": true})).await;
                Ok(Outcome::Done)
            }
            // Runs until the worker shuts down and hands it back.
            (Some("slow"), _) => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(Outcome::Done)
            }
            _ => Ok(Outcome::Done),
        }
    })
}

async fn wait_terminal(admin: &jetstream::Context, id: JobId, kind: AuditEventKind) {
    eventually_async(
        &format!("job {id} to end {}", kind.as_str()),
        WAIT,
        || async {
            job_status(admin, id)
                .await
                .unwrap()
                .filter(|s| s.last.event == kind)
                .map(drop)
        },
    )
    .await;
}

#[tokio::test]
async fn the_producer_enqueues_and_the_worker_works_every_path_under_their_permissions() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let admin_js = jetstream::new(fleet.admin.client.clone());
    let producer_conn = fleet.connect("producer-emails").await;
    let producer = Producer::with_client(
        producer_conn.client.clone(),
        &ConnectOptions::new(fleet.server.url()),
    );

    // A job whose first worker died holding it: its redelivery reads the job's history
    // (its last audit event is still `enqueued`) before running it.
    let crashed = producer
        .enqueue("emails", Job::bytes("crashed"))
        .await
        .expect("producer-emails enqueues");
    producer_conn.client.flush().await.unwrap();
    eventually_async("the enqueued event", WAIT, || async {
        job_status(&admin_js, crashed.id).await.unwrap().map(drop)
    })
    .await;
    let worker_conn = fleet.connect("worker-emails").await;
    deliver_unsettled(&fleet, &worker_conn, "emails", 1).await;

    let mut jobs = vec![("crashed", crashed.id)];
    for kind in ["ok", "fail", "nak", "schedule", "error", "progress"] {
        let job = producer
            .enqueue("emails", Job::bytes(kind).job_type(kind))
            .await
            .unwrap_or_else(|e| panic!("producer-emails enqueues a {kind} job: {e}"));
        assert!(!job.duplicate);
        jobs.push((kind, job.id));
    }
    let delayed = producer
        .enqueue(
            "emails",
            Job::bytes("later").delay(Duration::from_millis(500)),
        )
        .await
        .expect("producer-emails enqueues a delayed job");
    assert!(delayed.run_at.is_some());
    jobs.push(("delayed", delayed.id));
    producer_conn.client.flush().await.unwrap();

    let worker = Worker::builder(worker_conn.client.clone(), "emails")
        .concurrency(4)
        .grace_period(Duration::from_millis(200))
        .build(path_handler())
        .await
        .expect("worker-emails binds to its queue");
    let stats = worker.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));

    for (kind, id) in &jobs {
        let end = if *kind == "fail" {
            AuditEventKind::DeadLettered
        } else {
            AuditEventKind::Succeeded
        };
        wait_terminal(&admin_js, *id, end).await;
    }
    let dead = jobfleet_worker::dead_letters(&admin_js, "emails")
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "the failed job's dead letter");

    // A job still running at shutdown is handed back: a copy on the ready subject.
    let started = stats.snapshot().started;
    let slow = producer
        .enqueue("emails", Job::bytes("slow").job_type("slow"))
        .await
        .expect("producer-emails enqueues a slow job");
    eventually_async("the slow job to start", WAIT, || async {
        (stats.snapshot().started > started).then_some(())
    })
    .await;
    let _ = stop.send(());
    let snapshot = running.await.unwrap();
    assert_eq!(snapshot.released, 1, "the slow job was handed back");
    let back = admin_js
        .get_stream("JOBFLEET_Q_emails")
        .await
        .unwrap()
        .get_last_raw_message_by_subject("jobfleet.q.emails.ready")
        .await
        .expect("the handed-back copy");
    assert!(
        back.headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .is_some_and(|v| v.as_str().starts_with(&format!("{}.release.", slow.id))),
        "the copy on the ready subject is the slow job's hand-back"
    );

    producer_conn.assert_no_errors("enqueueing now and later");
    worker_conn.assert_no_errors("working jobs on every path");
}

#[tokio::test]
async fn the_worker_moves_a_job_that_never_finished_under_its_permissions() {
    let mut reports = queue("reports");
    reports.worker.max_attempts = 1; // max_deliver = 2
    reports.worker.ack_wait = Duration::from_millis(300);
    let fleet = Fleet::start(queue("emails"), reports).await;
    let admin_js = jetstream::new(fleet.admin.client.clone());
    let producer_conn = fleet.connect("producer-reports").await;
    let producer = Producer::with_client(
        producer_conn.client.clone(),
        &ConnectOptions::new(fleet.server.url()),
    );
    let job = producer
        .enqueue("reports", Job::bytes("stuck"))
        .await
        .expect("producer-reports enqueues");

    // Two deliveries without an outcome (as if two workers died holding the job), pulled as
    // worker-reports: then JetStream keeps the job but delivers it no more.
    let worker_conn = fleet.connect("worker-reports").await;
    for delivery in 1..=2 {
        deliver_unsettled(&fleet, &worker_conn, "reports", delivery).await;
    }
    let worker = Worker::builder(worker_conn.client.clone(), "reports")
        .build(handler_fn(|_job: JobContext| async { Ok(Outcome::Done) }))
        .await
        .expect("worker-reports binds to its queue");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    wait_terminal(&admin_js, job.id, AuditEventKind::DeadLettered).await;
    eventually_async("the stuck job to leave the work stream", WAIT, || async {
        (fleet.messages("JOBFLEET_Q_reports").await == 0).then_some(())
    })
    .await;
    let _ = stop.send(());
    running.await.unwrap();
    let dead = jobfleet_worker::dead_letters(&admin_js, "reports")
        .await
        .unwrap();
    assert_eq!(
        dead.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![job.id],
        "the mover dead-lettered the stuck job"
    );
    worker_conn.assert_no_errors("moving a stuck job to the dead letters");
}

/// Runs a worker of `queue` as `worker-<queue>` until `jobs` ended dead-lettered (their
/// job type must be `fail`), then stops it.
async fn dead_letter_jobs(fleet: &Fleet, queue: &str, jobs: &[JobId]) {
    let conn = fleet.connect(&format!("worker-{queue}")).await;
    let worker = Worker::builder(conn.client.clone(), queue)
        .build(path_handler())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let admin = jetstream::new(fleet.admin.client.clone());
    for id in jobs {
        wait_terminal(&admin, *id, AuditEventKind::DeadLettered).await;
    }
    let _ = stop.send(());
    running.await.unwrap();
    conn.assert_no_errors("dead-lettering jobs");
}

#[tokio::test]
async fn the_gateway_does_its_work_under_its_permissions() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let conn = fleet.connect("gateway").await;
    let js = jetstream::new(conn.client.clone());
    let gateway = Producer::with_client(
        conn.client.clone(),
        &ConnectOptions::new(fleet.server.url()),
    );
    let mut failing = Vec::new();
    for _ in 0..3 {
        let job = gateway
            .enqueue("emails", Job::bytes("x").job_type("fail"))
            .await
            .expect("the gateway enqueues into emails");
        failing.push(job.id);
    }
    gateway
        .enqueue("reports", Job::bytes("r").delay(Duration::from_secs(600)))
        .await
        .expect("the gateway enqueues a delayed job into reports");
    conn.client.flush().await.unwrap();
    dead_letter_jobs(&fleet, "emails", &failing).await;

    assert_eq!(
        list_queues(&js).await.expect("the gateway lists queues"),
        ["emails", "reports"]
    );
    let stats = queue_stats(&js, "emails")
        .await
        .expect("the gateway reads queue stats");
    assert_eq!((stats.ready, stats.dead), (0, 3));
    let status = job_status(&js, failing[0])
        .await
        .expect("the gateway reads a job's status")
        .expect("a status");
    assert_eq!(status.last.event, AuditEventKind::DeadLettered);
    assert!(
        !job_history(&js, failing[0])
            .await
            .expect("the gateway reads a job's history")
            .is_empty()
    );
    assert_eq!(
        dead_letters(&js, "emails")
            .await
            .expect("the gateway lists dead letters")
            .len(),
        3
    );
    assert!(
        dead_letter(&js, "emails", failing[0])
            .await
            .expect("the gateway reads a dead letter")
            .is_some()
    );
    assert!(
        pause_queue(&js, "emails", None)
            .await
            .expect("the gateway pauses a queue")
    );
    assert!(
        !resume_queue(&js, "emails")
            .await
            .expect("the gateway resumes a queue")
    );
    let report = redrive(&js, "emails", RedriveSelection::Ids(vec![failing[0]]))
        .await
        .expect("the gateway redrives");
    assert_eq!(report.redriven, [failing[0]], "redriven: {report:?}");
    assert_eq!(
        delete_dead_letters(&js, "emails", RedriveSelection::Ids(vec![failing[1]]))
            .await
            .expect("the gateway deletes a dead letter"),
        [failing[1]]
    );
    assert_eq!(
        delete_dead_letters(&js, "emails", RedriveSelection::All)
            .await
            .expect("the gateway deletes all dead letters"),
        [failing[2]]
    );
    assert_eq!(
        purge_queue(&js, "emails")
            .await
            .expect("the gateway purges a queue"),
        1,
        "the redriven job"
    );
    assert_eq!(
        purge_queue(&js, "reports")
            .await
            .expect("the gateway purges a queue"),
        1,
        "the delayed job"
    );
    conn.assert_no_errors("doing what the gateway does");
}

#[tokio::test]
async fn the_gateway_can_neither_declare_nor_delete_queues_nor_touch_the_audit() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let seq = fleet.seed("emails").await;
    let conn = fleet.connect("gateway").await;
    let js = conn.js();
    let producer = Producer::with_client(conn.client.clone(), &options(&fleet.server));
    fleet
        .assert_refused(
            &conn,
            "declares a queue",
            "$JS.API.STREAM.CREATE.",
            producer.declare_queue(&queue("other")),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "deletes a queue's stream",
            "$JS.API.STREAM.DELETE.JOBFLEET_Q_emails",
            js.delete_stream("JOBFLEET_Q_emails"),
        )
        .await;
    let emails = js.get_stream_no_info("JOBFLEET_Q_emails").await.unwrap();
    fleet
        .assert_refused(
            &conn,
            "deletes a queue's worker consumer",
            "$JS.API.CONSUMER.DELETE.JOBFLEET_Q_emails.workers",
            emails.delete_consumer("workers"),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "creates a consumer",
            "$JS.API.CONSUMER.CREATE.JOBFLEET_Q_emails",
            emails.create_consumer(jetstream::consumer::pull::Config {
                durable_name: Some("snoop".into()),
                filter_subject: "jobfleet.q.emails.sched.*".into(),
                ..Default::default()
            }),
        )
        .await;
    let audit = js.get_stream_no_info(topology::AUDIT_STREAM).await.unwrap();
    fleet
        .assert_refused(
            &conn,
            "purges the audit stream",
            "$JS.API.STREAM.PURGE.JOBFLEET_AUDIT",
            async { audit.purge().await },
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "deletes an audit event",
            "$JS.API.STREAM.MSG.DELETE.JOBFLEET_AUDIT",
            audit.delete_message(1),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "purges the advisory stream",
            "$JS.API.STREAM.PURGE.JOBFLEET_ADVISORIES",
            async {
                js.get_stream_no_info(topology::ADVISORY_STREAM)
                    .await
                    .unwrap()
                    .purge()
                    .await
            },
        )
        .await;
    assert_eq!(fleet.messages("JOBFLEET_Q_emails").await, 1, "job {seq}");
}

#[tokio::test]
async fn the_reader_reads_and_changes_nothing() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let producer_conn = fleet.connect("producer-emails").await;
    let producer = Producer::with_client(
        producer_conn.client.clone(),
        &ConnectOptions::new(fleet.server.url()),
    );
    let dead = producer
        .enqueue("emails", Job::bytes("x").job_type("fail"))
        .await
        .unwrap();
    dead_letter_jobs(&fleet, "emails", &[dead.id]).await;
    let waiting = producer.enqueue("emails", Job::bytes("y")).await.unwrap();
    producer_conn.client.flush().await.unwrap();

    let conn = fleet.connect("reader").await;
    let js = jetstream::new(conn.client.clone());
    assert_eq!(
        list_queues(&js).await.expect("the reader lists queues"),
        ["emails", "reports"]
    );
    let stats = queue_stats(&js, "emails")
        .await
        .expect("the reader reads queue stats");
    assert_eq!((stats.ready, stats.dead), (1, 1));
    assert_eq!(
        job_status(&js, dead.id)
            .await
            .expect("the reader reads a job's status")
            .map(|s| s.last.event),
        Some(AuditEventKind::DeadLettered)
    );
    assert!(
        !job_history(&js, waiting.id)
            .await
            .expect("the reader reads a job's history")
            .is_empty()
    );
    assert_eq!(
        dead_letters(&js, "emails")
            .await
            .expect("the reader lists dead letters")
            .len(),
        1
    );
    assert!(
        dead_letter(&js, "emails", dead.id)
            .await
            .expect("the reader reads a dead letter")
            .is_some()
    );
    conn.assert_no_errors("reading");

    let js = conn.js();
    fleet
        .assert_refused(&conn, "enqueues", "jobfleet.q.emails.ready", async {
            js.publish("jobfleet.q.emails.ready", "x".into())
                .await?
                .await
        })
        .await;
    fleet
        .assert_refused(
            &conn,
            "pauses a queue",
            "$JS.API.CONSUMER.PAUSE.JOBFLEET_Q_emails.workers",
            pause_queue(&js, "emails", None),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "purges a queue",
            "$JS.API.STREAM.PURGE.JOBFLEET_Q_emails",
            purge_queue(&js, "emails"),
        )
        .await;
    fleet
        .assert_refused(&conn, "redrives a dead letter", "jobfleet.audit.", async {
            let report = redrive(&js, "emails", RedriveSelection::Ids(vec![dead.id]))
                .await
                .map_err(|e| e.to_string())?;
            if report.redriven.is_empty() {
                Err(format!("nothing redriven: {report:?}"))
            } else {
                Ok(report)
            }
        })
        .await;
    fleet
        .assert_refused(
            &conn,
            "deletes a dead letter",
            "$JS.API.STREAM.MSG.DELETE.JOBFLEET_DLQ_emails",
            delete_dead_letters(&js, "emails", RedriveSelection::Ids(vec![dead.id])),
        )
        .await;
}

/// A producer connected by [`Producer::connect`] tells a refusal from an outage: the enqueue
/// fails with `Rejected`, naming what was refused, at the first unanswered request rather
/// than at the enqueue deadline as `NotConnected`, and stores nothing.
#[tokio::test]
async fn a_refused_enqueue_is_rejected_naming_the_refused_subject() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let connect = |user: &str, inbox: Option<String>| {
        let mut options = ConnectOptions::new(fleet.server.url())
            .user_and_password(user, password(user))
            .publish_timeout(REFUSED)
            .enqueue_deadline(WAIT);
        if let Some(inbox) = inbox {
            options = options.inbox_prefix(inbox);
        }
        Producer::connect(options)
    };
    let cases = [
        // Another queue: its settings cannot even be read.
        (
            "producer-emails",
            Some(inbox("producer-emails")),
            "reports",
            "$JS.API.STREAM.INFO.JOBFLEET_Q_reports",
        ),
        // Settings readable, the publish itself refused.
        (
            "reader",
            Some(inbox("reader")),
            "emails",
            "jobfleet.q.emails.ready",
        ),
        // Its own queue, but without the inbox prefix the user may subscribe to: no
        // request can be answered.
        ("producer-emails", None, "emails", "_INBOX."),
    ];
    for (user, inbox, queue, refused) in cases {
        let before = fleet.snapshot().await;
        let producer = connect(user, inbox.clone()).await.unwrap();
        let err = tokio::time::timeout(WAIT, producer.enqueue(queue, Job::bytes("x")))
            .await
            .unwrap_or_else(|_| panic!("{user} (inbox {inbox:?}) into {queue}: no answer"))
            .expect_err("a refused enqueue fails");
        assert_eq!(
            err.kind(),
            EnqueueErrorKind::Rejected,
            "{user} (inbox {inbox:?}) into {queue}: {err}"
        );
        assert!(
            err.to_string().contains(refused),
            "{user} into {queue}: the error names {refused}: {err}"
        );
        assert_eq!(before, fleet.snapshot().await, "{user}: nothing changed");
    }

    // A batch of three publish windows: every job is refused, none as an outage, though the
    // enqueue deadline is shorter than two rounds of timeouts (the first window's refusal
    // settles the rest without sending them).
    let before = fleet.snapshot().await;
    let producer = Producer::connect(
        ConnectOptions::new(fleet.server.url())
            .user_and_password("reader", password("reader"))
            .inbox_prefix(inbox("reader"))
            .publish_timeout(REFUSED)
            .enqueue_deadline(REFUSED * 3),
    )
    .await
    .unwrap();
    let results = tokio::time::timeout(
        WAIT,
        producer.enqueue_batch("emails", (0..3000).map(|n| Job::bytes(n.to_string()))),
    )
    .await
    .expect("the batch ends")
    .expect("the queue's settings are readable");
    assert_eq!(results.len(), 3000);
    for result in &results {
        let err = result.as_ref().expect_err("a refused job fails");
        assert_eq!(err.kind(), EnqueueErrorKind::Rejected, "{err}");
        assert!(err.job_id().is_some(), "{err}");
    }
    assert_eq!(before, fleet.snapshot().await, "the batch changed nothing");
}

/// A gateway run under a user that may not publish (here `reader`, a misconfiguration)
/// answers an enqueue with 503 `nats-refused` naming the subject, without `Retry-After`
/// (retrying cannot help), instead of waiting out the enqueue deadline.
#[tokio::test]
async fn a_gateway_refused_by_nats_answers_503_nats_refused() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let producer = Producer::connect(
        ConnectOptions::new(fleet.server.url())
            .user_and_password("reader", password("reader"))
            .inbox_prefix(inbox("reader"))
            .publish_timeout(REFUSED)
            .enqueue_deadline(WAIT),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/queues/emails/jobs",
        listener.local_addr().unwrap()
    );
    let state =
        jobfleet_gateway::GatewayState::new(producer, jobfleet_gateway::GatewayConfig::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(jobfleet_gateway::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let before = fleet.snapshot().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(url)
        .json(&json!({"to": "a@b.c"}))
        .timeout(WAIT)
        .send()
        .await
        .expect("an answer within the deadline");
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("retry-after").is_none());
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["type"].as_str().unwrap().ends_with("/nats-refused"),
        "{problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("jobfleet.q.emails.ready"),
        "{problem}"
    );
    assert_eq!(before, fleet.snapshot().await, "nothing was stored");
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_producer_can_enqueue_to_no_other_queue() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    fleet.seed("reports").await;
    let conn = fleet.connect("producer-emails").await;
    let producer = Producer::with_client(conn.client.clone(), &options(&fleet.server));
    fleet
        .assert_refused(
            &conn,
            "enqueues to reports with the producer",
            "$JS.API.STREAM.INFO.JOBFLEET_Q_reports",
            producer.enqueue("reports", Job::bytes("x")),
        )
        .await;
    let js = conn.js();
    fleet
        .assert_refused(
            &conn,
            "publishes a job to reports",
            "jobfleet.q.reports.ready",
            async {
                js.publish("jobfleet.q.reports.ready", "x".into())
                    .await?
                    .await
            },
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "publishes a delayed job to reports",
            "jobfleet.q.reports.sched.",
            async {
                js.publish(
                    format!("jobfleet.q.reports.sched.{}", JobId::new()),
                    "x".into(),
                )
                .await?
                .await
            },
        )
        .await;
    assert_eq!(fleet.messages("JOBFLEET_Q_reports").await, 1);
}

#[tokio::test]
async fn a_producer_can_neither_consume_nor_read_the_audit() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let seq = fleet.seed("emails").await;
    let conn = fleet.connect("producer-emails").await;
    let js = conn.js();
    fleet
        .assert_refused(
            &conn,
            "pulls a job from its own queue",
            "$JS.API.CONSUMER.MSG.NEXT.JOBFLEET_Q_emails.workers",
            request_next(&conn.client, "JOBFLEET_Q_emails", "workers"),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "binds a worker to its own queue",
            "$JS.API.CONSUMER.INFO.JOBFLEET_Q_emails.workers",
            Worker::builder(conn.client.clone(), "emails")
                .build(handler_fn(|_job: JobContext| async { Ok(Outcome::Done) })),
        )
        .await;
    let stream = js.get_stream_no_info("JOBFLEET_Q_emails").await.unwrap();
    fleet
        .assert_refused(
            &conn,
            "creates a consumer on its own queue",
            "$JS.API.CONSUMER.CREATE.JOBFLEET_Q_emails",
            stream.create_consumer(jetstream::consumer::pull::Config {
                durable_name: Some("snoop".into()),
                filter_subject: "jobfleet.q.emails.sched.*".into(),
                ..Default::default()
            }),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "reads a job's status from the audit stream",
            "$JS.API.STREAM.INFO.JOBFLEET_AUDIT",
            job_status(&js, JobId::new()),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "reads a job by sequence",
            "$JS.API.STREAM.MSG.GET.JOBFLEET_Q_emails",
            stream.get_raw_message(seq),
        )
        .await;
    for subject in ["jobfleet.q.emails.ready", "jobfleet.audit.>", ">"] {
        let _sub = conn.client.subscribe(subject).await.unwrap();
        conn.wait_violation(&format!("subscribes to {subject}"), "Subscription", subject)
            .await;
    }
}

#[tokio::test]
async fn a_producer_can_delete_and_purge_nothing() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let seq = fleet.seed("emails").await;
    let conn = fleet.connect("producer-emails").await;
    let js = conn.js();
    let stream = js.get_stream_no_info("JOBFLEET_Q_emails").await.unwrap();
    fleet
        .assert_refused(
            &conn,
            "deletes its queue's stream",
            "$JS.API.STREAM.DELETE.JOBFLEET_Q_emails",
            js.delete_stream("JOBFLEET_Q_emails"),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "purges its queue",
            "$JS.API.STREAM.PURGE.JOBFLEET_Q_emails",
            async { stream.purge().await },
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "deletes a job",
            "$JS.API.STREAM.MSG.DELETE.JOBFLEET_Q_emails",
            stream.delete_message(seq),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "deletes its queue's worker consumer",
            "$JS.API.CONSUMER.DELETE.JOBFLEET_Q_emails.workers",
            stream.delete_consumer("workers"),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "deletes the audit stream",
            "$JS.API.STREAM.DELETE.JOBFLEET_AUDIT",
            js.delete_stream(topology::AUDIT_STREAM),
        )
        .await;
    let producer = Producer::with_client(conn.client.clone(), &options(&fleet.server));
    let mut bigger = queue("emails");
    bigger.worker.max_attempts = 9;
    fleet
        .assert_refused(
            &conn,
            "re-declares its queue",
            "$JS.API.STREAM.",
            producer.declare_queue(&bigger),
        )
        .await;
}

#[tokio::test]
async fn a_worker_can_consume_no_other_queue() {
    // A lease far longer than the test: the job held below stays held while it runs.
    let mut reports = queue("reports");
    reports.worker.ack_wait = Duration::from_secs(600);
    let fleet = Fleet::start(queue("emails"), reports).await;
    fleet.seed("reports").await;
    let conn = fleet.connect("worker-emails").await;
    fleet
        .assert_refused(
            &conn,
            "binds a worker to reports",
            "$JS.API.STREAM.INFO.JOBFLEET_Q_reports",
            Worker::builder(conn.client.clone(), "reports")
                .build(handler_fn(|_job: JobContext| async { Ok(Outcome::Done) })),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "pulls a job from reports",
            "$JS.API.CONSUMER.MSG.NEXT.JOBFLEET_Q_reports.workers",
            request_next(&conn.client, "JOBFLEET_Q_reports", "workers"),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "pulls from the reports mover",
            "$JS.API.CONSUMER.MSG.NEXT.JOBFLEET_ADVISORIES.mover_reports",
            request_next(&conn.client, "JOBFLEET_ADVISORIES", "mover_reports"),
        )
        .await;

    // A job of reports held by worker-reports (delivery 1 of stream sequence `seq`), whose
    // ack subject worker-emails learnt: it can neither ack nor terminate it.
    let other = fleet.connect("worker-reports").await;
    let seq = deliver_unsettled(&fleet, &other, "reports", 1).await;
    let ack = format!("$JS.ACK.JOBFLEET_Q_reports.workers.1.{seq}.1.0.0");
    for (what, verb) in [("acks", "+ACK"), ("terminates", "+TERM")] {
        fleet
            .assert_refused(
                &conn,
                &format!("{what} a job of reports"),
                &ack,
                conn.client.send_request(
                    ack.clone(),
                    async_nats::Request::new()
                        .payload(verb.into())
                        .timeout(Some(REFUSED)),
                ),
            )
            .await;
    }
    other.assert_no_errors("pulling its own queue");
}

#[tokio::test]
async fn a_worker_can_publish_to_no_other_queue() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let conn = fleet.connect("worker-emails").await;
    let js = conn.js();
    for subject in [
        "jobfleet.q.reports.ready".to_owned(),
        format!("jobfleet.q.reports.sched.{}", JobId::new()),
        format!("jobfleet.dlq.reports.{}", JobId::new()),
    ] {
        fleet
            .assert_refused(&conn, &format!("publishes to {subject}"), &subject, async {
                js.publish(subject.clone(), "x".into()).await?.await
            })
            .await;
    }
}

#[tokio::test]
async fn a_worker_can_delete_and_purge_nothing_but_its_stuck_jobs() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    fleet.seed("emails").await;
    let reports_seq = fleet.seed("reports").await;
    let conn = fleet.connect("worker-emails").await;
    let js = conn.js();
    let emails = js.get_stream_no_info("JOBFLEET_Q_emails").await.unwrap();
    let reports = js.get_stream_no_info("JOBFLEET_Q_reports").await.unwrap();
    fleet
        .assert_refused(
            &conn,
            "deletes its queue's stream",
            "$JS.API.STREAM.DELETE.JOBFLEET_Q_emails",
            js.delete_stream("JOBFLEET_Q_emails"),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "purges its queue",
            "$JS.API.STREAM.PURGE.JOBFLEET_Q_emails",
            async { emails.purge().await },
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "deletes its queue's worker consumer",
            "$JS.API.CONSUMER.DELETE.JOBFLEET_Q_emails.workers",
            emails.delete_consumer("workers"),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "creates a consumer on its queue",
            "$JS.API.CONSUMER.CREATE.JOBFLEET_Q_emails",
            emails.create_consumer(jetstream::consumer::pull::Config {
                durable_name: Some("second".into()),
                filter_subject: "jobfleet.q.emails.sched.*".into(),
                ..Default::default()
            }),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "deletes a job of reports",
            "$JS.API.STREAM.MSG.DELETE.JOBFLEET_Q_reports",
            reports.delete_message(reports_seq),
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "purges its dead letters",
            "$JS.API.STREAM.PURGE.JOBFLEET_DLQ_emails",
            async {
                js.get_stream_no_info("JOBFLEET_DLQ_emails")
                    .await
                    .unwrap()
                    .purge()
                    .await
            },
        )
        .await;
    fleet
        .assert_refused(
            &conn,
            "purges the audit stream",
            "$JS.API.STREAM.PURGE.JOBFLEET_AUDIT",
            async {
                js.get_stream_no_info(topology::AUDIT_STREAM)
                    .await
                    .unwrap()
                    .purge()
                    .await
            },
        )
        .await;
}

#[tokio::test]
async fn the_admin_can_delete_and_purge() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let seq = fleet.seed("emails").await;
    fleet.seed("emails").await;
    fleet.seed("reports").await;
    let js = jetstream::new(fleet.admin.client.clone());
    let emails = js.get_stream("JOBFLEET_Q_emails").await.unwrap();
    assert!(
        emails
            .delete_message(seq)
            .await
            .expect("admin deletes a job"),
        "the job was deleted"
    );
    assert_eq!(fleet.messages("JOBFLEET_Q_emails").await, 1);
    emails.purge().await.expect("admin purges a queue");
    assert_eq!(fleet.messages("JOBFLEET_Q_emails").await, 0);
    assert!(
        emails
            .delete_consumer("workers")
            .await
            .expect("admin deletes the worker consumer")
            .success
    );
    assert!(
        js.delete_stream("JOBFLEET_Q_reports")
            .await
            .expect("admin deletes a queue's stream")
            .success
    );
    let snapshot = fleet.snapshot().await;
    assert!(snapshot.get("JOBFLEET_Q_reports").is_none());
    assert_eq!(snapshot["JOBFLEET_Q_emails"]["consumers"], json!({}));
    fleet.admin.assert_no_errors("deleting and purging");
}

#[tokio::test]
async fn clients_without_valid_credentials_are_turned_away() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let url = fleet.server.url();
    let anonymous = ConnectOptions::new(&url).connect_client().await;
    assert_eq!(
        anonymous.err().map(|e| e.kind()),
        Some(ConnectErrorKind::Authentication),
        "a client without credentials"
    );
    let wrong = ConnectOptions::new(&url)
        .user_and_password("producer-emails", "guess")
        .connect_client()
        .await;
    assert_eq!(
        wrong.err().map(|e| e.kind()),
        Some(ConnectErrorKind::Authentication),
        "a wrong password"
    );
    // What the binaries do with NATS_USER, NATS_PASSWORD and NATS_INBOX_PREFIX.
    let producer = Producer::connect(
        ConnectOptions::new(&url)
            .user_and_password("producer-emails", password("producer-emails"))
            .inbox_prefix(inbox("producer-emails")),
    )
    .await
    .expect("the right password");
    producer
        .enqueue("emails", Job::bytes("x"))
        .await
        .expect("an enqueue over ConnectOptions credentials");
}

#[tokio::test]
async fn replies_are_private_to_each_user() {
    let fleet = Fleet::start(queue("emails"), queue("reports")).await;
    let spy = Conn::connect(&fleet.server, "producer-reports").await;
    // One allowed request, so the spy holds its own reply subscription (checked below).
    spy.js()
        .get_stream("JOBFLEET_Q_reports")
        .await
        .expect("the spy reads its own queue's settings");
    // Subscriptions to the shared inbox and to another user's are refused...
    let shared = spy.client.subscribe("_INBOX.>").await.unwrap();
    let others = spy
        .client
        .subscribe(format!("{}.>", inbox("worker-emails")))
        .await
        .unwrap();
    spy.wait_violation(
        "subscribing to the shared inbox",
        "Subscription",
        "_INBOX.>",
    )
    .await;
    spy.wait_violation(
        "subscribing to a worker's inbox",
        "Subscription",
        &inbox("worker-emails"),
    )
    .await;
    // ...so while a worker pulls and runs a job (its pull reply carries the payload), the
    // spy receives none of it.
    let producer = Producer::with_client(
        Conn::connect(&fleet.server, "producer-emails").await.client,
        &options(&fleet.server),
    );
    let id = producer
        .enqueue("emails", Job::bytes("secret payload"))
        .await
        .expect("enqueue")
        .id;
    let worker_conn = Conn::connect(&fleet.server, "worker-emails").await;
    let worker = Worker::builder(worker_conn.client.clone(), "emails")
        .build(handler_fn(|_job: JobContext| async { Ok(Outcome::Done) }))
        .await
        .expect("the worker binds");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    wait_terminal(&fleet.admin.js(), id, AuditEventKind::Succeeded).await;
    let _ = stop.send(());
    running.await.unwrap();
    worker_conn.assert_no_errors("working under its own inbox");
    // The server holds no subscription of the spy on either inbox (so it could not have
    // received anything), only what the spy's own inbox needs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let connz: Value = reqwest::get(format!(
        "{}/connz?subs=true&auth=true",
        fleet.server.monitor_url()
    ))
    .await
    .expect("connz")
    .json()
    .await
    .expect("connz json");
    let spy_subjects: Vec<String> = connz["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .filter(|c| c["authorized_user"] == "producer-reports")
        .flat_map(|c| {
            c["subscriptions_list"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    assert!(
        !spy_subjects.is_empty(),
        "the spy's connection and its own inbox subscription are listed"
    );
    assert!(
        spy_subjects
            .iter()
            .all(|s| s.starts_with(&format!("{}.", inbox("producer-reports")))),
        "the spy holds subscriptions outside its own inbox: {spy_subjects:?}"
    );
    drop((shared, others));
}
