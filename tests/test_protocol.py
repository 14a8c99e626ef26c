"""One place owns each contract: the step protocol's keys and messages, the Lua scripts'
interfaces, and the public names of ``app``."""

from __future__ import annotations

import re

import app
from app._protocol import ITEM, StepCall, const_spec, ref_spec, stream_spec
from tests.harness import ROOT

# a quoted string that starts like one of Braid's Redis keys or channels
_KEY = re.compile(r"""["'](braid:)(job|jobs|events|cancels|deadlines|alive|processes|inflight|blob|chord)""")


def test_redis_keys_are_spelled_only_in_the_protocol_module() -> None:
    found = [f"{path.relative_to(ROOT)}:{n}"
             for folder in ("app", "api", "workers")
             for path in sorted((ROOT / folder).rglob("*.py")) if path.name != "_protocol.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if _KEY.search(line)]
    assert found == []


def test_every_lua_script_names_its_keys_and_arguments_and_takes_every_key_as_a_key() -> None:
    scripts = sorted((ROOT / "app" / "lua").glob("*.lua"))
    assert scripts
    for script in scripts:
        text = script.read_text()
        header = "\n".join(line for line in text.splitlines() if line.startswith("--"))
        if "KEYS[" in text:
            assert "KEYS[1]" in header, f"{script.name} does not say what its KEYS are"
        if "ARGV[" in text:
            assert "ARGV[1]" in header, f"{script.name} does not say what its ARGV are"
        assert "braid:" not in text, f"{script.name} spells a key instead of taking it in KEYS"
        assert "string.sub(job" not in text and "string.sub(KEYS" not in text


def test_a_step_call_round_trips_through_its_wire_form() -> None:
    element = StepCall(args={"x": ITEM, "n": const_spec(3)}, sink=True, whole=False,
                       ready_after=("m|started_at",), map_step="m", index=2)
    producer = StepCall(args={"xs": ref_spec("i:xs")}, ready_after=("a|finished_at",),
                        expands=("m", StepCall(args={"x": ITEM}, task="calc.double",
                                               queue="calc")))
    streaming = StepCall(args={"tokens": stream_spec("draft")}, consumers=("score", "log"))
    for call in (element, producer, streaming, StepCall(args={})):
        assert StepCall.from_wire(call.to_wire()) == call
    assert element.reads() == ["m:m:2"]
    assert producer.reads() == ["i:xs"]
    assert streaming.reads() == []  # a stream is read as it is written, not at the start


def test_a_message_that_is_not_a_step_call_is_refused_with_a_reason() -> None:
    for wire in ({}, {"a": 1}, "call"):
        try:
            StepCall.from_wire(wire)  # type: ignore[arg-type]
        except ValueError as exc:
            assert "not a Braid step call" in str(exc)
        else:
            raise AssertionError(f"{wire!r} was taken for a step call")


def test_the_public_names_of_app_are_exactly_these() -> None:
    assert sorted(app.__all__) == [
        "ApiUnreachable", "Array", "AsyncClient", "AsyncJob", "Batch", "BraidError",
        "BrokerUnavailable", "Chunk", "Client", "DeclarationError", "IdempotencyConflict", "InvalidInput",
        "Job", "JobAccepted", "JobConflict", "JobError",
        "JobFailed", "JobList", "JobNotFound", "JobState", "JobView", "ModelNotFound",
        "NotAcceptable", "NotFound", "Overloaded", "PayloadTooLarge", "PipelineNotFound", "Progress",
        "Resources", "Retry", "ServiceNotFound", "Settings", "StepState", "StepView",
        "Unauthorized", "Value", "api", "device", "each", "get_settings", "models", "pipeline",
        "service", "step", "stream",
    ]
    assert all(hasattr(app, name) for name in app.__all__)
