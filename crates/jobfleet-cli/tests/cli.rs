//! The built `jobfleet` binary against a real nats-server: each subcommand's happy path and
//! a failing path, with exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use jobfleet_testkit::{NatsServer, eventually, eventually_async, send_signal};
use jobfleet_worker::{JobContext, Outcome, Worker, handler_fn};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn jobfleet(server_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .args(args)
        .env("NATS_URL", server_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// Runs and expects success; returns stdout parsed as JSON (the caller passes `--json`).
fn json_ok(server_url: &str, args: &[&str]) -> Value {
    let out = jobfleet(server_url, args);
    assert!(
        out.status.success(),
        "jobfleet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "jobfleet {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn exit_code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn declare(server: &NatsServer, toml: &str) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(toml.as_bytes()).unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let declared = json_ok(
        &server.url(),
        &["queue", "declare", "--file", &path, "--json"],
    );
    assert!(
        declared
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["queue"].is_string())
    );
}

const QUEUES: &str = r#"
[[queue]]
name = "mail"
[queue.worker]
max_attempts = 1

[[queue]]
name = "sms"
"#;

#[test]
fn queues_are_declared_listed_inspected_paused_and_purged() {
    let server = NatsServer::start();
    let url = server.url();
    declare(&server, QUEUES);
    let again = jobfleet(&url, &["queue", "declare", "--file", "/nonexistent.toml"]);
    assert_eq!(exit_code(&again), 2, "an unreadable file is a usage error");
    let mut bad = tempfile::NamedTempFile::new().unwrap();
    bad.write_all(b"[[queue]]\nname = \"x\"\ncolour = 1\n")
        .unwrap();
    let out = jobfleet(
        &url,
        &["queue", "declare", "--file", bad.path().to_str().unwrap()],
    );
    assert_eq!(exit_code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));

    let listed = json_ok(&url, &["queue", "ls", "--json"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mail", "sms"]);
    let human = jobfleet(&url, &["queue", "ls"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("QUEUE"));

    json_ok(&url, &["enqueue", "sms", "{\"n\": 1}", "--json"]);
    let info = json_ok(&url, &["queue", "info", "sms", "--json"]);
    assert_eq!(info["ready"], 1);
    assert_eq!(exit_code(&jobfleet(&url, &["queue", "info", "nope"])), 3);

    assert_eq!(
        json_ok(&url, &["queue", "pause", "sms", "--json"])["paused"],
        true
    );
    assert_eq!(
        json_ok(&url, &["queue", "info", "sms", "--json"])["paused"],
        true
    );
    assert_eq!(
        json_ok(&url, &["queue", "resume", "sms", "--json"])["paused"],
        false
    );

    assert_eq!(
        exit_code(&jobfleet(&url, &["queue", "purge", "sms"])),
        2,
        "purge needs --yes"
    );
    assert_eq!(
        json_ok(&url, &["queue", "purge", "sms", "--yes", "--json"])["purged"],
        1
    );
}

#[test]
fn enqueue_checks_its_input_and_reports_the_job() {
    let server = NatsServer::start();
    let url = server.url();
    declare(&server, QUEUES);
    let job = json_ok(
        &url,
        &[
            "enqueue",
            "mail",
            "{\"to\": \"a@b\"}",
            "--type",
            "welcome",
            "--delay",
            "1h",
            "--key",
            "k1",
            "--json",
        ],
    );
    assert!(job["run_at"].is_string());
    assert_eq!(job["duplicate"], false);
    let again = json_ok(
        &url,
        &[
            "enqueue",
            "mail",
            "{\"to\": \"a@b\"}",
            "--key",
            "k1",
            "--json",
        ],
    );
    assert_eq!(again["id"], job["id"]);
    assert_eq!(again["duplicate"], true);

    // Standard input, raw bytes with a content type.
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .args([
            "enqueue",
            "mail",
            "-",
            "--content-type",
            "text/plain",
            "--json",
        ])
        .env("NATS_URL", &url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"plain text")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());

    assert_eq!(
        exit_code(&jobfleet(&url, &["enqueue", "mail", "not json"])),
        2
    );
    assert_eq!(exit_code(&jobfleet(&url, &["enqueue", "nope", "{}"])), 3);
    assert_eq!(
        exit_code(&jobfleet(
            &url,
            &["enqueue", "mail", "{}", "--max-attempts", "0"]
        )),
        2
    );
    assert_eq!(
        exit_code(&jobfleet(
            &url,
            &["enqueue", "mail", "{}", "--delay", "soon"]
        )),
        2
    );
    let down = jobfleet("nats://127.0.0.1:1", &["enqueue", "mail", "{}"]);
    assert_eq!(
        exit_code(&down),
        4,
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn job_status_history_and_dead_letters_end_to_end() {
    let server = NatsServer::start();
    let url = server.url();
    declare(&server, QUEUES);
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let worker = Worker::builder(client, "mail")
        .build(handler_fn(|job: JobContext| async move {
            if job.meta().life > 0 {
                Ok(Outcome::Done)
            } else {
                Ok(Outcome::fail("mailbox does not exist"))
            }
        }))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));

    let id = json_ok(&url, &["enqueue", "mail", "{\"to\": \"x\"}", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually_async("the job to be dead-lettered", WAIT, || async {
        let status = json_ok(&url, &["job", "status", &id, "--json"]);
        (status["event"] == "dead_lettered").then_some(())
    })
    .await;
    let history = json_ok(&url, &["job", "history", &id, "--json"]);
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["enqueued", "started", "dead_lettered"]);
    let text = jobfleet(&url, &["job", "history", &id]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("dead_lettered"));
    assert_eq!(
        exit_code(&jobfleet(&url, &["job", "status", "not-an-id"])),
        2
    );
    let unknown = jobfleet_core::JobId::new().to_string();
    assert_eq!(exit_code(&jobfleet(&url, &["job", "status", &unknown])), 3);

    let dead = json_ok(&url, &["dlq", "ls", "mail", "--json"]);
    assert_eq!(dead[0]["id"], id.as_str());
    assert_eq!(dead[0]["reason"], "mailbox does not exist");
    assert!(
        json_ok(&url, &["dlq", "ls", "mail", "--reason", "other", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let shown = json_ok(&url, &["dlq", "show", "mail", &id, "--json"]);
    assert_eq!(shown["payload"]["to"], "x");
    assert_eq!(
        exit_code(&jobfleet(&url, &["dlq", "show", "mail", &unknown])),
        3
    );
    assert_eq!(
        exit_code(&jobfleet(&url, &["dlq", "redrive", "mail"])),
        2,
        "a selection is required"
    );
    assert_eq!(
        exit_code(&jobfleet(
            &url,
            &["dlq", "redrive", "mail", "--id", &unknown]
        )),
        3
    );
    assert_eq!(
        exit_code(&jobfleet(&url, &["dlq", "redrive", "mail", "--reason", ""])),
        2
    );
    assert_eq!(exit_code(&jobfleet(&url, &["stats", "--watch", "1e20"])), 2);

    let redriven = json_ok(&url, &["dlq", "redrive", "mail", "--id", &id, "--json"]);
    assert_eq!(redriven["redriven"][0], id.as_str());
    eventually_async("the redriven job to succeed", WAIT, || async {
        let status = json_ok(&url, &["job", "status", &id, "--json"]);
        (status["event"] == "succeeded").then_some(())
    })
    .await;

    let second = json_ok(&url, &["enqueue", "mail", "{}", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the second job to die", WAIT, || {
        (json_ok(&url, &["dlq", "ls", "mail", "--json"])
            .as_array()
            .unwrap()
            .len()
            == 1)
            .then_some(())
    });
    assert_eq!(
        exit_code(&jobfleet(&url, &["dlq", "purge", "mail"])),
        2,
        "purging all needs --yes"
    );
    let purged = json_ok(&url, &["dlq", "purge", "mail", "--yes", "--json"]);
    assert_eq!(purged["deleted"][0], second.as_str());

    let stats = json_ok(&url, &["stats", "--json"]);
    assert_eq!(stats.as_array().unwrap().len(), 2);
    assert_eq!(exit_code(&jobfleet(&url, &["stats", "nope"])), 3);
    let _ = stop.send(());
    running.await.unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child on drop, so a failing test leaves no process behind.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.0 request (the connection closes after it): status and body.
fn http(port: u16, method: &str, path: &str, json_body: Option<&str>) -> Option<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = json_body.unwrap_or("");
    let content_type = if json_body.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: x\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned(),
    ))
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http(port, "GET", path, None)
}

fn http_post_json(port: u16, path: &str, body: &str) -> Option<(u16, String)> {
    http(port, "POST", path, Some(body))
}

#[test]
fn gateway_serves_until_sigterm_and_refuses_a_bad_tokens_file() {
    let server = NatsServer::start();
    let url = server.url();
    let mut queues = tempfile::NamedTempFile::new().unwrap();
    queues.write_all(QUEUES.as_bytes()).unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .args([
            "gateway",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--queues-file",
        ])
        .arg(queues.path())
        .env("NATS_URL", &url)
        .spawn()
        .unwrap();
    let mut gateway = ChildGuard(child);
    eventually("the gateway to be ready", WAIT, || {
        http_get(port, "/readyz").filter(|(status, _)| *status == 200)
    });
    let (status, body) = http_post_json(port, "/v1/queues/sms/jobs", "{\"n\": 1}").unwrap();
    assert_eq!(status, 202, "{body}");
    send_signal(gateway.0.id(), "TERM");
    let status = eventually("the gateway to exit", WAIT, || {
        gateway.0.try_wait().unwrap()
    });
    assert!(status.success(), "{status}");

    let mut tokens = tempfile::NamedTempFile::new().unwrap();
    tokens
        .write_all(b"[[token]]\nname = \"x\"\nsha256 = \"short\"\nscopes = [\"read\"]\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .args(["gateway", "--listen", "127.0.0.1:0", "--tokens-file"])
        .arg(tokens.path())
        .env("NATS_URL", &url)
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256"));
}

#[test]
fn dev_runs_a_whole_fleet_where_a_broken_job_is_found_and_redriven() {
    let data = tempfile::tempdir().unwrap();
    let (http, nats, monitor) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .args([
            "dev",
            "--listen",
            &format!("127.0.0.1:{http}"),
            "--data-dir",
        ])
        .arg(data.path())
        .args([
            "--nats-port",
            &nats.to_string(),
            "--nats-monitor-port",
            &monitor.to_string(),
        ])
        .env_remove("NATS_URL")
        .env("NATS_SERVER_BIN", jobfleet_testkit_binary())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut dev = ChildGuard(child);
    eventually("the dev fleet's gateway", WAIT, || {
        http_get(http, "/readyz").filter(|(status, _)| *status == 200)
    });
    let (status, body) = http_post_json(http, "/v1/queues/demo/jobs", "{\"fail\": true}").unwrap();
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the broken job in the dead letters", WAIT, || {
        http_get(http, &format!("/v1/queues/demo/dead-letters/{id}")).filter(|(s, _)| *s == 200)
    });
    let (status, body) = http_post_json(
        http,
        &format!("/v1/queues/demo/dead-letters/{id}/redrive"),
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    eventually("the redriven job to succeed", WAIT, || {
        http_get(http, &format!("/v1/jobs/{id}"))
            .filter(|(_, body)| body.contains("\"state\":\"succeeded\""))
    });
    let nats_url = format!("nats://127.0.0.1:{nats}");
    let listed = json_ok(&nats_url, &["queue", "ls", "--json"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "demo")
    );

    send_signal(dev.0.id(), "TERM");
    let status = eventually("dev to exit", WAIT, || dev.0.try_wait().unwrap());
    assert!(status.success(), "{status}");
    // Its NATS server went with it.
    assert!(std::net::TcpStream::connect(("127.0.0.1", nats)).is_err());
    assert!(data.path().join("nats.log").is_file());
}

/// The nats-server the test kit uses, for `dev` to start.
fn jobfleet_testkit_binary() -> std::path::PathBuf {
    jobfleet_testkit::nats_server_binary()
}
