//! The webhook worker binary against a real nats-server and a real HTTP receiver (axum on
//! 127.0.0.1). Every wait is on an event with a deadline.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jobfleet_core::{AuditEvent, AuditEventKind, JobId, QueueConfig, RetrySchedule};
use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_testkit::{NatsServer, eventually_async, send_signal};
use jobfleet_worker::{DeadLetter, JobStatus, dead_letters, job_history, job_status};
use serde_json::{Value, json};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(60);
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// ---------------------------------------------------------------------------------------
// The receiver: records every request and answers from a per-path script.

#[derive(Debug, Clone)]
struct Received {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Clone)]
enum Reply {
    Status(u16, Vec<(&'static str, String)>, &'static str),
    /// Answers 200 once the test releases it.
    WaitFor(Arc<Notify>),
    /// Never answers.
    Hang,
}

#[derive(Debug, Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
    base: String,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Self {
            base: format!("http://{}", listener.local_addr().unwrap()),
            ..Self::default()
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Replies for `path`, in order; once used up, the path answers `200 ok`.
    fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.script
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    fn received(&self, path: &str) -> Vec<Received> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.uri.path() == path)
            .cloned()
            .collect()
    }

    fn total(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

async fn answer(
    State(receiver): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = receiver
        .script
        .lock()
        .unwrap()
        .get_mut(uri.path())
        .and_then(VecDeque::pop_front);
    receiver.log.lock().unwrap().push(Received {
        method,
        uri,
        headers,
        body,
    });
    match reply.unwrap_or(Reply::Status(200, vec![], "ok")) {
        Reply::Status(status, headers, body) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Reply::WaitFor(release) => {
            release.notified().await;
            (StatusCode::OK, "released").into_response()
        }
        Reply::Hang => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------
// The worker process, killed if a test fails while it runs.

struct WorkerProcess {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl WorkerProcess {
    fn start(server: &NatsServer, queue: &str, flags: &[&str]) -> Self {
        // A URL list, as a cluster deployment passes it (docker-compose.yml does).
        let urls = format!("{0},{0}", server.url());
        let mut child = Command::new(env!("CARGO_BIN_EXE_jobfleet-worker-webhook"))
            .args(["--queue", queue, "--nats-url", &urls])
            .args(flags)
            .env("RUST_LOG", "info,async_nats=warn")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the worker binary");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("[worker] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, stderr }
    }

    fn logged(&self, text: &str) -> bool {
        self.stderr.lock().unwrap().iter().any(|l| l.contains(text))
    }

    fn signal(&self, name: &str) {
        send_signal(self.child.id(), name);
    }

    /// Waits for the process to exit; async, so the receiver keeps answering meanwhile.
    async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        eventually_async("the worker to exit", timeout, || {
            std::future::ready(child.try_wait().ok().flatten())
        })
        .await
    }

    /// SIGTERM, and a clean exit.
    async fn stop(mut self) {
        self.signal("TERM");
        let exit = self.wait_exit(WAIT).await;
        assert!(exit.success(), "graceful exit, got {exit:?}");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Queues and jobs.

fn queue(name: &str, max_attempts: u32) -> QueueConfig {
    let mut queue = QueueConfig::new(name);
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

async fn enqueue(producer: &Producer, queue: &str, payload: Value) -> JobId {
    enqueue_job(producer, queue, Job::json(&payload).unwrap()).await
}

async fn enqueue_job(producer: &Producer, queue: &str, job: Job) -> JobId {
    producer.enqueue(queue, job).await.unwrap().id
}

async fn finished(producer: &Producer, id: JobId) -> JobStatus {
    eventually_async("the job to finish", WAIT, || async {
        job_status(producer.jetstream(), id)
            .await
            .unwrap()
            .filter(JobStatus::is_finished)
    })
    .await
}

async fn history(producer: &Producer, id: JobId) -> Vec<AuditEvent> {
    job_history(producer.jetstream(), id).await.unwrap()
}

fn count(history: &[AuditEvent], kind: AuditEventKind) -> usize {
    history.iter().filter(|e| e.event == kind).count()
}

async fn dead_letter(producer: &Producer, queue: &str, id: JobId) -> DeadLetter {
    dead_letters(producer.jetstream(), queue)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("job {id} is not in the dead-letter stream"))
}

/// Waits for the job to be dead-lettered on its first attempt, without any retry, and
/// returns the dead letter's reason.
async fn dead_at_once(producer: &Producer, queue: &str, id: JobId) -> String {
    let status = finished(producer, id).await;
    assert_eq!(
        status.last.event,
        AuditEventKind::DeadLettered,
        "{status:?}"
    );
    assert_eq!(status.last.attempt, 1, "{status:?}");
    let history = history(producer, id).await;
    assert_eq!(count(&history, AuditEventKind::Started), 1, "{history:?}");
    assert_eq!(count(&history, AuditEventKind::Retried), 0, "{history:?}");
    let dead = dead_letter(producer, queue, id).await;
    assert_eq!(dead.attempts, 1);
    assert_eq!(Some(&dead.reason), status.last.error.as_ref());
    dead.reason
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn delivers_the_described_request_and_records_status_and_latency() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("deliver", 3)).await;
    let receiver = Receiver::start().await;
    receiver.script("/hooks/orders", [Reply::Status(201, vec![], "created")]);
    let worker = WorkerProcess::start(&server, "deliver", &[]);

    let posted = enqueue_job(
        &producer,
        "deliver",
        Job::json(&json!({
            "url": receiver.url("/hooks/orders?source=test"),
            "headers": {"X-Signature": "sha256=abc"},
            "body": {"event": "order.paid", "order": 42},
        }))
        .unwrap()
        .traceparent(TRACEPARENT),
    )
    .await;
    let put = enqueue(
        &producer,
        "deliver",
        json!({
            "url": receiver.url("/blobs/1"),
            "method": "put",
            "headers": {"User-Agent": "custom/1"},
            "body_base64": "AAEC/w==",
        }),
    )
    .await;

    let status = finished(&producer, posted).await;
    assert_eq!(status.last.event, AuditEventKind::Succeeded, "{status:?}");
    let result = status.last.result.clone().expect("a result in the event");
    assert_eq!(result["status"], 201, "{result}");
    assert!(result["latency_ms"].is_u64(), "{result}");
    assert_eq!(
        count(&history(&producer, posted).await, AuditEventKind::Started),
        1
    );

    let got = receiver.received("/hooks/orders");
    assert_eq!(got.len(), 1, "{got:?}");
    let got = &got[0];
    assert_eq!(got.method, Method::POST);
    assert_eq!(got.uri.query(), Some("source=test"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("x-signature"), Some("sha256=abc"));
    assert_eq!(
        got.header("idempotency-key"),
        Some(posted.to_string().as_str())
    );
    assert_eq!(
        got.header("user-agent"),
        Some(concat!("jobfleet-webhook/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(got.header("traceparent"), Some(TRACEPARENT));
    assert_eq!(
        serde_json::from_slice::<Value>(&got.body).unwrap(),
        json!({"event": "order.paid", "order": 42})
    );

    let status = finished(&producer, put).await;
    assert_eq!(status.last.event, AuditEventKind::Succeeded, "{status:?}");
    assert_eq!(status.last.result.as_ref().unwrap()["status"], 200);
    let got = receiver.received("/blobs/1");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].method, Method::PUT);
    assert_eq!(&got[0].body[..], &[0, 1, 2, 255]);
    assert_eq!(
        got[0].header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(got[0].header("user-agent"), Some("custom/1"));
    assert_eq!(
        got[0].header("idempotency-key"),
        Some(put.to_string().as_str())
    );
    assert_eq!(
        got[0].header("traceparent"),
        None,
        "the job had no trace context"
    );

    worker.stop().await;
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried_until_success() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("flaky", 5)).await;
    let receiver = Receiver::start().await;
    receiver.script(
        "/flaky",
        [
            Reply::Status(503, vec![], "busy,\n try later"),
            Reply::Status(429, vec![("retry-after", "1".to_owned())], "slow down"),
        ],
    );
    let worker = WorkerProcess::start(&server, "flaky", &[]);
    let id = enqueue(
        &producer,
        "flaky",
        json!({"url": receiver.url("/flaky"), "body_text": "ping"}),
    )
    .await;

    let status = finished(&producer, id).await;
    assert_eq!(status.last.event, AuditEventKind::Succeeded, "{status:?}");
    assert_eq!(status.last.attempt, 3);
    assert_eq!(status.last.result.as_ref().unwrap()["status"], 200);

    let history = history(&producer, id).await;
    let retried: Vec<&AuditEvent> = history
        .iter()
        .filter(|e| e.event == AuditEventKind::Retried)
        .collect();
    assert_eq!(retried.len(), 2, "{history:?}");
    let first = retried[0].error.as_deref().unwrap();
    assert!(
        first.starts_with("HttpStatus: HTTP 503 Service Unavailable after "),
        "{first}"
    );
    assert!(first.ends_with(" ms: busy, try later"), "{first}");
    assert_eq!(
        retried[0].retry_in_ms,
        Some(100),
        "no Retry-After: the queue's schedule"
    );
    assert_eq!(
        retried[1].retry_in_ms,
        Some(1000),
        "the receiver's Retry-After"
    );

    let got = receiver.received("/flaky");
    assert_eq!(got.len(), 3);
    for request in &got {
        assert_eq!(
            request.header("idempotency-key"),
            Some(id.to_string().as_str()),
            "the same key on every attempt"
        );
        assert_eq!(&request.body[..], b"ping");
    }
    worker.stop().await;
}

#[tokio::test]
async fn client_errors_and_redirects_are_dead_lettered_at_once() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("gone", 5)).await;
    let receiver = Receiver::start().await;
    receiver.script("/gone", [Reply::Status(404, vec![], "no such hook")]);
    receiver.script(
        "/moved",
        [Reply::Status(
            302,
            vec![("location", receiver.url("/new-home"))],
            "",
        )],
    );
    let worker = WorkerProcess::start(&server, "gone", &[]);
    let gone = enqueue(&producer, "gone", json!({"url": receiver.url("/gone")})).await;
    let moved = enqueue(&producer, "gone", json!({"url": receiver.url("/moved")})).await;

    let reason = dead_at_once(&producer, "gone", gone).await;
    assert!(reason.starts_with("HTTP 404 Not Found after "), "{reason}");
    assert!(reason.ends_with(" ms: no such hook"), "{reason}");

    let reason = dead_at_once(&producer, "gone", moved).await;
    assert!(reason.starts_with("HTTP 302 Found after "), "{reason}");
    assert!(
        reason.contains("redirects are not followed; Location: http://127.0.0.1:"),
        "{reason}"
    );

    assert_eq!(receiver.received("/gone").len(), 1);
    assert_eq!(receiver.received("/moved").len(), 1);
    assert_eq!(receiver.received("/new-home").len(), 0, "not followed");
    worker.stop().await;
}

#[tokio::test]
async fn invalid_payloads_are_dead_lettered_without_a_request_or_a_retry() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("invalid", 5)).await;
    let receiver = Receiver::start().await;
    let worker = WorkerProcess::start(&server, "invalid", &[]);
    let url = receiver.url("/x");
    let cases = [
        (Job::bytes("not json"), "payload: "),
        (
            Job::json(&json!({"url": url, "bdy": {}})).unwrap(),
            "payload: unknown field `bdy`",
        ),
        (
            Job::json(&json!({"url": "ftp://example.com/f"})).unwrap(),
            "url: ",
        ),
        (
            Job::json(&json!({"url": url, "method": "TRACE"})).unwrap(),
            "method: ",
        ),
        (
            Job::json(&json!({"url": url, "body": 1, "body_text": "1"})).unwrap(),
            "body: ",
        ),
        (
            Job::json(&json!({"url": url, "headers": {"Host": "evil"}})).unwrap(),
            "headers.Host: ",
        ),
    ];
    let mut jobs = Vec::new();
    for (job, expected) in cases {
        jobs.push((enqueue_job(&producer, "invalid", job).await, expected));
    }
    for (id, expected) in jobs {
        let reason = dead_at_once(&producer, "invalid", id).await;
        assert!(
            reason.starts_with(&format!("invalid webhook request: {expected}")),
            "{reason}"
        );
    }
    assert_eq!(receiver.total(), 0, "no request was sent");
    worker.stop().await;
}

#[tokio::test]
async fn timeouts_and_connection_failures_are_retried_then_dead_lettered() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("down", 2)).await;
    let receiver = Receiver::start().await;
    receiver.script("/hang", [Reply::Hang, Reply::Hang]);
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let worker = WorkerProcess::start(&server, "down", &[]);
    let slow = enqueue(
        &producer,
        "down",
        json!({"url": receiver.url("/hang"), "timeout_ms": 300}),
    )
    .await;
    let refused = enqueue(
        &producer,
        "down",
        json!({"url": format!("http://127.0.0.1:{closed_port}/x")}),
    )
    .await;

    for (id, error) in [
        (slow, "Timeout: no complete response within 300 ms"),
        (refused, "Connect: request failed after "),
    ] {
        let status = finished(&producer, id).await;
        assert_eq!(
            status.last.event,
            AuditEventKind::DeadLettered,
            "{status:?}"
        );
        assert_eq!(status.last.attempt, 2);
        let history = history(&producer, id).await;
        let retried = history
            .iter()
            .find(|e| e.event == AuditEventKind::Retried)
            .unwrap_or_else(|| panic!("no retry: {history:?}"));
        assert!(
            retried.error.as_deref().unwrap().starts_with(error),
            "{retried:?}"
        );
        let reason = dead_letter(&producer, "down", id).await.reason;
        assert_eq!(Some(&reason), status.last.error.as_ref());
        assert!(
            reason.starts_with(&format!("attempts exhausted (2): {error}")),
            "{reason}"
        );
    }
    assert_eq!(receiver.received("/hang").len(), 2);
    worker.stop().await;
}

#[tokio::test]
async fn deny_private_networks_refuses_loopback_targets_for_good() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("guarded", 5)).await;
    let receiver = Receiver::start().await;
    let port = receiver.base.rsplit(':').next().unwrap().to_owned();
    let worker = WorkerProcess::start(&server, "guarded", &["--deny-private-networks"]);
    for url in [
        receiver.url("/x"),
        format!("http://localhost:{port}/x"),
        format!("http://[::1]:{port}/x"),
    ] {
        let id = enqueue(&producer, "guarded", json!({"url": url})).await;
        let reason = dead_at_once(&producer, "guarded", id).await;
        assert!(reason.starts_with("refused: "), "{url}: {reason}");
        assert!(
            reason.ends_with("(--deny-private-networks)"),
            "{url}: {reason}"
        );
    }
    assert_eq!(receiver.total(), 0, "no request was sent");
    worker.stop().await;
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_exits_zero() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("term", 5)).await;
    let receiver = Receiver::start().await;
    let release = Arc::new(Notify::new());
    receiver.script("/slow", [Reply::WaitFor(Arc::clone(&release))]);
    let mut worker = WorkerProcess::start(&server, "term", &["--grace-seconds", "30"]);
    let id = enqueue(&producer, "term", json!({"url": receiver.url("/slow")})).await;

    eventually_async("the request to arrive", WAIT, || {
        std::future::ready((receiver.received("/slow").len() == 1).then_some(()))
    })
    .await;
    worker.signal("TERM");
    let signalled = Instant::now();
    eventually_async("the worker to begin shutting down", WAIT, || {
        std::future::ready(worker.logged("shutting down").then_some(()))
    })
    .await;
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "still running while a request is in flight"
    );
    release.notify_one();
    let exit = worker.wait_exit(WAIT).await;
    assert!(exit.success(), "graceful exit, got {exit:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "within the grace period"
    );

    let status = job_status(producer.jetstream(), id).await.unwrap().unwrap();
    assert_eq!(status.last.event, AuditEventKind::Succeeded, "{status:?}");
    assert_eq!(status.last.attempt, 1);
}

#[tokio::test]
async fn sigterm_with_a_hung_receiver_exits_zero_after_the_grace_period() {
    let server = NatsServer::start();
    let producer = setup(&server, &queue("hung", 5)).await;
    let receiver = Receiver::start().await;
    receiver.script("/hang", [Reply::Hang]);
    let mut worker = WorkerProcess::start(&server, "hung", &["--grace-seconds", "1"]);
    let id = enqueue(&producer, "hung", json!({"url": receiver.url("/hang")})).await;

    eventually_async("the request to arrive", WAIT, || {
        std::future::ready((receiver.received("/hang").len() == 1).then_some(()))
    })
    .await;
    worker.signal("TERM");
    let signalled = Instant::now();
    let exit = worker.wait_exit(WAIT).await;
    assert!(exit.success(), "graceful exit, got {exit:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "stopped soon after the 1 s grace period ({:?})",
        signalled.elapsed()
    );
    let status = job_status(producer.jetstream(), id).await.unwrap().unwrap();
    assert!(
        !status.is_finished(),
        "handed back, not finished: {status:?}"
    );
}

#[test]
fn help_explains_every_option_and_bad_limits_are_refused() {
    let help = Command::new(env!("CARGO_BIN_EXE_jobfleet-worker-webhook"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    for needle in [
        "--nats-url",
        "NATS_URL",
        "--queue",
        "JOBFLEET_QUEUE",
        "[default: webhooks]",
        "--concurrency",
        "--grace-seconds",
        "--metrics-port",
        "--request-timeout",
        "--max-request-timeout",
        "--max-retry-after",
        "--deny-private-networks",
        "JOBFLEET_WEBHOOK_DENY_PRIVATE_NETWORKS",
        "Idempotency-Key",
        "body_base64",
        "timeout_ms",
        "Retry-After",
        "redirects are not followed",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }

    let bad = Command::new(env!("CARGO_BIN_EXE_jobfleet-worker-webhook"))
        .args(["--request-timeout", "10m", "--max-request-timeout", "1m"])
        .env("NATS_URL", "nats://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--max-request-timeout"), "{stderr}");
}
