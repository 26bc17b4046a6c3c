//! Worker drain rate and enqueue-to-start latency, beside a raw async-nats pull + ack loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use futures::StreamExt;
use jobfleet_core::{AuditLevel, QueueConfig, topology};
use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_worker::{JobContext, Outcome, Worker, handler_fn};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::Params;
use crate::raw::publish_windowed;
use crate::report::Report;

const RAW: &str = "raw pull (batch 500) + ack";
const CONCURRENCY: usize = 256;

fn name_of(level: AuditLevel) -> &'static str {
    match level {
        AuditLevel::Off => "jobfleet worker, no-op handler (audit off)",
        AuditLevel::Terminal => "jobfleet worker, no-op handler (audit terminal)",
        _ => "jobfleet worker, no-op handler (audit full)",
    }
}

pub(crate) async fn run(client: async_nats::Client, params: Params) {
    let js = jetstream::new(client.clone());
    let producer = Producer::with_client(client.clone(), &ConnectOptions::new("unused"));
    let payload = Bytes::from(vec![b'x'; params.payload]);
    println!(
        "drain benchmark: {} jobs per run, {} rounds, {}-byte payload, worker concurrency {CONCURRENCY}, file storage, R1",
        params.jobs, params.rounds, params.payload
    );
    let mut report = Report::default();
    // JOBFLEET_BENCH_ONLY=off measures only the audit-off worker (for profiling).
    let only_off = std::env::var("JOBFLEET_BENCH_ONLY").is_ok_and(|v| v == "off");
    let levels: &[AuditLevel] = if only_off {
        &[AuditLevel::Off]
    } else {
        &[AuditLevel::Off, AuditLevel::Terminal, AuditLevel::Full]
    };
    for round in 0..params.rounds {
        if !only_off {
            raw(&js, round, &payload, params.jobs, &mut report).await;
        }
        for &level in levels {
            jobfleet(
                &client,
                &producer,
                round,
                level,
                &payload,
                params.jobs,
                &mut report,
            )
            .await;
        }
        let _ = js.delete_stream(topology::AUDIT_STREAM).await;
        eprintln!("round {} of {} done", round + 1, params.rounds);
    }
    report.print("drain rate (jobs/s, median of rounds)", |_| RAW);
    if only_off {
        return;
    }
    for (level, target) in [(AuditLevel::Off, 0.85), (AuditLevel::Terminal, 0.6)] {
        let ratio = report.median(name_of(level)) / report.median(RAW);
        println!("{} / raw = {ratio:.2} (target >= {target})", name_of(level));
    }
    for rate in [2_000u32, 10_000] {
        latency(&client, &producer, rate, &payload).await;
    }
}

async fn raw(
    js: &jetstream::Context,
    round: usize,
    payload: &Bytes,
    jobs: usize,
    report: &mut Report,
) {
    let name = format!("RAW_DRAIN_{round}");
    let _ = js.delete_stream(&name).await;
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("raw.drain.{round}")],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("raw stream");
    publish_windowed(js, &format!("raw.drain.{round}"), payload, jobs, false).await;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("raw".into()),
            ..Default::default()
        })
        .await
        .expect("raw consumer");
    let started = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(500)
        .messages()
        .await
        .expect("pull");
    for _ in 0..jobs {
        let message = messages.next().await.expect("a message").expect("no error");
        message.ack().await.expect("ack");
    }
    report.record(RAW, jobs, started.elapsed().as_secs_f64());
    drop(messages);
    let _ = js.delete_stream(&name).await;
}

async fn jobfleet(
    client: &async_nats::Client,
    producer: &Producer,
    round: usize,
    level: AuditLevel,
    payload: &Bytes,
    jobs: usize,
    report: &mut Report,
) {
    let queue = format!("drain_{}_{round}", level.as_str());
    let mut config = QueueConfig::new(&queue);
    config.audit.level = level;
    producer.declare_queue(&config).await.expect("declare");
    let results = producer
        .enqueue_batch(&queue, (0..jobs).map(|_| Job::bytes(payload.clone())))
        .await
        .expect("fill");
    assert!(results.iter().all(Result::is_ok));

    let worker = Worker::builder(client.clone(), &queue)
        .concurrency(CONCURRENCY)
        .build(handler_fn(|_job: JobContext| async { Ok(Outcome::Done) }))
        .await
        .expect("worker");
    let stats = worker.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    while stats.snapshot().succeeded < jobs as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    report.record(name_of(level), jobs, started.elapsed().as_secs_f64());
    let _ = stop.send(());
    let _ = running.await;
    let js = producer.jetstream();
    let _ = js.delete_stream(format!("JOBFLEET_Q_{queue}")).await;
    let _ = js.delete_stream(format!("JOBFLEET_DLQ_{queue}")).await;
}

/// Enqueues at `rate` jobs/s for 3 s with a worker running, and prints the time from each
/// job's storage (its JetStream timestamp) to its handler's start.
async fn latency(client: &async_nats::Client, producer: &Producer, rate: u32, payload: &Bytes) {
    let queue = format!("latency_{rate}");
    let mut config = QueueConfig::new(&queue);
    config.audit.level = AuditLevel::Terminal;
    producer.declare_queue(&config).await.expect("declare");
    let (tx, mut rx) = mpsc::unbounded_channel::<Duration>();
    let tx = Arc::new(tx);
    let handler = handler_fn(move |job: JobContext| {
        let waited = OffsetDateTime::now_utc() - job.enqueued_at();
        let _ = tx.send(Duration::try_from(waited).unwrap_or_default());
        async { Ok(Outcome::Done) }
    });
    let worker = Worker::builder(client.clone(), &queue)
        .concurrency(CONCURRENCY)
        .build(handler)
        .await
        .expect("worker");
    let stats = worker.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    // Paced in 1 ms ticks, each enqueuing rate/1000 jobs as one pipelined batch.
    let per_tick = (rate / 1000).max(1) as usize;
    let ticks = 3000;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0usize;
    for _ in 0..ticks {
        ticker.tick().await;
        let batch = (0..per_tick).map(|_| Job::bytes(payload.clone()));
        sent += producer
            .enqueue_batch(&queue, batch)
            .await
            .expect("enqueue")
            .iter()
            .filter(|r| r.is_ok())
            .count();
    }
    while stats.snapshot().succeeded < sent as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = stop.send(());
    let _ = running.await;
    let mut waits = Vec::with_capacity(sent);
    while let Ok(wait) = rx.try_recv() {
        waits.push(wait);
    }
    waits.sort_unstable();
    let at = |q: f64| waits[((waits.len() as f64 * q) as usize).min(waits.len() - 1)];
    println!(
        "enqueue-to-start at {rate} jobs/s target ({} jobs in {:.1} s): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        waits.len(),
        ticks as f64 / 1000.0,
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        waits.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    let js = producer.jetstream();
    let _ = js.delete_stream(format!("JOBFLEET_Q_{queue}")).await;
    let _ = js.delete_stream(format!("JOBFLEET_DLQ_{queue}")).await;
}
