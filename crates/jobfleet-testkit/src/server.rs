//! One nats-server process with JetStream.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary::nats_server_binary;
use crate::health::healthy;
use crate::ports::free_ports;

/// How long a server may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often start-up is retried with fresh ports after losing a port race.
const START_ATTEMPTS: usize = 4;

/// Options for [`NatsServer`]. Obtain with [`NatsServer::builder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ServerBuilder {
    config_file: Option<PathBuf>,
    args: Vec<String>,
    store_dir: Option<PathBuf>,
}

impl ServerBuilder {
    /// Loads a server configuration file (`-c`), e.g. one of `tests/configs/*.conf`. Ports,
    /// JetStream and the store directory are still set by the kit.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Adds raw command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Keeps the JetStream store in `dir` (not deleted on drop) instead of a temporary folder.
    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store_dir = Some(dir.into());
        self
    }

    /// Starts the server and waits until it is healthy.
    ///
    /// # Panics
    ///
    /// When the binary is missing or the server does not become healthy in time.
    pub fn start(self) -> NatsServer {
        let (store, store_path) = match &self.store_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("jobfleet-nats-")
                    .tempdir()
                    .expect("create a temporary JetStream store");
                let path = tmp.path().to_path_buf();
                (Some(tmp), path)
            }
        };
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let ports = free_ports(2);
            let mut server = NatsServer {
                child: None,
                port: ports[0],
                monitor_port: ports[1],
                store_path: store_path.clone(),
                _store: None,
                extra_args: self.args.clone(),
                config_file: self.config_file.clone(),
            };
            match server.spawn_and_wait() {
                Ok(()) => {
                    server._store = store;
                    return server;
                }
                Err(log) => last_log = log,
            }
        }
        panic!("nats-server did not start after {START_ATTEMPTS} attempts; last log:\n{last_log}");
    }
}

/// A running nats-server with JetStream, killed (and its temporary store deleted) on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    monitor_port: u16,
    store_path: PathBuf,
    _store: Option<tempfile::TempDir>,
    extra_args: Vec<String>,
    config_file: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a single JetStream server on free ports with a temporary store.
    ///
    /// # Panics
    ///
    /// When the binary is missing or the server does not become healthy in time.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Options for a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Starts one cluster member: used by [`crate::NatsCluster`].
    pub(crate) fn cluster_member(
        name: &str,
        ports: [u16; 3],
        routes: &str,
        store_path: PathBuf,
    ) -> Self {
        let mut server = Self {
            child: None,
            port: ports[0],
            monitor_port: ports[1],
            store_path,
            _store: None,
            extra_args: vec![
                "--server_name".into(),
                name.into(),
                "--cluster_name".into(),
                "jobfleet-test".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", ports[2]),
                "--routes".into(),
                routes.into(),
            ],
            config_file: None,
        };
        server.spawn();
        server
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP monitoring port.
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// The HTTP monitoring URL, `http://127.0.0.1:<port>`.
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store_path
    }

    /// The server's log file (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.store_path
            .join(format!("nats-server-{}.log", self.port))
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            if wait_exit(&mut child, Duration::from_secs(15)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP) and returns once every thread of it is stopped;
    /// [`NatsServer::resume`] undoes it.
    ///
    /// # Panics
    ///
    /// When the process is not stopped within 10 s.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child {
            signal(child, "STOP");
            wait_stopped(child.id(), Duration::from_secs(10));
        }
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&mut self) {
        if let Some(child) = &self.child {
            signal(child, "CONT");
        }
    }

    /// Starts the server again on the same ports and store, after [`stop`](Self::stop) or
    /// [`kill`](Self::kill) (or stops it first), and waits until it is healthy.
    ///
    /// # Panics
    ///
    /// When it does not become healthy in time.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn_and_wait() {
            panic!(
                "nats-server did not restart on port {}; log:\n{log}",
                self.port
            );
        }
    }

    /// [`NatsServer::wait_healthy`] that reports the log tail instead of panicking.
    pub(crate) fn try_wait_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        self.wait_until_healthy(timeout)
    }

    /// Starts a stopped server without waiting for it to be healthy (a cluster member
    /// becomes healthy only once its peers run).
    pub fn start_again(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Waits until `/healthz` answers 200.
    ///
    /// # Panics
    ///
    /// After `timeout`, with the log tail.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        if let Err(log) = self.wait_until_healthy(timeout) {
            panic!(
                "nats-server on port {} did not become healthy; log:\n{log}",
                self.port
            );
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.spawn();
        self.wait_until_healthy(START_TIMEOUT)
    }

    fn wait_until_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return Err(self.log_tail());
            }
            if healthy(self.monitor_port, self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.store_path).expect("create the JetStream store directory");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the server log");
        let mut command = Command::new(nats_server_binary());
        if let Some(config) = &self.config_file {
            command.arg("-c").arg(config);
        }
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .args(["-js", "-sd"])
            .arg(&self.store_path)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        self.child = Some(command.spawn().expect("spawn nats-server"));
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused server ignores SIGKILL until resumed on some kernels' process states;
            // resume first so the kill always lands.
            signal(&child, "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, name: &str) {
    send_signal(child.id(), name);
}

/// Sends signal `name` (`TERM`, `KILL`, `STOP`, `CONT`, ...) to process `pid`, e.g. a worker
/// process under test; reports on stderr when it could not be sent.
pub fn send_signal(pid: u32, name: &str) {
    // The `kill` utility keeps the kit free of unsafe code and platform crates.
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        eprintln!("jobfleet-testkit: could not send SIG{name} to process {pid} ({status:?})");
    }
}

/// Waits until every thread of `pid` is in the stopped state. `kill` returns once SIGSTOP is
/// queued, but the group stop begins only when a woken thread of the target gets a CPU: on a
/// busy machine the other threads keep serving for tens of milliseconds (measured: a publish
/// sent 40 ms after `kill` returned was still acknowledged). Where `/proc` is missing there is
/// nothing to wait on.
fn wait_stopped(pid: u32, timeout: Duration) {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    if !tasks.is_dir() {
        return;
    }
    let deadline = Instant::now() + timeout;
    loop {
        if all_threads_stopped(&tasks) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} was not stopped within {timeout:?} of SIGSTOP"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// True when every thread listed under `/proc/<pid>/task` is stopped (`T`), traced (`t`) or
/// dead (`Z`, `X`: a server that exited serves nothing either).
fn all_threads_stopped(tasks: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return false;
    };
    entries.flatten().all(|task| {
        // The state follows the parenthesised command name, which may itself hold spaces.
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .is_some_and(|state| matches!(state, 'T' | 't' | 'Z' | 'X'))
        })
    })
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
