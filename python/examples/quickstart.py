"""The README's example: handlers, enqueue, and a worker, in one file.

    python quickstart.py           # needs NATS on 127.0.0.1:4222 (e.g. `jobfleet dev`)
"""

from __future__ import annotations

import time

import jobfleet
from jobfleet import Fail, JobContext, Retry

app = jobfleet.App()  # JOBFLEET_NATS_URL or NATS_URL, default nats://127.0.0.1:4222


@app.job(queue="emails", max_attempts=5, backoff=jobfleet.exponential("1s", max="1m"), timeout="30s")
def send_email(payload: dict[str, str], ctx: JobContext) -> None:
    if "@" not in payload["to"]:
        raise Fail("not an email address")  # dead-lettered now, never retried
    if ctx.attempt == 1:
        raise Retry("smtp busy", delay=0.5)  # runs again in half a second
    ctx.logger.info("sent to %s on attempt %d", payload["to"], ctx.attempt)


if __name__ == "__main__":
    with app.start_worker():  # in the background; `jobfleet worker quickstart:app` in production
        job = send_email.enqueue({"to": "ada@example.com"})
        while (status := app.job_status(job.id)) is None or not status.is_finished:
            time.sleep(0.1)
        print(job.id, status.event, "after", status.attempt, "attempts")
