//! `jobfleet-worker-webhook`: delivers the HTTP requests its jobs describe.
//!
//! Each job's payload is a JSON request description (see [`request`]); the response decides
//! the job's outcome (see [`deliver`]). It replaces the "webhook queue in a database table"
//! pattern: retries, backoff, dead letters and the delivery history (audit events with status
//! and latency) come from jobfleet.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use jobfleet_worker::{JobContext, Worker, handler_fn};

mod deliver;
mod guard;
mod request;

use deliver::{Deliverer, Limits};

const AFTER_HELP: &str = "\
JOB PAYLOAD (JSON; unknown fields are refused):
  url           http or https URL (required)
  method        GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS (default POST)
  headers       object of header name -> string value (Host, Content-Length,
                Transfer-Encoding, Connection and the like, and Idempotency-Key,
                cannot be set)
  body          any JSON value, sent as JSON      \\
  body_text     a string, sent as is               > at most one of the three
  body_base64   standard base64, sent decoded     /
  timeout_ms    whole-request deadline (default --request-timeout, capped by
                --max-request-timeout and by the job's own attempt timeout)

  Example: {\"url\": \"https://example.com/hooks\", \"headers\": {\"X-Signature\": \"...\"},
            \"body\": {\"event\": \"order.paid\", \"order\": 42}}

EVERY REQUEST CARRIES
  Idempotency-Key: <job id>   the same on every attempt: deliveries are at least once
  User-Agent: jobfleet-webhook/<version>   (a job's own User-Agent header wins)
  traceparent, tracestate     the job's W3C trace context, when it has one

OUTCOMES
  2xx                         succeeded; status and latency_ms in the audit event
  408, 429, 5xx               retried: after Retry-After (capped by --max-retry-after)
                              if sent, else the queue's retry schedule
  timeout, connection error   retried under the queue's retry schedule
  3xx, other 4xx              dead-lettered at once (redirects are not followed: a
                              webhook URL that moved should be fixed at the source)
  invalid payload             dead-lettered at once, never retried
  Jobs that run out of attempts are dead-lettered with the last error.

SHUTDOWN
  SIGTERM or SIGINT stops pulling; requests in flight may finish within
  --grace-seconds; the rest are handed back and delivered again later (same
  Idempotency-Key). A second signal hands them back at once.";

/// Delivers the HTTP requests described by the jobs of a jobfleet queue.
#[derive(Debug, Parser)]
#[command(version, after_long_help = AFTER_HELP)]
struct Args {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Queue to work (it must have been declared).
    #[arg(long, env = "JOBFLEET_QUEUE", default_value = "webhooks")]
    queue: String,
    /// Requests in flight at once in this process (at least 1).
    #[arg(long, env = "JOBFLEET_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,
    /// Seconds requests in flight may take to finish after a shutdown signal.
    #[arg(long, env = "JOBFLEET_GRACE_SECONDS", default_value_t = 30.0)]
    grace_seconds: f64,
    /// Serve Prometheus metrics on this port (all interfaces).
    #[arg(long, env = "JOBFLEET_METRICS_PORT")]
    metrics_port: Option<u16>,
    /// Whole-request deadline (connect, send, response headers and the part of the body
    /// read) for jobs that give no `timeout_ms`, e.g. `30s`, `1m30s`.
    #[arg(long, env = "JOBFLEET_WEBHOOK_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Upper bound on any job's `timeout_ms`.
    #[arg(long, env = "JOBFLEET_WEBHOOK_MAX_REQUEST_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    max_request_timeout: Duration,
    /// Upper bound on the delay a receiver can ask for with `Retry-After`.
    #[arg(long, env = "JOBFLEET_WEBHOOK_MAX_RETRY_AFTER", default_value = "1h", value_parser = parse_duration)]
    max_retry_after: Duration,
    /// Refuse targets that are, or resolve to, loopback, private, link-local, CGNAT or other
    /// non-public addresses (dead-lettered, never retried), and ignore HTTP(S)_PROXY. Off by
    /// default because a webhook worker commonly calls internal services; turn it on when
    /// URLs come from users you do not trust.
    #[arg(long, env = "JOBFLEET_WEBHOOK_DENY_PRIVATE_NETWORKS")]
    deny_private_networks: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(duration)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let _telemetry = jobfleet_telemetry::init("jobfleet-worker-webhook");
    if let Err(problem) = check(&args) {
        eprintln!("jobfleet-worker-webhook: {problem}");
        return ExitCode::from(2);
    }
    // reqwest is built without a crypto provider of its own: use ring, as async-nats does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let deliverer = match Deliverer::new(Limits {
        default_timeout: args.request_timeout,
        max_timeout: args.max_request_timeout,
        max_retry_after: args.max_retry_after,
        deny_private_networks: args.deny_private_networks,
    }) {
        Ok(deliverer) => Arc::new(deliverer),
        Err(err) => {
            eprintln!("jobfleet-worker-webhook: cannot set up the HTTP client: {err}");
            return ExitCode::from(1);
        }
    };
    // Every URL of a comma-separated list, and the NATS_CREDS / NATS_TOKEN / TLS settings.
    let client = match jobfleet_producer::ConnectOptions::from_env()
        .urls(&args.nats_url)
        .name("jobfleet-worker-webhook")
        .connect_client()
        .await
    {
        Ok(client) => client,
        Err(err) => {
            eprintln!(
                "jobfleet-worker-webhook: cannot connect to NATS at {}: {err}",
                args.nats_url
            );
            return ExitCode::from(1);
        }
    };
    let handler = handler_fn(move |job: JobContext| {
        let deliverer = Arc::clone(&deliverer);
        async move { deliverer.deliver(&job).await }
    });
    let mut builder = Worker::builder(client, &args.queue);
    if let Some(port) = args.metrics_port {
        builder = builder.metrics_addr(std::net::SocketAddr::from(([0, 0, 0, 0], port)));
    }
    let worker = match builder
        .concurrency(args.concurrency)
        .grace_period(Duration::from_secs_f64(args.grace_seconds))
        .build(handler)
        .await
    {
        Ok(worker) => worker,
        Err(err) => {
            eprintln!("jobfleet-worker-webhook: {err}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        queue = %args.queue,
        concurrency = args.concurrency,
        deny_private_networks = args.deny_private_networks,
        "delivering webhooks"
    );
    let stats = worker.run_until_signal().await;
    tracing::info!(
        succeeded = stats.succeeded,
        retried = stats.retried,
        dead_lettered = stats.dead_lettered,
        handed_back = stats.released,
        "stopped"
    );
    ExitCode::SUCCESS
}

/// Checks what clap cannot.
fn check(args: &Args) -> Result<(), String> {
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".to_owned());
    }
    if !args.grace_seconds.is_finite() || args.grace_seconds < 0.0 {
        return Err("--grace-seconds must be a number >= 0".to_owned());
    }
    if args.request_timeout > args.max_request_timeout {
        return Err(format!(
            "--request-timeout ({}) exceeds --max-request-timeout ({})",
            humantime::format_duration(args.request_timeout),
            humantime::format_duration(args.max_request_timeout)
        ));
    }
    Ok(())
}
