//! `jobfleet dev`: a whole local fleet in one process tree.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use jobfleet_core::{QueueConfig, QueueFile, RetrySchedule};
use jobfleet_producer::Producer;
use jobfleet_worker::{HandlerError, JobContext, Outcome, Worker, handler_fn};
use tokio_util::sync::CancellationToken;

use crate::args::{DevArgs, GatewayArgs, Global};
use crate::error::CliError;
use crate::gateway::{declare_from_file, shutdown_signal};
use crate::nats_server::LocalServer;
use crate::output::Output;

/// The queues `dev` declares when no file is given.
fn demo_queues() -> QueueFile {
    let mut demo = QueueConfig::new("demo");
    demo.description = Some("demo jobs: see `jobfleet dev --help`".to_owned());
    demo.worker.max_attempts = 3;
    demo.worker.ack_wait = Duration::from_secs(10);
    demo.worker.backoff = RetrySchedule {
        initial: Duration::from_secs(1),
        factor: 2.0,
        max: Duration::from_secs(30),
        jitter: 0.1,
    };
    let mut webhooks = QueueConfig::new("webhooks");
    webhooks.description = Some("HTTP deliveries (jobfleet-worker-webhook)".to_owned());
    let mut file = QueueFile::default();
    file.queue = vec![demo, webhooks];
    file
}

/// The demo handler. Payload fields, all optional:
/// - `"sleep_ms": n`: take this long;
/// - `"fail": true`: fail permanently (dead-lettered) unless the job was redriven, as if
///   the bug had been fixed meanwhile, so the README's redrive walk-through ends well;
/// - `"flaky": n`: fail the first `n` attempts with a retryable error.
fn demo_handler() -> impl jobfleet_worker::Handler {
    handler_fn(|job: JobContext| async move {
        let payload: serde_json::Value = serde_json::from_slice(job.payload()).unwrap_or_default();
        if let Some(ms) = payload["sleep_ms"].as_u64() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(ms.min(600_000))) => {}
                () = job.cancelled() => return Err(HandlerError::new("cancelled")),
            }
        }
        if payload["fail"] == serde_json::Value::Bool(true) && job.meta().life == 0 {
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
        Ok(Outcome::DoneWith(serde_json::json!({"echo": payload})))
    })
}

/// The webhook worker binary next to this executable, if it was built.
fn webhook_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("jobfleet-worker-webhook");
    candidate.is_file().then_some(candidate)
}

pub(crate) async fn run(args: DevArgs, global: &Global, out: &Output) -> Result<(), CliError> {
    let given = global
        .nats_url
        .as_deref()
        .is_some_and(|url| !url.trim().is_empty());
    let server = match given {
        true => None,
        false => {
            Some(LocalServer::start(&args.data_dir, args.nats_port, args.nats_monitor_port).await?)
        }
    };
    let url = server
        .as_ref()
        .map_or_else(|| global.nats_url().to_owned(), |s| s.url.clone());
    let result = run_fleet(
        &args,
        &url,
        server.as_ref().map(|s| s.monitor_url.clone()),
        out,
    )
    .await;
    if let Some(server) = server {
        server.stop().await;
    }
    result
}

async fn run_fleet(
    args: &DevArgs,
    url: &str,
    monitor: Option<String>,
    out: &Output,
) -> Result<(), CliError> {
    let options = jobfleet_producer::ConnectOptions::from_env()
        .urls(url)
        .name("jobfleet-dev");
    let producer = Producer::connect(options).await?;
    match &args.queues_file {
        Some(path) => declare_from_file(&producer, path).await?,
        None => {
            producer.declare_queues(&demo_queues()).await?;
        }
    }
    let stop = CancellationToken::new();
    if let Some(after) = args.exit_after {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            stop.cancel();
        });
    }

    // The demo worker, in this process.
    let client = jobfleet_producer::ConnectOptions::from_env()
        .urls(url)
        .name("jobfleet-dev-worker")
        .connect_client()
        .await?;
    let has_demo = jobfleet_producer::list_queues(producer.jetstream())
        .await?
        .iter()
        .any(|q| q == "demo");
    let worker = if has_demo {
        let worker = Worker::builder(client, "demo")
            .concurrency(args.concurrency)
            .grace_period(Duration::from_secs(5))
            .build(demo_handler())
            .await?;
        let stop = stop.clone();
        Some(tokio::spawn(
            worker.run(async move { stop.cancelled().await }),
        ))
    } else {
        None
    };

    // The webhook worker, as a child process, when it was built beside us.
    let mut webhook = match webhook_binary() {
        Some(binary) => tokio::process::Command::new(binary)
            .args(["--queue", "webhooks", "--nats-url", url])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok(),
        None => None,
    };

    let gateway_args = GatewayArgs {
        listen: args.listen,
        queues_file: None,
        tokens_file: None,
        body_limit: jobfleet_gateway::DEFAULT_BODY_LIMIT,
        max_batch: jobfleet_gateway::DEFAULT_MAX_BATCH,
        header_read_timeout: jobfleet_gateway::DEFAULT_HEADER_READ_TIMEOUT,
        body_read_timeout: jobfleet_gateway::DEFAULT_BODY_READ_TIMEOUT,
        max_connections: jobfleet_gateway::DEFAULT_MAX_CONNECTIONS,
    };
    let base = format!("http://{}", args.listen);
    let summary = serde_json::json!({
        "nats": url,
        "nats_monitor": monitor,
        "gateway": base,
        "dashboard": format!("{base}/ui"),
        "workers": {
            "demo": has_demo,
            "webhooks": webhook.is_some(),
        },
    });
    out.print(&summary, || {
        let mut text = String::from("jobfleet dev is running\n");
        text.push_str(&format!("  NATS      {url}"));
        if let Some(m) = &monitor {
            text.push_str(&format!("  (monitoring {m}, data in {})", args.data_dir.display()));
        }
        text.push_str(&format!(
            "\n  dashboard {base}/ui\n  gateway   {base}   API {base}/openapi.json   metrics {base}/metrics\n"
        ));
        if has_demo {
            text.push_str(&format!("  worker    demo (in this process, {} at once)\n", args.concurrency));
        }
        match &webhook {
            Some(_) => text.push_str("  worker    webhooks (jobfleet-worker-webhook)\n"),
            None => text.push_str("  worker    webhooks: not started (build jobfleet-worker-webhook beside jobfleet)\n"),
        }
        text.push_str(&format!(
            "try:\n  curl -s -X POST {base}/v1/queues/demo/jobs -H 'content-type: application/json' -d '{{\"hello\": \"world\"}}'\n  \
             jobfleet stats --watch 1\nCtrl-C stops everything.\n"
        ));
        text
    });

    let signal_stop = stop.clone();
    let served = crate::gateway::serve(&gateway_args, producer, async move {
        shutdown_signal(signal_stop.clone()).await;
        signal_stop.cancel();
    })
    .await;
    stop.cancel();
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    if let Some(child) = webhook.as_mut() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    served
}
