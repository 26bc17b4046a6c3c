"""The application: handlers by queue, enqueueing, and reading job state."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

from . import _invoke, _native
from ._durations import Duration, humantime, seconds
from .context import JobContext
from .errors import InvalidOption

if TYPE_CHECKING:
    from .worker import WorkerHandle

__all__ = [
    "App",
    "AuditEvent",
    "Backoff",
    "DeadLetter",
    "Declared",
    "Enqueued",
    "Job",
    "exponential",
]

P = TypeVar("P")
P_contra = TypeVar("P_contra", contravariant=True)

DEFAULT_URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class Backoff:
    """A queue's retry schedule: the delay after failed attempt ``n`` is
    ``min(initial * factor**(n-1), max)``, less up to ``jitter`` of it at random."""

    initial: Duration = 1.0
    factor: float = 2.0
    max: Duration = 3600.0
    jitter: float = 0.2

    def _declaration(self) -> dict[str, object]:
        return {
            "initial": humantime(self.initial, "backoff.initial"),
            "factor": float(self.factor),
            "max": humantime(self.max, "backoff.max"),
            "jitter": float(self.jitter),
        }


def exponential(
    initial: Duration = 1.0, *, max: Duration = 3600.0, factor: float = 2.0, jitter: float = 0.2
) -> Backoff:
    """Exponential backoff: ``exponential("10s", max="1h")``."""
    return Backoff(initial=initial, factor=factor, max=max, jitter=jitter)


@dataclass(frozen=True)
class Enqueued:
    """A job the queue has stored."""

    id: str
    queue: str
    sequence: int
    """Sequence in the queue's stream (of the schedule, for a delayed job)."""
    duplicate: bool
    """True when the id was already stored within the queue's duplicate window (an
    idempotent repeat): nothing new was stored."""
    run_at: datetime | None
    """When a delayed job becomes runnable."""


@dataclass(frozen=True)
class Declared:
    """What declaring a queue did."""

    queue: str
    created: bool
    changed: list[str]
    """Settings changed on an existing queue (with ``update=True``)."""
    not_applied: list[str]
    """Differences JetStream cannot apply in place (the existing value stays)."""
    differs: list[str]
    """Without ``update``: declared worker settings that differ from the existing queue's."""


@dataclass(frozen=True)
class AuditEvent:
    """One event of a job's life (audit schema v1; ``raw`` has every field)."""

    event: str
    """``enqueued``, ``started``, ``retried``, ``succeeded``, ``dead_lettered`` or ``redriven``."""
    job_id: str
    queue: str
    at: datetime
    attempt: int
    error: str | None
    """``class: message`` of a failed attempt."""
    result: object
    """A small result the handler returned, for ``succeeded``."""
    raw: dict[str, Any] = field(repr=False)

    @property
    def is_finished(self) -> bool:
        """Whether this event ends the job (succeeded or dead-lettered)."""
        return self.event in ("succeeded", "dead_lettered")

    @classmethod
    def _from_json(cls, text: str) -> AuditEvent:
        raw = json.loads(text)
        at = datetime.fromisoformat(raw["at"].replace("Z", "+00:00"))
        return cls(
            event=raw["event"],
            job_id=raw["job_id"],
            queue=raw["queue"],
            at=at,
            attempt=raw.get("attempt", 0),
            error=raw.get("error"),
            result=raw.get("result"),
            raw=raw,
        )


@dataclass(frozen=True)
class DeadLetter:
    """A job in a queue's dead-letter stream."""

    id: str
    sequence: int
    """Its sequence in the dead-letter stream (``after=`` for the next page)."""
    reason: str
    attempts: int
    dead_at: datetime | None
    job_type: str | None
    headers: list[tuple[str, str]]
    payload: bytes

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return json.loads(self.payload)


class Job(Generic[P]):
    """A handler registered with :meth:`App.job`. Calling it calls the function itself;
    :meth:`enqueue` and :meth:`aenqueue` put a job for it on its queue."""

    def __init__(self, app: App, fn: Callable[..., Any], name: str, queue: str) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        """The job type this handler runs (``Jobfleet-Type``)."""
        self.queue = queue
        self._invoke, self.is_async = _invoke.build(fn, name)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def enqueue(
        self,
        payload: P,
        *,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        timeout: Duration | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Enqueued:
        """Enqueues a job for this handler; see :meth:`App.enqueue`."""
        return self.app.enqueue(
            self,
            payload,
            delay=delay,
            run_at=run_at,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            timeout=timeout,
            headers=headers,
        )

    async def aenqueue(
        self,
        payload: P,
        *,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        timeout: Duration | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Enqueued:
        """Enqueues a job for this handler without blocking the event loop."""
        return await self.app.aenqueue(
            self,
            payload,
            delay=delay,
            run_at=run_at,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            timeout=timeout,
            headers=headers,
        )

    def __repr__(self) -> str:
        return f"<jobfleet.Job {self.name!r} on queue {self.queue!r}>"


class _JobDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[[P_contra, JobContext], Any], /) -> Job[P_contra]: ...
    @overload
    def __call__(self, fn: Callable[[P_contra], Any], /) -> Job[P_contra]: ...
    @overload
    def __call__(self, fn: Callable[[], Any], /) -> Job[None]: ...


@dataclass
class _QueueOptions:
    max_attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None

    def merge(self, queue: str, **options: Any) -> None:
        for key, value in options.items():
            if value is None:
                continue
            current = getattr(self, key)
            if current is not None and current != value:
                raise InvalidOption(
                    f"queue {queue!r}: `{key}` is {current!r} for another handler and {value!r} "
                    "for this one; options describe the queue, so its handlers must agree"
                )
            setattr(self, key, value)

    def declaration(self, queue: str) -> dict[str, object]:
        worker: dict[str, object] = {}
        if self.max_attempts is not None:
            worker["max_attempts"] = self.max_attempts
        if self.timeout is not None:
            worker["timeout"] = humantime(self.timeout, "timeout")
        if self.backoff is not None:
            worker["backoff"] = self.backoff._declaration()
        return {"name": queue, "worker": worker}


def _env_url() -> str:
    for name in ("JOBFLEET_NATS_URL", "NATS_URL"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return DEFAULT_URL


class App:
    """A jobfleet application: the handlers of some queues, and a connection to NATS.

    ``nats_url`` is one URL or a comma-separated list; without it, ``JOBFLEET_NATS_URL``,
    then ``NATS_URL``, then ``nats://127.0.0.1:4222``. Credentials come from ``NATS_CREDS``,
    ``NATS_TOKEN``, ``NATS_USER``/``NATS_PASSWORD``, ``NATS_CA``, ``NATS_CERT``/``NATS_KEY``.
    The connection is made on first use and shared by every thread.

    An app that only enqueues (a web service) needs no handlers: ``App().enqueue("emails",
    {...})`` works without importing the workers' code.
    """

    def __init__(self, nats_url: str | None = None, *, name: str | None = None) -> None:
        self.nats_url = nats_url or _env_url()
        """Where to connect; may be changed until the first connection."""
        self.name = name
        """The connection name shown by NATS monitoring."""
        self._jobs: dict[str, Job[Any]] = {}
        self._queues: dict[str, _QueueOptions] = {}
        self._client: _native.Client | None = None
        self._lock = threading.Lock()

    # ---- handlers ---------------------------------------------------------------------------

    @overload
    def job(self, fn: Callable[[P, JobContext], Any], /) -> Job[P]: ...
    @overload
    def job(self, fn: Callable[[P], Any], /) -> Job[P]: ...
    @overload
    def job(
        self,
        fn: None = None,
        /,
        *,
        queue: str = "default",
        name: str | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Duration | None = None,
        timeout: Duration | None = None,
    ) -> _JobDecorator: ...

    def job(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        queue: str = "default",
        name: str | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Duration | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """Registers a handler (``def`` or ``async def``) for jobs of ``queue``.

        The handler takes the payload, and optionally the :class:`JobContext`. The payload's
        annotation decides how it is decoded: ``bytes`` as is; ``dict``, ``Any`` or none as
        JSON; anything else (a pydantic model, a dataclass, ``list[int]``...) is validated
        by pydantic, and a payload that does not validate is dead-lettered with the error.

        ``max_attempts``, ``backoff`` and ``timeout`` are the queue's settings, applied when
        the queue is declared (at worker start-up, for a missing queue; or with
        ``declare_queues(update=True)``); the handlers of one queue must agree on them.
        A queue with one handler runs every job on it; with several, the job type (the
        handler's ``name``, by default the function's) picks the handler.
        """
        if isinstance(backoff, (timedelta, int, float, str)) and not isinstance(backoff, bool):
            backoff = Backoff(initial=backoff, factor=1.0, max=backoff)  # a constant delay
        if max_attempts is not None and (not isinstance(max_attempts, int) or max_attempts < 1):
            raise InvalidOption("`max_attempts` must be an integer >= 1")
        timeout_s = None if timeout is None else seconds(timeout, "timeout")

        def register(fn: Callable[..., Any]) -> Job[Any]:
            job_name = name or fn.__name__
            if job_name in self._jobs:
                raise InvalidOption(f"a handler named {job_name!r} is already registered")
            options = self._queues.get(queue, _QueueOptions())
            candidate = _QueueOptions(options.max_attempts, options.backoff, options.timeout)
            candidate.merge(queue, max_attempts=max_attempts, backoff=backoff, timeout=timeout_s)
            job: Job[Any] = Job(self, fn, job_name, queue)
            self._queues[queue] = candidate
            self._jobs[job_name] = job
            return job

        return register(fn) if fn is not None else register

    @property
    def jobs(self) -> Mapping[str, Job[Any]]:
        """The registered handlers by name."""
        return dict(self._jobs)

    @property
    def queues(self) -> list[str]:
        """The queues that have handlers, in registration order."""
        return list(self._queues)

    # ---- connection -------------------------------------------------------------------------

    def _connection(self) -> _native.Client:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = _native.Client.connect(self.nats_url, self.name)
                client = self._client
        return client

    def connect(self) -> None:
        """Connects now rather than on first use (raises ``ConnectFailed`` if NATS is down)."""
        self._connection()

    def close(self) -> None:
        """Sends what is buffered and drops the connection (a later call reconnects)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.flush()

    # ---- enqueue ----------------------------------------------------------------------------

    def _job_arguments(
        self,
        target: str | Job[Any],
        payload: object,
        job_type: str | None,
        delay: Duration | None,
        run_at: datetime | None,
        idempotency_key: str | None,
        max_attempts: int | None,
        timeout: Duration | None,
        headers: Mapping[str, str] | None,
        content_type: str | None,
    ) -> tuple[str, bytes, dict[str, Any]]:
        if isinstance(target, Job):
            queue, job_type = target.queue, job_type or target.name
        elif isinstance(target, str):
            queue = target
        else:
            raise InvalidOption(f"enqueue to a queue name or a registered Job, not {type(target).__name__}")
        if run_at is not None:
            if not isinstance(run_at, datetime) or run_at.tzinfo is None:
                raise InvalidOption("`run_at` must be a timezone-aware datetime")
        options: dict[str, Any] = {
            "job_type": job_type,
            "idempotency_key": idempotency_key,
            "delay": None if delay is None else seconds(delay, "delay"),
            "run_at": None if run_at is None else run_at.timestamp(),
            "max_attempts": max_attempts,
            "timeout": None if timeout is None else seconds(timeout, "timeout"),
            "headers": None if headers is None else list(headers.items()),
            "content_type": content_type,
        }
        return queue, _invoke.encode(payload), options

    def enqueue(
        self,
        target: str | Job[Any],
        payload: object = None,
        *,
        job_type: str | None = None,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        timeout: Duration | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Enqueued:
        """Puts a job on a queue and returns once JetStream has stored it.

        ``target`` is a queue name (from code that does not import the handlers; pass
        ``job_type`` when the queue has several) or a :class:`Job`. ``payload`` is encoded
        as JSON (``bytes`` are sent as they are; pydantic models with ``model_dump_json``).

        - ``delay`` / ``run_at``: run no earlier than that (at most one of the two).
        - ``idempotency_key``: the same key on the same queue within its duplicate window
          (default 2 minutes) stores nothing new and returns the first job's id.
        - ``max_attempts`` (at most the queue's), ``timeout``: override the queue's.
        - ``headers``: application headers delivered with the job.

        Raises a :class:`~jobfleet.errors.JobfleetError`: ``UnknownQueue``,
        ``InvalidOption``, ``PayloadTooLarge``, ``QueueFull``, ``NotConnected``,
        ``EnqueueTimeout``...
        """
        queue, data, options = self._job_arguments(
            target, payload, job_type, delay, run_at, idempotency_key, max_attempts, timeout, headers, content_type
        )
        return _enqueued(self._connection().enqueue(queue, data, **options))

    async def aenqueue(
        self,
        target: str | Job[Any],
        payload: object = None,
        *,
        job_type: str | None = None,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        timeout: Duration | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Enqueued:
        """:meth:`enqueue` for ``async`` code: the event loop keeps running while JetStream
        stores the job. (Connecting, on first use, still blocks briefly; call
        :meth:`connect` at start-up to avoid it.) Cancelling the caller does not unsend
        the job."""
        queue, data, options = self._job_arguments(
            target, payload, job_type, delay, run_at, idempotency_key, max_attempts, timeout, headers, content_type
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Enqueued] = loop.create_future()

        def settle(result: tuple[str, str, int, bool, float | None] | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                assert result is not None
                future.set_result(_enqueued(result))

        def callback(result: tuple[str, str, int, bool, float | None] | None, error: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # the loop was closed meanwhile: nobody waits any more
                pass

        self._connection().enqueue_async(queue, data, callback, **options)
        return await future

    # ---- queues and job state ---------------------------------------------------------------

    def declare_queues(self, queues: Iterable[str] | None = None, *, update: bool = False) -> list[Declared]:
        """Declares the queues that have handlers (or those named) with their handlers'
        options. Without ``update``, only missing queues are created, and an existing
        queue is left as its operator declared it (``Declared.differs`` lists the settings
        that differ). With ``update``, each queue is brought in line with the declaration;
        settings the handlers do not name take their defaults (1 replica, no age limit...),
        so prefer ``jobfleet queue declare --file`` for queues declared elsewhere.
        """
        client = self._connection()
        declared = []
        for queue in self._queues if queues is None else queues:
            options = self._queues.get(queue, _QueueOptions())
            created, changed, not_applied, differs = client.declare_queue(
                json.dumps(options.declaration(queue)), update
            )
            declared.append(Declared(queue, created, changed, not_applied, differs))
        return declared

    def job_status(self, job_id: str) -> AuditEvent | None:
        """The job's latest audit event (``None`` if none is recorded: unknown id, audit
        off, or aged out). ``status.event`` is e.g. ``"succeeded"``; ``status.is_finished``."""
        text = self._connection().job_status(job_id)
        return None if text is None else AuditEvent._from_json(text)

    def job_history(self, job_id: str) -> list[AuditEvent]:
        """Every audit event of the job, oldest first."""
        return [AuditEvent._from_json(text) for text in self._connection().job_history(job_id)]

    def dead_letters(self, queue: str, *, limit: int = 100, after: int = 0) -> list[DeadLetter]:
        """Up to ``limit`` dead jobs of ``queue``, oldest first, after dead-letter sequence
        ``after`` (for the next page, the last one's ``sequence``)."""
        rows = self._connection().dead_letters(queue, limit, after)
        return [
            DeadLetter(
                id=id_,
                sequence=sequence,
                reason=reason,
                attempts=attempts,
                dead_at=None if dead_at is None else datetime.fromisoformat(dead_at.replace("Z", "+00:00")),
                job_type=job_type,
                headers=headers,
                payload=payload,
            )
            for id_, sequence, reason, attempts, dead_at, job_type, headers, payload in rows
        ]

    # ---- workers ----------------------------------------------------------------------------

    def start_worker(
        self,
        queues: Iterable[str] | None = None,
        *,
        concurrency: int = 32,
        threads: int | None = None,
        grace_period: Duration = 30.0,
        metrics_port: int | None = None,
        declare: bool = True,
        recycle_after: Duration = 10.0,
    ) -> WorkerHandle:
        """Starts workers for ``queues`` (default: all with handlers) in the background and
        returns a handle to stop them (also a context manager). Signals are left alone; see
        :meth:`run_worker` for the blocking, signal-handling form. Options as there."""
        from .worker import start

        return start(
            self,
            queues,
            concurrency=concurrency,
            threads=threads,
            grace_period=grace_period,
            metrics_port=metrics_port,
            declare=declare,
            recycle_after=recycle_after,
        )

    def run_worker(
        self,
        queues: Iterable[str] | None = None,
        *,
        concurrency: int = 32,
        threads: int | None = None,
        grace_period: Duration = 30.0,
        metrics_port: int | None = None,
        declare: bool = True,
        recycle_after: Duration = 10.0,
    ) -> int:
        """Works ``queues`` (default: all with handlers) until SIGTERM or SIGINT, and returns
        the process exit code. What ``jobfleet worker`` runs. Call from the main thread.

        - ``concurrency``: jobs at once per queue in this process.
        - ``threads``: threads for ``def`` handlers (default ``min(concurrency, 64)``);
          ``async def`` handlers share one asyncio loop thread.
        - ``grace_period``: on the first signal no new jobs start and running ones have
          this long to finish; the rest are handed back to the queue. A second signal hands
          them back at once and exits within 3 s (exit code 130); a third exits at once.
        - ``metrics_port``: serve Prometheus metrics (queue ``i`` on ``metrics_port + i``).
        - ``declare``: create missing queues with the handlers' options first.
        - ``recycle_after``: a ``def`` handler still running this long after its job timed
          out (Python cannot interrupt a thread) makes the worker stop gracefully and
          return 75, so that its supervisor (``jobfleet worker``) starts a fresh process.
        """
        from .worker import run

        return run(
            self,
            queues,
            concurrency=concurrency,
            threads=threads,
            grace_period=grace_period,
            metrics_port=metrics_port,
            declare=declare,
            recycle_after=recycle_after,
        )

    def __repr__(self) -> str:
        return f"<jobfleet.App {self.nats_url!r} with {len(self._jobs)} handlers>"


def _enqueued(row: tuple[str, str, int, bool, float | None]) -> Enqueued:
    id_, queue, sequence, duplicate, run_at = row
    return Enqueued(
        id=id_,
        queue=queue,
        sequence=sequence,
        duplicate=duplicate,
        run_at=None if run_at is None else datetime.fromtimestamp(run_at, tz=timezone.utc),
    )
