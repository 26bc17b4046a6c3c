"""Enqueueing: options, async enqueue, idempotency, and errors as Python exceptions."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timedelta, timezone

import pytest

import jobfleet
from jobfleet import JobContext
from jobfleet.errors import ConnectFailed, InvalidOption, JobfleetError, PayloadTooLarge, QueueFull, UnknownQueue

from conftest import NatsServer
from helpers import Recorder


def test_delay_holds_the_job_back(app: jobfleet.App, queue: str) -> None:
    started = Recorder()

    @app.job(queue=queue)
    def later(payload: dict[str, float]) -> None:
        started.add(time.time())

    with app.start_worker():
        before = time.time()
        job = later.enqueue({"x": 1}, delay=timedelta(seconds=1.5))
        assert job.run_at is not None
        assert 1.4 <= (job.run_at.timestamp() - before) <= 3
        [at] = started.wait_for(1)
    assert at >= job.run_at.timestamp() - 0.05, f"ran {job.run_at.timestamp() - at:.3f}s early"


def test_run_at_must_be_aware_and_not_with_delay(app: jobfleet.App, queue: str) -> None:
    app.declare_queues([queue])
    with pytest.raises(InvalidOption, match="timezone-aware"):
        app.enqueue(queue, {}, run_at=datetime.now())
    with pytest.raises(InvalidOption, match="either `delay` or `run_at`"):
        app.enqueue(queue, {}, delay=5, run_at=datetime.now(timezone.utc) + timedelta(seconds=5))
    with pytest.raises(InvalidOption, match="cannot read 'soon' as a duration"):
        app.enqueue(queue, {}, delay="soon")
    at = datetime.now(timezone.utc) + timedelta(minutes=5)
    job = app.enqueue(queue, {}, run_at=at)
    assert job.run_at is not None and abs((job.run_at - at).total_seconds()) < 0.002


def test_the_same_idempotency_key_stores_one_job(app: jobfleet.App, queue: str) -> None:
    runs = Recorder()

    @app.job(queue=queue)
    def charge(payload: dict[str, int], ctx: JobContext) -> None:
        runs.add((ctx.id, payload))

    app.declare_queues()
    first = charge.enqueue({"order": 42}, idempotency_key="order-42:charge")
    again = charge.enqueue({"order": 42}, idempotency_key="order-42:charge")
    other = charge.enqueue({"order": 43}, idempotency_key="order-43:charge")
    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again.id == first.id != other.id
    with app.start_worker():
        assert sorted(runs.wait_for(2)) == sorted([(first.id, {"order": 42}), (other.id, {"order": 43})])
    assert len(runs.items) == 2


def test_aenqueue_with_delay_and_idempotency_key(app: jobfleet.App, queue: str) -> None:
    runs = Recorder()

    @app.job(queue=queue)
    async def ping(payload: dict[str, int]) -> None:
        runs.add(payload["n"])

    async def produce() -> list[jobfleet.Enqueued]:
        # Many at once on one event loop: none blocks it.
        plain = await asyncio.gather(*(ping.aenqueue({"n": n}) for n in range(20)))
        keyed = await app.aenqueue(queue, {"n": 100}, idempotency_key="k", job_type="ping")
        repeat = await app.aenqueue(queue, {"n": 100}, idempotency_key="k", job_type="ping")
        delayed = await ping.aenqueue({"n": 200}, delay=0.5)
        return [*plain, keyed, repeat, delayed]

    app.declare_queues()
    results = asyncio.run(produce())
    assert len({r.id for r in results}) == 22
    assert results[21].duplicate and results[21].id == results[20].id
    assert results[22].run_at is not None
    with app.start_worker():
        assert sorted(runs.wait_for(22)) == [*range(20), 100, 200]


def test_aenqueue_raises_the_same_errors(app: jobfleet.App, queue: str) -> None:
    # A bounded queue (declared by an operator; the handler options cannot say this).
    app._connection().declare_queue(json.dumps({"name": queue, "max_messages": 1}), True)

    async def produce() -> None:
        with pytest.raises(UnknownQueue):
            await app.aenqueue("no_such_queue_here", {})
        await app.aenqueue(queue, {"n": 1})
        await app.aenqueue(queue, {"n": 2})

    with pytest.raises(QueueFull) as full:
        asyncio.run(produce())
    assert full.value.job_id is not None  # the id it was sent with: a retry may reuse it


def test_errors_from_rust_are_typed(app: jobfleet.App, queue: str, nats: NatsServer) -> None:
    with pytest.raises(UnknownQueue, match="no_such_queue") as unknown:
        app.enqueue("no_such_queue", {})
    assert isinstance(unknown.value, LookupError) and isinstance(unknown.value, JobfleetError)
    with pytest.raises(UnknownQueue, match="invalid queue name"):
        app.enqueue("not a queue!", {})

    @app.job(queue=queue, max_attempts=3)
    def handler(payload: object) -> None:
        pass

    app.declare_queues()
    with pytest.raises(InvalidOption, match="exceeds queue .*limit of 3"):
        handler.enqueue({}, max_attempts=4)
    with pytest.raises(InvalidOption, match="reserved"):
        handler.enqueue({}, headers={"Jobfleet-Id": "x"})
    with pytest.raises(PayloadTooLarge) as too_large:
        handler.enqueue(b"x" * (2 * 1024 * 1024))
    assert isinstance(too_large.value, ValueError)
    with pytest.raises(ConnectFailed) as refused:
        jobfleet.App("nats://127.0.0.1:1").connect()
    assert isinstance(refused.value, ConnectionError)


def test_the_context_carries_the_job(app: jobfleet.App, queue: str, caplog: pytest.LogCaptureFixture) -> None:
    seen = Recorder()

    @app.job(queue=queue, max_attempts=4, timeout="45s")
    def inspect(payload: None, ctx: JobContext) -> None:
        ctx.progress()
        ctx.logger.info("inspecting", extra={"step": "one"})
        seen.add(
            {
                "queue": ctx.queue,
                "attempt": ctx.attempt,
                "max_attempts": ctx.max_attempts,
                "last": ctx.is_last_attempt,
                "type": ctx.job_type,
                "tenant": ctx.headers.get("tenant"),
                "timeout": ctx.timeout,
                "age": (datetime.now(timezone.utc) - ctx.enqueued_at).total_seconds(),
                "trace_id": ctx.trace_id,
                "cancelled": ctx.cancelled,
            }
        )

    caplog.set_level(logging.INFO, logger="jobfleet.job")
    with app.start_worker():
        job = inspect.enqueue(None, headers={"tenant": "acme"}, max_attempts=2)
        [seen_by_handler] = seen.wait_for(1)
    age = seen_by_handler.pop("age")
    assert 0 <= age < 10
    assert seen_by_handler == {
        "queue": queue,
        "attempt": 1,
        "max_attempts": 2,
        "last": False,
        "type": "inspect",
        "tenant": "acme",
        "timeout": timedelta(seconds=45),
        "trace_id": None,
        "cancelled": False,
    }
    [record] = [r for r in caplog.records if r.getMessage() == "inspecting"]
    assert (record.job_id, record.queue, record.attempt, record.step) == (job.id, queue, 1, "one")  # type: ignore[attr-defined]


def test_handlers_of_one_queue_are_picked_by_job_type(app: jobfleet.App, queue: str) -> None:
    seen = Recorder()

    @app.job(queue=queue)
    def first(payload: None) -> None:
        seen.add("first")

    @app.job(queue=queue, name="the-second")
    async def second(payload: None) -> None:
        seen.add("second")

    with pytest.raises(InvalidOption, match="already registered"):
        app.job(queue=queue, name="first")(lambda payload: None)
    with pytest.raises(InvalidOption, match="handlers must agree"):
        app.job(queue=queue, max_attempts=2)(lambda payload: None)
        app.job(queue=queue, max_attempts=3, name="other")(lambda payload: None)

    with app.start_worker():
        second.enqueue(None)
        first.enqueue(None)
        app.enqueue(queue, None, job_type="the-second")
        assert sorted(seen.wait_for(3)) == ["first", "second", "second"]
