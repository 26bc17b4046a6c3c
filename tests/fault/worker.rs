//! `jobfleet-fault-worker`: the worker process the fault suite starts, kills and restarts.
//!
//! Each job's JSON payload names how its handler behaves (`{"kind": "good"}` and the others
//! below). Every execution is appended, before the handler does anything else, as one line
//! `<unix ms> <job id> <attempt> <pid> <queue> <kind>` to the `--exec-log` file: a single `write` to
//! an `O_APPEND` file reaches the kernel at once, so the log survives SIGKILL and is the
//! suite's ground truth for how often each job really ran.
//!
//! With `--crash-at`, the runtime's failpoint hook exits the process without cleanup at
//! that point of settling a job's first attempt: code 87 after the dead-letter copy is
//! stored, 88 after the terminal audit event is stored.

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use jobfleet_worker::{Failpoint, HandlerError, JobContext, Outcome, Worker, handler_fn};

#[derive(Debug, Parser)]
struct Args {
    /// NATS server URL(s), comma-separated.
    #[arg(long)]
    nats_url: String,
    /// Queue to work.
    #[arg(long)]
    queue: String,
    /// Where every execution is appended.
    #[arg(long)]
    exec_log: std::path::PathBuf,
    /// Jobs at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Milliseconds a `good` job takes.
    #[arg(long, default_value_t = 10)]
    sleep_ms: u64,
    /// Grace period after SIGTERM, seconds.
    #[arg(long, default_value_t = 30.0)]
    grace_seconds: f64,
    /// Exit (code 87 or 88) at this point of settling a job's first attempt:
    /// `dead-letter-stored` or `terminal-stored`.
    #[arg(long)]
    crash_at: Option<String>,
    /// Crash only for one job in N (chosen by job id), not for every job reaching the point.
    #[arg(long, default_value_t = 1)]
    crash_one_in: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let crash_at = match args.crash_at.as_deref() {
        None => None,
        Some("dead-letter-stored") => Some(Failpoint::AfterDeadLetterStored),
        Some("terminal-stored") => Some(Failpoint::AfterTerminalEventStored),
        Some(other) => {
            eprintln!("jobfleet-fault-worker: unknown --crash-at {other}");
            return ExitCode::from(2);
        }
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.exec_log)
        .expect("open the execution log");
    let log = Arc::new(Mutex::new(log));
    let client = jobfleet_producer::ConnectOptions::new(&args.nats_url)
        .name("jobfleet-fault-worker")
        .connect_client()
        .await
        .expect("connect to NATS");
    let sleep = Duration::from_millis(args.sleep_ms);
    let pid = std::process::id();
    let handler = handler_fn(move |job: JobContext| {
        let log = Arc::clone(&log);
        async move {
            let kind = serde_json::from_slice::<serde_json::Value>(job.payload())
                .ok()
                .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "good".to_owned());
            let line = format!(
                "{} {} {} {pid} {} {kind}\n",
                unix_ms(),
                job.id(),
                job.attempt(),
                job.queue()
            );
            log.lock()
                .expect("log lock")
                .write_all(line.as_bytes())
                .expect("append to the execution log");
            let first = job.attempt() == 1;
            match kind.as_str() {
                "poison" => Err(HandlerError::permanent("poison job")),
                "panic" => panic!("handler panicked on job {}", job.id()),
                "exit-once" if first => {
                    eprintln!("jobfleet-fault-worker: exiting inside job {}", job.id());
                    std::process::exit(86);
                }
                "hang-once" if first => {
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                _ => {
                    tokio::time::sleep(sleep).await;
                    Ok(Outcome::Done)
                }
            }
        }
    });
    let mut builder = Worker::builder(client, &args.queue)
        .concurrency(args.concurrency)
        .grace_period(Duration::from_secs_f64(args.grace_seconds))
        .worker_id(format!("fault-worker:{pid}"));
    if let Some(point) = crash_at {
        let one_in = args.crash_one_in.max(1);
        builder = builder.failpoint(Arc::new(move |at, job, attempt| {
            if at == point && attempt == 1 && job.jitter_seed() % one_in == 0 {
                eprintln!("jobfleet-fault-worker: crashing at {at:?} of job {job}");
                std::process::exit(match at {
                    Failpoint::AfterDeadLetterStored => 87,
                    _ => 88,
                });
            }
        }));
    }
    let worker = builder.build(handler).await.expect("bind the worker");
    worker.run_until_signal().await;
    ExitCode::SUCCESS
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
