"""Stubs of the private native module (``crates/jobfleet-py``); checked against the module
by ``python -m mypy.stubtest jobfleet._native`` (``tests/test_stubs.py``)."""

from collections.abc import Callable, Sequence
from typing import Any, final

__all__ = [
    "Client",
    "JobContext",
    "Completion",
    "WorkerHost",
    "init_telemetry",
    "shutdown_telemetry",
    "run_cli",
    "__version__",
]

__version__: str

_Enqueued = tuple[str, str, int, bool, float | None]
_DeadLetter = tuple[str, int, str, int, str | None, str | None, list[tuple[str, str]], bytes]
_QueueStats = tuple[str, int, int, int, int, int]

@final
class Client:
    @staticmethod
    def connect(url: str, name: str | None = None) -> Client: ...
    @property
    def url(self) -> str: ...
    def enqueue(
        self,
        queue: str,
        payload: bytes,
        *,
        job_type: str | None = None,
        idempotency_key: str | None = None,
        delay: float | None = None,
        run_at: float | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        headers: Sequence[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ) -> _Enqueued: ...
    def enqueue_async(
        self,
        queue: str,
        payload: bytes,
        callback: Callable[[_Enqueued | None, BaseException | None], object],
        *,
        job_type: str | None = None,
        idempotency_key: str | None = None,
        delay: float | None = None,
        run_at: float | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        headers: Sequence[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ) -> None: ...
    def declare_queue(self, config_json: str, update: bool) -> tuple[bool, list[str], list[str], list[str]]: ...
    def job_status(self, job_id_: str) -> str | None: ...
    def job_history(self, job_id_: str) -> list[str]: ...
    def dead_letters(self, queue: str, limit: int, after: int = 0) -> list[_DeadLetter]: ...
    def flush(self) -> None: ...

@final
class JobContext:
    @property
    def id(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def job_type(self) -> str | None: ...
    @property
    def enqueued_at(self) -> float: ...
    @property
    def timeout(self) -> float: ...
    @property
    def traceparent(self) -> str | None: ...
    @property
    def trace_id(self) -> str | None: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def cancelled(self) -> bool: ...
    def progress(self, value_json: str | None = None) -> None: ...
    def progress_async(self, callback: Callable[[], object], value_json: str | None = None) -> None: ...

@final
class Completion:
    def __call__(self, result: Any) -> None: ...

@final
class WorkerHost:
    def __new__(
        cls,
        client: Client,
        queues: Sequence[tuple[str, Sequence[tuple[str, Callable[..., Any], bool]]]],
        *,
        concurrency: int = 32,
        threads: int | None = None,
        grace_period: float = 30.0,
        metrics_port: int | None = None,
        runner: Any | None = None,
        recycle_after: float = 10.0,
    ) -> WorkerHost: ...
    def start(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...
    def stop(self) -> None: ...
    def abort(self) -> None: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def recycle_reason(self) -> str | None: ...
    @property
    def metrics_addrs(self) -> list[str]: ...
    @property
    def stats(self) -> list[_QueueStats] | None: ...

def init_telemetry(service_name: str) -> bool: ...
def shutdown_telemetry() -> None: ...
def run_cli(args: Sequence[str]) -> int: ...
