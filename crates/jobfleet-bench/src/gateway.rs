//! HTTP enqueue throughput: the gateway's single-job and batch endpoints, driven by `wrk`
//! (keep-alive, many connections), beside raw async-nats publishes in the same run.

use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use jobfleet_core::{AuditLevel, QueueConfig};
use jobfleet_gateway::{GatewayConfig, GatewayState};
use jobfleet_producer::{ConnectOptions, Producer};

use crate::Params;
use crate::raw::publish_windowed;
use crate::report::Report;

const RAW_ASYNC: &str = "raw publish, 1024 acks in flight (jobs/s)";
const SINGLE: &str = "POST /jobs, one job per request (req/s)";
const SINGLE_AUDIT: &str = "POST /jobs, audit full (req/s)";
const BATCH: &str = "POST /batch, 100 jobs per request (jobs/s)";
const BATCH_AUDIT: &str = "POST /batch, audit full (jobs/s)";
const BATCH_SIZE: usize = 100;
const CONNECTIONS: &str = "64";
const DURATION: &str = "8s";

fn wrk_available() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

/// Runs wrk with a POST body; returns completed 2xx requests per second.
fn wrk(url: &str, body: &str) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("post.lua");
    let escaped = body.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{escaped}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )
    .expect("write wrk script");
    let out = Command::new("wrk")
        .args(["-t2", "-c", CONNECTIONS, "-d", DURATION, "-s"])
        .arg(&script)
        .arg(url)
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let number_after = |label: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let rps =
        number_after("Requests/sec").unwrap_or_else(|| panic!("wrk printed no rate:\n{text}"));
    let non_2xx = number_after("Non-2xx or 3xx responses").unwrap_or(0.0);
    let errors = text.lines().any(|l| l.contains("Socket errors"));
    assert!(
        non_2xx == 0.0 && !errors,
        "wrk saw failures (the figure would be meaningless):\n{text}"
    );
    rps
}

pub(crate) async fn run(client: async_nats::Client, params: Params) {
    if !wrk_available() {
        eprintln!("jobfleet-bench gateway needs `wrk` (Debian: apt-get install wrk)");
        std::process::exit(2);
    }
    let js = jetstream::new(client.clone());
    let producer = Producer::with_client(client, &ConnectOptions::new("unused"));
    for (name, audit) in [
        ("bench_http", AuditLevel::Off),
        ("bench_http_audit", AuditLevel::Full),
    ] {
        let mut queue = QueueConfig::new(name);
        queue.audit.level = audit;
        producer.declare_queue(&queue).await.expect("declare");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let state = GatewayState::new(producer.clone(), GatewayConfig::default());
    tokio::spawn(jobfleet_gateway::serve(
        listener,
        state,
        std::future::pending(),
    ));

    let payload = crate::enqueue::payload_of(params.payload);
    let payload_text = String::from_utf8(payload.clone()).expect("ASCII payload");
    let batch = format!(
        "{{\"jobs\": [{}]}}",
        vec![format!("{{\"payload\": {payload_text}}}"); BATCH_SIZE].join(",")
    );
    println!(
        "gateway benchmark: wrk -t2 -c{CONNECTIONS} -d{DURATION} (keep-alive) per measurement, {} rounds, \
         {}-byte payload, batches of {BATCH_SIZE}; raw baseline publishes {} jobs; \
         gateway, wrk and nats-server share this machine's cores",
        params.rounds, params.payload, params.jobs
    );
    let mut report = Report::default();
    let raw_payload = Bytes::from(payload);
    for round in 0..params.rounds {
        let started = Instant::now();
        publish_windowed(
            &js,
            "jobfleet.q.bench_http.ready",
            &raw_payload,
            params.jobs,
            true,
        )
        .await;
        report.record(RAW_ASYNC, params.jobs, started.elapsed().as_secs_f64());
        for (name, queue, body, per_request) in [
            (SINGLE, "bench_http", &payload_text, 1),
            (BATCH, "bench_http", &batch, BATCH_SIZE),
            (SINGLE_AUDIT, "bench_http_audit", &payload_text, 1),
            (BATCH_AUDIT, "bench_http_audit", &batch, BATCH_SIZE),
        ] {
            let url = if per_request == 1 {
                format!("{base}/v1/queues/{queue}/jobs")
            } else {
                format!("{base}/v1/queues/{queue}/batch")
            };
            let body = body.clone();
            let rate = tokio::task::spawn_blocking(move || wrk(&url, &body))
                .await
                .expect("wrk task");
            // `record` takes a count and seconds; one second at `rate`.
            report.record(name, (rate * per_request as f64).round() as usize, 1.0);
        }
        for queue in ["bench_http", "bench_http_audit"] {
            let _ = jobfleet_producer::purge_queue(&js, queue).await;
        }
        let _ = js
            .delete_stream(jobfleet_core::topology::AUDIT_STREAM)
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        eprintln!("round {} of {} done", round + 1, params.rounds);
    }
    report.print("HTTP enqueue throughput (median of rounds)", |_| RAW_ASYNC);
    let single = report.median(SINGLE) / report.median(RAW_ASYNC);
    let batch = report.median(BATCH) / report.median(RAW_ASYNC);
    println!(
        "\nsingle-job endpoint req/s / raw async publish jobs/s = {single:.2} (target >= 0.15)"
    );
    println!("batch endpoint jobs/s / raw async publish jobs/s = {batch:.2} (target >= 0.50)");
}
