"""What a handler raises to choose its job's fate."""

from __future__ import annotations

from ._durations import Duration, seconds


class Retry(Exception):
    """Raise to run the job again later: after ``delay``, or after the queue's backoff when
    ``delay`` is ``None``. It uses up an attempt; with none left, the job is dead-lettered.

    >>> raise Retry(delay=30)          # doctest: +SKIP
    """

    delay: float | None
    """Seconds until the next attempt, or ``None`` for the queue's backoff."""

    def __init__(self, reason: str = "retry requested", *, delay: Duration | None = None) -> None:
        super().__init__(reason)
        self.delay = None if delay is None else seconds(delay, "delay")


class Fail(Exception):
    """Raise to give up on the job now: it goes to the queue's dead letters with ``reason``
    (browse them with ``App.dead_letters``; ``jobfleet dlq redrive`` puts them back)."""

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
