"""Jobs cross between Rust and Python: the same queue, the same wire protocol."""

from __future__ import annotations

import json
import subprocess

import jobfleet
from jobfleet import JobContext

from conftest import NatsServer
from helpers import Recorder


def test_a_job_enqueued_from_rust_runs_in_python(app: jobfleet.App, queue: str, nats: NatsServer, rust_peer: str) -> None:
    seen = Recorder()

    @app.job(queue=queue)
    async def handle(payload: dict[str, str], ctx: JobContext) -> None:
        seen.add((ctx.id, ctx.job_type, payload))

    app.declare_queues()
    enqueued = subprocess.run(
        [rust_peer, "enqueue", nats.url, queue, json.dumps({"from": "rust"}), "report"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    job_id = enqueued.stdout.strip()
    with app.start_worker():
        assert seen.wait_for(1) == [(job_id, "report", {"from": "rust"})]
    status = app.job_status(job_id)
    assert status is not None and status.event == "succeeded"


def test_a_job_enqueued_from_python_runs_in_rust(app: jobfleet.App, queue: str, nats: NatsServer, rust_peer: str) -> None:
    @app.job(queue=queue)
    def unused(payload: object) -> None:
        raise AssertionError("a Rust worker works this queue")

    app.declare_queues()
    jobs = {app.enqueue(queue, {"n": n}).id: {"n": n} for n in range(3)}
    worked = subprocess.run(
        [rust_peer, "work", nats.url, queue, "3"], capture_output=True, text=True, timeout=60, check=True
    )
    seen = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in worked.stdout.splitlines()}
    assert seen == jobs
    for job_id in jobs:
        status = app.job_status(job_id)
        assert status is not None and status.event == "succeeded"
