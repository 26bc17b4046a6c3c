//! `jobfleet-worker-noop`: works a queue with a handler that does nothing, or sleeps, fails
//! at a given rate, or kills its own process on request. For demos, benchmarks and the fault
//! tests that need a real worker process to kill.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jobfleet_worker::{HandlerError, JobContext, Outcome, Worker, handler_fn};

/// Works a jobfleet queue with a no-op handler.
///
/// SIGTERM or SIGINT stops pulling and lets running jobs finish within the grace period; a
/// second signal hands them back at once.
///
/// Logs go to stderr. Spans (one per job, a child of the producer's W3C traceparent) are
/// exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set (variables at the end).
#[derive(Debug, Parser)]
#[command(version, after_long_help = jobfleet_telemetry::ENV_HELP)]
struct Args {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Queue to work.
    #[arg(long, env = "JOBFLEET_QUEUE", default_value = "demo")]
    queue: String,
    /// Jobs run at once by this process.
    #[arg(long, env = "JOBFLEET_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,
    /// Seconds running jobs may take to finish after a shutdown signal.
    #[arg(long, env = "JOBFLEET_GRACE_SECONDS", default_value_t = 30.0)]
    grace_seconds: f64,
    /// Milliseconds each job sleeps.
    #[arg(long, default_value_t = 0)]
    sleep_ms: u64,
    /// Fraction of attempts (0.0 to 1.0) that fail with a retryable error.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Serve Prometheus metrics on this port (all interfaces).
    #[arg(long, env = "JOBFLEET_METRICS_PORT")]
    metrics_port: Option<u16>,
    /// Kill this process (exit code 86, no cleanup) when a job's payload contains this text:
    /// a crash inside a handler, for fault tests.
    #[arg(long)]
    crash_on: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Dropped when main returns: flushes the spans not exported yet.
    let _telemetry = jobfleet_telemetry::init("jobfleet-worker-noop");
    if !(0.0..=1.0).contains(&args.fail_rate)
        || !args.grace_seconds.is_finite()
        || args.grace_seconds < 0.0
    {
        eprintln!("jobfleet-worker-noop: --fail-rate must be in 0..=1 and --grace-seconds >= 0");
        return ExitCode::from(2);
    }
    // Every URL of a comma-separated list, and the NATS_CREDS / NATS_TOKEN / TLS settings.
    let client = match jobfleet_producer::ConnectOptions::from_env()
        .urls(&args.nats_url)
        .name("jobfleet-worker-noop")
        .connect_client()
        .await
    {
        Ok(client) => client,
        Err(err) => {
            eprintln!(
                "jobfleet-worker-noop: cannot connect to NATS at {}: {err}",
                args.nats_url
            );
            return ExitCode::from(1);
        }
    };
    let sleep = Duration::from_millis(args.sleep_ms);
    let fail_rate = args.fail_rate;
    let crash_on = args.crash_on.clone();
    let handler = handler_fn(move |job: JobContext| {
        let crash_on = crash_on.clone();
        async move {
            if let Some(marker) = &crash_on
                && String::from_utf8_lossy(job.payload()).contains(marker.as_str())
            {
                eprintln!(
                    "jobfleet-worker-noop: crashing on job {} as asked",
                    job.id()
                );
                std::process::exit(86);
            }
            if !sleep.is_zero() {
                tokio::time::sleep(sleep).await;
            }
            if fail_rate > 0.0
                && unit(job.id().jitter_seed() ^ u64::from(job.attempt())) < fail_rate
            {
                return Err(HandlerError::new("injected failure"));
            }
            Ok(Outcome::Done)
        }
    });
    let mut builder = Worker::builder(client, &args.queue);
    if let Some(port) = args.metrics_port {
        builder = builder.metrics_addr(std::net::SocketAddr::from(([0, 0, 0, 0], port)));
    }
    let worker = builder
        .concurrency(args.concurrency)
        .grace_period(Duration::from_secs_f64(args.grace_seconds))
        .build(handler)
        .await;
    let worker = match worker {
        Ok(worker) => worker,
        Err(err) => {
            eprintln!("jobfleet-worker-noop: {err}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "jobfleet-worker-noop: working queue {} with {} slots",
        args.queue, args.concurrency
    );
    let stats = worker.run_until_signal().await;
    eprintln!(
        "jobfleet-worker-noop: stopped; succeeded {}, retried {}, dead-lettered {}, handed back {}",
        stats.succeeded, stats.retried, stats.dead_lettered, stats.released
    );
    ExitCode::SUCCESS
}

/// A deterministic number in [0, 1) per job and attempt, so failures are reproducible.
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}
