//! The cost of durability settings: enqueue and drain throughput on four deployments started
//! in the same run, each reported as jobs/s and as a ratio of the first.
//!
//! - (a) one node, R1, default fsync (`sync_interval` 2 min): the baseline;
//! - (b) one node, R1, `jetstream { sync_interval: always }`;
//! - (c) a 3-node cluster with R3 queues (and R3 audit stream), default fsync;
//! - (d) the same cluster with `sync_interval: always` on every node.
//!
//! Each round starts every deployment afresh (in a rotated order, so none always runs first),
//! measures on it, and stops it. On each deployment the raw async-nats baseline (windowed
//! publish, then pull + ack of the same messages) runs beside jobfleet's producer
//! (`enqueue_batch`, PubAcks awaited, 1024 in flight) and a worker with a no-op handler, at
//! audit level `full` (the queue default) and `off`. Each deployment takes its own job
//! count: `--jobs` on (a) and (c), `--sync-jobs` on (b) (an fsync per write: far slower) and
//! `--r3-sync-jobs` on (d). A drain counts as done when every job has succeeded *and* the
//! work stream is empty (the acks are applied), for the raw loop and the worker alike.
//!
//! The figures and what they mean for operators are in `docs/operations.md`.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use futures::StreamExt;
use jobfleet_core::{AuditLevel, QueueConfig, topology};
use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_testkit::{NatsCluster, NatsServer};
use jobfleet_worker::{JobContext, Outcome, Worker, handler_fn};

use crate::Params;
use crate::enqueue::payload_of;
use crate::raw::publish_windowed;
use crate::report::Report;

const RAW_PUBLISH: &str = "raw publish, 1024 acks in flight";
const RAW_DRAIN: &str = "raw pull (batch 500) + ack";
const ENQUEUE_FULL: &str = "jobfleet enqueue_batch (audit full)";
const ENQUEUE_OFF: &str = "jobfleet enqueue_batch (audit off)";
const DRAIN_FULL: &str = "jobfleet worker, no-op (audit full)";
const DRAIN_OFF: &str = "jobfleet worker, no-op (audit off)";
/// Rows of the table, in order, each with the raw measurement it is compared to.
const ROWS: [(&str, &str); 6] = [
    (RAW_PUBLISH, RAW_PUBLISH),
    (ENQUEUE_FULL, RAW_PUBLISH),
    (ENQUEUE_OFF, RAW_PUBLISH),
    (RAW_DRAIN, RAW_DRAIN),
    (DRAIN_FULL, RAW_DRAIN),
    (DRAIN_OFF, RAW_DRAIN),
];
/// Handler slots of the worker, as in the drain benchmark.
const CONCURRENCY: usize = 256;
const CLUSTER_SIZE: usize = 3;
const SYNC_ALWAYS_CONF: &str =
    "# written by jobfleet-bench durability\njetstream {\n  sync_interval: always\n}\n";

/// One deployment under test.
#[derive(Debug, Clone, Copy)]
struct Deployment {
    tag: &'static str,
    title: &'static str,
    replicas: u8,
    sync_always: bool,
}

const DEPLOYMENTS: [Deployment; 4] = [
    Deployment {
        tag: "(a) R1",
        title: "1 node, R1, default fsync (sync_interval 2m)",
        replicas: 1,
        sync_always: false,
    },
    Deployment {
        tag: "(b) R1 always",
        title: "1 node, R1, sync_interval: always",
        replicas: 1,
        sync_always: true,
    },
    Deployment {
        tag: "(c) R3",
        title: "3-node cluster, R3 queues, default fsync",
        replicas: 3,
        sync_always: false,
    },
    Deployment {
        tag: "(d) R3 always",
        title: "3-node cluster, R3 queues, sync_interval: always on every node",
        replicas: 3,
        sync_always: true,
    },
];

/// Stored bytes per job, from stream state (what a queue and the audit stream cost on disk,
/// per replica), recorded on deployment (a).
#[derive(Debug, Default)]
struct Sizes {
    /// Work stream bytes per waiting job (payload, headers, store overhead).
    job: Option<f64>,
    /// Audit stream bytes per job worked at level `full` (enqueued, started, succeeded).
    audit_full: Option<f64>,
}

/// Running servers of one deployment; stopped (and their stores deleted) on drop.
enum Servers {
    One(NatsServer),
    Cluster(NatsCluster),
}

impl Servers {
    fn urls(&self) -> String {
        match self {
            Self::One(server) => server.url(),
            Self::Cluster(cluster) => cluster.urls(),
        }
    }

    fn monitor_ports(&self) -> Vec<u16> {
        match self {
            Self::One(server) => vec![server.monitor_port()],
            Self::Cluster(cluster) => cluster
                .nodes()
                .iter()
                .map(NatsServer::monitor_port)
                .collect(),
        }
    }
}

pub(crate) async fn run(params: Params) {
    let (jobs, sync_jobs, r3_sync_jobs) = (params.jobs, params.sync_jobs, params.r3_sync_jobs);
    let config_dir = tempfile::tempdir().expect("temp dir");
    let sync_conf = config_dir.path().join("sync-always.conf");
    std::fs::write(&sync_conf, SYNC_ALWAYS_CONF).expect("write the server config");
    println!(
        "durability benchmark: jobs per measurement {jobs} on (a) and (c), {sync_jobs} on (b), {r3_sync_jobs} on (d); {} rounds, {}-byte payload, worker concurrency {CONCURRENCY}, file storage",
        params.rounds, params.payload
    );
    for deployment in &DEPLOYMENTS {
        println!("  {:<14} {}", deployment.tag, deployment.title);
    }
    println!("load average at start: {}", load_average());
    let payload = Bytes::from(payload_of(params.payload));
    let mut reports: Vec<Report> = DEPLOYMENTS.iter().map(|_| Report::default()).collect();
    let mut sizes = Sizes::default();
    let started = Instant::now();
    for round in 0..params.rounds {
        for step in 0..DEPLOYMENTS.len() {
            let index = (round + step) % DEPLOYMENTS.len();
            let deployment = DEPLOYMENTS[index];
            let count = match (deployment.replicas > 1, deployment.sync_always) {
                (false, true) => sync_jobs,
                (true, true) => r3_sync_jobs,
                (_, false) => jobs,
            };
            let servers = start(deployment, &sync_conf).await;
            let sizes = (index == 0).then_some(&mut sizes);
            measure(
                &servers,
                deployment,
                round,
                count,
                &payload,
                &mut reports[index],
                sizes,
            )
            .await;
            tokio::task::spawn_blocking(move || drop(servers))
                .await
                .expect("stop the servers");
            eprintln!(
                "round {} of {}: {} done ({:.0} s so far)",
                round + 1,
                params.rounds,
                deployment.tag,
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!("load average at end: {}", load_average());
    print_tables(&reports);
    let per_job = |bytes: Option<f64>| bytes.map_or("-".to_owned(), |b| format!("{b:.0} bytes"));
    println!(
        "\nstored per job on (a), {}-byte payload: work stream {} while waiting; audit stream {} at level full (enqueued + started + succeeded), per replica",
        params.payload,
        per_job(sizes.job),
        per_job(sizes.audit_full)
    );
}

/// Starts a deployment's servers and checks that the fsync setting took effect.
async fn start(deployment: Deployment, sync_conf: &Path) -> Servers {
    let conf = sync_conf.to_path_buf();
    let servers = tokio::task::spawn_blocking(move || {
        match (deployment.replicas > 1, deployment.sync_always) {
            (false, false) => Servers::One(NatsServer::start()),
            (false, true) => Servers::One(NatsServer::builder().config_file(conf).start()),
            (true, false) => Servers::Cluster(NatsCluster::start(CLUSTER_SIZE)),
            (true, true) => Servers::Cluster(NatsCluster::start_with_config(CLUSTER_SIZE, conf)),
        }
    })
    .await
    .expect("start the servers");
    for port in servers.monitor_ports() {
        let always = sync_always(port);
        assert_eq!(
            always,
            Some(deployment.sync_always),
            "{}: /varz on monitor port {port} reports sync_always {always:?}",
            deployment.tag
        );
    }
    servers
}

/// The 1, 5 and 15 minute load averages (other work on the machine skews every figure).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

/// `jetstream.config.sync_always` from a server's `/varz`.
fn sync_always(monitor_port: u16) -> Option<bool> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", monitor_port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /varz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let compact: String = response.split_whitespace().collect();
    if compact.contains("\"sync_always\":true") {
        Some(true)
    } else {
        // The field is omitted when false.
        compact
            .contains("\"jetstream\":{\"config\":{")
            .then_some(false)
    }
}

async fn measure(
    servers: &Servers,
    deployment: Deployment,
    round: usize,
    jobs: usize,
    payload: &Bytes,
    report: &mut Report,
    mut sizes: Option<&mut Sizes>,
) {
    let options = ConnectOptions::new(servers.urls()).connection_timeout(Duration::from_secs(5));
    let client = options.connect_client().await.expect("connect to NATS");
    let js = jetstream::new(client.clone());
    let producer = Producer::with_client(client.clone(), &options);
    // Alternate raw and jobfleet, and the two audit levels, between rounds.
    let levels = if round.is_multiple_of(2) {
        [AuditLevel::Full, AuditLevel::Off]
    } else {
        [AuditLevel::Off, AuditLevel::Full]
    };
    if round.is_multiple_of(2) {
        raw(&js, deployment, round, jobs, payload, report).await;
    }
    for level in levels {
        jobfleet(
            &client,
            &producer,
            deployment,
            round,
            level,
            jobs,
            payload,
            report,
            sizes.as_deref_mut(),
        )
        .await;
    }
    if !round.is_multiple_of(2) {
        raw(&js, deployment, round, jobs, payload, report).await;
    }
    client.flush().await.expect("flush");
}

/// The raw baseline: windowed publish into a WorkQueue stream of the deployment's replicas,
/// then one pull consumer draining it with a plain ack per message.
async fn raw(
    js: &jetstream::Context,
    deployment: Deployment,
    round: usize,
    jobs: usize,
    payload: &Bytes,
    report: &mut Report,
) {
    let name = format!("RAW_DURABILITY_{round}");
    let subject = format!("raw.durability.{round}");
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            num_replicas: usize::from(deployment.replicas),
            ..Default::default()
        })
        .await
        .expect("create the raw stream");
    let started = Instant::now();
    publish_windowed(js, &subject, payload, jobs, false).await;
    report.record(RAW_PUBLISH, jobs, started.elapsed().as_secs_f64());

    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("raw".into()),
            ..Default::default()
        })
        .await
        .expect("create the raw consumer");
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
    wait_until_empty(js, &name).await;
    report.record(RAW_DRAIN, jobs, started.elapsed().as_secs_f64());
    drop(messages);
    let _ = js.delete_stream(&name).await;
}

/// jobfleet on one queue: enqueue `jobs` (timed), then drain them with a worker (timed).
#[allow(clippy::too_many_arguments)]
async fn jobfleet(
    client: &async_nats::Client,
    producer: &Producer,
    deployment: Deployment,
    round: usize,
    level: AuditLevel,
    jobs: usize,
    payload: &Bytes,
    report: &mut Report,
    mut sizes: Option<&mut Sizes>,
) {
    let (enqueue_name, drain_name) = match level {
        AuditLevel::Off => (ENQUEUE_OFF, DRAIN_OFF),
        _ => (ENQUEUE_FULL, DRAIN_FULL),
    };
    let queue = format!("durability_{}_{round}", level.as_str());
    let mut config = QueueConfig::new(&queue);
    config.replicas = deployment.replicas;
    config.audit.level = level;
    producer.declare_queue(&config).await.expect("declare");
    let js = producer.jetstream();

    let batch: Vec<Job> = (0..jobs).map(|_| Job::bytes(payload.clone())).collect();
    let started = Instant::now();
    let results = producer
        .enqueue_batch(&queue, batch)
        .await
        .expect("enqueue");
    // The `enqueued` audit events are sent without awaiting their acks: count them in.
    client.flush().await.expect("flush");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(results.iter().all(Result::is_ok), "every job stored");
    report.record(enqueue_name, jobs, elapsed);
    if level != AuditLevel::Off {
        // Let the server store the tail of the enqueued events before timing the drain.
        wait_for_audit(js, jobs as u64).await;
    }
    let work_stream = format!("{}{queue}", topology::QUEUE_STREAM_PREFIX);
    if let Some(sizes) = sizes.as_deref_mut() {
        sizes.job = bytes_per(js, &work_stream, jobs).await.or(sizes.job);
    }

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
    wait_until_empty(js, &work_stream).await;
    report.record(drain_name, jobs, started.elapsed().as_secs_f64());
    let _ = stop.send(());
    let _ = running.await;
    if let Some(sizes) = sizes
        && level == AuditLevel::Full
    {
        // Every job's terminal event is stored before its ack: the stream is complete.
        sizes.audit_full = bytes_per(js, topology::AUDIT_STREAM, jobs)
            .await
            .or(sizes.audit_full);
    }

    let _ = js.delete_stream(&work_stream).await;
    let _ = js.delete_stream(format!("JOBFLEET_DLQ_{queue}")).await;
    let _ = js.delete_stream(topology::AUDIT_STREAM).await;
}

/// A stream's stored bytes divided by `jobs`.
async fn bytes_per(js: &jetstream::Context, name: &str, jobs: usize) -> Option<f64> {
    let mut stream = js.get_stream(name).await.ok()?;
    let info = stream.info().await.ok()?;
    Some(info.state.bytes as f64 / jobs as f64)
}

/// Waits (up to two minutes) until a WorkQueue stream is empty: a plain ack's deletion is
/// applied after the ack is sent, and with `sync_interval: always` the deletions can trail the
/// acks by seconds, so a drain counts as done once its acks are applied.
async fn wait_until_empty(js: &jetstream::Context, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(mut stream) = js.get_stream(name).await
            && stream.info().await.is_ok_and(|i| i.state.messages == 0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("durability: {name} still held messages after two minutes");
}

/// Waits (up to a minute) until the audit stream holds at least `events` messages.
async fn wait_for_audit(js: &jetstream::Context, events: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(mut stream) = js.get_stream(topology::AUDIT_STREAM).await
            && stream
                .info()
                .await
                .is_ok_and(|i| i.state.messages >= events)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("durability: the audit stream did not reach {events} events within a minute");
}

fn print_tables(reports: &[Report]) {
    let baseline = &reports[0];
    println!("\nthroughput (jobs/s, median of rounds; in brackets: ratio to (a) R1)");
    print!("{:<38}", "measurement");
    for deployment in &DEPLOYMENTS {
        print!(" {:>22}", deployment.tag);
    }
    println!();
    for (name, _) in ROWS {
        print!("{name:<38}");
        for (index, report) in reports.iter().enumerate() {
            let median = report.median(name);
            let cell = if index == 0 {
                format!("{median:.0}")
            } else {
                format!("{median:.0} ({:.2}x)", median / baseline.median(name))
            };
            print!(" {cell:>22}");
        }
        println!();
    }

    println!("\njobfleet / raw on the same deployment (median of rounds)");
    print!("{:<38}", "measurement");
    for deployment in &DEPLOYMENTS {
        print!(" {:>14}", deployment.tag);
    }
    println!();
    for (name, raw) in ROWS.iter().filter(|(name, raw)| name != raw) {
        print!("{name:<38}");
        for report in reports {
            print!(" {:>13.2}x", report.median(name) / report.median(raw));
        }
        println!();
    }
    let (enqueue, raw_publish) = (baseline.median(ENQUEUE_OFF), baseline.median(RAW_PUBLISH));
    println!(
        "\non (a): jobfleet enqueue_batch (audit off) / raw publish = {:.2}; (audit full) / raw publish = {:.2}",
        enqueue / raw_publish,
        baseline.median(ENQUEUE_FULL) / raw_publish
    );

    println!("\nper round (jobs/s)");
    for (name, _) in ROWS {
        for (deployment, report) in DEPLOYMENTS.iter().zip(reports) {
            let rounds: Vec<String> = report
                .rounds(name)
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect();
            println!("{name:<38} {:<14} {}", deployment.tag, rounds.join(" "));
        }
    }
}
