//! A JetStream cluster of nats-server processes on loopback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::health::meta_leader_with_current_peers;
use crate::ports::free_ports;
use crate::server::NatsServer;

const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A JetStream cluster (usually 3 nodes), every node with its own temporary store.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
    _store: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes routed to each other and waits until every node is healthy (a meta
    /// leader elected).
    ///
    /// # Panics
    ///
    /// When a node does not become healthy in time.
    pub fn start(size: usize) -> Self {
        Self::start_inner(size, None)
    }

    /// As [`NatsCluster::start`], with every node also loading the server configuration file
    /// `config_file` (`-c`), e.g. one holding `jetstream { sync_interval: always }`. Ports,
    /// routes, server names, JetStream and the store directories are still set by the kit,
    /// and a restarted node loads the file again.
    ///
    /// # Panics
    ///
    /// When a node does not become healthy in time (e.g. the file does not parse).
    pub fn start_with_config(size: usize, config_file: impl Into<PathBuf>) -> Self {
        Self::start_inner(size, Some(config_file.into()))
    }

    fn start_inner(size: usize, config_file: Option<PathBuf>) -> Self {
        assert!(size >= 1, "a cluster needs at least one node");
        let mut last_log = String::new();
        // A lost race for one of the 3 x size ports fails one node; start over on fresh ones.
        for _ in 0..3 {
            let started = match &config_file {
                None => Self::try_start(size),
                Some(config) => Self::try_start_configured(size, config),
            };
            match started {
                Ok(cluster) => return cluster,
                Err(log) => last_log = log,
            }
        }
        panic!("the {size}-node cluster did not start; last log:\n{last_log}");
    }

    fn try_start(size: usize) -> Result<Self, String> {
        let store = tempfile::Builder::new()
            .prefix("jobfleet-cluster-")
            .tempdir()
            .expect("create a temporary cluster store");
        let ports = free_ports(size * 3);
        let routes = (0..size)
            .map(|i| format!("nats://127.0.0.1:{}", ports[i * 3 + 2]))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<NatsServer> = (0..size)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let node_ports = [ports[i * 3], ports[i * 3 + 1], ports[i * 3 + 2]];
                NatsServer::cluster_member(&name, node_ports, &routes, store.path().join(&name))
            })
            .collect();
        for node in &mut nodes {
            node.try_wait_healthy(CLUSTER_START_TIMEOUT)?;
        }
        let cluster = Self {
            nodes,
            _store: store,
        };
        cluster.wait_meta_ready()?;
        Ok(cluster)
    }

    /// Starts the members through [`NatsServer::builder`] (which carries the configuration
    /// file), one thread each: a member becomes healthy only once its peers run.
    fn try_start_configured(size: usize, config_file: &Path) -> Result<Self, String> {
        let store = tempfile::Builder::new()
            .prefix("jobfleet-cluster-")
            .tempdir()
            .expect("create a temporary cluster store");
        let route_ports = free_ports(size);
        let routes = route_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let starting: Vec<_> = route_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let name = format!("n{}", i + 1);
                let builder = NatsServer::builder()
                    .config_file(config_file)
                    .store_dir(store.path().join(&name))
                    .args([
                        "--server_name".to_owned(),
                        name,
                        "--cluster_name".to_owned(),
                        "jobfleet-test".to_owned(),
                        "--cluster".to_owned(),
                        format!("nats://127.0.0.1:{port}"),
                        "--routes".to_owned(),
                        routes.clone(),
                    ]);
                std::thread::spawn(move || builder.start())
            })
            .collect();
        let mut nodes = Vec::with_capacity(size);
        let mut failure = None;
        for thread in starting {
            match thread.join() {
                Ok(node) => nodes.push(node),
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "a cluster member did not start".to_owned());
                    failure.get_or_insert(message);
                }
            }
        }
        if let Some(message) = failure {
            return Err(message);
        }
        let cluster = Self {
            nodes,
            _store: store,
        };
        cluster.wait_meta_ready()?;
        Ok(cluster)
    }

    /// Waits until one node leads the JetStream meta group with every other node current;
    /// before that, creating a replicated stream can fail with "insufficient resources".
    fn wait_meta_ready(&self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + CLUSTER_START_TIMEOUT;
        let size = self.nodes.len();
        loop {
            if size == 1
                || self
                    .nodes
                    .iter()
                    .any(|n| meta_leader_with_current_peers(n.monitor_port(), size))
            {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "no JetStream meta leader with {} current peers",
                    size - 1
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Client URLs of every node, comma-separated (what `ConnectOptions::new` accepts).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The nodes.
    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    /// One node, for stopping, killing, pausing or restarting it.
    pub fn node(&mut self, index: usize) -> &mut NatsServer {
        &mut self.nodes[index]
    }

    /// Restarts a stopped or killed node and waits until it is healthy again.
    pub fn restart_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.start_again();
        node.wait_healthy(CLUSTER_START_TIMEOUT);
    }

    /// Restarts every node at once (all down, then all up), as after a full outage.
    pub fn restart_all(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        for node in &mut self.nodes {
            node.start_again();
        }
        for node in &mut self.nodes {
            node.wait_healthy(CLUSTER_START_TIMEOUT);
        }
    }
}
