"""Python handler drain rate beside the Rust handler and the raw async-nats baseline, on the
same server in the same run (``scripts/bench.sh python``; this machine is noisy, ratios are
not).

Each measurement drains a queue filled beforehand with ``--jobs`` jobs of ``--payload``
bytes (default audit level ``full``, file storage, R1), from the first job's start to the
last job's success:

- raw: plain JetStream publish, then pull (batch 500) + ack, no jobfleet (Rust, async-nats);
- Rust: a jobfleet worker with a no-op Rust handler (``jobfleet-py-peer drain``);
- Python sync / async: ``jobfleet worker`` processes with a no-op ``def`` / ``async def``
  handler, timed through their metrics endpoint.

Targets: Python sync >= 0.5x and async >= 0.25x the Rust handler's rate.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nats(store: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = os.environ.get("NATS_SERVER_BIN") or shutil.which("nats-server") or "nats-server"
    port, monitor = free_port(), free_port()
    process = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/healthz", timeout=1) as r:
                if r.status == 200:
                    return process, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("nats-server did not become healthy")


def peer(path: str, *args: object) -> str:
    return subprocess.run([path, *map(str, args)], check=True, capture_output=True, text=True).stdout.strip()


def counters(port: int, queue: str) -> tuple[int, int]:
    """(started, succeeded) from a worker's metrics, or (0, 0) before it serves them."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0, 0
    started = re.search(rf'^jobfleet_attempts_started_total{{queue="{queue}"}} (\d+)$', text, re.M)
    succeeded = re.search(rf'^jobfleet_jobs_total{{queue="{queue}",outcome="succeeded"}} (\d+)$', text, re.M)
    return (int(started.group(1)) if started else 0, int(succeeded.group(1)) if succeeded else 0)


def python_drain(url: str, queue: str, kind: str, jobs: int, concurrency: int, threads: int | None) -> float:
    port = free_port()
    command = [sys.executable, "-m", "jobfleet", "worker", "noop_app:app", "--no-supervise", "--no-declare",
               "-q", queue, "-c", str(concurrency), "--metrics-port", str(port), "--log-level", "warning"]
    if threads:
        command += ["--threads", str(threads)]
    # The handler under test alone on the queue (the other one on a queue not worked).
    env = {**os.environ, "JOBFLEET_NATS_URL": url, "RUST_LOG": "warn",
           "BENCH_SYNC_QUEUE": queue if kind == "sync" else "unused_sync",
           "BENCH_ASYNC_QUEUE": queue if kind == "async" else "unused_async"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("JOBFLEET_BENCH_PYTHONPATH"), str(HERE)]))
    worker = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 60 + jobs / 100
        first = None
        while time.monotonic() < deadline:
            started, succeeded = counters(port, queue)
            now = time.monotonic()
            if first is None and started > 0:
                first = now
            if succeeded >= jobs and first is not None:
                return now - first
            if worker.poll() is not None:
                raise SystemExit(f"the Python worker exited with {worker.returncode}")
            time.sleep(0.01)
        raise SystemExit("the Python worker did not drain the queue in time")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", required=True, help="the jobfleet-py-peer binary (release build)")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--payload", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="threads for the sync handler (default: the worker's)")
    args = parser.parse_args()

    import jobfleet  # the package under test: say which build it is

    print(f"python drain benchmark: {args.jobs} jobs per run, {args.rounds} rounds, {args.payload}-byte payload, "
          f"concurrency {args.concurrency}, audit full, file storage, R1; jobfleet from {Path(jobfleet.__file__).parent}")
    with tempfile.TemporaryDirectory(prefix="jobfleet-pybench-") as store:
        server = None
        url = os.environ.get("NATS_URL", "")
        if not url:
            server, url = start_nats(Path(store))
        try:
            rates: dict[str, list[float]] = {}
            names = ["raw pull (batch 500) + ack", "Rust no-op handler", "Python def no-op handler",
                     "Python async def no-op handler"]
            for round_ in range(args.rounds):
                tag = f"{os.getpid()}_{round_}"
                seconds = float(peer(args.peer, "drain-raw", url, args.jobs, args.payload))
                rates.setdefault(names[0], []).append(args.jobs / seconds)
                peer(args.peer, "fill", url, f"pyb_rust_{tag}", args.jobs, args.payload)
                seconds = float(peer(args.peer, "drain", url, f"pyb_rust_{tag}", args.jobs, args.concurrency))
                rates.setdefault(names[1], []).append(args.jobs / seconds)
                for name, kind in ((names[2], "sync"), (names[3], "async")):
                    queue = f"pyb_{kind}_{tag}"
                    peer(args.peer, "fill", url, queue, args.jobs, args.payload)
                    seconds = python_drain(url, queue, kind, args.jobs, args.concurrency, args.threads)
                    rates.setdefault(name, []).append(args.jobs / seconds)
                print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)
        finally:
            if server is not None:
                server.kill()
                server.wait()
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\n{'drain rate (jobs/s, median of rounds)':<44} {'median/s':>10} {'vs raw':>8} {'vs Rust':>8}  rounds")
    for name in names:
        rounds = " ".join(f"{r:.0f}" for r in rates[name])
        print(f"{name:<44} {median[name]:>10.0f} {median[name] / median[names[0]]:>7.2f}x "
              f"{median[name] / median[names[1]]:>7.2f}x  {rounds}")
    for name, target in ((names[2], 0.5), (names[3], 0.25)):
        ratio = median[name] / median[names[1]]
        print(f"{name} / Rust handler = {ratio:.2f} (target >= {target}): {'met' if ratio >= target else 'NOT met'}")


if __name__ == "__main__":
    main()
