//! The dashboard's pages, rendered by the gateway's router (no socket) from a real
//! nats-server with real queues, jobs, workers and dead letters.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use jobfleet_core::{JobId, QueueConfig, RetrySchedule};
use jobfleet_gateway::{GatewayConfig, GatewayState, Scope, Tokens, app};
use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_testkit::{NatsServer, eventually_async};
use jobfleet_worker::{HandlerError, JobContext, Outcome, Worker, handler_fn};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt as _;

const WAIT: Duration = Duration::from_secs(30);
const ADMIN: &str = "admin-secret-token";
const READER: &str = "reader-secret-token";
const ENQUEUER: &str = "enqueue-secret-token";
const HOST: &str = "gateway.test";

struct Env {
    server: NatsServer,
    producer: Producer,
    app: Router,
}

fn fast_queue(name: &str) -> QueueConfig {
    let mut queue = QueueConfig::new(name);
    queue.description = Some(format!("the {name} queue"));
    queue.worker.ack_wait = Duration::from_secs(2);
    queue.worker.max_attempts = 3;
    queue.worker.backoff = RetrySchedule {
        initial: Duration::from_millis(50),
        factor: 1.0,
        max: Duration::from_millis(50),
        jitter: 0.0,
    };
    queue
}

impl Env {
    async fn start(config: GatewayConfig, queues: &[&str]) -> Self {
        let server = NatsServer::start();
        let producer = Producer::connect(ConnectOptions::new(server.url()))
            .await
            .unwrap();
        for queue in queues {
            producer.declare_queue(&fast_queue(queue)).await.unwrap();
        }
        let app = app(GatewayState::new(producer.clone(), config));
        Self {
            server,
            producer,
            app,
        }
    }

    async fn send(&self, request: Request<Body>) -> Page {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Page {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        self.send(get(path).body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(form(path, fields)).await
    }

    async fn enqueue(&self, queue: &str, job: Job) -> String {
        self.producer
            .enqueue(queue, job)
            .await
            .unwrap()
            .id
            .to_string()
    }

    async fn enqueue_json(&self, queue: &str, payload: Value) -> String {
        self.enqueue(queue, Job::json(&payload).unwrap()).await
    }

    /// Waits until the job's page shows `state`; on timeout, says what it showed last.
    async fn wait_state(&self, id: &str, state: &str) -> Page {
        let marker = format!("data-job-state=\"{state}\"");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let page = self.get(&format!("/ui/jobs/{id}")).await;
            if page.body.contains(&marker) {
                return page;
            }
            if tokio::time::Instant::now() > deadline {
                let shown = page
                    .body
                    .split("data-job-state=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or("no state");
                panic!(
                    "job {id} not {state} after {WAIT:?}: {} shows {shown}",
                    page.status
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_dead(&self, queue: &str, count: u64) {
        eventually_async(&format!("{count} dead in {queue}"), WAIT, || async {
            let stats = jobfleet_producer::queue_stats(self.producer.jetstream(), queue)
                .await
                .unwrap();
            (stats.dead == count).then_some(())
        })
        .await;
    }

    async fn is_dead(&self, queue: &str, id: &str) -> bool {
        jobfleet_worker::dead_letter(self.producer.jetstream(), queue, id.parse().unwrap())
            .await
            .unwrap()
            .is_some()
    }
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, HOST)
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn form(path: &str, fields: &[(&str, &str)]) -> Request<Body> {
    form_with(path, fields, &[])
}

fn form_with(path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::from(form_body(fields))).unwrap()
}

#[derive(Debug)]
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    fn assert_html(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(self.body.starts_with("<!doctype html>"), "{}", self.body);
        assert!(self.body.ends_with("</html>"));
        self
    }

    /// The text of the first `data-stat="{name}"` element after `data-queue="{queue}"`.
    fn stat(&self, queue: &str, name: &str) -> String {
        let card = self
            .body
            .find(&format!("data-queue=\"{queue}\""))
            .unwrap_or_else(|| panic!("no card for {queue}"));
        let rest = &self.body[card..];
        let at = rest
            .find(&format!("data-stat=\"{name}\""))
            .unwrap_or_else(|| panic!("no {name} for {queue}"));
        let rest = &rest[at..];
        let start = rest.find('>').unwrap() + 1;
        let end = rest[start..].find('<').unwrap();
        rest[start..start + end].to_owned()
    }

    /// Asserts that no markup from user data made it into the page: the only script
    /// element is the dashboard's own, and the text shows escaped.
    fn assert_inert(&self) {
        assert_eq!(
            self.body.matches("<script").count(),
            1,
            "a script element besides the dashboard's: {}",
            self.body
        );
        assert!(
            self.body
                .contains("<script src=\"/ui/assets/dashboard.js?v="),
            "{}",
            self.body
        );
        assert!(!self.body.contains("<img src=x"), "{}", self.body);
        assert!(!self.body.contains("<b>bold"), "{}", self.body);
    }
}

/// A worker on `queue` running the demo's rules until dropped: `{"fail": true}` fails
/// for good in a job's first life (with `reason` if given), `{"flaky": n}` fails its first
/// `n` attempts, anything else succeeds.
struct Running {
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
    }
}

async fn run_worker(server: &NatsServer, queue: &str) -> Running {
    let client = async_nats::connect(server.url()).await.unwrap();
    let worker = Worker::builder(client, queue)
        .concurrency(4)
        .build(handler_fn(|job: JobContext| async move {
            let payload: Value = serde_json::from_slice(job.payload()).unwrap_or_default();
            if payload["fail"] == json!(true) && job.meta().life == 0 {
                let reason = payload["reason"].as_str().unwrap_or("asked to fail");
                return Ok(Outcome::fail(reason));
            }
            if let Some(n) = payload["flaky"].as_u64()
                && u64::from(job.attempt()) <= n
            {
                return Err(HandlerError::new(format!(
                    "flaky attempt {}",
                    job.attempt()
                )));
            }
            Ok(Outcome::DoneWith(json!({"ok": true})))
        }))
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    Running { stop: Some(stop) }
}

fn secured() -> GatewayConfig {
    GatewayConfig::default().tokens(
        Tokens::open()
            .with_token("ops", ADMIN, &[Scope::Admin])
            .with_token("viewer", READER, &[Scope::Read])
            .with_token("producer", ENQUEUER, &[Scope::Enqueue]),
    )
}

#[tokio::test]
async fn overview_and_queue_pages_show_the_counts_in_nats() {
    let env = Env::start(GatewayConfig::default(), &["emails", "reports"]).await;
    let mut waiting = Vec::new();
    for i in 0..3 {
        waiting.push(env.enqueue_json("emails", json!({"n": i})).await);
    }
    let _worker = run_worker(&env.server, "reports").await;
    env.enqueue_json("reports", json!({"fail": true})).await;
    let done = env.enqueue_json("reports", json!({"ok": 1})).await;
    env.wait_dead("reports", 1).await;
    env.wait_state(&done, "succeeded").await;

    let root = env.get("/").await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.location(), "/ui");

    let page = env.get("/ui").await;
    page.assert_html(StatusCode::OK);
    assert_eq!(page.stat("emails", "ready"), "3");
    assert_eq!(page.stat("emails", "in-flight"), "0");
    assert_eq!(page.stat("emails", "dead"), "0");
    assert_ne!(page.stat("emails", "oldest"), "none");
    assert_eq!(page.stat("reports", "ready"), "0");
    assert_eq!(page.stat("reports", "dead"), "1");
    assert!(page.body.contains("the emails queue"));
    assert!(page.body.contains("id=\"queues\" data-live"));
    assert!(page.body.contains("open gateway"));
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");

    let queue = env.get("/ui/queues/emails").await;
    queue.assert_html(StatusCode::OK);
    assert!(
        queue.body.contains("Max attempts</dt><dd>3</dd>"),
        "{}",
        queue.body
    );
    for id in &waiting {
        assert!(
            queue.body.contains(&format!("/ui/jobs/{id}")),
            "{id} not in recent jobs"
        );
    }
    // The script's refresh gets the live section only (no audit stream read).
    let live = env
        .send(
            get("/ui/queues/emails")
                .header("x-jobfleet-live", "1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    live.assert_html(StatusCode::OK);
    assert!(live.body.contains("id=\"queue-now\" data-live"));
    assert!(live.body.contains("data-stat=\"ready\">3<"));
    assert!(!live.body.contains("Recent jobs"));
    let reports = env.get("/ui/queues/reports").await;
    reports.assert_html(StatusCode::OK);
    assert!(reports.body.contains("Latest dead letters"));
    assert!(reports.body.contains("asked to fail"));
    assert!(
        reports.body.contains("data-workers"),
        "workers seen in audit events"
    );

    env.get("/ui/queues/nope")
        .await
        .assert_html(StatusCode::NOT_FOUND);
    env.get("/ui/no/such/page")
        .await
        .assert_html(StatusCode::NOT_FOUND);
    // Outside /ui, unknown paths keep the API's problem+json 404.
    let api = env.get("/v1/no/such/thing").await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.headers[header::CONTENT_TYPE],
        jobfleet_gateway::PROBLEM_JSON
    );

    // The assets the page links, at their versioned URLs.
    for (name, content_type) in [
        ("dashboard.css", "text/css; charset=utf-8"),
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("logo.svg", "image/svg+xml"),
    ] {
        let start = page
            .body
            .find(&format!("/ui/assets/{name}?v="))
            .unwrap_or_else(|| panic!("{name} not linked"));
        let url = &page.body[start..start + page.body[start..].find('"').unwrap()];
        let asset = env.get(url).await;
        assert_eq!(asset.status, StatusCode::OK, "{url}");
        assert_eq!(asset.headers[header::CONTENT_TYPE], content_type);
        assert!(
            asset.headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(!asset.body.is_empty());
    }
    assert_eq!(
        env.get("/ui/assets/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn payloads_reasons_types_and_headers_are_rendered_inert() {
    let env = Env::start(GatewayConfig::default(), &["evil"]).await;
    let _worker = run_worker(&env.server, "evil").await;
    let payload = json!({
        "fail": true,
        "reason": "<script>alert('reason')</script> & \"quotes\"",
        "note": "<script>alert('payload')</script><img src=x onerror=alert(1)>",
    });
    let id = env
        .enqueue(
            "evil",
            Job::json(&payload)
                .unwrap()
                .job_type("<img src=x onerror=alert(2)>")
                .header("X-Note", "<b>bold</b>")
                .header("Authorization", "Bearer header-secret-value"),
        )
        .await;
    env.wait_dead("evil", 1).await;

    for path in [
        "/ui".to_owned(),
        "/ui/queues/evil".to_owned(),
        "/ui/queues/evil/dead-letters".to_owned(),
        format!("/ui/queues/evil/dead-letters/{id}"),
        format!("/ui/jobs/{id}"),
        "/ui/queues/evil/dead-letters?reason=%3Cscript%3E&type=%3Cimg%20src%3Dx%3E".to_owned(),
    ] {
        let page = env.get(&path).await;
        page.assert_html(StatusCode::OK);
        page.assert_inert();
    }
    let list = env.get("/ui/queues/evil/dead-letters").await;
    assert!(
        list.body.contains(
            "&lt;script&gt;alert(&#39;reason&#39;)&lt;/script&gt; &amp; &quot;quotes&quot;"
        ),
        "{}",
        list.body
    );
    assert!(list.body.contains("&lt;img src=x onerror=alert(2)&gt;"));
    let detail = env.get(&format!("/ui/queues/evil/dead-letters/{id}")).await;
    assert!(
        detail
            .body
            .contains("&lt;script&gt;alert(&#39;payload&#39;)&lt;/script&gt;&lt;img src=x"),
        "{}",
        detail.body
    );
    assert!(detail.body.contains("&lt;b&gt;bold&lt;/b&gt;"));
    // A header that looks like a credential is not shown.
    assert!(detail.body.contains(">Authorization</th>"));
    assert!(!detail.body.contains("header-secret-value"));
    // The confirmation page repeats user data in attributes: escaped there too.
    let confirm = env
        .post(
            "/ui/queues/evil/dead-letters/redrive",
            &[("scope", "matching"), ("reason", "<script>\"x\"")],
        )
        .await;
    confirm.assert_html(StatusCode::OK);
    confirm.assert_inert();
    assert!(
        confirm
            .body
            .contains("value=\"&lt;script&gt;&quot;x&quot;\"")
    );
}

#[tokio::test]
async fn a_redrive_asks_for_confirmation_then_the_job_runs_again_and_succeeds() {
    let env = Env::start(GatewayConfig::default(), &["demo"]).await;
    let _worker = run_worker(&env.server, "demo").await;
    let id = env.enqueue_json("demo", json!({"fail": true})).await;
    env.wait_dead("demo", 1).await;
    let job = env.wait_state(&id, "dead_lettered").await;
    assert!(
        job.body
            .contains(&format!("/ui/queues/demo/dead-letters/{id}"))
    );

    let detail = env.get(&format!("/ui/queues/demo/dead-letters/{id}")).await;
    detail.assert_html(StatusCode::OK);
    assert!(detail.body.contains("Redrive…"));

    // Without confirmation: a page that says what will happen, and nothing happens.
    let confirm = env
        .post("/ui/queues/demo/dead-letters/redrive", &[("one", &id)])
        .await;
    confirm.assert_html(StatusCode::OK);
    assert!(confirm.body.contains("name=\"confirm\" value=\"yes\""));
    assert!(
        confirm
            .body
            .contains(&format!("name=\"one\" value=\"{id}\""))
    );
    assert!(env.is_dead("demo", &id).await);

    let done = env
        .post(
            "/ui/queues/demo/dead-letters/redrive",
            &[("one", &id), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), format!("/ui/jobs/{id}?notice=redriven"));
    let page = env.wait_state(&id, "succeeded").await;
    assert!(page.body.contains("data-event=\"redriven\""));
    assert!(page.body.contains("data-event=\"dead_lettered\""));
    assert!(
        !page.body.contains("data-live"),
        "a finished job is not refreshed"
    );
    assert!(!env.is_dead("demo", &id).await);

    // Redriving it again: it is not a dead letter any more.
    let again = env
        .post(
            "/ui/queues/demo/dead-letters/redrive",
            &[("one", &id), ("confirm", "yes")],
        )
        .await;
    again.assert_html(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dead_letters_filter_and_act_on_the_selected_or_all_matching() {
    let env = Env::start(GatewayConfig::default(), &["bulk"]).await;
    let _worker = run_worker(&env.server, "bulk").await;
    let mut ids = Vec::new();
    for (reason, job_type) in [
        ("smtp down", "email"),
        ("smtp down", "email"),
        ("bad address", "email"),
        ("disk full", "report"),
    ] {
        let job = Job::json(&json!({"fail": true, "reason": reason}))
            .unwrap()
            .job_type(job_type);
        ids.push(env.enqueue("bulk", job).await);
    }
    env.wait_dead("bulk", 4).await;

    let rows = |page: &Page| page.body.matches("<tr data-job=").count();
    let all = env.get("/ui/queues/bulk/dead-letters").await;
    all.assert_html(StatusCode::OK);
    assert_eq!(rows(&all), 4);
    assert_eq!(
        rows(&env.get("/ui/queues/bulk/dead-letters?reason=smtp").await),
        2
    );
    assert_eq!(
        rows(&env.get("/ui/queues/bulk/dead-letters?type=report").await),
        1
    );
    let none = env
        .get("/ui/queues/bulk/dead-letters?reason=nothing+like+it")
        .await;
    assert_eq!(rows(&none), 0);
    assert!(none.body.contains("data-empty"));

    // Nothing selected: nothing done.
    let empty = env
        .post(
            "/ui/queues/bulk/dead-letters/delete",
            &[("scope", "selected"), ("confirm", "yes")],
        )
        .await;
    empty.assert_html(StatusCode::BAD_REQUEST);

    // Delete the selected one (after the confirmation step).
    let confirm = env
        .post(
            "/ui/queues/bulk/dead-letters/delete",
            &[("scope", "selected"), ("ids", &ids[3])],
        )
        .await;
    confirm.assert_html(StatusCode::OK);
    assert!(confirm.body.contains("cannot be undone"));
    assert!(env.is_dead("bulk", &ids[3]).await);
    let deleted = env
        .post(
            "/ui/queues/bulk/dead-letters/delete",
            &[("scope", "selected"), ("ids", &ids[3]), ("confirm", "yes")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(
        deleted.location(),
        "/ui/queues/bulk/dead-letters?notice=deleted&n=1"
    );
    assert!(!env.is_dead("bulk", &ids[3]).await);
    let after = env.get(deleted.location()).await;
    assert!(after.body.contains("Deleted 1 dead letter(s)."));

    // Redrive all whose reason matches: the confirmation counts them.
    let confirm = env
        .post(
            "/ui/queues/bulk/dead-letters/redrive",
            &[("scope", "matching"), ("reason", "smtp")],
        )
        .await;
    confirm.assert_html(StatusCode::OK);
    assert!(
        confirm.body.contains("Redrive 2 job(s)"),
        "{}",
        confirm.body
    );
    let redriven = env
        .post(
            "/ui/queues/bulk/dead-letters/redrive",
            &[
                ("scope", "matching"),
                ("reason", "smtp"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(redriven.status, StatusCode::SEE_OTHER);
    assert_eq!(
        redriven.location(),
        "/ui/queues/bulk/dead-letters?notice=redriven&n=2&failed=0"
    );
    env.wait_state(&ids[0], "succeeded").await;
    env.wait_state(&ids[1], "succeeded").await;
    assert!(
        env.is_dead("bulk", &ids[2]).await,
        "not matching: still dead"
    );
    env.wait_dead("bulk", 1).await;
}

#[tokio::test]
async fn the_queue_page_pauses_after_confirmation_and_resumes() {
    let env = Env::start(GatewayConfig::default(), &["ops"]).await;
    let paused = || async {
        jobfleet_producer::queue_stats(env.producer.jetstream(), "ops")
            .await
            .unwrap()
            .paused
    };
    let confirm = env.post("/ui/queues/ops/pause", &[]).await;
    confirm.assert_html(StatusCode::OK);
    assert!(confirm.body.contains("Pause the queue"));
    assert!(!paused().await);
    let done = env
        .post("/ui/queues/ops/pause", &[("confirm", "yes")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), "/ui/queues/ops?notice=paused");
    assert!(paused().await);
    let page = env.get(done.location()).await;
    assert!(page.body.contains("data-paused"));
    assert!(page.body.contains("/ui/queues/ops/resume"));
    assert!(env.get("/ui").await.body.contains("data-paused"));

    let resumed = env
        .post("/ui/queues/ops/resume", &[("confirm", "yes")])
        .await;
    assert_eq!(resumed.location(), "/ui/queues/ops?notice=resumed");
    assert!(!paused().await);
}

#[tokio::test]
async fn the_job_page_shows_attempts_errors_durations_and_workers() {
    let env = Env::start(GatewayConfig::default(), &["jobs"]).await;
    let _worker = run_worker(&env.server, "jobs").await;
    let id = env.enqueue_json("jobs", json!({"flaky": 1})).await;
    let page = env.wait_state(&id, "succeeded").await;
    page.assert_html(StatusCode::OK);
    for event in ["enqueued", "started", "retried", "succeeded"] {
        assert!(
            page.body.contains(&format!("data-event=\"{event}\"")),
            "{event}: {}",
            page.body
        );
    }
    assert!(page.body.contains("flaky attempt 1"));
    assert!(page.body.contains("<dt>Worker</dt>"));
    assert!(page.body.contains("<dt>Ran for</dt>"));
    assert!(page.body.contains("<dt>Retry in</dt>"));
    assert!(
        page.body.contains("{&quot;ok&quot;:true}"),
        "the handler's result"
    );

    // An `enqueued` event written after the job ran (the producer records it after the
    // job is stored, and a quick worker may be done by then) does not make it look pending.
    let late = jobfleet_core::AuditEvent::new(
        jobfleet_core::AuditEventKind::Enqueued,
        id.parse().unwrap(),
        "jobs",
        time::OffsetDateTime::now_utc(),
        0,
    );
    env.producer
        .jetstream()
        .publish(
            jobfleet_core::topology::audit_subject(&id.parse().unwrap()),
            serde_json::to_vec(&late).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let page = env.get(&format!("/ui/jobs/{id}")).await;
    assert!(
        page.body.contains("data-job-state=\"succeeded\""),
        "{}",
        page.body
    );
    let first = page.body.find("data-event=\"enqueued\"").unwrap();
    assert!(first < page.body.find("data-event=\"started\"").unwrap());
    assert!(
        page.body.rfind("data-event=\"enqueued\"").unwrap()
            < page.body.find("data-event=\"succeeded\"").unwrap()
    );

    let found = env.get(&format!("/ui/jobs?id=+{id}+")).await;
    assert_eq!(found.status, StatusCode::SEE_OTHER);
    assert_eq!(found.location(), format!("/ui/jobs/{id}"));
    env.get("/ui/jobs?id=nonsense")
        .await
        .assert_html(StatusCode::BAD_REQUEST);
    env.get("/ui/jobs").await.assert_html(StatusCode::OK);
    env.get("/ui/jobs/not-a-uuid")
        .await
        .assert_html(StatusCode::BAD_REQUEST);
    let unknown = env.get(&format!("/ui/jobs/{}", JobId::new())).await;
    unknown.assert_html(StatusCode::NOT_FOUND);
    assert!(unknown.body.contains("No audit event"));
}

/// The value of the session cookie set by `page`, checking its attributes.
fn session_cookie(page: &Page) -> String {
    let set = page.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set.starts_with("jobfleet_session="), "{set}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    let value = set
        .trim_start_matches("jobfleet_session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for token in [ADMIN, READER] {
        assert!(!set.contains(token), "the cookie holds a token");
    }
    assert_eq!(value.len(), 64);
    value
}

fn with_cookie(builder: axum::http::request::Builder, session: &str) -> Request<Body> {
    builder
        .header(
            header::COOKIE,
            format!("theme=dark; jobfleet_session={session}"),
        )
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn with_tokens_reading_needs_a_sign_in_and_acting_needs_admin() {
    let env = Env::start(secured(), &["safe"]).await;
    let _worker = run_worker(&env.server, "safe").await;
    let id = env.enqueue_json("safe", json!({"fail": true})).await;
    env.wait_dead("safe", 1).await;

    // No credential: to the login form, which comes back here.
    let anonymous = env.get("/ui/queues/safe").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.location(), "/ui/login?next=%2Fui%2Fqueues%2Fsafe");
    let login = env.get(anonymous.location()).await;
    login.assert_html(StatusCode::OK);
    assert!(login.body.contains("type=\"password\""));
    assert!(login.body.contains("value=\"/ui/queues/safe\""));
    let anonymous_post = env
        .post("/ui/queues/safe/pause", &[("confirm", "yes")])
        .await;
    anonymous_post.assert_html(StatusCode::UNAUTHORIZED);

    // Wrong tokens: refused, and never repeated back.
    let wrong = env
        .post(
            "/ui/login",
            &[("token", "guess-<b>-token"), ("next", "/ui")],
        )
        .await;
    wrong.assert_html(StatusCode::UNAUTHORIZED);
    assert!(!wrong.body.contains("guess-"));
    assert!(!wrong.headers.contains_key(header::SET_COOKIE));
    let producer = env
        .post("/ui/login", &[("token", ENQUEUER), ("next", "/ui")])
        .await;
    producer.assert_html(StatusCode::FORBIDDEN);
    assert!(!producer.body.contains(ENQUEUER));

    // A read token: a session cookie, read-only pages.
    let signed_in = env
        .post(
            "/ui/login",
            &[("token", READER), ("next", "https://evil.example/")],
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location(), "/ui", "no redirect off the dashboard");
    let reader = session_cookie(&signed_in);
    let overview = env.send(with_cookie(get("/ui"), &reader)).await;
    overview.assert_html(StatusCode::OK);
    assert!(overview.body.contains("read-only"));
    assert!(overview.body.contains(">viewer<"));
    assert!(!overview.body.contains(READER));
    let list = env
        .send(with_cookie(get("/ui/queues/safe/dead-letters"), &reader))
        .await;
    list.assert_html(StatusCode::OK);
    assert!(!list.body.contains("Redrive selected"));
    assert!(!list.body.contains("name=\"ids\""));
    assert!(list.body.contains("Read-only"));
    let mut refused = form(
        "/ui/queues/safe/dead-letters/redrive",
        &[("one", &id), ("confirm", "yes")],
    );
    refused.headers_mut().insert(
        header::COOKIE,
        format!("jobfleet_session={reader}").parse().unwrap(),
    );
    env.send(refused).await.assert_html(StatusCode::FORBIDDEN);
    assert!(env.is_dead("safe", &id).await);

    // The cookie opens the dashboard only, not the API.
    let api = env.send(with_cookie(get("/v1/queues"), &reader)).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);

    // An admin token in a header (scripts) may act.
    let bearer = env
        .send(form_with(
            "/ui/queues/safe/pause",
            &[("confirm", "yes")],
            &[("authorization", &format!("Bearer {ADMIN}"))],
        ))
        .await;
    assert_eq!(bearer.status, StatusCode::SEE_OTHER, "{}", bearer.body);

    // An admin session sees and uses the actions.
    let admin = session_cookie(
        &env.post(
            "/ui/login",
            &[("token", ADMIN), ("next", "/ui/queues/safe/dead-letters")],
        )
        .await,
    );
    assert_ne!(admin, reader);
    let list = env
        .send(with_cookie(get("/ui/queues/safe/dead-letters"), &admin))
        .await;
    assert!(list.body.contains("Redrive selected"));
    assert!(list.body.contains(">admin<"));
    let mut redrive = form(
        "/ui/queues/safe/dead-letters/redrive",
        &[("one", &id), ("confirm", "yes")],
    );
    redrive.headers_mut().insert(
        header::COOKIE,
        format!("jobfleet_session={admin}").parse().unwrap(),
    );
    let redriven = env.send(redrive).await;
    assert_eq!(redriven.status, StatusCode::SEE_OTHER, "{}", redriven.body);
    assert!(!env.is_dead("safe", &id).await);

    // Signing out ends the session on the server, not only in the browser.
    let mut logout = form("/ui/logout", &[]);
    logout.headers_mut().insert(
        header::COOKIE,
        format!("jobfleet_session={admin}").parse().unwrap(),
    );
    let out = env.send(logout).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let stale = env.send(with_cookie(get("/ui"), &admin)).await;
    assert_eq!(stale.status, StatusCode::SEE_OTHER);
    assert!(stale.location().starts_with("/ui/login"));
    let forged = env.send(with_cookie(get("/ui"), &"0".repeat(64))).await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn posts_from_other_sites_are_refused() {
    let env = Env::start(GatewayConfig::default(), &["guarded"]).await;
    let paused = || async {
        jobfleet_producer::queue_stats(env.producer.jetstream(), "guarded")
            .await
            .unwrap()
            .paused
    };
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")][..],
        &[("origin", "http://evil.example")][..],
    ] {
        let refused = env
            .send(form_with(
                "/ui/queues/guarded/pause",
                &[("confirm", "yes")],
                headers,
            ))
            .await;
        refused.assert_html(StatusCode::FORBIDDEN);
        assert!(refused.body.contains("another site"), "{headers:?}");
        assert!(!paused().await, "{headers:?}");
    }
    let login = env
        .send(form_with(
            "/ui/login",
            &[("token", "x")],
            &[("sec-fetch-site", "cross-site")],
        ))
        .await;
    login.assert_html(StatusCode::FORBIDDEN);

    // The dashboard's own forms (same origin) go through.
    for headers in [
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://gateway.test"),
        ][..],
        &[("origin", "http://gateway.test")][..],
    ] {
        let done = env
            .send(form_with(
                "/ui/queues/guarded/pause",
                &[("confirm", "yes")],
                headers,
            ))
            .await;
        assert_eq!(
            done.status,
            StatusCode::SEE_OTHER,
            "{headers:?}: {}",
            done.body
        );
        assert!(paused().await);
        env.post("/ui/queues/guarded/resume", &[]).await;
    }
}
