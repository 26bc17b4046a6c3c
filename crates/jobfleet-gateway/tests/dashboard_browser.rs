//! The dashboard end to end in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over W3C WebDriver): a real nats-server, the gateway on a
//! socket with tokens, a worker with the demo's rules. Sign in, read the counts, watch them
//! update live, find a dead job, redrive it from the browser and see it succeed.
//! Screenshots go to `target/dashboard-artifacts/`.
//!
//! `JOBFLEET_BROWSER_TESTS=1` (set by `scripts/test.sh`, whose set-up installs the browser)
//! makes a missing browser a failure; `0` skips; unset, the test runs when `chromedriver`
//! and `chromium` are on `PATH` and says it skipped otherwise. `CHROMEDRIVER` and
//! `CHROMIUM` point at other binaries.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use jobfleet_core::{QueueConfig, RetrySchedule};
use jobfleet_gateway::{GatewayConfig, GatewayState, Scope, Tokens};
use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_testkit::{NatsServer, eventually_async};
use jobfleet_worker::{HandlerError, JobContext, Outcome, Worker, handler_fn};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(30);
const ADMIN_TOKEN: &str = "e2e-admin-token-4f1c9a";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// chromedriver and chromium, or `None` when the test is to be skipped.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let wanted = std::env::var("JOBFLEET_BROWSER_TESTS").unwrap_or_default();
    if wanted == "0" {
        eprintln!("dashboard browser test SKIPPED: JOBFLEET_BROWSER_TESTS=0");
        return None;
    }
    let driver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path("chromedriver"));
    let browser = std::env::var_os("CHROMIUM").map(PathBuf::from).or_else(|| {
        ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find_map(on_path)
    });
    match (driver, browser) {
        (Some(driver), Some(browser)) => Some((driver, browser)),
        _ if wanted == "1" => panic!(
            "JOBFLEET_BROWSER_TESTS=1 but chromedriver or chromium is missing: run \
             `JOBFLEET_BROWSER_TESTS=1 scripts/setup.sh` (Debian: apt-get install chromium \
             chromium-driver), or set CHROMEDRIVER and CHROMIUM"
        ),
        _ => {
            eprintln!(
                "dashboard browser test SKIPPED: no chromedriver/chromium on PATH \
                 (scripts/test.sh installs them; JOBFLEET_BROWSER_TESTS=1 makes this a failure)"
            );
            None
        }
    }
}

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("dashboard-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A chromedriver process on a free port, with a fresh browser profile directory.
struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Driver {
    async fn start(binary: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(artifacts_dir().join("chromedriver.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .arg("--log-level=WARNING")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let profile =
            std::env::temp_dir().join(format!("jobfleet-chromium-{}-{port}", std::process::id()));
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually_async("chromedriver ready", WAIT, || async {
            let status: Value = http
                .get(format!("{url}/status"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (status["value"]["ready"] == json!(true)).then_some(())
        })
        .await;
        Self {
            child,
            url,
            profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One WebDriver session.
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    /// A browser session with its own profile `name`, with JavaScript on or off.
    async fn open(driver: &Driver, chromium: &Path, name: &str, javascript: bool) -> Self {
        let http = reqwest::Client::new();
        let profile = driver.profile.join(name);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "prefs": {
                    "profile.managed_default_content_settings.javascript":
                        if javascript { 1 } else { 2 },
                },
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    "--force-device-scale-factor=1", "--lang=en-US",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let response: Value = http
            .post(format!("{}/session", driver.url))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {response}"));
        Self {
            http,
            session: format!("{}/session/{id}", driver.url),
        }
    }

    /// Sends a command; `Err` holds the WebDriver error code.
    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        match response["value"]["error"].as_str() {
            Some(error) => Err(format!("{error}: {}", response["value"]["message"])),
            None => Ok(response["value"].clone()),
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn current_url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn find(&self, css: &str) -> Option<String> {
        self.try_command(
            reqwest::Method::POST,
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )
        .await
        .ok()
        .map(|v| {
            v[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("find {css}: {v}"))
                .to_owned()
        })
    }

    async fn count(&self, css: &str) -> usize {
        self.command(
            reqwest::Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .await
        .as_array()
        .unwrap()
        .len()
    }

    async fn wait_for(&self, css: &str) -> String {
        eventually_async(&format!("element {css}"), WAIT, || self.find(css)).await
    }

    async fn text(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// Waits until the text of `css` is `expected` (the page may update itself meanwhile).
    async fn wait_text(&self, css: &str, expected: &str) {
        eventually_async(&format!("{css} to read {expected:?}"), WAIT, || async {
            let element = self.find(css).await?;
            let text = self
                .try_command(
                    reqwest::Method::GET,
                    &format!("/element/{element}/text"),
                    None,
                )
                .await
                .ok()?;
            (text.as_str() == Some(expected)).then_some(())
        })
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn press_tab(&self) {
        let tab = "\u{E004}";
        self.command(
            reqwest::Method::POST,
            "/actions",
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": tab}, {"type": "keyUp", "value": tab}]}]}),
            ),
        )
        .await;
    }

    async fn resize(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Emulates the `prefers-color-scheme: dark` media feature (Chrome DevTools Protocol).
    async fn prefer_dark(&self, dark: bool) {
        self.command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(
                json!({"cmd": "Emulation.setEmulatedMedia", "params": {"features": [
                    {"name": "prefers-color-scheme", "value": if dark { "dark" } else { "light" }}
                ]}}),
            ),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let data = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        let path = artifacts_dir().join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// The browser console's messages at level SEVERE (script errors, CSP violations).
    async fn console_errors(&self) -> Vec<String> {
        self.command(
            reqwest::Method::POST,
            "/se/log",
            Some(json!({"type": "browser"})),
        )
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .map(|entry| entry["message"].as_str().unwrap_or("").to_owned())
        .collect()
    }

    /// How many times the page's script has swapped in fresh data.
    async fn live_updates(&self) -> u64 {
        self.script("return Number(document.documentElement.dataset.liveUpdates || 0);")
            .await
            .as_u64()
            .unwrap_or(0)
    }

    async fn wait_live_updates(&self, at_least: u64) {
        eventually_async(&format!("{at_least} live updates"), WAIT, || async {
            (self.live_updates().await >= at_least).then_some(())
        })
        .await;
    }

    async fn close(self) {
        let _ = self.try_command(reqwest::Method::DELETE, "", None).await;
    }
}

/// The worker of the `demo` queue, with the rules of `jobfleet dev`'s demo worker.
async fn demo_worker(server: &NatsServer) -> oneshot::Sender<()> {
    let client = async_nats::connect(server.url()).await.unwrap();
    let worker = Worker::builder(client, "demo")
        .concurrency(8)
        .build(handler_fn(|job: JobContext| async move {
            let payload: Value = serde_json::from_slice(job.payload()).unwrap_or_default();
            if payload["fail"] == json!(true) && job.meta().life == 0 {
                return Ok(Outcome::fail(
                    "demo: asked to fail (redrive it: it succeeds next life)",
                ));
            }
            if let Some(n) = payload["flaky"].as_u64()
                && u64::from(job.attempt()) <= n
            {
                return Err(HandlerError::new(format!(
                    "demo: flaky, attempt {} of {n} failing",
                    job.attempt()
                )));
            }
            Ok(Outcome::DoneWith(json!({"echo": payload})))
        }))
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    stop
}

async fn settled(producer: &Producer, queue: &str, dead: u64) {
    eventually_async(
        &format!("{queue} settled with {dead} dead"),
        WAIT,
        || async {
            let stats = jobfleet_producer::queue_stats(producer.jetstream(), queue)
                .await
                .unwrap();
            (stats.ready == 0 && stats.in_flight == 0 && stats.scheduled == 0 && stats.dead == dead)
                .then_some(())
        },
    )
    .await;
}

async fn enqueue_many(producer: &Producer, queue: &str, jobs: impl IntoIterator<Item = Value>) {
    for payload in jobs {
        producer
            .enqueue(queue, Job::json(&payload).unwrap().job_type("demo.task"))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_operator_finds_a_dead_job_redrives_it_and_sees_it_succeed() {
    let Some((chromedriver, chromium)) = browser_tools() else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();

    // The fleet: NATS, two queues, a worker on one, the gateway with tokens.
    let server = NatsServer::start();
    let producer = Producer::connect(ConnectOptions::new(server.url()))
        .await
        .unwrap();
    let mut demo = QueueConfig::new("demo");
    demo.description = Some("demo jobs: {\"fail\": true} dead-letters until redriven".to_owned());
    demo.worker.max_attempts = 3;
    demo.worker.backoff = RetrySchedule {
        initial: Duration::from_millis(100),
        factor: 2.0,
        max: Duration::from_secs(1),
        jitter: 0.0,
    };
    producer.declare_queue(&demo).await.unwrap();
    let mut emails = QueueConfig::new("emails");
    emails.description = Some("outgoing mail (no worker running)".to_owned());
    producer.declare_queue(&emails).await.unwrap();
    let _worker = demo_worker(&server).await;

    let tokens = Tokens::open().with_token("ops", ADMIN_TOKEN, &[Scope::Admin]);
    let state = GatewayState::new(producer.clone(), GatewayConfig::default().tokens(tokens));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_gateway, gateway_stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(jobfleet_gateway::serve(listener, state, async move {
        let _ = gateway_stopped.await;
    }));

    // Work: successes, a flaky job, two failures; a backlog on the queue nobody works.
    enqueue_many(&producer, "demo", (0..12).map(|i| json!({"order": i}))).await;
    enqueue_many(&producer, "demo", [json!({"flaky": 1})]).await;
    enqueue_many(
        &producer,
        "demo",
        [json!({"fail": true}), json!({"fail": true, "order": 99})],
    )
    .await;
    enqueue_many(
        &producer,
        "emails",
        (0..5).map(|i| json!({"to": format!("user{i}@example.com")})),
    )
    .await;
    settled(&producer, "demo", 2).await;

    let driver = Driver::start(&chromedriver).await;
    let browser = Browser::open(&driver, &chromium, "scripted", true).await;

    // Sign in: the dashboard sends us to the login form and back.
    browser.goto(&format!("{base}/ui")).await;
    browser.wait_for("input#token[type=password]").await;
    assert!(browser.current_url().await.contains("/ui/login?next=%2Fui"));
    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.click(".login button[type=submit]").await;
    browser.wait_for("[data-queue=demo]").await;
    assert_eq!(browser.current_url().await, format!("{base}/ui"));
    assert_eq!(browser.text(".who .name").await, "ops");

    // The first key press reaches the skip link.
    browser.press_tab().await;
    assert_eq!(
        browser
            .script("return document.activeElement.textContent;")
            .await,
        "Skip to content"
    );
    browser
        .script("document.activeElement.blur(); return null;")
        .await;

    // The counts, and live updates as more work arrives.
    browser
        .wait_text("[data-queue=emails] [data-stat=ready]", "5")
        .await;
    browser
        .wait_text("[data-queue=demo] [data-stat=dead]", "2")
        .await;
    browser
        .wait_text("[data-queue=demo] [data-stat=ready]", "0")
        .await;
    browser.wait_live_updates(1).await;
    enqueue_many(
        &producer,
        "demo",
        (0..40).map(|i| json!({"batch": 1, "n": i})),
    )
    .await;
    browser.wait_live_updates(2).await;
    enqueue_many(
        &producer,
        "demo",
        (0..20).map(|i| json!({"batch": 2, "n": i})),
    )
    .await;
    enqueue_many(&producer, "demo", [json!({"fail": true, "batch": 2})]).await;
    enqueue_many(&producer, "emails", [json!({"to": "late@example.com"})]).await;
    settled(&producer, "demo", 3).await;
    browser
        .wait_text("[data-queue=demo] [data-stat=dead]", "3")
        .await;
    browser
        .wait_text("[data-queue=emails] [data-stat=ready]", "6")
        .await;
    eventually_async("the chart drawn", WAIT, || async {
        (browser
            .count("[data-queue=demo] svg polyline.processed")
            .await
            == 1)
            .then_some(())
    })
    .await;
    assert!(
        browser.live_updates().await >= 3,
        "the numbers above came from live updates"
    );
    browser.resize(1280, 1000).await;
    browser.screenshot("overview.png").await;
    browser.resize(390, 844).await;
    browser.screenshot("overview-phone.png").await;
    browser.resize(1280, 1000).await;
    browser.prefer_dark(true).await;
    browser.screenshot("overview-dark.png").await;
    browser.prefer_dark(false).await;

    // The dead letters of demo, from the card's link.
    browser.click("[data-queue=demo] a[data-stat=dead]").await;
    browser.wait_for("table.dead").await;
    assert_eq!(browser.count("table.dead tbody tr").await, 3);
    assert_eq!(browser.text("[data-stat=dead]").await, "3");
    browser.click("[data-select-all]").await;
    assert_eq!(browser.count("tbody input[name=ids]:checked").await, 3);
    browser.click("[data-select-all]").await;
    browser.screenshot("dead-letters.png").await;

    // Filter by reason, open the first, redrive it, confirm.
    browser.type_into("#f-reason", "asked to fail").await;
    browser.click(".filters button[type=submit]").await;
    eventually_async("filtered", WAIT, || async {
        browser
            .current_url()
            .await
            .contains("reason=asked+to+fail")
            .then_some(())
    })
    .await;
    let row = browser.wait_for("table.dead tbody tr").await;
    let id = browser
        .command(
            reqwest::Method::GET,
            &format!("/element/{row}/attribute/data-job"),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    browser
        .click(&format!("table.dead a[href$='/dead-letters/{id}']"))
        .await;
    browser.wait_for("[data-payload]").await;
    assert!(
        browser
            .text("[data-payload]")
            .await
            .contains("\"fail\": true")
    );
    assert!(
        browser
            .text("[data-reason]")
            .await
            .contains("asked to fail")
    );
    browser.screenshot("dead-letter.png").await;
    browser.click("form.actions button.primary").await;
    browser.wait_for("button[data-confirm]").await;
    assert!(
        browser
            .text("#confirm-title")
            .await
            .starts_with("Redrive job")
    );
    browser.screenshot("confirm.png").await;
    browser.click("button[data-confirm]").await;

    // The job's page follows it to success.
    browser.wait_for("[data-job-state]").await;
    assert!(
        browser
            .current_url()
            .await
            .ends_with(&format!("/ui/jobs/{id}?notice=redriven"))
    );
    eventually_async("the job page to show succeeded", WAIT, || async {
        let state = browser
            .script("return document.querySelector('[data-job-state]').dataset.jobState;")
            .await;
        (state == "succeeded").then_some(())
    })
    .await;
    assert_eq!(browser.count("li[data-event=redriven]").await, 1);
    assert_eq!(browser.count("li[data-event=dead_lettered]").await, 1);
    browser.screenshot("job.png").await;

    // Two dead letters left, and the redriven one is not among them.
    browser
        .goto(&format!("{base}/ui/queues/demo/dead-letters"))
        .await;
    browser.wait_for("table.dead").await;
    assert_eq!(browser.count("table.dead tbody tr").await, 2);
    assert_eq!(browser.count(&format!("tr[data-job='{id}']")).await, 0);

    // The queue's page lists it among recent jobs, and the worker that ran it.
    browser.goto(&format!("{base}/ui/queues/demo")).await;
    browser.wait_for("#queue-now").await;
    assert_eq!(
        browser
            .count(&format!(
                "#recent-title ~ .table-wrap a[href='/ui/jobs/{id}']"
            ))
            .await,
        1
    );
    assert!(browser.count("[data-workers] li").await >= 1);
    browser.screenshot("queue.png").await;

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
    browser.close().await;

    // Without JavaScript: the same pages read and act through plain forms.
    let plain = Browser::open(&driver, &chromium, "plain", false).await;
    plain
        .goto(&format!("{base}/ui/queues/demo/dead-letters"))
        .await;
    plain.type_into("#token", ADMIN_TOKEN).await;
    plain.click(".login button[type=submit]").await;
    plain.wait_for("table.dead").await;
    assert_eq!(
        plain.count("[data-select-all]").await,
        0,
        "the script did not run"
    );
    assert_eq!(plain.count("table.dead tbody tr").await, 2);
    let row = plain.wait_for("table.dead tbody tr").await;
    let second = plain
        .command(
            reqwest::Method::GET,
            &format!("/element/{row}/attribute/data-job"),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    plain
        .click(&format!("button[name=one][value='{second}']"))
        .await;
    plain.click("button[data-confirm]").await;
    plain.wait_for("[data-job-state]").await;
    // No live updates here: reload until the worker has run it.
    eventually_async("the job succeeded, seen by reloading", WAIT, || async {
        plain.goto(&format!("{base}/ui/jobs/{second}")).await;
        (plain.count("[data-job-state=succeeded]").await == 1).then_some(())
    })
    .await;
    plain.close().await;
    drop(driver);
    let _ = stop_gateway.send(());
    served.await.unwrap().unwrap();
}
