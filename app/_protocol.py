"""The step protocol: the one place that spells what the API, the workers and Redis share.

* **Redis keys.** A job is three hashes with the job TTL: :func:`job_key` (state,
  timestamps, result or error, counters: :class:`JobField`), :func:`steps_key` (one
  ``<step>|<field>`` entry per step field: :class:`StepField`) and :func:`data_key` (inputs
  and step outputs, by reference name). Jobs are ordered in :data:`JOBS`, deadlines in
  :data:`DEADLINES`; transitions are published on :data:`EVENTS`; messages that no worker
  can run are kept aside in :data:`DEAD_LETTERS`. Workers announce themselves in
  :func:`alive_key` and :func:`processes_key`, and note the broker messages they took in
  :func:`reserved_key` (until delivered) and :func:`inflight_key` (from delivery to their
  step's end), so that a dead worker's messages can be handed back at once (``reclaim.lua``).
* **References.** A value in a job's data hash is named :func:`input_ref`,
  :func:`output_ref` or :func:`element_ref`; a call's arguments are :class:`Spec` trees
  (``{"$r": ref}``, ``{"$c": constant}``, ``{"$l": [...]}``, ``{"$d": {...}}``,
  ``{"$item": true}`` for a map's element, ``{"$s": step}`` for the chunks a streaming step
  writes as it runs).
* **Streams.** A streaming step (one whose API yields) appends its chunks to
  :func:`stream_key` (a Redis stream: :class:`ChunkField` entries) and notes its attempt and
  its consumers' cursors in :func:`stream_state_key` (:func:`cursor_field`).
* **The step message.** ``(job id, step name, call)``, where ``call`` is a :class:`StepCall`
  on the wire (:meth:`StepCall.to_wire` / :meth:`StepCall.from_wire`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALIVE_PREFIX",
    "CANCELS",
    "DEADLINES",
    "DEAD_LETTERS",
    "EVENTS",
    "IDEMPOTENCY_KEY",
    "ITEM",
    "JOBS",
    "PIPELINE_JOBS_PREFIX",
    "PROCESSES_PREFIX",
    "STREAM_ATTEMPT",
    "ChunkField",
    "JobField",
    "StepCall",
    "StepField",
    "alive_key",
    "blob_key",
    "const_spec",
    "cursor_field",
    "data_key",
    "decode_step",
    "dict_spec",
    "element_ref",
    "element_step",
    "idempotency_key",
    "inflight_key",
    "input_ref",
    "is_const",
    "job_key",
    "job_keys",
    "list_spec",
    "output_ref",
    "pipeline_jobs_key",
    "processes_key",
    "ref_spec",
    "refs_in",
    "reserved_key",
    "resolve",
    "split_step_field",
    "step_field",
    "steps_key",
    "stream_key",
    "stream_spec",
    "stream_state_key",
    "streamed_from",
    "traced_key",
]

_PREFIX = "braid:"
EVENTS = f"{_PREFIX}events"
"""Pub/sub channel: every job and step transition, as a JSON event."""
CANCELS = f"{_PREFIX}cancels"
"""Pub/sub channel: JSON lists of the task ids of a cancelled job's running steps."""
JOBS = f"{_PREFIX}jobs"
"""Sorted set: job id -> creation time (the jobs list)."""
PIPELINE_JOBS_PREFIX = f"{JOBS}:pipeline:"


def pipeline_jobs_key(pipeline: str) -> str:
    """Sorted set: the jobs of ``pipeline``, id -> creation time (its jobs list)."""
    return f"{PIPELINE_JOBS_PREFIX}{pipeline}"
DEADLINES = f"{_PREFIX}deadlines"
"""Sorted set: id of a job not ended yet -> its deadline."""
DEAD_LETTERS = f"{_PREFIX}dead-letters"
"""List, newest first: broker messages a worker refused (undecodable, malformed, or for a task
it does not run), each a JSON record of its queue, why, when and the message (see
:mod:`app._dead_letters`)."""
IDEMPOTENCY_KEY = "Idempotency-Key"
"""The submission header (client and API): a submission repeated with it answers with the
job the first made (see :func:`idempotency_key`)."""
ALIVE_PREFIX = f"{_PREFIX}alive:"
PROCESSES_PREFIX = f"{_PREFIX}processes:"
_JOB_PREFIX = f"{_PREFIX}job:"


def job_key(job: str) -> str:
    return f"{_JOB_PREFIX}{job}"


def steps_key(job: str) -> str:
    return f"{_JOB_PREFIX}{job}:steps"


def data_key(job: str) -> str:
    return f"{_JOB_PREFIX}{job}:data"


def stream_key(job: str, step: str) -> str:
    """Stream: the chunks step ``step`` of ``job`` yielded, in order (:class:`ChunkField`)."""
    return f"{_JOB_PREFIX}{job}:stream:{step}"


def stream_state_key(job: str, step: str) -> str:
    """Hash: the attempt that writes ``step``'s stream (:data:`STREAM_ATTEMPT`) and how far
    each consuming step read it (:func:`cursor_field`)."""
    return f"{_JOB_PREFIX}{job}:stream:{step}:state"


STREAM_ATTEMPT = "attempt"
"""The field of :func:`stream_state_key` that holds the attempt writing the stream now."""


def cursor_field(consumer: str) -> str:
    """The field of :func:`stream_state_key` that holds ``<attempt> <items read>`` of the
    step ``consumer``."""
    return f"c:{consumer}"


class ChunkField(enum.StrEnum):
    """Fields of a stream entry: a chunk (``attempt``, ``first``, ``items``) or the end."""

    attempt = "a"
    """The producing step's attempt (a redelivered step writes its chunks again, under a
    higher attempt: readers start over, never mixing two)."""
    first = "n"
    """The index of the entry's first item in the attempt's sequence."""
    items = "d"
    """The items, a JSON list of wire values."""
    end = "e"
    """On the last entry of an attempt: ``ok``, or ``failed`` with ``message``."""
    message = "m"


@dataclass(frozen=True)
class ChunkEntry:
    """One stream entry, read back: its attempt, the index of its first item, its items
    (wire values; none on an end alone) and, on an attempt's last entry, how it ended."""

    attempt: int
    first: int
    items: list[Any]
    end: str | None
    message: str

    @classmethod
    def of(cls, fields: Mapping[bytes, bytes]) -> ChunkEntry:
        def text(name: ChunkField) -> str | None:
            value = fields.get(name.value.encode())
            return None if value is None else value.decode()

        items = text(ChunkField.items)
        return cls(int(text(ChunkField.attempt) or 0), int(text(ChunkField.first) or 0),
                   json.loads(items) if items is not None else [], text(ChunkField.end),
                   text(ChunkField.message) or "")

def traced_key(job: str) -> str:
    """Set by the API process that claimed the export of ``job``'s trace (one exports it)."""
    return f"{_JOB_PREFIX}{job}:traced"


def job_keys(job: str) -> list[str]:
    """The job's record, steps and data hashes, in the order every Lua script takes them."""
    return [job_key(job), steps_key(job), data_key(job)]


def alive_key(service: str) -> str:
    """Sorted set: node name -> time of its last heartbeat, for the workers of ``service``."""
    return f"{ALIVE_PREFIX}{service}"


def processes_key(service: str) -> str:
    """Hash: ``host:pid`` -> what that worker process loaded and where (JSON)."""
    return f"{PROCESSES_PREFIX}{service}"


def inflight_key(node: str) -> str:
    """Hash: broker delivery tag -> step, for the messages worker ``node`` is running."""
    return f"{_PREFIX}inflight:{node}"


def reserved_key(node: str) -> str:
    """List: messages worker ``node`` took off its queue and has not yet noted as delivered
    (a message the broker hands to a worker that just died waits here, not nowhere)."""
    return f"{_PREFIX}reserved:{node}"


def idempotency_key(digest: str) -> str:
    """The job an ``Idempotency-Key`` made (``<job id> <request digest>``), with the job's
    TTL; ``digest`` names the key within its caller's scope (see ``api.jobs``)."""
    return f"{_PREFIX}idempotency:{digest}"


def chord_parts_key(group: str) -> str:
    """Set: the task ids of a chord's header that finished."""
    return f"{_PREFIX}chord:{group}:parts"


def chord_size_key(group: str) -> str:
    """How many header tasks a chord has."""
    return f"{_PREFIX}chord:{group}:size"


def chord_body_key(group: str) -> str:
    """The Redis commands (JSON) that publish a chord's body, stored when it is published."""
    return f"{_PREFIX}chord:{group}:body"


def blob_key(token: str) -> str:
    """A value too large for a hash field or a message, stored under a key of its own."""
    return f"{_PREFIX}blob:{token}"


class JobField(enum.StrEnum):
    """Fields of a job's record hash."""

    id = "id"
    pipeline = "pipeline"
    state = "state"
    created_at = "created_at"
    started_at = "started_at"
    finished_at = "finished_at"
    deadline = "deadline"
    output = "output"
    """The pipeline's output spec (JSON), assembled into ``result`` when the last sink ends."""
    result = "result"
    error = "error"
    sinks = "sinks"
    sinks_done = "sinks_done"
    total = "total"
    done = "done"


class StepField(enum.StrEnum):
    """Fields of one step in a job's steps hash (``<step>|<field>``)."""

    service = "service"
    api = "api"
    kind = "kind"
    state = "state"
    attempts = "attempts"
    task_id = "task_id"
    worker = "worker"
    queued_at = "queued_at"
    started_at = "started_at"
    finished_at = "finished_at"
    error = "error"
    size = "size"
    """A map's number of elements, once it expanded."""
    done = "done"
    """A map's number of elements that finished."""
    batch = "batch"
    """The batch a step of a batched API ran in (its model was called once for the batch)."""
    batch_size = "batch_size"
    """How many steps that batch ran."""


def step_field(step: str, name: StepField) -> str:
    return f"{step}|{name.value}"


def split_step_field(key: str) -> tuple[str, str]:
    step, _, name = key.rpartition("|")
    return step, name


def input_ref(name: str) -> str:
    return f"i:{name}"


def output_ref(step: str) -> str:
    return f"o:{step}"


def element_ref(map_step: str, index: int) -> str:
    """The ``index``-th element of the list a map step maps over."""
    return f"m:{map_step}:{index}"


def element_step(map_step: str, index: int) -> str:
    """The step that runs a map's ``index``-th element."""
    return f"{map_step}[{index}]"


def map_of(step: str) -> str | None:
    """The map step whose element ``step`` is (None for a step that is no element)."""
    return step.split("[", 1)[0] if step.endswith("]") and "[" in step else None


Spec = dict[str, Any]
ITEM: Spec = {"$item": True}


def ref_spec(ref: str) -> Spec:
    return {"$r": ref}


def const_spec(value: Any) -> Spec:
    return {"$c": value}


def stream_spec(step: str) -> Spec:
    return {"$s": step}


def streamed_from(spec: Spec) -> str | None:
    """The step whose stream ``spec`` reads, or None for a spec of a value."""
    value = spec.get("$s") if isinstance(spec, dict) else None
    return value if isinstance(value, str) else None


def is_const(spec: Spec) -> bool:
    return "$c" in spec


def list_spec(parts: Sequence[Spec]) -> Spec:
    return {"$l": list(parts)}


def dict_spec(parts: Mapping[str, Spec]) -> Spec:
    return {"$d": dict(parts)}


def refs_in(spec: Any, out: set[str], item: str | None = None) -> set[str]:
    """Add to ``out`` every data field that ``spec`` reads (``item`` for ``$item``)."""
    if isinstance(spec, dict):
        if "$r" in spec:
            out.add(spec["$r"])
        elif "$item" in spec and item is not None:
            out.add(item)
        for key in ("$l", "$d"):
            if key in spec:
                inner = spec[key]
                for part in inner.values() if isinstance(inner, dict) else inner:
                    refs_in(part, out, item)
    return out


def resolve(spec: Spec, lookup: Any, item: str | None) -> Any:
    """The value ``spec`` describes; ``lookup(field)`` gives a data field's value."""
    if "$c" in spec:
        return spec["$c"]
    if "$l" in spec:
        return [resolve(s, lookup, item) for s in spec["$l"]]
    if "$d" in spec:
        return {k: resolve(s, lookup, item) for k, s in spec["$d"].items()}
    ref = item if "$item" in spec else spec["$r"]
    assert ref is not None, "an element spec outside a map"
    return lookup(ref)


def message_repr(job: str, step: str) -> dict[str, str]:
    """What Flower and Celery's logs show of a step message's arguments: its job and step
    (Celery would otherwise render the whole call for every message it sends)."""
    return {"argsrepr": f"({job!r}, {step!r})", "kwargsrepr": "{}"}


@dataclass(frozen=True)
class StepCall:
    """What a step's message says besides its job and step name.

    ``args`` are the API's arguments as specs; ``sink`` says the step's output is part of the
    job's result (``whole``: it *is* the result); ``ready_after`` names the steps-hash
    timestamps after which the step was ready to run (for the queue-wait metric). A map's
    element carries its map step and index; a map step carries the list it maps over and the
    task and queue of its elements.
    """

    args: Mapping[str, Spec]
    sink: bool = False
    whole: bool = False
    ready_after: tuple[str, ...] = ()
    map_step: str | None = None
    index: int | None = None
    over: str | None = None
    task: str | None = None
    queue: str | None = None
    expands: tuple[str, StepCall] | None = None
    """The map (its step name and call) that maps over this step's output: this step
    expands it as it finishes, so the map costs no task of its own."""
    consumers: tuple[str, ...] = ()
    """The steps that read this streaming step's chunks as it writes them: it never runs
    more than the stream window ahead of the slowest."""

    @property
    def item(self) -> str | None:
        """The data field of this element's value, for a map's element."""
        if self.map_step is None or self.index is None:
            return None
        return element_ref(self.map_step, self.index)

    def reads(self) -> list[str]:
        """Every data field the step's arguments read, sorted."""
        found: set[str] = {self.item} if self.item else set()
        for spec in self.args.values():
            refs_in(spec, found, self.item)
        return sorted(found)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"a": dict(self.args)}
        if self.sink:
            out["s"] = True
        if self.whole:
            out["w"] = True
        if self.ready_after:
            out["q"] = list(self.ready_after)
        if self.map_step is not None:
            out["m"], out["i"] = self.map_step, self.index
        for key, value in (("over", self.over), ("task", self.task), ("queue", self.queue)):
            if value is not None:
                out[key] = value
        if self.expands is not None:
            out["x"] = [self.expands[0], self.expands[1].to_wire()]
        if self.consumers:
            out["c"] = list(self.consumers)
        return out

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> StepCall:
        if not isinstance(wire, Mapping) or not isinstance(wire.get("a"), Mapping):
            raise ValueError("not a Braid step call: its message lacks the arguments 'a'")
        return cls(args=wire["a"], sink=bool(wire.get("s")), whole=bool(wire.get("w")),
                   ready_after=tuple(wire.get("q", ())), map_step=wire.get("m"),
                   index=wire.get("i"), over=wire.get("over"), task=wire.get("task"),
                   queue=wire.get("queue"),
                   expands=(wire["x"][0], cls.from_wire(wire["x"][1])) if "x" in wire else None,
                   consumers=tuple(wire.get("c", ())))


def decode_step(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[str, str, StepCall]:
    """The job, step and call of a step message's arguments; ValueError saying what is
    wrong when they are not a step message."""
    if kwargs or len(args) != 3 or not all(isinstance(a, str) for a in args[:2]):
        raise ValueError("not a Braid step message: its arguments are not (job, step, call)")
    try:
        return args[0], args[1], StepCall.from_wire(args[2])
    except ValueError:
        raise
    except (TypeError, KeyError, IndexError, RecursionError) as exc:
        raise ValueError(f"not a Braid step call: {exc}") from exc
