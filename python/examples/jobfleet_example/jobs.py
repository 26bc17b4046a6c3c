"""Example jobs, run by the docker-compose fleet's Python worker::

    jobfleet worker jobfleet_example.jobs:app            # every queue below
    jobfleet worker jobfleet_example.jobs:app -q python  # what docker-compose.yml runs

Enqueue from anywhere, e.g. ``jobfleet enqueue python '{"message": "hi"}'`` or, in Python,
``app.enqueue("python", {"message": "hi"})``. The payload fields ``ms`` (work for that
long), ``flaky`` (fail the first attempt) and ``fail`` (give up at once) show what the
runtime does with each outcome.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jobfleet
from jobfleet import Fail, JobContext, Retry

app = jobfleet.App(name="jobfleet-example")


@app.job(queue="python")
async def handle(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Every job of the ``python`` queue: async, on the worker's event loop."""
    ctx.logger.info("handling %s", payload)
    if payload.get("fail"):
        raise Fail("asked to fail")  # dead-lettered now
    if payload.get("flaky") and ctx.attempt == 1:
        raise Retry("flaky on the first attempt", delay=1)  # runs again in 1 s
    await asyncio.sleep(float(payload.get("ms", 0)) / 1000)
    return {"echo": payload.get("message"), "attempt": ctx.attempt}  # kept in the audit event


@app.job(queue="python_reports", max_attempts=3, backoff=jobfleet.exponential("2s", max="1m"), timeout="30s")
def build_report(payload: dict[str, Any], ctx: JobContext) -> None:
    """A sync handler: runs on the worker's thread pool, so blocking calls are fine."""
    rows = int(payload.get("rows", 1000))
    started = time.monotonic()
    total = sum(range(rows))
    ctx.logger.info("report of %d rows: %d in %.3fs", rows, total, time.monotonic() - started)
