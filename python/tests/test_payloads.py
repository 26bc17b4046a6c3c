"""Payload typing: dict and bytes as they are, pydantic models (and anything pydantic
validates) when annotated; a payload that does not fit is dead-lettered with the error."""

from __future__ import annotations

import dataclasses

import pydantic
import pytest

import jobfleet
from jobfleet import JobContext
from jobfleet.errors import InvalidPayload

from helpers import Recorder
from test_outcomes import dead_letter


class Email(pydantic.BaseModel):
    to: str
    subject: str = "hello"
    retries: int = 0


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_a_pydantic_payload_is_validated_into_the_model(app: jobfleet.App, queue: str) -> None:
    seen = Recorder()

    @app.job(queue=queue)
    async def send(email: Email, ctx: JobContext) -> None:
        seen.add(email)

    with app.start_worker():
        send.enqueue(Email(to="ada@example.com", retries=2))  # a model is sent as its JSON
        app.enqueue(queue, {"to": "bob@example.com", "retries": "3"})  # pydantic coerces "3"
        received = seen.wait_for(2)
    assert sorted(received, key=lambda e: e.to) == [
        Email(to="ada@example.com", retries=2),
        Email(to="bob@example.com", retries=3),
    ]


def test_an_invalid_payload_is_dead_lettered_with_the_validation_error(app: jobfleet.App, queue: str) -> None:
    calls = Recorder()

    @app.job(queue=queue, max_attempts=5)
    def send(email: Email) -> None:
        calls.add(email)

    with app.start_worker():
        job = app.enqueue(queue, {"subject": "no recipient", "retries": "many"})
        dead = dead_letter(app, queue, job.id)
    assert dead.attempts == 1, "an invalid payload is not retried"
    assert dead.reason.startswith("invalid payload: ValidationError: 2 validation errors for Email")
    assert "to" in dead.reason and "Field required" in dead.reason and "retries" in dead.reason
    assert calls.items == []


def test_dataclasses_and_generic_types_are_validated_too(app: jobfleet.App, queue: str) -> None:
    seen = Recorder()

    @app.job(queue=queue)
    def move(point: Point) -> None:
        seen.add(point)

    @app.job(queue=queue + "_list")
    def total(numbers: list[int]) -> None:
        seen.add(sum(numbers))

    with app.start_worker():
        move.enqueue(Point(1, 2))
        total.enqueue([1, 2, 3])
        received = seen.wait_for(2)
    assert Point(1, 2) in received and 6 in received


def test_bytes_are_passed_as_they_are(app: jobfleet.App, queue: str) -> None:
    seen = Recorder()

    @app.job(queue=queue)
    def raw(data: bytes) -> None:
        seen.add(data)

    with app.start_worker():
        app.enqueue(queue, b"\x00\xffnot json", content_type="application/octet-stream")
        assert seen.wait_for(1) == [b"\x00\xffnot json"]


def test_a_dict_handler_dead_letters_what_is_not_a_json_object(app: jobfleet.App, queue: str) -> None:
    @app.job(queue=queue)
    def handler(payload: dict[str, object]) -> None:
        pass

    with app.start_worker():
        not_json = app.enqueue(queue, b"{oops")
        not_object = app.enqueue(queue, [1, 2])
        assert dead_letter(app, queue, not_json.id).reason.startswith("invalid payload: JSONDecodeError:")
        assert "expected a JSON object, got list" in dead_letter(app, queue, not_object.id).reason


def test_a_payload_that_is_not_json_cannot_be_enqueued(app: jobfleet.App, queue: str) -> None:
    with pytest.raises(InvalidPayload, match="cannot be encoded as JSON"):
        app.enqueue(queue, {"when": object()})
