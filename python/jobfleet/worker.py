"""Running workers: the Rust runtime pulls, leases, retries, dead-letters and audits; Python
runs the handlers (``def`` on a thread pool, ``async def`` on one asyncio loop thread)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from . import _native
from ._durations import Duration, seconds
from .errors import InvalidOption

if TYPE_CHECKING:
    from .app import App

__all__ = ["EXIT_RECYCLE", "QueueStats", "WorkerHandle"]

log = logging.getLogger("jobfleet.worker")

EXIT_RECYCLE = 75
"""Exit code of a worker that stopped to be replaced (a ``def`` handler overran its timeout
and could not be interrupted); ``jobfleet worker`` starts a new process on it."""

EXIT_SIGNAL = 130
"""Exit code after a second shutdown signal."""


class AsyncRunner:
    """One thread running an asyncio loop for ``async def`` handlers. The native bridge hands
    it batches of jobs (``submit``) and cancellations (``cancel``); each job's verdict goes
    back through its ``done`` callback."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._thread = threading.Thread(target=self._run, name="jobfleet-asyncio", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    # Called from the native submitter thread.
    def submit(self, jobs: list[tuple[int, Any, _native.JobContext, _native.Completion]]) -> None:
        self.loop.call_soon_threadsafe(self._start, jobs)

    def cancel(self, keys: list[int]) -> None:
        self.loop.call_soon_threadsafe(self._cancel, keys)

    # On the loop's thread.
    def _start(self, jobs: list[tuple[int, Any, _native.JobContext, _native.Completion]]) -> None:
        for key, invoke, ctx, done in jobs:
            task = self.loop.create_task(invoke(ctx))
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._finished, key, done))

    def _finished(self, key: int, done: _native.Completion, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(key, None)
        if task.cancelled():
            done((4, "CancelledError", "the handler was cancelled"))
            return
        error = task.exception()
        if error is not None:  # a BaseException the wrapper does not catch
            done((4, type(error).__name__, str(error)))
        else:
            done(task.result())

    def _cancel(self, keys: list[int]) -> None:
        for key in keys:
            task = self._tasks.get(key)
            if task is not None:
                task.cancel()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            return
        self._thread.join(timeout=10)


@dataclass(frozen=True)
class QueueStats:
    """What one queue's worker did."""

    queue: str
    started: int
    succeeded: int
    retried: int
    dead_lettered: int
    released: int
    """Jobs handed back at shutdown (not counted as attempts)."""


class WorkerHandle:
    """Workers running in the background (from :meth:`App.start_worker`)."""

    def __init__(self, host: _native.WorkerHost, runner: AsyncRunner | None) -> None:
        self._host = host
        self._runner = runner
        self._closed = threading.Lock()

    def stop(self) -> None:
        """Graceful shutdown: no new jobs; running ones may finish within the grace period."""
        self._host.stop()

    def abort(self) -> None:
        """Hands running jobs back to the queue at once (they do not use up an attempt)."""
        self._host.abort()

    def wait(self, timeout: float | None = None) -> bool:
        """Waits until the workers have stopped (or ``timeout`` seconds); True when stopped."""
        stopped = self._host.wait(timeout)
        if stopped and self._runner is not None and self._closed.acquire(blocking=False):
            self._runner.close()
        return stopped

    @property
    def stopping(self) -> bool:
        return self._host.stopping

    @property
    def stats(self) -> list[QueueStats] | None:
        """Counters per queue, once stopped."""
        stats = self._host.stats
        return None if stats is None else [QueueStats(*row) for row in stats]

    @property
    def metrics_addrs(self) -> list[str]:
        """Where Prometheus metrics are served (one address per queue)."""
        return self._host.metrics_addrs

    @property
    def recycle_reason(self) -> str | None:
        """Why the worker stopped itself to be replaced, if it did."""
        return self._host.recycle_reason

    def __enter__(self) -> WorkerHandle:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.wait()


def start(
    app: App,
    queues: Iterable[str] | None,
    *,
    concurrency: int,
    threads: int | None,
    grace_period: Duration,
    metrics_port: int | None,
    declare: bool,
    recycle_after: Duration,
) -> WorkerHandle:
    names = list(app.queues if queues is None else queues)
    if not names:
        raise InvalidOption("no queues to work: register handlers with @app.job(queue=...)")
    routes = []
    for queue in names:
        jobs = [job for job in app.jobs.values() if job.queue == queue]
        if not jobs:
            raise InvalidOption(f"queue {queue!r} has no handlers in this app (it has: {', '.join(app.queues)})")
        routes.append((queue, [(job.name, job._invoke, job.is_async) for job in jobs]))
    if declare:
        for declared in app.declare_queues(names):
            if declared.created:
                log.info("declared queue %s", declared.queue)
            for difference in declared.differs:
                log.warning(
                    "queue %s exists with other settings than its handlers declare (%s); "
                    "the queue's are used. Apply the handlers' with app.declare_queues(update=True) "
                    "or `jobfleet queue declare`.",
                    declared.queue,
                    difference,
                )
    needs_loop = any(is_async for _, handlers in routes for _, _, is_async in handlers)
    runner = AsyncRunner() if needs_loop else None
    try:
        host = _native.WorkerHost(
            app._connection(),
            routes,
            concurrency=concurrency,
            threads=threads,
            grace_period=seconds(grace_period, "grace_period"),
            metrics_port=metrics_port,
            runner=runner,
            recycle_after=seconds(recycle_after, "recycle_after"),
        )
        host.start()
    except BaseException:
        if runner is not None:
            runner.close()
        raise
    for addr in host.metrics_addrs:
        log.info("serving metrics on http://%s/metrics", addr)
    return WorkerHandle(host, runner)


def run(
    app: App,
    queues: Iterable[str] | None,
    *,
    concurrency: int,
    threads: int | None,
    grace_period: Duration,
    metrics_port: int | None,
    declare: bool,
    recycle_after: Duration,
) -> int:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run_worker handles signals and must run on the main thread; use start_worker elsewhere")
    handle = start(
        app,
        queues,
        concurrency=concurrency,
        threads=threads,
        grace_period=grace_period,
        metrics_port=metrics_port,
        declare=declare,
        recycle_after=recycle_after,
    )
    received = 0

    def on_signal(number: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        name = signal.Signals(number).name
        if received == 1:
            log.info("%s: shutting down; no new jobs, running jobs may finish", name)
            handle.stop()
        elif received == 2:
            log.warning("%s again: handing back running jobs; exiting within 3 s", name)
            handle.abort()
            timer = threading.Timer(3.0, os._exit, (EXIT_SIGNAL,))
            timer.daemon = True
            timer.start()
        else:
            os._exit(EXIT_SIGNAL)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    log.info("working %s with %d slots per queue", ", ".join(app.queues if queues is None else queues), concurrency)
    try:
        handle.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    for stats in handle.stats or []:
        log.info(
            "stopped %s: succeeded %d, retried %d, dead-lettered %d, handed back %d",
            stats.queue,
            stats.succeeded,
            stats.retried,
            stats.dead_lettered,
            stats.released,
        )
    if received >= 2:
        return EXIT_SIGNAL
    reason = handle.recycle_reason
    if reason is not None:
        log.error("recycling: %s", reason)
        return EXIT_RECYCLE
    return 0
