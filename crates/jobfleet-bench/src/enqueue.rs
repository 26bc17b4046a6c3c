//! Enqueue throughput: jobfleet's single and batch enqueue beside raw async-nats publishes.

use std::time::Instant;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use jobfleet_core::{AuditLevel, QueueConfig, topology};
use jobfleet_producer::{ConnectOptions, Job, Producer};

use crate::Params;
use crate::raw::publish_windowed;

use crate::report::Report;

const RAW_SYNC: &str = "raw publish, await each ack";
const RAW_ASYNC: &str = "raw publish, 1024 acks in flight";
const RAW_ASYNC_MSG_ID: &str = "raw publish + Nats-Msg-Id, 1024 in flight";
const JF_SINGLE: &str = "jobfleet enqueue, one at a time (audit off)";
const JF_SINGLE_AUDIT: &str = "jobfleet enqueue, one at a time (audit full)";
const JF_BATCH: &str = "jobfleet enqueue_batch (audit off)";
const JF_BATCH_AUDIT: &str = "jobfleet enqueue_batch (audit full)";

pub(crate) async fn run(client: async_nats::Client, params: Params) {
    let js = jetstream::new(client.clone());
    let producer = Producer::with_client(client, &ConnectOptions::new("unused"));
    let payload = Bytes::from(payload_of(params.payload));
    println!(
        "enqueue benchmark: {} batch jobs and {} single jobs per round, {} rounds, {}-byte payload, file storage, R1",
        params.jobs, params.single_jobs, params.rounds, params.payload
    );
    let mut report = Report::default();
    for round in 0..params.rounds {
        // Alternate the order so neither side always runs on a warmer server.
        let raw_first = round % 2 == 0;
        for step in 0..2 {
            if (step == 0) == raw_first {
                raw(&js, round, &payload, params, &mut report).await;
            } else {
                jobfleet(&producer, round, &payload, params, &mut report).await;
            }
        }
        let _ = js.delete_stream(topology::AUDIT_STREAM).await;
        eprintln!("round {} of {} done", round + 1, params.rounds);
    }
    report.print("enqueue throughput (jobs/s, median of rounds)", |name| {
        if name.contains("one at a time") || name == RAW_SYNC {
            RAW_SYNC
        } else {
            RAW_ASYNC
        }
    });
    let batch_ratio = report.median(JF_BATCH) / report.median(RAW_ASYNC);
    println!("\nbatch enqueue (audit off) / raw async publish = {batch_ratio:.2} (target >= 0.80)");
}

pub(crate) fn payload_of(size: usize) -> Vec<u8> {
    let mut body = br#"{"to":"user@example.com","template":"welcome","pad":""#.to_vec();
    while body.len() + 2 < size {
        body.push(b'x');
    }
    body.extend_from_slice(br#""}"#);
    body
}

async fn raw_stream(js: &jetstream::Context, name: &str, subject: &str) {
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .expect("create raw stream");
}

async fn raw(
    js: &jetstream::Context,
    round: usize,
    payload: &Bytes,
    params: Params,
    report: &mut Report,
) {
    let (name, subject) = (format!("RAW_SYNC_{round}"), format!("raw.sync.{round}"));
    raw_stream(js, &name, &subject).await;
    let started = Instant::now();
    for _ in 0..params.single_jobs {
        js.publish(subject.clone(), payload.clone())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    report.record(
        RAW_SYNC,
        params.single_jobs,
        started.elapsed().as_secs_f64(),
    );
    let _ = js.delete_stream(&name).await;

    for (label, stream, msg_id) in [
        (RAW_ASYNC, "ASYNC", false),
        (RAW_ASYNC_MSG_ID, "MSGID", true),
    ] {
        // With a message id per publish, as every jobfleet job has (what lets a timed-out
        // publish be retried safely), this isolates the server's de-duplication cost.
        let (name, subject) = (
            format!("RAW_{stream}_{round}"),
            format!("raw.{}.{round}", stream.to_lowercase()),
        );
        raw_stream(js, &name, &subject).await;
        let started = Instant::now();
        publish_windowed(js, &subject, payload, params.jobs, msg_id).await;
        report.record(label, params.jobs, started.elapsed().as_secs_f64());
        let _ = js.delete_stream(&name).await;
    }
}

async fn jobfleet(
    producer: &Producer,
    round: usize,
    payload: &Bytes,
    params: Params,
    report: &mut Report,
) {
    for (audit, single_name, batch_name) in [
        (AuditLevel::Off, JF_SINGLE, JF_BATCH),
        (AuditLevel::Full, JF_SINGLE_AUDIT, JF_BATCH_AUDIT),
    ] {
        let queue = format!("bench_{}_{round}", audit.as_str());
        let mut config = QueueConfig::new(&queue);
        config.audit.level = audit;
        producer.declare_queue(&config).await.expect("declare");

        let started = Instant::now();
        for _ in 0..params.single_jobs {
            producer
                .enqueue(&queue, Job::bytes(payload.clone()))
                .await
                .expect("enqueue");
        }
        report.record(
            single_name,
            params.single_jobs,
            started.elapsed().as_secs_f64(),
        );

        let jobs: Vec<Job> = (0..params.jobs)
            .map(|_| Job::bytes(payload.clone()))
            .collect();
        let started = Instant::now();
        let results = producer.enqueue_batch(&queue, jobs).await.expect("batch");
        let elapsed = started.elapsed().as_secs_f64();
        assert!(results.iter().all(Result::is_ok), "every batch job stored");
        report.record(batch_name, params.jobs, elapsed);

        let js = producer.jetstream();
        let _ = js.delete_stream(format!("JOBFLEET_Q_{queue}")).await;
        let _ = js.delete_stream(format!("JOBFLEET_DLQ_{queue}")).await;
    }
}
