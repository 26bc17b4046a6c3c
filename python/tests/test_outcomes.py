"""What a handler's return, exceptions and timeouts do to its job."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import jobfleet
from jobfleet import Fail, JobContext, Retry

from conftest import eventually, finished
from helpers import Recorder


def dead_letter(app: jobfleet.App, queue: str, job_id: str) -> jobfleet.DeadLetter:
    def find() -> jobfleet.DeadLetter | None:
        return next((d for d in app.dead_letters(queue) if d.id == job_id), None)

    return eventually(find, what=f"job {job_id} in the dead letters of {queue}")


def test_retry_with_delay_runs_the_job_again_no_sooner(app: jobfleet.App, queue: str) -> None:
    attempts = Recorder()

    @app.job(queue=queue)
    def flaky(payload: None, ctx: JobContext) -> None:
        attempts.add((ctx.attempt, time.monotonic()))
        if ctx.attempt == 1:
            raise Retry("not yet", delay=0.6)

    with app.start_worker():
        job = flaky.enqueue(None)
        (first, t1), (second, t2) = attempts.wait_for(2)
    assert (first, second) == (1, 2)
    assert t2 - t1 >= 0.55, f"retried after {t2 - t1:.3f}s, asked for 0.6s"
    history = [event.event for event in app.job_history(job.id)]
    # `enqueued` is recorded without waiting, so it may land after the first `started`.
    assert "enqueued" in history
    assert [e for e in history if e != "enqueued"] == ["started", "retried", "started", "succeeded"]


def test_fail_dead_letters_at_once_with_the_reason(app: jobfleet.App, queue: str) -> None:
    @app.job(queue=queue, max_attempts=5)
    async def refuse(payload: dict[str, str]) -> None:
        raise Fail(f"cannot send to {payload['to']}")

    with app.start_worker():
        job = refuse.enqueue({"to": "nobody"})
        dead = dead_letter(app, queue, job.id)
    assert dead.reason == "cannot send to nobody"
    assert dead.attempts == 1
    assert dead.json() == {"to": "nobody"}
    status = app.job_status(job.id)
    assert status is not None and status.event == "dead_lettered"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_uncaught_exception_is_retried_then_dead_lettered(app: jobfleet.App, queue: str, kind: str) -> None:
    attempts = Recorder()

    def boom(attempt: int) -> None:
        attempts.add(attempt)
        raise ValueError(f"boom {attempt}")

    if kind == "sync":

        @app.job(queue=queue, max_attempts=3, backoff="50ms")
        def handler(payload: object, ctx: JobContext) -> None:
            boom(ctx.attempt)

    else:

        @app.job(queue=queue, max_attempts=3, backoff="50ms")
        async def handler(payload: object, ctx: JobContext) -> None:
            boom(ctx.attempt)

    with app.start_worker():
        job = handler.enqueue({})
        dead = dead_letter(app, queue, job.id)
    assert attempts.items == [1, 2, 3]
    assert dead.attempts == 3
    # The runtime's reason names the Python class and message, and where it was raised.
    assert dead.reason.startswith("attempts exhausted (3): ValueError: boom 3 (at test_outcomes.py:")
    assert "in boom < test_outcomes.py:" in dead.reason
    retried = [e for e in app.job_history(job.id) if e.event == "retried"]
    assert [e.error.split(" (at ")[0] for e in retried if e.error] == ["ValueError: boom 1", "ValueError: boom 2"]


def test_async_handler_is_cancelled_at_its_timeout(app: jobfleet.App, queue: str) -> None:
    events = Recorder()

    @app.job(queue=queue, max_attempts=1, timeout="300ms")
    async def slow(payload: None) -> None:
        events.add("started")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.add("cancelled")
            raise

    with app.start_worker():
        started = time.monotonic()
        job = slow.enqueue(None)
        assert events.wait_for(2) == ["started", "cancelled"]
        dead = dead_letter(app, queue, job.id)
    assert time.monotonic() - started < 10
    assert "Timeout: timed out after 300ms" in dead.reason


def test_a_sync_handler_past_its_timeout_makes_the_worker_recycle(app: jobfleet.App, queue: str) -> None:
    release = threading.Event()
    events = Recorder()

    @app.job(queue=queue, max_attempts=1, timeout="200ms")
    def stuck(payload: None, ctx: JobContext) -> None:
        events.add("started")
        release.wait(30)  # a blocking call Python cannot interrupt
        events.add(("returned", ctx.cancelled))

    worker = app.start_worker(recycle_after=0.5)
    try:
        job = stuck.enqueue(None)
        # The job is settled at its timeout (dead-lettered: no attempts left) while the thread
        # still runs; the worker then stops by itself so that a fresh process can replace it.
        dead_letter(app, queue, job.id)
        assert worker.wait(timeout=20), "the worker did not stop by itself"
        assert worker.recycle_reason is not None and "did not return" in worker.recycle_reason
    finally:
        release.set()
        worker.stop()
        worker.wait()
    assert events.wait_for(2) == ["started", ("returned", True)]


def test_a_sync_handler_that_returns_soon_after_its_timeout_does_not_recycle(app: jobfleet.App, queue: str) -> None:
    events = Recorder()

    @app.job(queue=queue, max_attempts=1, timeout="200ms")
    def late(payload: None, ctx: JobContext) -> None:
        while not ctx.cancelled:  # a cooperative handler: stops once the attempt is over
            time.sleep(0.01)
        events.add("returned")

    @app.job(queue=queue, name="after")
    def after(payload: None) -> None:
        events.add("after")

    with app.start_worker(recycle_after=5) as worker:
        job = late.enqueue(None)
        dead_letter(app, queue, job.id)
        assert events.wait_for(1) == ["returned"]
        after.enqueue(None)
        assert events.wait_for(2) == ["returned", "after"]
        assert not worker.stopping
    assert worker.recycle_reason is None


def test_a_returned_value_is_kept_in_the_audit_event(app: jobfleet.App, queue: str) -> None:
    @app.job(queue=queue)
    def compute(payload: dict[str, int]) -> dict[str, int]:
        return {"sum": payload["a"] + payload["b"]}

    with app.start_worker():
        job = compute.enqueue({"a": 2, "b": 3})
        status = finished(app, job.id)
    assert status.event == "succeeded" and status.result == {"sum": 5}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_progress_is_recorded_while_the_job_runs(app: jobfleet.App, queue: str, kind: str) -> None:
    if kind == "sync":

        @app.job(queue=queue)
        def work(payload: None, ctx: JobContext) -> None:
            ctx.progress()  # a heartbeat only
            for done in (1, 2):
                ctx.progress({"done": done, "of": 2})

    else:

        @app.job(queue=queue)
        async def work(payload: None, ctx: JobContext) -> None:
            await ctx.aprogress()
            for done in (1, 2):
                await ctx.aprogress({"done": done, "of": 2})

    with app.start_worker():
        job = work.enqueue(None)
        finished(app, job.id)
    events = [(e.event, e.result) for e in app.job_history(job.id) if e.event != "enqueued"]
    assert events == [
        ("started", None),
        ("progress", {"done": 1, "of": 2}),
        ("progress", {"done": 2, "of": 2}),
        ("succeeded", None),
    ]
