"""jobfleet: Python handlers on a Rust job-queue runtime over NATS JetStream.

.. code-block:: python

    import jobfleet
    from jobfleet import JobContext, Retry, Fail

    app = jobfleet.App()  # NATS from JOBFLEET_NATS_URL / NATS_URL, or App("nats://...")

    @app.job(queue="emails", max_attempts=5, backoff=jobfleet.exponential("10s", max="1h"), timeout="2m")
    async def send_email(payload: dict, ctx: JobContext) -> None:
        ...

    send_email.enqueue({"to": "ada@example.com"})   # or app.enqueue("emails", {...})

Run the handlers with ``jobfleet worker myapp.jobs:app``. The Rust runtime pulls the jobs,
keeps their leases, retries with backoff, dead-letters and audits; a handler only returns
(done), raises :class:`Retry` or :class:`Fail`, or raises anything else (retried under the
queue's policy).
"""

from . import errors
from ._durations import Duration
from ._native import __version__
from ._outcome import Fail, Retry
from .app import App, AuditEvent, Backoff, DeadLetter, Declared, Enqueued, Job, exponential
from .context import JobContext, JobLogger
from .errors import JobfleetError
from .worker import QueueStats, WorkerHandle

__all__ = [
    "App",
    "AuditEvent",
    "Backoff",
    "DeadLetter",
    "Declared",
    "Duration",
    "Enqueued",
    "Fail",
    "Job",
    "JobContext",
    "JobLogger",
    "JobfleetError",
    "QueueStats",
    "Retry",
    "WorkerHandle",
    "__version__",
    "errors",
    "exponential",
]
