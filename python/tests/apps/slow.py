"""A worker app for process tests: ``TEST_QUEUE`` is the queue, ``TEST_LOG`` a file where
each attempt appends ``start <id> <pid>`` and ``done <id> <pid>`` lines. Payload
``{"seconds": s}`` works that long; ``{"block": true}`` never returns (a handler Python
cannot interrupt)."""

from __future__ import annotations

import os
import time

import jobfleet
from jobfleet import JobContext

app = jobfleet.App()
LOG = os.environ.get("TEST_LOG", os.devnull)


def note(line: str) -> None:
    with open(LOG, "a") as log:
        log.write(line + "\n")


@app.job(queue=os.environ.get("TEST_QUEUE", "slow"), max_attempts=2, backoff="100ms", timeout="5s")
def slow(payload: dict[str, float], ctx: JobContext) -> None:
    note(f"start {ctx.id} {os.getpid()}")
    if payload.get("block"):
        while True:
            time.sleep(0.05)
    time.sleep(payload.get("seconds", 0))
    note(f"done {ctx.id} {os.getpid()}")
