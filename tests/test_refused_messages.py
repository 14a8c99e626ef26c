"""What a worker refuses from its queue (garbage, tasks it does not serve): kept aside as a
dead letter, and the worker serves on. Real workers and Redis."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest
from kombu.connection import Connection
from kombu.entity import Exchange

from app._dead_letters import DeadLetter
from app._protocol import DEAD_LETTERS
from tests.harness import System, wait_for
from tests.jobs_helpers import run


def _kept_aside(system: System, queue: str, holds: str) -> DeadLetter:
    """Wait for the dead letter from ``queue`` whose message is or contains ``holds``."""
    def found() -> DeadLetter | None:
        letters = [DeadLetter.decode(raw) for raw in system.redis().lrange(DEAD_LETTERS, 0, -1)]
        return next((d for d in letters if d.queue == queue and holds in d.message), None)

    return wait_for(found, 20, f"a dead letter from {queue!r} holding {holds!r}")


def _envelope(task: str, body: str, queue: str = "echo", **properties: object) -> bytes:
    """A kombu message as it sits in ``queue`` (through the queue's own exchange)."""
    return json.dumps({
        "body": body, "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": uuid.uuid4().hex},
        "properties": {"delivery_tag": uuid.uuid4().hex, "body_encoding": None,
                       "delivery_info": {"exchange": queue, "routing_key": queue},
                       **properties}}).encode()


GARBAGE = [
    (b"not json {", "not JSON"),
    (b"[" * 5000, "not JSON"),
    (b"[1, 2, 3]", "not an object"),
    (b'{"hello": "world"}', "no properties.delivery_tag"),
]
"""Messages that are no kombu message, and why each is refused."""
BODIES = [
    ("not json {", "does not decode"),
    ("a", "does not decode"),  # under base64
    ("[" * 5000, "does not decode"),
    ("", "Celery could not handle it"),
    ("[1]", "Celery could not handle it"),
    ("[[], {}, {}]", "its arguments are not (job, step, call)"),
    ('[["job", "step", {"b": 1}], {}, {}]', "lacks the arguments 'a'"),
    ('[["job", "step", {"a": {}, "x": [1]}], {}, {}]', "not a Braid step call"),
]
"""Bodies of a task message of the service's own API that are no step message's, and why."""
SERVICES = [("echo", "echo.echo", {"value": 7}, 7), ("batcher", "batcher.double", {"xs": 4}, 8)]
"""A plain and a batched API: their queue, task, a good call and its result."""


@pytest.mark.parametrize(("garbage", "why"), GARBAGE)
@pytest.mark.parametrize(("queue", "task", "call", "result"), SERVICES)
def test_a_message_that_is_no_message_is_kept_aside_and_the_worker_keeps_serving(
        system: System, http: httpx.Client, garbage: bytes, why: str, queue: str, task: str,
        call: dict[str, int], result: int) -> None:
    # Given a worker, when its queue gets something that is no kombu message
    system.redis().lpush(queue, garbage)
    # Then it is kept aside, saying why, and the worker serves the next job
    assert why in _kept_aside(system, queue, garbage.decode()).why
    assert run(http, f"/v1/services/{task.replace('.', '/')}/jobs", call)["result"] == result


@pytest.mark.parametrize(("body", "why"), BODIES)
@pytest.mark.parametrize(("queue", "task", "call", "result"), SERVICES)
def test_a_task_message_that_is_no_step_is_kept_aside_and_the_worker_keeps_serving(
        system: System, http: httpx.Client, body: str, why: str, queue: str, task: str,
        call: dict[str, int], result: int) -> None:
    # Given a worker, when its queue gets a message for its own API whose body is no step's
    encoding = {"body_encoding": "base64"} if body == "a" else {}
    message = _envelope(task, body, queue, **encoding)
    system.redis().lpush(queue, message)
    # Then it is kept aside, saying why, and the worker serves the next job
    assert why in _kept_aside(system, queue, json.loads(message)["headers"]["id"]).why
    assert run(http, f"/v1/services/{task.replace('.', '/')}/jobs", call)["result"] == result


def test_dead_letters_are_counted_in_the_metrics(system: System, http: httpx.Client) -> None:
    system.redis().lpush("echo", b"not json, counted")
    _kept_aside(system, "echo", "not json, counted")
    metrics = http.get("/metrics").text
    count = re.search(r"^braid_dead_letters (\S+)$", metrics, re.M)
    assert count is not None and float(count.group(1)) >= 1


def test_a_builtin_celery_task_pushed_into_a_service_queue_does_not_run(
        system: System, http: httpx.Client) -> None:
    # Given Celery's celery.accumulate, which every Celery app registers
    task_id = uuid.uuid4().hex
    # When a message for it is pushed into the echo service's queue
    with Connection(system.redis_url) as conn:
        conn.Producer().publish(((1, 2), {}, {}), exchange=Exchange("echo", type="direct"),
                                routing_key="echo", serializer="json",
                                headers={"lang": "py", "task": "celery.accumulate",
                                         "id": task_id, "root_id": task_id})
    # Then the worker refuses it as a task it does not run, and serves on
    letter = _kept_aside(system, "echo", task_id)
    assert "'celery.accumulate' is not one this worker runs" in letter.why
    meta = system.redis().get(f"celery-task-meta-{task_id}")  # Celery's result, if it ran
    assert meta is None or json.loads(meta)["status"] != "SUCCESS"
    assert run(http, "/v1/services/echo/echo/jobs", {"value": 8})["result"] == 8
