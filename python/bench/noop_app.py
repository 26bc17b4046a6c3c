"""The benchmark's Python handlers: no-op, sync and async, on the queues the benchmark names
(``BENCH_SYNC_QUEUE``, ``BENCH_ASYNC_QUEUE``)."""

from __future__ import annotations

import os

import jobfleet

app = jobfleet.App()


@app.job(queue=os.environ.get("BENCH_SYNC_QUEUE", "bench_sync"))
def sync_noop(payload: bytes) -> None:
    pass


@app.job(queue=os.environ.get("BENCH_ASYNC_QUEUE", "bench_async"))
async def async_noop(payload: bytes) -> None:
    pass
