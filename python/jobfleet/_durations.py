"""Durations as users write them: ``timedelta``, seconds (``int``/``float``) or text."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Union

from .errors import InvalidOption

Duration = Union[timedelta, float, int, str]
"""A duration: a ``timedelta``, a number of seconds, or text such as ``"500ms"``,
``"30s"``, ``"2m"``, ``"1h30m"`` or ``"7d"``."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")


def seconds(value: Duration, field: str) -> float:
    """``value`` in seconds; raises ``InvalidOption`` naming ``field``."""
    if isinstance(value, bool):
        raise InvalidOption(f"`{field}` must be a duration, not a bool")
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        result = _parse(value, field)
    else:
        raise InvalidOption(
            f"`{field}` must be a timedelta, a number of seconds or text like '30s', "
            f"not {type(value).__name__}"
        )
    if not math.isfinite(result) or result < 0:
        raise InvalidOption(f"`{field}` must be a finite duration >= 0, got {value!r}")
    return result


def _parse(text: str, field: str) -> float:
    total, end = 0.0, 0
    for match in _PART.finditer(text):
        if match.start() != end:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        end = match.end()
    if end == 0 or text[end:].strip():
        raise InvalidOption(
            f"`{field}`: cannot read {text!r} as a duration (e.g. '500ms', '30s', '2m', '1h30m', '7d')"
        )
    return total


def humantime(value: Duration, field: str) -> str:
    """``value`` as the text the Rust side's declarations read, in whole milliseconds."""
    return f"{round(seconds(value, field) * 1000)}ms"
