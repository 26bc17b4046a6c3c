"""The exceptions jobfleet raises.

Every error from the Rust side is a :class:`JobfleetError`; the native module picks the
class from the Rust error's kind in one place (``crates/jobfleet-py/src/errors.rs``). Each
class also derives from the closest built-in exception, so ``except ValueError`` or
``except TimeoutError`` work as expected::

    JobfleetError
    ├── ConnectFailed (ConnectionError)     NATS unreachable, or TLS failed
    │   └── AuthenticationFailed            the server rejected the credentials
    ├── NotConnected (ConnectionError)      the connection is down and did not come back in time
    ├── EnqueueTimeout (TimeoutError)       no acknowledgement in time; the job may be stored
    ├── UnknownQueue (LookupError)          no such queue (declare it first)
    ├── InvalidOption (ValueError)          a bad option or declaration; the message names it
    ├── InvalidPayload (ValueError)         the payload cannot be encoded
    ├── PayloadTooLarge (ValueError)        the job exceeds the queue's or server's size limit
    ├── QueueFull                           a bounded queue is full; retry later
    ├── QueueConflict                       a stream of that name exists but is not a queue
    ├── Rejected                            the server refused (permissions, limits, ...)
    ├── Unavailable                         JetStream did not answer
    └── UsedAfterFork (RuntimeError)        used in a child process forked after start-up

Enqueue errors carry the job's id in ``job_id`` when it was assigned: after
``EnqueueTimeout`` or ``NotConnected`` the job may be stored, and enqueueing it again with
the same idempotency key stores it at most once.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "ConnectFailed",
    "EnqueueTimeout",
    "InvalidOption",
    "InvalidPayload",
    "JobfleetError",
    "NotConnected",
    "PayloadTooLarge",
    "QueueConflict",
    "QueueFull",
    "Rejected",
    "Unavailable",
    "UnknownQueue",
    "UsedAfterFork",
]


class JobfleetError(Exception):
    """Base class of every jobfleet error."""

    job_id: str | None
    """The id of the job concerned, when there is one."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class ConnectFailed(JobfleetError, ConnectionError):
    """Could not connect to NATS: unreachable, or TLS failed."""


class AuthenticationFailed(ConnectFailed):
    """The NATS server rejected the credentials."""


class NotConnected(JobfleetError, ConnectionError):
    """The connection to NATS is down and did not come back within the enqueue deadline.
    The job was not stored (or was stored exactly once); enqueueing again is safe."""


class EnqueueTimeout(JobfleetError, TimeoutError):
    """No acknowledgement arrived in time although connected: the job may or may not be
    stored. Enqueueing it again with the same idempotency key is safe."""


class UnknownQueue(JobfleetError, LookupError):
    """There is no queue of that name: declare it first (``App.declare_queues``)."""


class InvalidOption(JobfleetError, ValueError):
    """An option, argument or queue declaration is invalid; the message names it."""


class InvalidPayload(JobfleetError, ValueError):
    """The payload cannot be encoded as JSON."""


class PayloadTooLarge(JobfleetError, ValueError):
    """The job (payload plus headers) exceeds the queue's or the server's size limit."""


class QueueFull(JobfleetError):
    """The queue reached its ``max_messages`` or ``max_bytes``; retry later."""


class QueueConflict(JobfleetError):
    """A stream with the queue's name exists but is not a jobfleet queue."""


class Rejected(JobfleetError):
    """The server refused the operation (permissions, limits, cluster state)."""


class Unavailable(JobfleetError):
    """JetStream did not answer."""


class UsedAfterFork(JobfleetError, RuntimeError):
    """jobfleet was started in this process's parent before a ``fork()``: its threads and
    connections stayed there. Create the ``App`` in the child process."""
