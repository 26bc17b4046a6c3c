"""Recording what handlers saw, and waiting for it with a deadline."""

from __future__ import annotations

import threading
import time
from typing import Any


class Recorder:
    """Thread-safe list of what handlers saw; ``wait_for(n)`` blocks until ``n`` entries."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._changed = threading.Condition()

    def add(self, item: Any) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    @property
    def items(self) -> list[Any]:
        with self._changed:
            return list(self._items)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._items) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} entries within {timeout}s, got {self._items!r}")
                self._changed.wait(left)
            return list(self._items)
