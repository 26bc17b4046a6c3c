"""`jobfleet worker` as a process: graceful shutdown on SIGTERM, recycling, the Rust CLI's
subcommands from the wheel, and `python -m jobfleet`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobfleet

from conftest import NatsServer, eventually, free_port, run_python
from helpers import Recorder


def log_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def worker_env(nats: NatsServer, queue: str, tmp_path: Path) -> dict[str, str]:
    return {"JOBFLEET_NATS_URL": nats.url, "TEST_QUEUE": queue, "TEST_LOG": str(tmp_path / "jobs.log")}


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """The test's processes, killed (with their process group) if still running at the end."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def start_worker(spawn: list[subprocess.Popen[str]], env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    with open(tmp_path / "worker.out", "a") as output:
        process = run_python(
            "-m", "jobfleet", "worker", "apps.slow:app", *args, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    spawn.append(process)
    return process


def test_sigterm_finishes_running_jobs_and_loses_none(
    app: jobfleet.App, queue: str, worker_env: dict[str, str], tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    log = Path(worker_env["TEST_LOG"])
    app.declare_queues([queue])
    jobs = [app.enqueue(queue, {"seconds": 0.4}).id for _ in range(12)]
    metrics_port = free_port()
    worker = start_worker(
        spawn, worker_env, tmp_path, "--concurrency", "3", "--grace-seconds", "20", "--metrics-port", str(metrics_port)
    )
    running = eventually(lambda: [l for l in log_lines(log) if l[0] == "start"][:3] or None, what="three jobs to start")
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    started_metric = re.search(rf'^jobfleet_attempts_started_total{{queue="{queue}"}} (\d+)$', metrics, re.M)
    assert started_metric is not None and int(started_metric.group(1)) >= 3, metrics
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, (tmp_path / "worker.out").read_text()
    lines = log_lines(log)
    started = [l[1] for l in lines if l[0] == "start"]
    finished = [l[1] for l in lines if l[0] == "done"]
    assert set(l[1] for l in running) <= set(finished), "a job running at SIGTERM was not finished"
    assert sorted(started) == sorted(finished), "every started job finished within the grace period"
    assert len(finished) < len(jobs), "the worker stopped taking jobs"
    # The rest are still queued: another worker runs each of them, once.
    rest = Recorder()

    @app.job(queue=queue)
    def slow(payload: dict[str, float], ctx: jobfleet.JobContext) -> None:
        rest.add(ctx.id)

    with app.start_worker(declare=False):
        drained = rest.wait_for(len(jobs) - len(finished))
    assert sorted(finished + drained) == sorted(jobs)
    assert all((s := app.job_status(j)) is not None and s.event == "succeeded" for j in jobs)


def test_a_stuck_sync_handler_recycles_the_worker_process(
    app: jobfleet.App, queue: str, worker_env: dict[str, str], tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    log = Path(worker_env["TEST_LOG"])
    app.declare_queues([queue])
    worker = start_worker(spawn, worker_env, tmp_path, "--recycle-after", "0.5")
    stuck = app.enqueue(queue, {"block": True}, timeout=0.3, max_attempts=1)
    [(_, _, first_pid)] = eventually(lambda: [l for l in log_lines(log) if l[0] == "start"] or None, what="the stuck job")
    # Its attempt timed out (dead-lettered, no attempts left); the process recycled and the
    # supervisor started a fresh one, which runs the next job.
    eventually(lambda: any(d.id == stuck.id for d in app.dead_letters(queue)), what="the stuck job's dead letter")
    output = tmp_path / "worker.out"
    eventually(lambda: "recycled itself" in output.read_text(), what="the supervisor to restart the worker")
    after = app.enqueue(queue, {"seconds": 0})
    [(_, _, second_pid)] = eventually(
        lambda: [l for l in log_lines(log) if l[0] == "done" and l[1] == after.id] or None, what="the next job"
    )
    assert second_pid != first_pid
    assert "recycling: sync handler slow did not return" in output.read_text()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_a_second_signal_hands_running_jobs_back_at_once(
    app: jobfleet.App, queue: str, worker_env: dict[str, str], tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    log = Path(worker_env["TEST_LOG"])
    app.declare_queues([queue])
    worker = start_worker(spawn, worker_env, tmp_path, "--grace-seconds", "60")
    job = app.enqueue(queue, {"seconds": 60})
    eventually(lambda: log_lines(log) or None, what="the job to start")
    worker.send_signal(signal.SIGTERM)
    eventually(lambda: "shutting down" in (tmp_path / "worker.out").read_text(), what="the first signal's effect")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 130
    # Handed back, not failed: the job is ready for the next worker, its attempt not used up.
    history = [e.event for e in app.job_history(job.id)]
    assert history == ["enqueued", "started"], history
    again = Recorder()

    @app.job(queue=queue)
    def slow(payload: dict[str, float], ctx: jobfleet.JobContext) -> None:
        again.add(ctx.attempt)

    with app.start_worker(declare=False):
        assert again.wait_for(1) == [1]


def test_the_rust_cli_runs_from_the_wheel(app: jobfleet.App, queue: str, nats: NatsServer, tmp_path: Path) -> None:
    env = {**os.environ, "NATS_URL": nats.url}
    declarations = tmp_path / "queues.toml"
    declarations.write_text(f'[[queue]]\nname = "{queue}"\nworker = {{ max_attempts = 4 }}\n')
    declared = subprocess.run(
        [sys.executable, "-m", "jobfleet", "queue", "declare", "--file", str(declarations)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert declared.returncode == 0, declared.stderr
    script = Path(sys.executable).with_name("jobfleet")  # the wheel's console script
    enqueued = subprocess.run(
        [str(script), "enqueue", queue, '{"from": "cli"}', "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert enqueued.returncode == 0, enqueued.stderr
    missing = subprocess.run([str(script), "job", "status", "not-a-job"], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2, (missing.stdout, missing.stderr)
    seen = Recorder()

    @app.job(queue=queue)
    def handler(payload: dict[str, str], ctx: jobfleet.JobContext) -> None:
        seen.add((payload, ctx.max_attempts))

    with app.start_worker(declare=False):
        assert seen.wait_for(1) == [({"from": "cli"}, 4)]
