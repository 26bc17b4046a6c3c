//! The local demo behind `scripts/dev.sh`: declares the `demo` queue, enqueues jobs of every
//! kind (single, idempotent, delayed, a batch) and shows that JetStream stored them.
//!
//! Run: `NATS_URL=nats://127.0.0.1:4222 cargo run -p jobfleet-producer --example demo`

use std::time::{Duration, Instant};

use jobfleet_core::{QueueConfig, topology};
use jobfleet_producer::{ConnectOptions, Job, Producer};

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let options = ConnectOptions::from_env().name("jobfleet-demo");
    let producer = Producer::connect(options).await?;
    let declared = producer.declare_queue(&QueueConfig::new("demo")).await?;
    println!(
        "queue demo: {}",
        if declared.created {
            "created".to_owned()
        } else {
            format!("exists, changed {:?}", declared.changed)
        }
    );

    let single = producer
        .enqueue(
            "demo",
            Job::json(&serde_json::json!({"to": "ada@example.com", "template": "welcome"}))?
                .job_type("send_email"),
        )
        .await?;
    println!(
        "enqueued job {} at stream sequence {}",
        single.id, single.sequence
    );

    let first = producer
        .enqueue(
            "demo",
            Job::bytes(r#"{"order":42}"#).idempotency_key("order-42"),
        )
        .await?;
    let repeat = producer
        .enqueue(
            "demo",
            Job::bytes(r#"{"order":42}"#).idempotency_key("order-42"),
        )
        .await?;
    println!(
        "idempotency key order-42 -> job {} (repeat stored again: {})",
        first.id, !repeat.duplicate
    );

    let delayed = producer
        .enqueue(
            "demo",
            Job::bytes(r#"{"reminder":true}"#).delay(Duration::from_secs(30)),
        )
        .await?;
    println!(
        "delayed job {} runs at {}",
        delayed.id,
        delayed.run_at.map(|t| t.to_string()).unwrap_or_default()
    );

    let started = Instant::now();
    let batch = producer
        .enqueue_batch(
            "demo",
            (0..1000).map(|i| Job::json(&serde_json::json!({"n": i})).unwrap()),
        )
        .await?;
    let stored = batch.iter().filter(|r| r.is_ok()).count();
    println!("batch: {stored}/1000 stored in {:?}", started.elapsed());

    let js = producer.jetstream();
    let mut stream = js.get_stream("JOBFLEET_Q_demo").await?;
    let state = stream.info().await?.state.clone();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer(topology::WORKER_CONSUMER).await?;
    let info = consumer.info().await?;
    println!(
        "stream JOBFLEET_Q_demo: {} jobs stored ({} bytes); consumer `workers`: {} ready, {} waiting as schedules",
        state.messages,
        state.bytes,
        info.num_pending,
        state.messages.saturating_sub(info.num_pending),
    );
    let message = stream.get_raw_message(single.sequence).await?;
    println!("job {} on the wire:", single.sequence);
    for (name, values) in message.headers.iter() {
        for value in values {
            println!("  {name}: {}", value.as_str());
        }
    }
    println!("  payload: {}", String::from_utf8_lossy(&message.payload));
    Ok(())
}
