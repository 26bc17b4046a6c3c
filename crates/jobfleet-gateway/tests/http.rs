//! The gateway over real HTTP against a real nats-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jobfleet_core::{QueueConfig, RetrySchedule};
use jobfleet_gateway::{GatewayConfig, GatewayState, PROBLEM_JSON, Scope, Tokens};
use jobfleet_producer::{ConnectOptions, Producer};
use jobfleet_testkit::{NatsServer, eventually_async};
use jobfleet_worker::{HandlerError, JobContext, Outcome, Worker, handler_fn};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(30);
const ADMIN: &str = "admin-secret";
const READER: &str = "read-secret";
const ENQUEUER: &str = "enqueue-secret";

struct Fixture {
    server: NatsServer,
    base: String,
    http: reqwest::Client,
    producer: Producer,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    token: Option<&'static str>,
}

fn fast_queue(name: &str) -> QueueConfig {
    let mut queue = QueueConfig::new(name);
    queue.worker.ack_wait = Duration::from_secs(2);
    queue.worker.max_attempts = 2;
    queue.worker.backoff = RetrySchedule {
        initial: Duration::from_millis(100),
        factor: 1.0,
        max: Duration::from_millis(100),
        jitter: 0.0,
    };
    queue
}

impl Fixture {
    async fn start(config: GatewayConfig) -> Self {
        Self::start_on(NatsServer::start(), config).await
    }

    async fn start_on(server: NatsServer, config: GatewayConfig) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let producer = Producer::connect(ConnectOptions::new(server.url()))
            .await
            .unwrap();
        producer.declare_queue(&fast_queue("emails")).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = GatewayState::new(producer.clone(), config);
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(jobfleet_gateway::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Self {
            server,
            base,
            http: reqwest::Client::new(),
            producer,
            stop: Some(stop),
            served: Some(served),
            token: None,
        }
    }

    fn with_user(mut self, token: &'static str) -> Self {
        self.token = Some(token);
        self
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.request(Method::GET, path)).await
    }

    async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.request(Method::POST, path).json(&body)).await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.served.take().unwrap().await.unwrap().unwrap();
    }
}

fn secured() -> GatewayConfig {
    GatewayConfig::default().tokens(
        Tokens::open()
            .with_token("admin", ADMIN, &[Scope::Admin])
            .with_token("reader", READER, &[Scope::Read])
            .with_token("producer", ENQUEUER, &[Scope::Enqueue]),
    )
}

/// Sends; returns the status and the JSON body (`Null` when not JSON). Asserts that every
/// error response is problem+json with a matching `status` member.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(content_type, PROBLEM_JSON, "{status}: {body}");
        assert_eq!(body["status"], status.as_u16(), "{body}");
        assert!(
            body["type"].as_str().unwrap().starts_with("https://"),
            "{body}"
        );
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    }
    (status, body)
}

/// A worker on `queue` running `handler` until dropped.
struct Running {
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
    }
}

async fn run_worker(
    server: &NatsServer,
    queue: &str,
    handler: impl jobfleet_worker::Handler,
) -> Running {
    let client = async_nats::connect(server.url()).await.unwrap();
    let worker = Worker::builder(client, queue)
        .concurrency(4)
        .build(handler)
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    Running { stop: Some(stop) }
}

/// Waits until `request` is inside the gateway (blocked on a paused server): /metrics then
/// counts at least two requests in flight, it and the /metrics request itself.
async fn wait_in_flight<T: std::fmt::Debug>(
    gw: &Fixture,
    request: &mut tokio::task::JoinHandle<T>,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if request.is_finished() {
            let answer = request.await;
            panic!("the request was answered before the test went on: {answer:?}");
        }
        let in_flight = async {
            let text = gw
                .request(Method::GET, "/metrics")
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("jobfleet_gateway_requests_in_flight "))?
                .parse::<u64>()
                .ok()
        }
        .await;
        if in_flight.is_some_and(|n| n >= 2) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request was not in flight within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn job_state(gw: &Fixture, id: &str) -> Option<String> {
    let (status, body) = gw.get(&format!("/v1/jobs/{id}")).await;
    (status == StatusCode::OK).then(|| body["state"].as_str().unwrap().to_owned())
}

async fn wait_state(gw: &Fixture, id: &str, wanted: &str) {
    eventually_async(&format!("job {id} {wanted}"), WAIT, || async {
        (job_state(gw, id).await.as_deref() == Some(wanted)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_enqueued_json_job_runs_and_its_status_and_history_are_served() {
    let gw = Fixture::start(GatewayConfig::default()).await;
    let response = gw
        .request(Method::POST, "/v1/queues/emails/jobs?type=welcome")
        .json(&json!({"to": "a@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert_eq!(body["duplicate"], false);
    assert_eq!(job_state(&gw, &id).await.as_deref(), Some("enqueued"));

    let _worker = run_worker(
        &gw.server,
        "emails",
        handler_fn(|job: JobContext| async move {
            let payload: Value = job.json()?;
            assert_eq!(payload["to"], "a@example.com");
            assert_eq!(job.job_type(), Some("welcome"));
            Ok(Outcome::Done)
        }),
    )
    .await;
    wait_state(&gw, &id, "succeeded").await;
    let (status, body) = gw.get(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["finished"], true);
    let (status, history) = gw.get(&format!("{location}/history")).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["enqueued", "started", "succeeded"]);
    gw.stop().await;
}

#[tokio::test]
async fn raw_bytes_and_options_are_stored_as_given() {
    let gw = Fixture::start(GatewayConfig::default()).await;
    let (status, body) = send(
        gw.request(
            Method::POST,
            "/v1/queues/emails/jobs?delay=1h&max_attempts=1&timeout=30s",
        )
        .header("content-type", "text/plain; charset=utf-8")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body("hello"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["run_at"].is_string());
    let (status, queue) = gw.get("/v1/queues/emails").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(queue["scheduled"], 1, "{queue}");
    assert_eq!(queue["ready"], 0);

    // Without a delay it is ready; the stored message keeps payload, type and trace context.
    let (status, body) = send(
        gw.request(Method::POST, "/v1/queues/emails/jobs?max_attempts=1")
            .header("content-type", "application/octet-stream")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(vec![0u8, 159, 146, 150]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let _worker = run_worker(
        &gw.server,
        "emails",
        handler_fn(move |job: JobContext| {
            let seen_tx = seen_tx.clone();
            async move {
                let _ = seen_tx.send((
                    job.payload().to_vec(),
                    job.max_attempts(),
                    job.meta().trace_id().map(str::to_owned),
                ));
                Ok(Outcome::Done)
            }
        }),
    )
    .await;
    let (payload, max_attempts, trace) = tokio::time::timeout(WAIT, seen_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payload, vec![0u8, 159, 146, 150]);
    assert_eq!(max_attempts, 1);
    assert_eq!(trace.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
    gw.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_twice_stores_one_job() {
    let gw = Fixture::start(GatewayConfig::default()).await;
    let post = |payload: Value| {
        send(
            gw.request(Method::POST, "/v1/queues/emails/jobs")
                .header("idempotency-key", "order-42")
                .json(&payload),
        )
    };
    let (s1, first) = post(json!({"n": 1})).await;
    let (s2, second) = post(json!({"n": 1})).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(second["duplicate"], true);
    let (_, queue) = gw.get("/v1/queues/emails").await;
    assert_eq!(queue["ready"], 1, "{queue}");

    // The same key for another payload while the first is still stored: refused.
    let (status, problem) = post(json!({"n": 2})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["job_id"], first["id"]);

    // A replayed response says so.
    let replay = gw
        .request(Method::POST, "/v1/queues/emails/jobs")
        .header("idempotency-key", "order-42")
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    gw.stop().await;
}

#[tokio::test]
async fn batches_are_stored_whole_or_refused_whole() {
    let gw = Fixture::start(GatewayConfig::default().max_batch(10)).await;
    let (status, body) = gw
        .post_json(
            "/v1/queues/emails/batch",
            json!({"jobs": [
                {"payload": {"to": "a"}},
                {"payload": {"to": "b"}, "type": "welcome", "idempotency_key": "b-1"},
                {"payload_base64": "AAEC", "content_type": "application/x-thing", "delay": "1h"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["jobs"][2]["status"], 202);
    assert!(body["jobs"][2]["run_at"].is_string());

    let (_, before) = gw.get("/v1/queues/emails").await;
    for (bad, expected) in [
        (
            json!({"jobs": [{"payload": 1}, {"payload": 2, "delay": "soon"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"jobs": [{"payload": 1, "colour": "red"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        // Refused by the producer's own checks: still nothing of the batch is stored.
        (
            json!({"jobs": [{"payload": 1}, {"payload": 2, "max_attempts": 0}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"jobs": [{"payload_base64": "***"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"jobs": []}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"jobs": vec![json!({"payload": 1}); 11]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"jobs": "many"}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, problem) = gw.post_json("/v1/queues/emails/batch", bad.clone()).await;
        assert_eq!(status, expected, "{bad} -> {problem}");
    }
    let (status, _) = send(
        gw.request(Method::POST, "/v1/queues/emails/batch")
            .header("content-type", "application/json")
            .body("{\"jobs\": [ {"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, after) = gw.get("/v1/queues/emails").await;
    assert_eq!(
        before["stored_total"], after["stored_total"],
        "refused batches stored nothing"
    );
    gw.stop().await;
}

#[tokio::test]
async fn bad_requests_get_their_own_4xx_as_problem_json() {
    let gw = Fixture::start(GatewayConfig::default().body_limit(1024)).await;
    let mut bounded = fast_queue("tiny");
    bounded.max_messages = Some(1);
    gw.producer.declare_queue(&bounded).await.unwrap();
    let id = uuid_like();
    let cases: Vec<(reqwest::RequestBuilder, StatusCode)> = vec![
        (
            gw.request(Method::POST, "/v1/queues/nope/jobs")
                .json(&json!({})),
            StatusCode::NOT_FOUND,
        ),
        (
            gw.request(Method::POST, "/v1/queues/no%20pe!/jobs")
                .json(&json!({})),
            StatusCode::NOT_FOUND,
        ),
        (
            gw.request(Method::GET, &format!("/v1/jobs/{id}")),
            StatusCode::NOT_FOUND,
        ),
        (
            gw.request(Method::GET, "/v1/jobs/not-a-uuid"),
            StatusCode::BAD_REQUEST,
        ),
        (
            gw.request(Method::GET, "/v1/queues/nope"),
            StatusCode::NOT_FOUND,
        ),
        (
            gw.request(Method::GET, "/v1/nothing-here"),
            StatusCode::NOT_FOUND,
        ),
        (
            gw.request(Method::DELETE, "/v1/queues/emails/jobs"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/jobs")
                .body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/jobs")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("a=b"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/jobs")
                .header("content-type", "application/json")
                .body("{\"unterminated"),
            StatusCode::BAD_REQUEST,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/jobs")
                .header("content-type", "application/json")
                .body(vec![b'"', 0xff, 0xfe, b'"']),
            StatusCode::BAD_REQUEST,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/jobs?colour=red")
                .json(&json!({})),
            StatusCode::BAD_REQUEST,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/jobs?max_attempts=-1")
                .json(&json!({})),
            StatusCode::BAD_REQUEST,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/jobs?delay=soon")
                .json(&json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/jobs?max_attempts=0")
                .json(&json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/jobs?run_at=yesterday")
                .json(&json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/jobs?delay=400d")
                .json(&json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/jobs")
                .header("content-type", "text/plain")
                .body(vec![b'x'; 4096]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/batch")
                .json(&json!({"jobs": [{"payload": "x".repeat(4096)}]})),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/purge"),
            StatusCode::BAD_REQUEST,
        ),
        (
            gw.request(Method::GET, "/v1/queues/emails/dead-letters?limit=0"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            gw.request(Method::GET, "/v1/queues/a.b/dead-letters"),
            StatusCode::NOT_FOUND,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/dead-letters/delete")
                .json(&json!({"reason": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            gw.request(Method::GET, &format!("/v1/queues/emails/dead-letters/{id}")),
            StatusCode::NOT_FOUND,
        ),
        (
            gw.request(Method::POST, "/v1/queues/emails/dead-letters/redrive")
                .json(&json!({"all": true, "ids": []})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (request, expected) in cases {
        let described = format!("{request:?}");
        let (status, body) = send(request).await;
        assert_eq!(status, expected, "{described} -> {body}");
    }

    // A bounded queue that is full answers 429 with Retry-After; nothing is lost.
    let (status, _) = gw.post_json("/v1/queues/tiny/jobs", json!(1)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let response = gw
        .request(Method::POST, "/v1/queues/tiny/jobs")
        .json(&json!(2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    gw.stop().await;
}

fn uuid_like() -> String {
    jobfleet_core::JobId::new().to_string()
}

#[tokio::test]
async fn tokens_and_scopes_are_enforced_and_never_echoed() {
    let gw = Fixture::start(secured()).await;
    // Health, metrics and the API document are open.
    for path in ["/livez", "/readyz", "/metrics", "/openapi.json"] {
        let (status, _) = gw.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let response = gw.request(Method::GET, "/v1/queues").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"jobfleet\""
    );

    let wrong = "wrong-secret-do-not-echo";
    let response = gw
        .request(Method::GET, "/v1/queues")
        .bearer_auth(wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(!response.text().await.unwrap().contains(wrong));

    let gw = gw.with_user(READER);
    let (status, _) = gw.get("/v1/queues").await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = gw.post_json("/v1/queues/emails/jobs", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!problem.to_string().contains(READER));

    let gw = gw.with_user(ENQUEUER);
    let (status, _) = gw.post_json("/v1/queues/emails/jobs", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = gw.get("/v1/queues").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = gw.post_json("/v1/queues/emails/pause", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let gw = gw.with_user(ADMIN);
    for (method, path) in [
        (Method::GET, "/v1/queues"),
        (Method::POST, "/v1/queues/emails/pause"),
        (Method::POST, "/v1/queues/emails/resume"),
    ] {
        let (status, body) = send(gw.request(method.clone(), path)).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
    }
    let (status, _) = gw.post_json("/v1/queues/emails/jobs", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    gw.stop().await;
}

#[tokio::test]
async fn readyz_and_enqueue_follow_the_nats_connection() {
    let mut gw = Fixture::start(GatewayConfig::default()).await;
    let (status, _) = gw.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = gw.post_json("/v1/queues/emails/jobs", json!(1)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    gw.server.stop();
    eventually_async("readyz 503 with NATS down", WAIT, || async {
        (gw.get("/readyz").await.0 == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    let (status, _) = gw.get("/livez").await;
    assert_eq!(status, StatusCode::OK, "liveness does not depend on NATS");
    let response = gw
        .request(Method::POST, "/v1/queues/emails/jobs")
        .json(&json!(2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));

    gw.server.start_again();
    eventually_async("readyz 200 once NATS is back", WAIT, || async {
        (gw.get("/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let (status, body) = gw.post_json("/v1/queues/emails/jobs", json!(3)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn a_key_being_stored_right_now_gets_409() {
    let mut gw = Fixture::start(GatewayConfig::default()).await;
    // Warm the gateway's queue cache so the next request blocks in the publish itself.
    let (status, _) = gw.post_json("/v1/queues/emails/jobs", json!(0)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    gw.server.pause();
    let mut first = tokio::spawn(
        gw.request(Method::POST, "/v1/queues/emails/jobs")
            .header("idempotency-key", "slow")
            .json(&json!(1))
            .send(),
    );
    wait_in_flight(&gw, &mut first).await;
    let (status, problem) = send(
        gw.request(Method::POST, "/v1/queues/emails/jobs")
            .header("idempotency-key", "slow")
            .json(&json!(1)),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(problem["job_id"].is_string());
    gw.server.resume();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    gw.stop().await;
}

#[tokio::test]
async fn queues_are_listed_paused_resumed_and_purged() {
    let gw = Fixture::start(GatewayConfig::default()).await;
    gw.producer.declare_queue(&fast_queue("sms")).await.unwrap();
    for n in 0..3 {
        let (status, _) = gw.post_json("/v1/queues/sms/jobs", json!(n)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, list) = gw.get("/v1/queues").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["emails", "sms"]);
    let sms = &list["queues"][1];
    assert_eq!(sms["ready"], 3);
    assert!(sms["oldest_ready_age"].as_f64().unwrap() >= 0.0);

    let (status, body) = gw.post_json("/v1/queues/sms/pause", json!({})).await;
    assert_eq!(
        (status, body["paused"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (_, sms) = gw.get("/v1/queues/sms").await;
    assert_eq!(sms["paused"], true);
    // A paused queue hands out nothing: a worker started now stays idle.
    let ran = Arc::new(AtomicBool::new(false));
    let ran_in_handler = ran.clone();
    let worker = run_worker(
        &gw.server,
        "sms",
        handler_fn(move |_job: JobContext| {
            let ran = ran_in_handler.clone();
            async move {
                ran.store(true, Ordering::SeqCst);
                Ok(Outcome::Done)
            }
        }),
    )
    .await;
    eventually_async("the worker to wait on the paused queue", WAIT, || async {
        let (_, sms) = gw.get("/v1/queues/sms").await;
        (sms["waiting_pulls"].as_u64().unwrap() > 0).then_some(())
    })
    .await;
    assert!(
        !ran.load(Ordering::SeqCst),
        "a paused queue handed out a job"
    );
    drop(worker);

    let (status, body) = send(gw.request(Method::POST, "/v1/queues/sms/purge?confirm=sms")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["purged"], 3);
    let (status, body) = gw.post_json("/v1/queues/sms/resume", json!({})).await;
    assert_eq!(
        (status, body["paused"].clone()),
        (StatusCode::OK, json!(false))
    );
    gw.stop().await;
}

#[tokio::test]
async fn dead_letters_are_browsed_redriven_and_deleted() {
    let gw = Fixture::start(GatewayConfig::default()).await;
    let healthy = Arc::new(AtomicBool::new(false));
    let healthy_in_handler = healthy.clone();
    let _worker = run_worker(
        &gw.server,
        "emails",
        handler_fn(move |job: JobContext| {
            let healthy = healthy_in_handler.clone();
            async move {
                if healthy.load(Ordering::SeqCst) {
                    return Ok(Outcome::Done);
                }
                if job.job_type() == Some("flaky") {
                    return Err(HandlerError::new("smtp timeout"));
                }
                Ok(Outcome::fail("mailbox does not exist"))
            }
        }),
    )
    .await;
    let mut ids = Vec::new();
    for job_type in ["bounce", "bounce", "flaky"] {
        let (_, body) = gw
            .post_json(
                &format!("/v1/queues/emails/jobs?type={job_type}"),
                json!({"t": job_type}),
            )
            .await;
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        wait_state(&gw, id, "dead_lettered").await;
    }
    let (status, page) = gw.get("/v1/queues/emails/dead-letters?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["dead_letters"].as_array().unwrap().len(), 2);
    let next = page["next_after"].as_u64().unwrap();
    let (_, rest) = gw
        .get(&format!("/v1/queues/emails/dead-letters?after={next}"))
        .await;
    assert_eq!(rest["dead_letters"].as_array().unwrap().len(), 1);
    assert!(rest["next_after"].is_null());
    let (_, flaky) = gw.get("/v1/queues/emails/dead-letters?reason=smtp").await;
    assert_eq!(flaky["dead_letters"][0]["id"], ids[2].as_str());
    assert_eq!(flaky["dead_letters"][0]["attempts"], 2);

    let (status, one) = gw
        .get(&format!("/v1/queues/emails/dead-letters/{}", ids[0]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["payload"], json!({"t": "bounce"}));
    assert_eq!(one["type"], "bounce");
    assert!(one["headers"]["Jobfleet-Id"].is_array(), "{one}");

    // Redrive one by id and the rest of its kind by filter; they run and succeed.
    healthy.store(true, Ordering::SeqCst);
    let (status, body) = send(gw.request(
        Method::POST,
        &format!("/v1/queues/emails/dead-letters/{}/redrive", ids[2]),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_state(&gw, &ids[2], "succeeded").await;
    let (status, body) = gw
        .post_json(
            "/v1/queues/emails/dead-letters/redrive",
            json!({"type": "bounce", "reason": "mailbox"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["redriven"].as_array().unwrap().len(), 2, "{body}");
    wait_state(&gw, &ids[0], "succeeded").await;
    wait_state(&gw, &ids[1], "succeeded").await;
    let (_, empty) = gw.get("/v1/queues/emails/dead-letters").await;
    assert!(empty["dead_letters"].as_array().unwrap().is_empty());

    // Dead again, then deleted: one by id, the rest all at once.
    healthy.store(false, Ordering::SeqCst);
    let mut dead = Vec::new();
    for _ in 0..3 {
        let (_, body) = gw
            .post_json("/v1/queues/emails/jobs?type=bounce", json!({}))
            .await;
        dead.push(body["id"].as_str().unwrap().to_owned());
    }
    for id in &dead {
        wait_state(&gw, id, "dead_lettered").await;
    }
    let (status, _) = send(gw.request(
        Method::DELETE,
        &format!("/v1/queues/emails/dead-letters/{}", dead[0]),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(gw.request(
        Method::DELETE,
        &format!("/v1/queues/emails/dead-letters/{}", dead[0]),
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = gw
        .post_json(
            "/v1/queues/emails/dead-letters/delete",
            json!({"all": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["deleted"].as_array().unwrap().len(), 2);
    let (_, queue) = gw.get("/v1/queues/emails").await;
    assert_eq!(queue["dead"], 0);
    gw.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let gw = Fixture::start(GatewayConfig::default()).await;
    for _ in 0..2 {
        gw.post_json("/v1/queues/emails/jobs", json!(1)).await;
    }
    gw.get("/v1/jobs/not-a-uuid").await;
    let text = gw
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "jobfleet_gateway_requests_total{route=\"/v1/queues/{queue}/jobs\",method=\"POST\",status=\"202\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains("route=\"/v1/jobs/{id}\",method=\"GET\",status=\"400\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("jobfleet_gateway_jobs_enqueued_total 2"),
        "{text}"
    );
    assert!(text.contains("jobfleet_gateway_nats_connected 1"), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_then_drains_nats() {
    let mut gw = Fixture::start(GatewayConfig::default()).await;
    let (status, _) = gw.post_json("/v1/queues/emails/jobs", json!(0)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A request held in flight by a paused server ...
    gw.server.pause();
    let mut in_flight = tokio::spawn(
        gw.request(Method::POST, "/v1/queues/emails/jobs")
            .json(&json!(1))
            .send(),
    );
    wait_in_flight(&gw, &mut in_flight).await;
    // ... survives the shutdown signal, and is answered once the server is back.
    let _ = gw.stop.take().unwrap().send(());
    gw.server.resume();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    gw.served.take().unwrap().await.unwrap().unwrap();
    // Nothing listens any more.
    assert!(
        gw.http
            .get(format!("{}/livez", gw.base))
            .send()
            .await
            .is_err()
    );
    // The gateway drained its NATS connection; a fresh one sees both accepted jobs.
    let js = async_nats::jetstream::new(async_nats::connect(gw.server.url()).await.unwrap());
    let mut stream = js.get_stream("JOBFLEET_Q_emails").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        2,
        "both accepted jobs are stored"
    );
}
