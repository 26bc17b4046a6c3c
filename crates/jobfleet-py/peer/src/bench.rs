//! The Rust figures of the Python benchmark, measured the same way as the Python worker's:
//! from the first job's start to the last job's success, on a queue filled beforehand.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use futures::StreamExt;
use jobfleet_producer::{ConnectOptions, Job, Producer, QueueConfig};
use jobfleet_worker::{JobContext, Outcome, Worker, handler_fn};

/// Declares `queue` (every default: audit full, file storage, R1) and enqueues `count` jobs.
pub(crate) async fn fill(url: &str, queue: &str, count: usize, bytes: usize) -> Result<(), String> {
    let producer = Producer::connect(ConnectOptions::new(url))
        .await
        .map_err(|e| e.to_string())?;
    producer
        .declare_queue(&QueueConfig::new(queue))
        .await
        .map_err(|e| e.to_string())?;
    let payload = Bytes::from(vec![b'x'; bytes]);
    let results = producer
        .enqueue_batch(queue, (0..count).map(|_| Job::bytes(payload.clone())))
        .await
        .map_err(|e| e.to_string())?;
    match results.iter().filter(|r| r.is_err()).count() {
        0 => Ok(()),
        failed => Err(format!("{failed} of {count} jobs not enqueued")),
    }
}

/// Runs a no-op Rust worker on a filled queue; prints the seconds from its first start to
/// `count` succeeded.
pub(crate) async fn drain(
    url: &str,
    queue: &str,
    count: usize,
    concurrency: usize,
) -> Result<(), String> {
    let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
    let worker = Worker::builder(client, queue)
        .concurrency(concurrency)
        .build(handler_fn(|_job: JobContext| async { Ok(Outcome::Done) }))
        .await
        .map_err(|e| e.to_string())?;
    let stats = worker.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    while stats.snapshot().started == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    while stats.snapshot().succeeded < count as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!("{}", started.elapsed().as_secs_f64());
    let _ = stop.send(());
    let _ = running.await;
    Ok(())
}

/// The raw async-nats baseline: publish `count` messages to a WorkQueue stream, then pull
/// (batch 500) and ack each; prints the seconds the pull + ack took.
pub(crate) async fn drain_raw(url: &str, count: usize, bytes: usize) -> Result<(), String> {
    let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
    let js = jetstream::new(client);
    let name = format!("RAW_PY_BENCH_{}", std::process::id());
    let subject = format!("raw.pybench.{}", std::process::id());
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let payload = Bytes::from(vec![b'x'; bytes]);
    let mut acks = futures::stream::FuturesUnordered::new();
    for _ in 0..count {
        let ack = js
            .publish(subject.clone(), payload.clone())
            .await
            .map_err(|e| e.to_string())?;
        acks.push(std::future::IntoFuture::into_future(ack));
        if acks.len() >= 1024 {
            acks.next().await.transpose().map_err(|e| e.to_string())?;
        }
    }
    while let Some(ack) = acks.next().await {
        ack.map_err(|e| e.to_string())?;
    }
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("raw".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(500)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..count {
        let message = messages
            .next()
            .await
            .ok_or("the pull ended early")?
            .map_err(|e| e.to_string())?;
        message.ack().await.map_err(|e| e.to_string())?;
    }
    println!("{}", started.elapsed().as_secs_f64());
    drop(messages);
    let _ = js.delete_stream(&name).await;
    Ok(())
}
