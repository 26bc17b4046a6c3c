"""A job enqueued from Python runs in a Python handler, sync and async, on the Rust runtime."""

from __future__ import annotations

import asyncio

import jobfleet
from jobfleet import JobContext

from helpers import Recorder


def test_sync_handler_runs_and_its_job_succeeds(app: jobfleet.App, queue: str) -> None:
    seen = Recorder()

    @app.job(queue=queue)
    def greet(payload: dict[str, object], ctx: JobContext) -> str:
        seen.add((payload, ctx.id, ctx.queue, ctx.attempt, ctx.job_type))
        return "hello"

    with app.start_worker(concurrency=4) as worker:
        job = greet.enqueue({"name": "ada"})
        [(payload, job_id, job_queue, attempt, job_type)] = seen.wait_for(1)
    assert (payload, job_id, job_queue, attempt, job_type) == ({"name": "ada"}, job.id, queue, 1, "greet")
    status = app.job_status(job.id)
    assert status is not None and status.event == "succeeded" and status.result == "hello"
    assert worker.stats is not None and worker.stats[0].succeeded == 1


def test_async_handler_runs_on_the_event_loop(app: jobfleet.App, queue: str) -> None:
    seen = Recorder()

    @app.job(queue=queue)
    async def greet(payload: dict[str, object], ctx: JobContext) -> None:
        await asyncio.sleep(0)
        seen.add((payload, asyncio.get_running_loop() is not None))

    with app.start_worker(concurrency=4):
        job = app.enqueue(queue, {"n": 1})
        assert seen.wait_for(1) == [({"n": 1}, True)]
    status = app.job_status(job.id)
    assert status is not None and status.event == "succeeded"
