"""Jobs and their step records in Redis.

A job is three hashes, all with the job TTL: ``braid:job:{id}`` (state, timestamps, result
or error, counters), ``braid:job:{id}:steps`` (``<step>|<field>`` per step) and
``braid:job:{id}:data`` (inputs and step outputs). Every transition is one Lua script, so
it is atomic and costs one round trip, and publishes a JSON event on ``braid:events``.
Jobs are ordered in the ``braid:jobs`` sorted set; deadlines in ``braid:deadlines``.

Workers use :class:`StepRecorder` (sync redis); the API uses :class:`JobStore` (asyncio).
"""

from __future__ import annotations

import enum
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from app import _codec

__all__ = ["EVENTS", "JobState", "JobStore", "NewJob", "StepRecorder", "StepStart", "job_key"]

EVENTS = "braid:events"
JOBS = "braid:jobs"
DEADLINES = "braid:deadlines"


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


def job_key(job_id: str) -> str:
    return f"braid:job:{job_id}"


def _keys(job_id: str) -> list[str]:
    base = job_key(job_id)
    return [base, f"{base}:steps", f"{base}:data"]


def event(job_id: str, state: str, step: str | None = None, **extra: Any) -> str:
    return json.dumps({"job": job_id, "step": step, "state": state, "ts": time.time(), **extra},
                      separators=(",", ":"))


# Ends a job that is not final yet: KEYS job, steps; ARGV now, state, error, event.
# Returns {'ended', task ids of running steps...} or {current final state}.
_END_JOB = """
local function end_job(job, steps, now, state, err, ev)
  local current = redis.call('HGET', job, 'state')
  if current ~= 'queued' and current ~= 'running' then return {current or 'missing'} end
  redis.call('HSET', job, 'state', state, 'finished_at', now, 'error', err)
  redis.call('ZREM', 'braid:deadlines', string.sub(job, 11))
  redis.call('PUBLISH', 'braid:events', ev)
  local out = {'ended'}
  local fields = redis.call('HGETALL', steps)
  for i = 1, #fields, 2 do
    local f = fields[i]
    if string.sub(f, -6) == '|state' and fields[i + 1] == 'running' then
      local task = redis.call('HGET', steps, string.sub(f, 1, -7) .. '|task_id')
      if task then table.insert(out, task) end
    end
  end
  return out
end
"""

_START_STEP = """
local job, steps, data = KEYS[1], KEYS[2], KEYS[3]
local s, task, worker, now, ev, jev = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local nready = tonumber(ARGV[7])
local state = redis.call('HGET', job, 'state')
if state ~= 'queued' and state ~= 'running' then return {state or 'missing'} end
if redis.call('HGET', steps, s .. '|state') == 'succeeded' then return {'done'} end
if state == 'queued' then
  redis.call('HSET', job, 'state', 'running', 'started_at', now)
  redis.call('PUBLISH', 'braid:events', jev)
end
local attempts = redis.call('HINCRBY', steps, s .. '|attempts', 1)
local ready = redis.call('HGET', job, 'created_at')
for i = 1, nready do
  local t = redis.call('HGET', steps, ARGV[7 + i])
  if t and tonumber(t) > tonumber(ready) then ready = t end
end
redis.call('HSET', steps, s .. '|state', 'running', s .. '|task_id', task,
           s .. '|worker', worker, s .. '|started_at', now, s .. '|queued_at', ready)
redis.call('PUBLISH', 'braid:events', ev)
local out = {'run', attempts, ready}
if #ARGV > 7 + nready then
  local vals = redis.call('HMGET', data, unpack(ARGV, 8 + nready))
  for i = 1, #vals do table.insert(out, vals[i]) end
end
return out
"""

_FINISH_STEP = """
local job, steps, data = KEYS[1], KEYS[2], KEYS[3]
local s, now, field, value, sink, ev, whole = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
redis.call('HSET', data, field, value)
redis.call('HSET', steps, s .. '|state', 'succeeded', s .. '|finished_at', now)
if ARGV[9] == '1' then redis.call('HINCRBY', job, 'done', 1) end
redis.call('PUBLISH', 'braid:events', ev)
if redis.call('HGET', job, 'state') ~= 'running' then return {'ended'} end
if sink ~= '1' then return {'ok'} end
local n = redis.call('HINCRBY', job, 'sinks_done', 1)
if n < tonumber(redis.call('HGET', job, 'sinks')) then return {'ok'} end
if whole == '1' then
  redis.call('HSET', job, 'state', 'succeeded', 'finished_at', now, 'result', value)
  redis.call('ZREM', 'braid:deadlines', string.sub(job, 11))
  redis.call('PUBLISH', 'braid:events', ARGV[8])
  return {'succeeded'}
end
return {'complete', redis.call('HGET', job, 'output')}
"""

_SUCCEED = """
local job = KEYS[1]
if redis.call('HGET', job, 'state') ~= 'running' then return 0 end
redis.call('HSET', job, 'state', 'succeeded', 'finished_at', ARGV[1], 'result', ARGV[2])
redis.call('ZREM', 'braid:deadlines', string.sub(job, 11))
redis.call('PUBLISH', 'braid:events', ARGV[3])
return 1
"""

_FAIL_STEP = _END_JOB + """
local job, steps = KEYS[1], KEYS[2]
local s, now, step_state, err, sev, jerr, jev = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
redis.call('HSET', steps, s .. '|state', step_state, s .. '|finished_at', now, s .. '|error', err)
redis.call('PUBLISH', 'braid:events', sev)
if step_state == 'cancelled' then return {'cancelled'} end
return end_job(job, steps, now, 'failed', jerr, jev)
"""

_END = _END_JOB + """
return end_job(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""

_EXPAND = """
local job, steps, data = KEYS[1], KEYS[2], KEYS[3]
local m, now, n, ev = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if redis.call('HGET', job, 'state') ~= 'running' then return 0 end
redis.call('HSET', steps, m .. '|size', n, m .. '|state', 'running', m .. '|started_at', now)
redis.call('HINCRBY', job, 'total', n)
for i = 1, n do
  redis.call('HSET', steps, m .. '[' .. (i - 1) .. ']|state', 'queued',
             m .. '[' .. (i - 1) .. ']|queued_at', now)
end
redis.call('PUBLISH', 'braid:events', ev)
return 1
"""


@dataclass(frozen=True)
class StepStart:
    """What a worker learns when it starts a step: whether to run it, its inputs, and when
    it became ready to run (its inputs' steps finished) and started."""

    action: str
    attempts: int
    values: list[bytes | None]
    ready_at: float = 0.0
    started_at: float = 0.0


class StepRecorder:
    """The worker's side of the job store (sync: Celery tasks are sync)."""

    def __init__(self, client: redis.Redis, ttl_s: int, threshold: int) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.threshold = threshold
        self._start = client.register_script(_START_STEP)
        self._finish = client.register_script(_FINISH_STEP)
        self._succeed = client.register_script(_SUCCEED)
        self._fail = client.register_script(_FAIL_STEP)
        self._expand = client.register_script(_EXPAND)

    def start(self, job: str, step: str, task_id: str, worker: str,
              fields: Sequence[str], ready: Sequence[str] = ()) -> StepStart:
        """Mark ``step`` running and read the data ``fields``. The step became ready at the
        latest of the steps-hash timestamps ``ready`` (the job's creation if none)."""
        now = time.time()
        reply = self._start(
            keys=_keys(job),
            args=[step, task_id, worker, now, event(job, "running", step, worker=worker),
                  event(job, "running"), len(ready), *ready, *fields],
        )
        action = reply[0].decode()
        if action != "run":
            return StepStart(action, 0, [])
        return StepStart(action, int(reply[1]), list(reply[3:]), float(reply[2]), now)

    def finish(self, job: str, step: str, field: str, packed: str, *, sink: bool,
               whole: bool, counts: bool = True, **timing: Any) -> tuple[str, Any]:
        """Store a step's output; returns ('complete', output spec) when the job's last sink
        finished and its result must be assembled, else ('ok' | 'succeeded' | 'ended', None)."""
        now = time.time()
        reply = self._finish(
            keys=_keys(job),
            args=[step, now, field, packed, int(sink), event(job, "succeeded", step, **timing),
                  int(whole),
                  event(job, "succeeded", final=True), int(counts)],
        )
        return reply[0].decode(), (reply[1] if len(reply) > 1 else None)

    def succeed(self, job: str, result: str) -> None:
        self._succeed(keys=_keys(job)[:1],
                      args=[time.time(), result, event(job, "succeeded", final=True)])

    def fail(self, job: str, step: str, error: Mapping[str, Any], state: str = "failed",
             **timing: Any) -> None:
        now = time.time()
        step_error = json.dumps(dict(error))
        job_error = json.dumps({"step": step, **error})
        self._fail(
            keys=_keys(job)[:2],
            args=[step, now, state, step_error,
                  event(job, state, step, error=dict(error), **timing),
                  job_error, event(job, "failed", final=True, error={"step": step, **error})],
        )

    def retrying(self, job: str, step: str, error: Mapping[str, Any], delay: float) -> None:
        fields = {f"{step}|state": "retrying", f"{step}|error": json.dumps(dict(error))}
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(_keys(job)[1], mapping=_fields(fields))
            pipe.publish(EVENTS, event(job, "retrying", step, error=dict(error), delay=delay))
            pipe.execute()

    def expand(self, job: str, map_step: str, items: Sequence[str]) -> bool:
        """Record a map's size and its elements (``m:<map>:<i>`` data fields)."""
        data = _keys(job)[2]
        if items:
            self.client.hset(data, mapping=_fields({f"m:{map_step}:{i}": v for i, v in enumerate(items)}))
        return bool(self._expand(
            keys=_keys(job),
            args=[map_step, time.time(), len(items), event(job, "expanded", map_step, size=len(items))],
        ))

    def values(self, job: str, fields: Sequence[str]) -> list[bytes | None]:
        if not fields:
            return []
        return [v if isinstance(v, bytes) or v is None else str(v).encode()
                for v in self.client.hmget(_keys(job)[2], list(fields))]

    def cancelled(self, job: str) -> bool:
        return self.client.hget(job_key(job), "state") == b"cancelled"


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
        self._end = client.register_script(_END)

    async def create(self, new: NewJob, blobs: Mapping[str, str]) -> tuple[str, float]:
        job = uuid.uuid4().hex
        now = time.time()
        keys = _keys(job)
        steps = {f"{s}|{k}": v for s, fields in new.steps.items() for k, v in fields.items()}
        steps.update({f"{s}|queued_at": str(now) for s in new.steps})
        steps.update({f"{s}|state": "queued" for s in new.steps})
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(keys[0], mapping={
                "id": job, "pipeline": new.pipeline, "state": "queued", "created_at": now,
                "sinks": new.sinks, "sinks_done": 0, "total": new.total, "done": 0,
                "output": json.dumps(new.output), "deadline": now + new.deadline_s,
            })
            pipe.hset(keys[1], mapping=_fields(steps))
            if new.inputs:
                pipe.hset(keys[2], mapping=_fields(new.inputs))
            for key in keys:
                pipe.expire(key, self.ttl_s)
            for key, payload in blobs.items():
                pipe.set(key, payload, ex=self.ttl_s)
            pipe.zadd(JOBS, {job: now})
            pipe.zadd(DEADLINES, {job: now + new.deadline_s})
            await pipe.execute()
        return job, now

    async def discard(self, job: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(*_keys(job))
            pipe.zrem(JOBS, job)
            pipe.zrem(DEADLINES, job)
            await pipe.execute()

    async def end(self, job: str, state: JobState, error: Mapping[str, Any]) -> list[str] | str:
        """End a job that is not final: returns the task ids of its running steps, or the
        job's final state if it had one already."""
        now = time.time()
        reply = await self._end(
            keys=_keys(job)[:2],
            args=[now, state.value, json.dumps(dict(error)),
                  event(job, state.value, final=True, error=dict(error))],
        )
        head = reply[0].decode()
        return [r.decode() for r in reply[1:]] if head == "ended" else head

    async def read(self, job: str) -> tuple[dict[str, str], dict[str, str]] | None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(_keys(job)[0])
            pipe.hgetall(_keys(job)[1])
            record, steps = await pipe.execute()
        if not record:
            return None
        return _text(record), _text(steps)

    async def state(self, job: str) -> str | None:
        value = await self.client.hget(job_key(job), "state")
        return _str(value) if value is not None else None

    async def result(self, packed: str) -> Any:
        return await _unpack_async(self.client, packed)

    async def recent(self, limit: int, pipeline: str | None, state: str | None) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        start, batch = 0, max(limit * 2, 50)
        while len(found) < limit and start < 10_000:
            ids = await self.client.zrevrange(JOBS, start, start + batch - 1)
            if not ids:
                break
            async with self.client.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hgetall(job_key(_str(i)))
                records = await pipe.execute()
            for rec in records:
                r = _text(rec)
                if r and (pipeline is None or r.get("pipeline") == pipeline) and (
                    state is None or r.get("state") == state
                ):
                    found.append(r)
            start += batch
        return found[:limit]

    async def overdue(self, now: float) -> list[str]:
        return [_str(i) for i in await self.client.zrangebyscore(DEADLINES, 0, now, 0, 100)]

    async def forget(self, job: str) -> None:
        await self.client.zrem(DEADLINES, job)

    async def trim(self, now: float) -> None:
        await self.client.zremrangebyscore(JOBS, 0, now - self.ttl_s)


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
