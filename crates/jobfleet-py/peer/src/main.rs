//! `jobfleet-py-peer`: the Rust side of the Python package's cross-language tests and of its
//! benchmark (`python/bench/drain.py`).
//!
//! ```text
//! jobfleet-py-peer enqueue URL QUEUE PAYLOAD [JOB_TYPE]   prints the job id
//! jobfleet-py-peer work URL QUEUE COUNT                   prints `<id> <payload>` per job, exits after COUNT
//! jobfleet-py-peer fill URL QUEUE COUNT BYTES             declares QUEUE, enqueues COUNT jobs of BYTES
//! jobfleet-py-peer drain URL QUEUE COUNT CONCURRENCY      a no-op Rust worker; prints the seconds from
//!                                                         its first start to COUNT succeeded
//! jobfleet-py-peer drain-raw URL COUNT BYTES              the raw baseline: plain JetStream publish,
//!                                                         then pull (batch 500) + ack; prints seconds
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_worker::{JobContext, Outcome, Worker, handler_fn};

mod bench;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["enqueue", url, queue, payload, rest @ ..] => {
            enqueue(url, queue, payload, rest.first().copied()).await
        }
        ["work", url, queue, count] => match count.parse() {
            Ok(count) => work(url, queue, count).await,
            Err(_) => Err(format!("not a number: {count}")),
        },
        ["fill", url, queue, count, bytes] => match (count.parse(), bytes.parse()) {
            (Ok(count), Ok(bytes)) => bench::fill(url, queue, count, bytes).await,
            _ => Err("COUNT and BYTES must be numbers".into()),
        },
        ["drain", url, queue, count, concurrency] => match (count.parse(), concurrency.parse()) {
            (Ok(count), Ok(concurrency)) => bench::drain(url, queue, count, concurrency).await,
            _ => Err("COUNT and CONCURRENCY must be numbers".into()),
        },
        ["drain-raw", url, count, bytes] => match (count.parse(), bytes.parse()) {
            (Ok(count), Ok(bytes)) => bench::drain_raw(url, count, bytes).await,
            _ => Err("COUNT and BYTES must be numbers".into()),
        },
        _ => Err("usage: jobfleet-py-peer enqueue|work|fill|drain|drain-raw ... (see the docs at the top of main.rs)".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("jobfleet-py-peer: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn enqueue(
    url: &str,
    queue: &str,
    payload: &str,
    job_type: Option<&str>,
) -> Result<(), String> {
    let producer = Producer::connect(ConnectOptions::new(url))
        .await
        .map_err(|e| e.to_string())?;
    let mut job = Job::bytes(payload.as_bytes().to_vec());
    if let Some(job_type) = job_type {
        job = job.job_type(job_type);
    }
    let enqueued = producer
        .enqueue(queue, job)
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", enqueued.id);
    Ok(())
}

async fn work(url: &str, queue: &str, count: usize) -> Result<(), String> {
    let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
    let seen = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let handler = {
        let seen = Arc::clone(&seen);
        handler_fn(move |job: JobContext| {
            let (seen, done_tx) = (Arc::clone(&seen), done_tx.clone());
            async move {
                println!("{} {}", job.id(), String::from_utf8_lossy(job.payload()));
                if seen.fetch_add(1, Ordering::SeqCst) + 1 >= count {
                    let _ = done_tx.send(true);
                }
                Ok(Outcome::Done)
            }
        })
    };
    let worker = Worker::builder(client, queue)
        .build(handler)
        .await
        .map_err(|e| e.to_string())?;
    let mut done_rx = done_rx;
    worker
        .run(async move {
            let _ = done_rx.wait_for(|done| *done).await;
        })
        .await;
    Ok(())
}
