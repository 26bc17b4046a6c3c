"""The Python side of the fault suite (tests/fault): one sync and one async handler whose
behaviour each job's payload picks, like the Rust fault worker's.

Every execution appends ``<unix ms> <job id> <attempt> <pid> <queue> <kind>`` to ``FAULT_EXEC_LOG``
before anything else (one ``write`` to an ``O_APPEND`` file, so it survives a crash).
Queues come from ``FAULT_SYNC_QUEUE`` and ``FAULT_ASYNC_QUEUE``; the test declares them.
"""

from __future__ import annotations

import asyncio
import os
import time

import jobfleet
from jobfleet import JobContext

app = jobfleet.App()
_LOG = os.open(os.environ["FAULT_EXEC_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _record(payload: dict[str, object], ctx: JobContext) -> str:
    kind = str(payload.get("kind", "good"))
    line = f"{time.time_ns() // 1_000_000} {ctx.id} {ctx.attempt} {os.getpid()} {ctx.queue} {kind}\n"
    os.write(_LOG, line.encode())
    return kind


@app.job(queue=os.environ.get("FAULT_SYNC_QUEUE", "py-sync"))
def sync_job(payload: dict[str, object], ctx: JobContext) -> None:
    kind = _record(payload, ctx)
    first = ctx.attempt == 1
    if kind == "raise":
        raise ValueError(f"handler raised on job {ctx.id}")
    if kind == "exit-once" and first:
        os._exit(86)
    if kind == "hang-once" and first:
        time.sleep(3600)
    time.sleep(0.01)


@app.job(queue=os.environ.get("FAULT_ASYNC_QUEUE", "py-async"))
async def async_job(payload: dict[str, object], ctx: JobContext) -> None:
    kind = _record(payload, ctx)
    if kind == "raise":
        raise ValueError(f"handler raised on job {ctx.id}")
    if kind == "hang-once" and ctx.attempt == 1:
        await asyncio.sleep(3600)
    await asyncio.sleep(0.01)
