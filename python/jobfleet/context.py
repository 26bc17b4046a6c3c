"""What a handler knows about the attempt it runs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, MutableMapping
from datetime import datetime, timedelta, timezone
from typing import Any

from . import _native

__all__ = ["JobContext", "JobLogger"]

_logger = logging.getLogger("jobfleet.job")


def _progress_json(value: object) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        from .errors import InvalidPayload

        raise InvalidPayload(f"progress must be JSON-encodable: {error}") from error


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose records carry the job's fields as attributes (``job_id``, ``queue``,
    ``attempt``, ``job_type``), merged with any ``extra=`` given per call."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


class JobContext:
    """One attempt of a job, as its handler sees it. Declare a second parameter to get it::

        @app.job(queue="emails")
        def send(payload: dict, ctx: JobContext) -> None:
            ctx.logger.info("attempt %d of %d", ctx.attempt, ctx.max_attempts)
    """

    __slots__ = ("_native", "_logger")

    def __init__(self, native: _native.JobContext) -> None:
        self._native = native
        self._logger: JobLogger | None = None

    @property
    def id(self) -> str:
        """The job id (a UUID; derived from the idempotency key when there is one)."""
        return self._native.id

    @property
    def queue(self) -> str:
        """The queue."""
        return self._native.queue

    @property
    def attempt(self) -> int:
        """This attempt's number, from 1."""
        return self._native.attempt

    @property
    def max_attempts(self) -> int:
        """Attempts the job may make before it is dead-lettered."""
        return self._native.max_attempts

    @property
    def is_last_attempt(self) -> bool:
        """Whether a failure of this attempt dead-letters the job."""
        return self._native.attempt >= self._native.max_attempts

    @property
    def job_type(self) -> str | None:
        """The job type (the handler's name when enqueued through the handler)."""
        return self._native.job_type

    @property
    def enqueued_at(self) -> datetime:
        """When the queue accepted the job (UTC)."""
        return datetime.fromtimestamp(self._native.enqueued_at, tz=timezone.utc)

    @property
    def timeout(self) -> timedelta:
        """This attempt's time limit."""
        return timedelta(seconds=self._native.timeout)

    @property
    def headers(self) -> Mapping[str, str]:
        """The message's headers: yours (``headers=`` at enqueue) and jobfleet's own
        (``Jobfleet-*``, ``Nats-*``)."""
        return self._native.headers

    @property
    def trace_id(self) -> str | None:
        """The producer's W3C trace id, when it sent a ``traceparent``."""
        return self._native.trace_id

    @property
    def traceparent(self) -> str | None:
        """The producer's W3C ``traceparent``, if any."""
        return self._native.traceparent

    @property
    def cancelled(self) -> bool:
        """True once the attempt is over for the runtime: it timed out, or the worker is
        handing it back at shutdown. A long-running sync handler should check this and
        return; async handlers are cancelled instead (``asyncio.CancelledError``)."""
        return self._native.cancelled

    @property
    def logger(self) -> JobLogger:
        """A logger (``jobfleet.job``) whose records carry this job's fields."""
        if self._logger is None:
            self._logger = JobLogger(
                _logger,
                {
                    "job_id": self._native.id,
                    "queue": self._native.queue,
                    "attempt": self._native.attempt,
                    "job_type": self._native.job_type,
                },
            )
        return self._logger

    def progress(self, value: object = None) -> None:
        """Reports progress and extends the job's lease.

        ``value`` (any small JSON-able value, e.g. ``{"done": 40, "of": 100}``) is recorded
        as a ``progress`` audit event, which ``App.job_status`` shows while the job runs,
        when the queue's audit level is ``full``; without it this is just a heartbeat. The
        runtime already extends the lease on a timer while the handler runs.

        Returns once recorded (a network round trip; the GIL is released meanwhile). In an
        ``async def`` handler use ``await ctx.aprogress(...)``, which does not block the
        event loop.
        """
        self._native.progress(_progress_json(value))

    async def aprogress(self, value: object = None) -> None:
        """:meth:`progress` for ``async def`` handlers."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not done.done():
                done.set_result(None)

        def callback() -> None:
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:  # the loop is closed: nobody waits
                pass

        self._native.progress_async(callback, _progress_json(value))
        await done

    def __repr__(self) -> str:
        return f"JobContext(id={self.id!r}, queue={self.queue!r}, attempt={self.attempt}/{self.max_attempts})"
