"""Jobs and their step records in Redis (the keys and fields: :mod:`app._protocol`).

Every transition is one Lua script (``app/lua/*.lua``, each naming its KEYS and ARGV), so
it is atomic, costs one round trip, and publishes a JSON event on the events channel.

Workers use :class:`StepRecorder` (sync redis); the API uses :class:`JobStore` (asyncio).
"""

from __future__ import annotations

import enum
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.commands.core import Script

from app import _codec
from app._protocol import (
    CANCELS,
    DEADLINES,
    EVENTS,
    JOBS,
    JobField,
    StepField,
    chord_body_key,
    chord_parts_key,
    chord_size_key,
    data_key,
    inflight_key,
    input_ref,
    job_key,
    job_keys,
    pipeline_jobs_key,
    step_field,
    steps_key,
)
from app._scripts import lua
from app._transport import UNACKED, UNACKED_INDEX, Command, settle

__all__ = ["Created", "FinishCall", "Finished", "JobState", "JobStore", "NewJob", "Start",
           "StepRecorder", "StepStart", "new_job_id"]


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobState(enum.StrEnum):
    """What a job (or a step) is doing. ``not_found`` is never stored: it is what a client
    sees for an unknown or expired id."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    not_found = "not_found"

    @property
    def final(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


def event(job_id: str, state: str, step: str | None = None, **extra: Any) -> str:
    return json.dumps({"job": job_id, "step": step, "state": state, "ts": time.time(), **extra},
                      separators=(",", ":"))


@dataclass(frozen=True)
class StepStart:
    """What a worker learns when it starts a step: whether to run it, its inputs, and when
    it became ready to run (its inputs' steps finished) and started."""

    action: str
    attempts: int
    values: list[bytes | None]
    ready_at: float = 0.0
    started_at: float = 0.0


@dataclass(frozen=True)
class Start:
    """A step to start: its job, name, task id, broker delivery tag ('' if none), the data
    fields it reads, and the steps-hash timestamps it became ready after."""

    job: str
    step: str
    task_id: str
    tag: str
    fields: Sequence[str]
    ready: Sequence[str] = ()


@dataclass(frozen=True)
class Expansion:
    """A map to expand over a step's output as that step finishes: its elements' wire text,
    and the map's own sink flags (an empty map succeeds at once)."""

    map_step: str
    items: Sequence[str]
    sink: bool = False
    whole: bool = False


@dataclass(frozen=True)
class HandOff:
    """What a step's finish publishes: the next messages, and, for a part of a chord, the
    chord's body (stored when the chord was published) if this part completes it."""

    commands: Sequence[Command] = ()
    chord_group: str | None = None
    chord_task: str = ""
    chord_ttl_s: int = 86400


@dataclass(frozen=True)
class Finished:
    """What a step's finish came to: ``status`` 'ok', 'fenced' (a later attempt started),
    'done' (the step had succeeded: the finish was sent again), 'ended' (its job is not
    running any more), 'succeeded' (it made its job succeed) or 'complete' (the job's last sink
    finished: its result, ``output_spec``, must be assembled); and the messages of inline
    steps it held for this worker to run (:mod:`app._inline`)."""

    status: str
    output_spec: str = ""
    held: Sequence[bytes] = ()


@dataclass(frozen=True)
class FinishCall:
    """A step's finish, built but not sent yet: finish_step.lua's keys, its arguments as of
    the time it is sent (``args(now)``), and the delivery tag of its message ('' if none)."""

    keys: list[str]
    args: Callable[[float], list[Any]]
    tag: str


def _encoded(commands: Sequence[Command], keys: list[str], args: list[Any]) -> None:
    """finish_step.lua's layout of a command list: keys to ``keys``, the rest to ``args``."""
    args.append(len(commands))
    for name, key, *rest in commands:
        keys.append(str(key))
        args.extend([len(rest), name, *rest])


def _flags(sink: bool, whole: bool, counts: bool) -> str:
    return ("s" if sink else "") + ("w" if whole else "") + ("c" if counts else "")


class StepRecorder:
    """The worker's side of the job store (sync: Celery tasks are sync). ``node`` is the
    worker's name: the messages it runs are noted in flight under it."""

    def __init__(self, client: redis.Redis, ttl_s: int, threshold: int, node: str = "",
                 inflight_ttl_s: int = 3600) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.threshold = threshold
        self.inflight = inflight_key(node)
        self.inflight_ttl_s = inflight_ttl_s
        self._start = client.register_script(lua("start_step"))
        self._finish = client.register_script(lua("finish_step", "expand_map"))
        self._succeed = client.register_script(lua("succeed"))
        self._fail = client.register_script(lua("fail_step", "end_job"))
        self._expand = client.register_script(lua("expand", "expand_map"))
        self._loaded: set[str] = set()
        """The scripts (SHA1) loaded into Redis for pipelines, by :meth:`_send`."""

    def start(self, job: str, step: str, task_id: str, worker: str, tag: str,
              fields: Sequence[str], ready: Sequence[str] = ()) -> StepStart:
        """Mark ``step`` running and read the data ``fields``. The step became ready at the
        latest of the steps-hash timestamps ``ready`` (the job's creation if none)."""
        return self.start_all([Start(job, step, task_id, tag, fields, ready)], worker)[0]

    def start_all(self, starts: Sequence[Start], worker: str) -> list[StepStart]:
        """:meth:`start` of each of ``starts`` (a batch's steps), in one round trip."""
        now = time.time()
        calls: list[tuple[list[str], list[Any]]] = [
            ([*job_keys(s.job), self.inflight],
             [s.step, s.task_id, worker, now, EVENTS, event(s.job, "running", s.step,
                                                            worker=worker),
              event(s.job, "running"), s.tag, self.inflight_ttl_s, len(s.ready), *s.ready,
              *s.fields])
            for s in starts]
        if len(calls) == 1:
            replies = [self._start(keys=calls[0][0], args=calls[0][1])]
        else:
            # every call is of one script: Redis that lacks it ran none of them
            replies = self._pipelined(self._start, calls, ())
        out = []
        for reply in replies:
            action = reply[0].decode()
            out.append(StepStart(action, 0, []) if action != "run" else
                       StepStart(action, int(reply[1]), list(reply[3:]), float(reply[2]), now))
        return out

    def finish(self, job: str, step: str, packed: str, *, sink: bool, whole: bool,
               counts: bool = True, tag: str = "", element_of: tuple[str, bool, bool] | None = None,
               expansion: Expansion | None = None, handoff: HandOff = HandOff(),
               record: Sequence[Command] = (), attempt: int | None = None,
               **timing: Any) -> Finished:
        """Store a step's output, hand off and settle its message ``tag`` (see
        finish_step.lua). ``element_of`` is the map (name, sink, whole) whose element this
        step is; ``record``, commands to run in the same round trip whatever the job's
        state (the record of the batch the step ran in). A finish of ``attempt`` after a
        later attempt started is ``fenced``, and one sent again after the step succeeded is
        ``done``: neither changes anything."""
        call = self.finish_call(job, step, packed, sink=sink, whole=whole, counts=counts,
                                tag=tag, element_of=element_of, expansion=expansion,
                                handoff=handoff, record=record, attempt=attempt, **timing)
        return self.finish_all([call])[0][0]

    def finish_call(self, job: str, step: str, packed: str, *, sink: bool, whole: bool,
                    counts: bool = True, tag: str = "",
                    element_of: tuple[str, bool, bool] | None = None,
                    expansion: Expansion | None = None, handoff: HandOff = HandOff(),
                    record: Sequence[Command] = (), attempt: int | None = None,
                    **timing: Any) -> FinishCall:
        """:meth:`finish`'s script call, built but not sent (:meth:`finish_all` sends it)."""
        group = handoff.chord_group or ""
        keys = [*job_keys(job), self.inflight, DEADLINES, UNACKED, UNACKED_INDEX,
                chord_parts_key(group), chord_size_key(group), chord_body_key(group)]
        commands: list[Any] = []
        _encoded(handoff.commands, keys, commands)
        _encoded(record, keys, commands)

        def args(now: float) -> list[Any]:
            # the events carry the time the record gets: a resumed event stream, read back
            # from the record, starts right after the last event its client saw
            map_args: list[Any] = ["", "", ""]
            if element_of is not None:
                name, map_sink, map_whole = element_of
                map_args = [name, _flags(map_sink, map_whole, False),
                            event(job, "succeeded", name, ts=now)]
            expand_args: list[Any] = ["", "", "", "", 0]
            if expansion is not None:
                name = expansion.map_step
                expand_args = [name, event(job, "expanded", name, size=len(expansion.items),
                                           ts=now),
                               _flags(expansion.sink, expansion.whole, False),
                               event(job, "succeeded", name, ts=now), len(expansion.items),
                               *expansion.items]
            return [step, now, job, EVENTS, packed, _flags(sink, whole, counts), tag,
                    event(job, "succeeded", step, **timing, ts=now),
                    event(job, "succeeded", final=True, ts=now), *map_args, *expand_args,
                    handoff.chord_task if group else "", handoff.chord_ttl_s,
                    "" if attempt is None else attempt, *commands]

        return FinishCall(keys, args, tag)

    def finish_all(self, calls: Sequence[FinishCall], also: Sequence[Command] = (), *,
                   settled: bool = False) -> tuple[list[Finished], list[Any]]:
        """Send the finishes ``calls`` (:meth:`finish_call`), then the commands ``also``, in
        one round trip: what each finish came to, and the replies of ``also``. Their
        messages are settled here, unless the caller did already (``settled``). The steps
        are stamped finished now, as they are stored."""
        now = round(time.time(), 6)  # a record's resolution: its events' ids equal its times
        stamped = [(c.keys, c.args(now)) for c in calls]
        if len(calls) == 1 and not also:
            replies = [self._finish(keys=stamped[0][0], args=stamped[0][1])]
        else:
            # a finish sent twice is 'done'
            replies = self._pipelined(self._finish, stamped, also)
        if not settled:
            for call in calls:
                if call.tag:
                    # done in the script, or (fenced) the message is a later attempt's
                    # now: kombu's ack must not remove its unacked entry
                    settle(call.tag)
        finished = [Finished(r[0].decode(), r[1].decode(), [bytes(m) for m in r[2:]])
                    for r in replies[:len(calls)]]
        return finished, list(replies[len(calls):])

    def _pipelined(self, script: Script, calls: Sequence[tuple[list[str], list[Any]]],
                   also: Sequence[Command]) -> list[Any]:
        """``calls`` of ``script`` (keys, args), then the commands ``also``, in one round
        trip; sent again if Redis did not know the script (it restarted since it was
        loaded): the calls must be safe to send twice."""
        try:
            return self._send(script, calls, also)
        except redis.exceptions.NoScriptError:
            self._loaded.discard(script.sha)
            return self._send(script, calls, also)

    def _send(self, script: Script, calls: Sequence[tuple[list[str], list[Any]]],
              also: Sequence[Command]) -> list[Any]:
        # plain EVALSHAs, on a script loaded once: a pipeline given redis-py's Script objects
        # asks Redis whether it knows them (SCRIPT EXISTS) at every execute, a round trip
        # more for every batch
        if script.sha not in self._loaded:
            self.client.script_load(script.script)
            self._loaded.add(script.sha)
        with self.client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            for command in also:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return list(pipe.execute())

    def succeed(self, job: str, result: str) -> None:
        self._succeed(keys=[job_key(job), DEADLINES],
                      args=[job, time.time(), result, EVENTS, event(job, "succeeded", final=True)])

    def fail(self, job: str, step: str, error: Mapping[str, Any], state: str = "failed",
             tag: str = "", attempt: int | None = None, **timing: Any) -> bool:
        """Record that ``step`` failed (or was cancelled) and end its job (fail_step.lua);
        False if ``attempt`` was fenced off by a later one (nothing changed)."""
        now = time.time()
        step_error = json.dumps(dict(error))
        job_error = json.dumps({"step": step, **error})
        reply = self._fail(
            keys=[job_key(job), steps_key(job), DEADLINES, self.inflight],
            args=[step, now, job, state, step_error, job_error, EVENTS,
                  event(job, state, step, error=dict(error), **timing),
                  event(job, "failed", final=True, error={"step": step, **error}), tag,
                  "" if attempt is None else attempt],
        )
        if reply and reply[0] == b"fenced":
            if tag:  # the message is a later attempt's now: kombu's ack must not touch it
                settle(tag)
            return False
        return True

    def retrying(self, job: str, step: str, error: Mapping[str, Any], delay: float) -> None:
        fields = {step_field(step, StepField.state): "retrying",
                  step_field(step, StepField.error): json.dumps(dict(error))}
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(steps_key(job), mapping=_fields(fields))
            pipe.publish(EVENTS, event(job, "retrying", step, error=dict(error), delay=delay))
            pipe.execute()

    def expand(self, job: str, map_step: str, items: Sequence[str]) -> bool:
        """Record a map's size and its elements (when no step expanded it on finishing)."""
        return bool(self._expand(
            keys=job_keys(job),
            args=[map_step, time.time(), EVENTS,
                  event(job, "expanded", map_step, size=len(items)), len(items), *items],
        ))

    def values(self, job: str, fields: Sequence[str]) -> list[bytes | None]:
        if not fields:
            return []
        return [v if isinstance(v, bytes) or v is None else str(v).encode()
                for v in self.client.hmget(data_key(job), list(fields))]

    def cancelled(self, job: str) -> bool:
        return self.client.hget(job_key(job), JobField.state.value) == b"cancelled"


@dataclass(frozen=True)
class Created:
    """What a job's creation came to: ``status`` 'created', 'exists' (this create was sent
    before and made it), 'seen' (its idempotency key made a job before: ``seen`` is that
    key's record) or 'full' (a queue it needs is full: nothing was written); and the time it
    was written."""

    status: str
    at: float
    seen: str | None = None
    full: tuple[str, int] | None = None
    """For status 'full': the queue that was, and how many messages waited in it."""


@dataclass(frozen=True)
class NewJob:
    """Everything the API writes when it accepts a job."""

    pipeline: str
    inputs: Mapping[str, str]
    steps: Mapping[str, Mapping[str, str]]
    total: int
    sinks: int
    output: Any
    deadline_s: float


class JobStore:
    """The API's side of the job store (asyncio)."""

    def __init__(self, client: aioredis.Redis, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._end = client.register_script(lua("end", "end_job"))
        self._create = client.register_script(lua("create_job"))

    async def create(self, job: str, new: NewJob, blobs: Mapping[str, str],
                     publish: Sequence[Command] = (),
                     idempotency: tuple[str, str] | None = None,
                     room: Sequence[tuple[str, int]] = ()) -> Created:
        """Write job ``job`` and the Redis commands that publish its first messages (see
        :func:`app._transport.capture`) in one round trip, atomically (create_job.lua): a
        job is never half published, and a create sent again (a lost reply, retried) changes
        nothing. With ``idempotency`` (its record's key and value), a key seen before
        answers with the record stored then, and nothing is written; nor is anything when a
        queue of ``room`` (queue, how many messages may wait) is full."""
        now = time.time()
        steps = {step_field(s, StepField(k)): v for s, fields in new.steps.items()
                 for k, v in fields.items()}
        steps.update({step_field(s, StepField.queued_at): str(now) for s in new.steps})
        steps.update({step_field(s, StepField.state): "queued" for s in new.steps})
        record = {
            JobField.id: job, JobField.pipeline: new.pipeline, JobField.state: "queued",
            JobField.created_at: now, JobField.sinks: new.sinks, JobField.sinks_done: 0,
            JobField.total: new.total, JobField.done: 0, JobField.output: json.dumps(new.output),
            JobField.deadline: now + new.deadline_s,
        }
        keys: list[str] = [*job_keys(job), JOBS, DEADLINES,
                           idempotency[0] if idempotency else job_key(job),
                           pipeline_jobs_key(new.pipeline)]
        args: list[Any] = [job, now, now + new.deadline_s, self.ttl_s,
                           idempotency[1] if idempotency else "", len(room)]
        keys += [queue for queue, _ in room]
        args += [limit for _, limit in room]
        for mapping in (record, steps, new.inputs):
            args.append(len(mapping))
            for name, value in mapping.items():
                args += [str(name), value]
        keys += list(blobs)
        args += [len(blobs), *blobs.values()]
        _encoded(publish, keys, args)
        reply = await self._create(keys=keys, args=args)
        status = reply[0].decode()
        if status == "full":
            return Created(status, now, full=(reply[1].decode(), int(reply[2])))
        return Created(status, now, reply[1].decode() if status == "seen" else None)

    async def end(self, job: str, state: JobState, error: Mapping[str, Any]) -> list[str] | str:
        """End a job that is not final and interrupt its running steps (their workers listen
        on the cancels channel): returns their task ids, or the job's final state if it had
        one already."""
        now = time.time()
        reply = await self._end(
            keys=[job_key(job), steps_key(job), DEADLINES],
            args=[job, now, state.value, json.dumps(dict(error)), EVENTS,
                  event(job, state.value, final=True, error=dict(error))],
        )
        head = str(reply[0].decode())
        if head != "ended":
            return head
        running = [r.decode() for r in reply[1:]]
        if running:
            await self.client.publish(CANCELS, json.dumps(running))
        return running

    async def read(self, job: str) -> tuple[dict[str, str], dict[str, str]] | None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(job_key(job))
            pipe.hgetall(steps_key(job))
            record, steps = await pipe.execute()
        if not record:
            return None
        return _text(record), _text(steps)

    async def state(self, job: str) -> str | None:
        value = await self.client.hget(job_key(job), "state")
        return _str(value) if value is not None else None

    async def result(self, packed: str) -> Any:
        return await _unpack_async(self.client, packed)

    async def inputs(self, job: str, names: Sequence[str]) -> dict[str, Any]:
        """The job's inputs ``names``, as it was given them (those it still has)."""
        texts = await self.client.hmget(data_key(job), [input_ref(n) for n in names])
        return {n: await _unpack_async(self.client, _str(t))
                for n, t in zip(names, texts, strict=True) if t is not None}

    async def recent(self, limit: int, pipeline: str | None, state: str | None,
                     before: float | None = None) -> tuple[list[dict[str, str]], float | None]:
        """The newest ``limit`` jobs (of ``pipeline``, from its own jobs list; in ``state``)
        created before ``before``, and the cursor for the page after them (None at the
        end): two round trips a page without a state filter. With one, up to 10,000 jobs of
        the list are looked at for a page."""
        index = JOBS if pipeline is None else pipeline_jobs_key(pipeline)
        found: list[tuple[dict[str, str], float]] = []
        top = f"({before!r}" if before is not None else "+inf"
        batch, seen = (limit + 1) if state is None else max(limit * 2, 50), 0
        while len(found) <= limit and seen < 10_000:
            page: Any = await self.client.zrevrangebyscore(
                index, top, "-inf", start=0, num=batch, withscores=True)
            if not page:
                break
            async with self.client.pipeline(transaction=False) as pipe:
                for i, _ in page:
                    pipe.hgetall(job_key(_str(i)))
                records = await pipe.execute()
            for rec, (_, score) in zip(records, page, strict=True):
                r = _text(rec)
                if r and (pipeline is None or r.get(JobField.pipeline) == pipeline) and (
                        state is None or r.get(JobField.state) == state):
                    found.append((r, float(score)))
            seen += len(page)
            top = f"({float(page[-1][1])!r}"
            if len(page) < batch:
                break
        more = len(found) > limit
        return [r for r, _ in found[:limit]], found[limit - 1][1] if more else None

    async def overdue(self, now: float) -> list[str]:
        return [_str(i) for i in await self.client.zrangebyscore(DEADLINES, 0, now, 0, 100)]

    async def forget(self, job: str) -> None:
        await self.client.zrem(DEADLINES, job)

    async def trim(self, now: float, pipelines: Sequence[str]) -> None:
        """Drop the jobs older than the TTL (their records expired) from the jobs lists."""
        async with self.client.pipeline(transaction=False) as pipe:
            for index in [JOBS, *(pipeline_jobs_key(p) for p in pipelines)]:
                pipe.zremrangebyscore(index, 0, now - self.ttl_s)
            await pipe.execute()


_Encodable = bytes | bytearray | memoryview | str | int | float


def _fields(mapping: Mapping[str, str]) -> Mapping[_Encodable, _Encodable]:
    """redis-py's hash mapping type (its keys are invariant, so a dict[str, str] is refused)."""
    return {k: v for k, v in mapping.items()}


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(mapping: Mapping[Any, Any]) -> dict[str, str]:
    return {_str(k): _str(v) for k, v in mapping.items()}


async def _unpack_async(client: aioredis.Redis, packed: str) -> Any:
    raw = _codec.loads(packed)
    if isinstance(raw, dict) and raw.get(_codec.TAG) == "ref":
        stored = await client.get(raw["key"])
        if stored is None:
            raise LookupError(f"result {raw['key']} expired")
        raw = _codec.loads(stored)
    return _codec.decode(raw)
