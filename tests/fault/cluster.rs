//! Fault scenarios on a 3-node JetStream cluster with R3 queues: a node killed every ~10 s
//! while jobs are enqueued through the gateway (the headline test), a frozen node (SIGSTOP),
//! and a full-cluster restart mid-consumption.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jobfleet_core::{QueueConfig, topology};
use jobfleet_testkit::NatsCluster;

use crate::checker::check;
use crate::harness::Scene;
use crate::harness::snapshot;
use crate::harness::{
    ACK_WAIT, Fleet, OnRefusal, Row, SETTLE, SharedLedger, WorkerSpec, fault_queue, plan, produce,
    produce_http, read_executions, recovery, unix_ms, wait_drained,
};
use crate::single::Dice;

const NODE_TIMEOUT: Duration = Duration::from_secs(60);

fn replicated(name: &str) -> QueueConfig {
    let mut queue = fault_queue(name, 10);
    queue.replicas = 3;
    queue
}

/// Each node's own view of `streams`: (messages, first sequence, last sequence), from its
/// monitoring endpoint.
async fn replica_states(
    cluster: &NatsCluster,
    streams: &[String],
) -> Vec<BTreeMap<String, (u64, u64, u64)>> {
    let http = reqwest::Client::new();
    let mut views = Vec::new();
    for node in cluster.nodes() {
        let url = format!("{}/jsz?streams=true", node.monitor_url());
        let Ok(answer) = http.get(&url).send().await else {
            views.push(BTreeMap::new());
            continue;
        };
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        let mut view = BTreeMap::new();
        for account in body["account_details"].as_array().into_iter().flatten() {
            for stream in account["stream_detail"].as_array().into_iter().flatten() {
                let name = stream["name"].as_str().unwrap_or_default().to_owned();
                if streams.contains(&name) {
                    let state = &stream["state"];
                    view.insert(
                        name,
                        (
                            state["messages"].as_u64().unwrap_or(0),
                            state["first_seq"].as_u64().unwrap_or(0),
                            state["last_seq"].as_u64().unwrap_or(0),
                        ),
                    );
                }
            }
        }
        views.push(view);
    }
    views
}

/// Waits until all three replicas of each stream report the same state.
async fn replicas_agree(cluster: &NatsCluster, queue: &str) -> usize {
    let streams = vec![
        format!("{}{queue}", topology::QUEUE_STREAM_PREFIX),
        jobfleet_core::QueueName::new(queue)
            .expect("queue name")
            .dead_letter_stream_name(),
        topology::AUDIT_STREAM.to_owned(),
    ];
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let views = replica_states(cluster, &streams).await;
        let complete = views.iter().all(|v| v.len() == streams.len());
        if complete && views.windows(2).all(|w| w[0] == w[1]) {
            return streams.len();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replicas still disagree: {views:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The index of the node that leads `stream`.
async fn leader_of(producer: &jobfleet_producer::Producer, stream: &str) -> usize {
    let mut stream = producer
        .jetstream()
        .get_stream(stream)
        .await
        .expect("the stream");
    let info = stream.info().await.expect("stream info");
    let leader = info
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("the stream has a leader");
    leader
        .trim_start_matches('n')
        .parse::<usize>()
        .expect("nodes are named n1..n3")
        - 1
}

/// 7. The headline: 3 nodes, R3 queue; a random node is SIGKILLed every 5 ack waits (~10 s)
///    and restarted one ack wait later, while jobs are enqueued through the gateway (with
///    idempotency keys, retried on 503) and worked.
pub(crate) async fn cluster_node_kill_loop() -> Row {
    let cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    let scene = Scene::new(&urls, &[replicated("orders")]).await;
    let mut fleet = Fleet::start(
        (0..2)
            .map(|_| WorkerSpec::rust(&urls, "orders", &scene.log, &["--sleep-ms", "10"]))
            .collect(),
    );
    let gateway = crate::gateway::Gateway::start(&urls).await;
    let ledger = SharedLedger::default();
    let load = tokio::spawn(produce_http(
        gateway.base.clone(),
        "orders".into(),
        "kill".into(),
        plan(4000, &[]),
        Some(100.0),
        16,
        OnRefusal::Retry,
        Arc::clone(&ledger),
        Duration::from_secs(90),
    ));
    let cluster = Arc::new(std::sync::Mutex::new(cluster));
    let mut dice = Dice::new("node-kill");
    let mut faults = Vec::new();
    let mut victims = Vec::new();
    let mut slowest_rejoin = Duration::ZERO;
    // At least 3 kills, and for as long as the load runs.
    while !load.is_finished() || faults.len() < 3 {
        tokio::time::sleep(ACK_WAIT * 5).await;
        // The first victim is the queue stream's leader (the worst case); then at random.
        let victim = if victims.is_empty() {
            leader_of(
                &scene.producer,
                &format!("{}orders", topology::QUEUE_STREAM_PREFIX),
            )
            .await
        } else {
            dice.below(3)
        };
        victims.push(victim + 1);
        faults.push(unix_ms());
        // A killed node may take a consumer's latest delivery state with it.
        ledger
            .lock()
            .expect("ledger")
            .server_crashes
            .push(unix_ms());
        let nodes = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || nodes.lock().expect("cluster").node(victim).kill())
            .await
            .expect("kill");
        tokio::time::sleep(ACK_WAIT).await;
        let nodes = Arc::clone(&cluster);
        let rejoined = tokio::task::spawn_blocking(move || {
            let began = std::time::Instant::now();
            let mut cluster = nodes.lock().expect("cluster");
            let node = cluster.node(victim);
            node.start_again();
            node.wait_healthy(NODE_TIMEOUT);
            began.elapsed()
        })
        .await
        .expect("restart");
        slowest_rejoin = slowest_rejoin.max(rejoined);
    }
    load.await.expect("the load");
    let verdict = scene.verdict("orders", &ledger).await;
    let executions = read_executions(&scene.log);
    let cluster = Arc::try_unwrap(cluster)
        .expect("no other owner")
        .into_inner()
        .expect("cluster");
    let agreeing = replicas_agree(&cluster, "orders").await;
    fleet.stop(Duration::from_secs(10));
    gateway.stop().await;
    verdict.assert_sound("cluster node-kill loop");
    assert!(faults.len() >= 3, "only {} node kills", faults.len());
    assert_eq!(verdict.succeeded, verdict.accepted, "every job succeeds");
    let ledger = ledger.lock().expect("ledger");
    assert!(ledger.refused.is_empty(), "refused: {:?}", ledger.refused);
    assert_eq!(verdict.accepted, 4000, "every job was eventually accepted");
    let recover = recovery(&faults, &executions, &ledger.accepted_at);
    Row::from_verdict(
        &verdict,
        faults.len(),
        recover,
        format!(
            "killed n{victims:?} (first: the queue leader), each back 1 ack wait later, healthy within {:.1} s; {} HTTP retries; {agreeing} streams' replicas agree",
            slowest_rejoin.as_secs_f64(),
            ledger.retries
        ),
    )
}

/// 8. The queue stream's leader is frozen (SIGSTOP) for 3 ack waits under load, then
///    resumed.
pub(crate) async fn cluster_paused_node() -> Row {
    let cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    let scene = Scene::new(&urls, &[replicated("frozen")]).await;
    let mut fleet = Fleet::start(
        (0..2)
            .map(|_| WorkerSpec::rust(&urls, "frozen", &scene.log, &["--sleep-ms", "10"]))
            .collect(),
    );
    let gateway = crate::gateway::Gateway::start(&urls).await;
    let ledger = SharedLedger::default();
    let load = tokio::spawn(produce_http(
        gateway.base.clone(),
        "frozen".into(),
        "stop".into(),
        plan(1500, &[]),
        Some(100.0),
        16,
        OnRefusal::Retry,
        Arc::clone(&ledger),
        Duration::from_secs(90),
    ));
    let mut cluster = cluster;
    tokio::time::sleep(ACK_WAIT * 2).await;
    let leader = leader_of(
        &scene.producer,
        &format!("{}frozen", topology::QUEUE_STREAM_PREFIX),
    )
    .await;
    let faults = vec![unix_ms()];
    cluster.node(leader).pause();
    tokio::time::sleep(ACK_WAIT * 3).await;
    cluster.node(leader).resume();
    // The frozen leader's peers may have moved on without its latest delivery state.
    ledger
        .lock()
        .expect("ledger")
        .server_crashes
        .extend([faults[0], unix_ms()]);
    load.await.expect("the load");
    let verdict = scene.verdict("frozen", &ledger).await;
    let executions = read_executions(&scene.log);
    let agreeing = replicas_agree(&cluster, "frozen").await;
    fleet.stop(Duration::from_secs(10));
    gateway.stop().await;
    verdict.assert_sound("cluster paused node");
    assert_eq!(verdict.succeeded, verdict.accepted, "every job succeeds");
    let ledger = ledger.lock().expect("ledger");
    assert_eq!(verdict.accepted, 1500, "every job was eventually accepted");
    let recover = recovery(&faults, &executions, &ledger.accepted_at);
    Row::from_verdict(
        &verdict,
        1,
        recover,
        format!(
            "leader n{} frozen 3 ack waits; {} HTTP retries; {agreeing} streams agree",
            leader + 1,
            ledger.retries
        ),
    )
}

/// 9. All three nodes are stopped and started again (file storage) while workers are
///    consuming: streams, the consumer and the jobs survive, and the work completes.
pub(crate) async fn cluster_full_restart() -> Row {
    let cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    let scene = Scene::new(&urls, &[replicated("survive")]).await;
    let ledger = SharedLedger::default();
    produce(
        scene.producer.clone(),
        "survive".into(),
        plan(2000, &[]),
        2000.0,
        Arc::clone(&ledger),
        Duration::from_secs(30),
    )
    .await;
    let mut fleet = Fleet::start(
        (0..2)
            .map(|_| {
                WorkerSpec::rust(
                    &urls,
                    "survive",
                    &scene.log,
                    &["--sleep-ms", "50", "--concurrency", "4"],
                )
            })
            .collect(),
    );
    // Restart once about a third of the jobs have run.
    jobfleet_testkit::eventually_async("a third of the jobs to run", SETTLE, || {
        let log = scene.log.clone();
        async move { (read_executions(&log).len() >= 650).then_some(()) }
    })
    .await;
    let stream = format!("{}survive", topology::QUEUE_STREAM_PREFIX);
    let before = crate::checker::jetstream_stream_messages(scene.js(), &stream).await;
    let faults = vec![unix_ms()];
    let mut cluster = cluster;
    tokio::task::block_in_place(|| cluster.restart_all());
    // Streams and the consumer came back with their configuration.
    let js = scene.js();
    let mut restored =
        jobfleet_testkit::eventually_async("the queue stream back", NODE_TIMEOUT, || {
            let js = js.clone();
            let stream = stream.clone();
            async move {
                let mut s = js.get_stream(&stream).await.ok()?;
                s.info().await.ok()?;
                Some(s)
            }
        })
        .await;
    let info = restored.info().await.expect("stream info").clone();
    assert_eq!(info.config.num_replicas, 3, "still R3");
    assert!(
        info.state.messages > 0 && info.state.messages <= before,
        "jobs survived the restart ({} of {before} left)",
        info.state.messages
    );
    jobfleet_testkit::eventually_async("the workers' consumer back", NODE_TIMEOUT, || {
        let stream = restored.clone();
        async move {
            stream
                .consumer_info(topology::WORKER_CONSUMER)
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
    wait_drained(js, "survive", SETTLE).await;
    let executions = read_executions(&scene.log);
    let verdict = check(js, "survive", &snapshot(&ledger), &executions).await;
    let agreeing = replicas_agree(&cluster, "survive").await;
    let exited = fleet.restart_exited();
    fleet.stop(Duration::from_secs(10));
    verdict.assert_sound("full-cluster restart");
    assert_eq!(exited, 0, "no worker died with the cluster");
    assert_eq!(verdict.succeeded, verdict.accepted, "every job succeeds");
    let recover = recovery(&faults, &executions, &[]);
    Row::from_verdict(
        &verdict,
        1,
        recover,
        format!(
            "{before} jobs waiting at the restart, {} after; {agreeing} streams agree",
            info.state.messages
        ),
    )
}
