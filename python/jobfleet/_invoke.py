"""Calling a handler for the Rust runtime: decode the payload, call, and turn the result or
exception into the verdict tuple that ``crates/jobfleet-py/src/dispatch.rs`` reads.

===========================  =====================================================
handler                      verdict
===========================  =====================================================
returns ``None``             ``None``: done
returns a JSON-able value    ``(1, json)``: done, the value kept in the audit event
raises ``Retry(delay=)``     ``(2, seconds or None)``: retried
raises ``Fail(reason)``      ``(3, reason)``: dead-lettered now
payload does not decode      ``(3, "invalid payload: ...")``: dead-lettered now
raises anything else         ``(4, class, message)``: retried under the policy
===========================  =====================================================
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import traceback
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Union

from . import _native
from ._outcome import Fail, Retry
from .context import JobContext
from .errors import InvalidOption

Verdict = Union[None, tuple[int, str], tuple[int, Union[float, None]], tuple[int, str, str]]
SyncInvoke = Callable[[_native.JobContext], Verdict]
AsyncInvoke = Callable[[_native.JobContext], Awaitable[Verdict]]

# A result larger than this (as JSON) is not recorded in the audit event.
_MAX_RESULT = 4096
_FRAMES = 3


def _class_name(error: BaseException) -> str:
    cls = type(error)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def summary(error: BaseException) -> str:
    """The message and where it was raised: ``message (at jobs.py:12 in send < util.py:3 in f)``,
    innermost frame first, jobfleet's own frames left out."""
    frames = [
        f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(error.__traceback__)
        if os.path.dirname(frame.filename) != os.path.dirname(__file__)
    ]
    where = " < ".join(reversed(frames[-_FRAMES:]))
    text = str(error) or repr(error)
    return f"{text} (at {where})" if where else text


def _done(result: object) -> Verdict:
    if result is None:
        return None
    try:
        dump = getattr(result, "model_dump_json", None)
        text = dump() if callable(dump) else json.dumps(result, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return (1, text) if len(text) <= _MAX_RESULT else None


# ---- payload decoding -------------------------------------------------------------------------

_JSON_TYPES = (Any, object, dict, Mapping, typing.Dict)


def decoder(annotation: object, where: str) -> Callable[[bytes], object]:
    """How to turn the raw payload into what the handler's first parameter declares."""
    if annotation is inspect.Parameter.empty or annotation in _JSON_TYPES:
        return _json_any if annotation not in (dict, Mapping, typing.Dict) else _json_object
    if annotation in (bytes, bytearray, memoryview):
        return bytes
    origin = typing.get_origin(annotation)
    if origin in (dict, Mapping) and not _needs_validation(annotation):
        return _json_object
    try:
        import pydantic
    except ImportError:
        raise InvalidOption(
            f"{where}: payload type {annotation!r} needs pydantic (pip install 'jobfleet[pydantic]'); "
            "without it, annotate the payload as dict, bytes or Any"
        ) from None
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(typing.cast(Any, annotation))
    return adapter.validate_json


def _needs_validation(annotation: object) -> bool:
    args = typing.get_args(annotation)
    return bool(args) and args[-1] not in (Any, object)


def _json_any(raw: bytes) -> object:
    return json.loads(raw)


def _json_object(raw: bytes) -> object:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _invalid_payload_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ValueError, TypeError]  # JSONDecodeError, UnicodeDecodeError
    try:
        import pydantic

        errors.append(pydantic.ValidationError)
    except ImportError:
        pass
    return tuple(errors)


# ---- handler wrappers -------------------------------------------------------------------------


def _shape(fn: Callable[..., object], where: str) -> tuple[int, object]:
    """How many of (payload, ctx) the handler takes, and its payload annotation."""
    signature = inspect.signature(fn)
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    takes = min(len(positional), 2)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        takes = 2
    if takes == 0:
        return 0, inspect.Parameter.empty
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: decode as plain JSON
        hints = {}
    first = positional[0].name if positional else ""
    annotation = hints.get(first, inspect.Parameter.empty)
    if annotation is JobContext and takes == 1:
        return -1, inspect.Parameter.empty  # handler(ctx)
    return takes, annotation


def build(fn: Callable[..., object], name: str) -> tuple[SyncInvoke | AsyncInvoke, bool]:
    """The ``invoke`` wrapper of handler ``fn`` and whether it is async."""
    where = f"handler {name!r}"
    takes, annotation = _shape(fn, where)
    decode = decoder(annotation, where) if takes > 0 else None
    invalid = _invalid_payload_errors()

    def arguments(native: _native.JobContext) -> tuple[JobContext, tuple[object, ...]] | str:
        ctx = JobContext(native)
        if takes == -1:
            return ctx, (ctx,)
        if decode is None:
            return ctx, ()
        try:
            payload = decode(native.payload)
        except invalid as error:
            return f"invalid payload: {type(error).__name__}: {error}"
        return ctx, ((payload, ctx) if takes == 2 else (payload,))

    def failed(ctx: JobContext, error: Exception) -> Verdict:
        ctx.logger.warning(
            "job %s (%s) failed on attempt %d of %d: %s",
            ctx.id,
            name,
            ctx.attempt,
            ctx.max_attempts,
            error,
            exc_info=error,
        )
        return (4, _class_name(error), summary(error))

    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):

        async def invoke_async(native: _native.JobContext) -> Verdict:
            prepared = arguments(native)
            if isinstance(prepared, str):
                return (3, prepared)
            ctx, args = prepared
            try:
                result = await typing.cast(Callable[..., Awaitable[object]], fn)(*args)
            except Retry as retry:
                return (2, retry.delay)
            except Fail as fail:
                return (3, fail.reason)
            except Exception as error:
                return failed(ctx, error)
            return _done(result)

        return invoke_async, True

    def invoke(native: _native.JobContext) -> Verdict:
        prepared = arguments(native)
        if isinstance(prepared, str):
            return (3, prepared)
        ctx, args = prepared
        try:
            result = fn(*args)
        except Retry as retry:
            return (2, retry.delay)
        except Fail as fail:
            return (3, fail.reason)
        except Exception as error:
            return failed(ctx, error)
        if inspect.isawaitable(result):
            # A sync function that returned a coroutine: it never ran. Say so loudly.
            close = getattr(result, "close", None)
            if callable(close):
                close()
            return (3, f"{where} returned an awaitable; declare it `async def`")
        return _done(result)

    return invoke, False


def encode(payload: object) -> bytes:
    """A payload as the bytes a job carries: bytes as they are, pydantic models and
    dataclasses as JSON, anything else through ``json.dumps``."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    dump = getattr(payload, "model_dump_json", None)
    if callable(dump):
        return str(dump()).encode()
    if dataclasses.is_dataclass(payload) and not isinstance(payload, type):
        payload = dataclasses.asdict(payload)
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as error:
        from .errors import InvalidPayload

        raise InvalidPayload(f"the payload cannot be encoded as JSON: {error}") from error
