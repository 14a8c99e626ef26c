"""A pipeline's first messages, built by Celery's canvas once and copied for each job."""

from __future__ import annotations

import json
import re
import uuid

from app._canvas import Template, shape
from app._celery import create_celery
from app._registry import load
from app._settings import Settings
from tests.harness import System

_ID = re.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _ids(commands: list[tuple[str | int, ...]]) -> set[str]:
    return {i for c in commands for a in c if isinstance(a, str) for i in _ID.findall(a)}


def test_each_job_gets_its_own_copy_of_its_pipelines_first_messages(system: System) -> None:
    # given the template of a chord (two steps, then their body)
    registry = load(["tests.apps"])
    celery = create_celery(Settings(redis_url=system.redis_url), registry.all_services)
    template = Template.of(celery, registry.pipeline("batched-chord"))
    # when two jobs copy it
    a = [tuple(c) for c in template.commands("a" * 32)]
    b = [tuple(c) for c in template.commands("b" * 32)]
    # then each names its own job, and they share no task, group or delivery id
    assert all("b" * 32 not in str(c) for c in a) and any("a" * 32 in str(c) for c in a)
    assert _ids(a) and not _ids(a) & _ids(b)
    # and within a job the ids still agree: the chord's keys are named by its group id,
    # which its messages carry
    names = {str(c[0]) for c in a}
    assert {"LPUSH", "SET"} <= names
    groups = {str(c[1]).split(":")[2] for c in a if c[0] == "SET"}
    pushed = [json.loads(str(c[2])) for c in a if c[0] == "LPUSH"]
    assert len(groups) == 1 and all(m["headers"]["group"] in groups for m in pushed)
    celery.close()


def test_a_copy_keeps_the_ids_it_is_given_and_makes_the_others_fresh() -> None:
    # given commands built for job "a…" where id `known` came from the request and `made`
    # was made while building
    job, known, made = "a" * 32, str(uuid.uuid4()), str(uuid.uuid4())
    text = json.dumps({"job": job, "parent": known, "id": made})
    template = Template.copying([("LPUSH", f"q:{made}", text)], job, [known])
    # when it is copied for another job and request
    other = str(uuid.uuid4())
    name, key, copied = template.commands("b" * 32, [other])[0]
    # then the job and the given id are the other's, and the made one is fresh but the same
    # wherever it appears
    message = json.loads(str(copied))
    assert (name, message["job"], message["parent"]) == ("LPUSH", "b" * 32, other)
    assert message["id"] != made and key == f"q:{message['id']}"


def test_shape_takes_out_the_job_and_the_ids_in_order() -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    key, ids = shape(f"{second} {'c' * 32} {first} {second}", "c" * 32)
    assert key == "#0 #job #1 #0" and ids == [second, first]
