"""Submitting jobs and rendering job records."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import math
import time
from typing import Any

import redis.exceptions
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import Braid, needs
from api.hub import expire
from app import (
    BraidError,
    BrokerUnavailable,
    IdempotencyConflict,
    InvalidInput,
    JobNotFound,
    JobState,
    Overloaded,
    _codec,
)
from app._canvas import new_job
from app._jobs import new_job_id
from app._pipeline import Pipeline
from app._protocol import (
    IDEMPOTENCY_KEY,
    JobField,
    StepField,
    idempotency_key,
    job_key,
    map_of,
    split_step_field,
)
from app._types import to_rest
from app._views import JobAccepted, JobView

__all__ = ["FINAL", "ViewResponse", "end_told", "read_job", "render", "submit", "until_final"]


def _time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromtimestamp(float(value), dt.UTC)


def status_url(request: Request, braid: Braid, job: str) -> str:
    base = braid.settings.public_url or str(request.base_url).rstrip("/")
    return f"{base}/v1/jobs/{job}"


async def submit(braid: Braid, request: Request, pipeline: Pipeline, body: BaseModel,
                 wait: float | None = None, key: str | None = None) -> JSONResponse:
    """Store the job and publish its canvas, in one round trip; 202 with where to follow
    it. With ``wait``, answer 200 with the final job if it ends within that many seconds.
    With an ``Idempotency-Key`` seen before (from the same API key), the job it made, or a
    409 when it came with another request. With traces on, the request is the root span of
    the job's trace."""
    started = time.time()
    response = await _submit(braid, request, pipeline, body, wait, key)
    if braid.traces is not None and "location" in response.headers:
        job = response.headers["location"].rsplit("/", 1)[-1]
        braid.traces.request(job, request.method, request.url.path, started, time.time(),
                             response.status_code)
    return response


async def _submit(braid: Braid, request: Request, pipeline: Pipeline, body: BaseModel,
                  wait: float | None, key: str | None) -> JSONResponse:
    texts: dict[str, str] = {}
    blobs: dict[str, str] = {}
    digest = hashlib.sha256(pipeline.name.encode())
    for name, value in body:
        try:
            text = _codec.dumps(_codec.encode(value))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"invalid request: {name}: {exc}",
                               errors=[{"field": name, "message": str(exc)}]) from None
        digest.update(f"\0{name}\0{text}".encode())
        texts[name], blob = _codec.pack_text(text, braid.settings.blob_threshold)
        if blob is not None:
            blobs[blob[0]] = blob[1]
    deadline = pipeline.derived_deadline(braid.settings.time_limit_grace_s,
                                         braid.settings.deadline_slack_s)
    job = new_job_id()
    idempotency = None if key is None else (
        _idempotency_record(request, key), f"{job} {digest.hexdigest()}")
    async with braid.hub.watch(job) as events:
        try:
            # the canvas's first messages (built by Celery once per pipeline), written with
            # the job
            messages = braid.template(pipeline).commands(job)
            created = await braid.store.create(job, new_job(pipeline, texts, deadline), blobs,
                                               messages, idempotency, braid.room(pipeline))
        except Exception as exc:
            raise await _unavailable(braid, request, job, exc) from exc
        if created.full is not None:
            raise _overloaded(braid, pipeline, *created.full)
        if created.seen is not None:
            first, _, seen = created.seen.partition(" ")
            if seen != digest.hexdigest():
                raise IdempotencyConflict(
                    f"the {IDEMPOTENCY_KEY} {key!r} was used for another request (job "
                    f"{first}): send a new key for a new request")
            return await _answer(braid, request, pipeline, first, wait)
        braid.metrics.accepted(job, pipeline.name, created.at)
        if wait:
            view = await until_final(braid, job, events, min(wait, braid.settings.max_wait_s))
            if view.state.final:
                return ViewResponse(view, headers={"Location": status_url(request, braid, job)})
    return _accepted(request, braid, pipeline, job, created.at)


def _accepted(request: Request, braid: Braid, pipeline: Pipeline, job: str,
              created: float) -> JSONResponse:
    url = status_url(request, braid, job)
    accepted = JobAccepted(id=job, state=JobState.queued, pipeline=pipeline.name,
                           created_at=dt.datetime.fromtimestamp(created, dt.UTC), status_url=url)
    return ViewResponse(accepted, status_code=202, headers={"Location": url})


async def _answer(braid: Braid, request: Request, pipeline: Pipeline, job: str,
                  wait: float | None) -> JSONResponse:
    """The answer to a submission repeated with its Idempotency-Key: as the first one's
    (202, or with ``wait`` the final job if it ends in time)."""
    async with braid.hub.watch(job) as events:
        view = await read_job(braid, job, with_steps=False)
        if wait and not view.state.final:
            view = await until_final(braid, job, events, min(wait, braid.settings.max_wait_s))
    if wait and view.state.final:
        return ViewResponse(await read_job(braid, job),
                            headers={"Location": status_url(request, braid, job)})
    created = view.created_at.timestamp() if view.created_at else time.time()
    return _accepted(request, braid, pipeline, job, created)


def _idempotency_record(request: Request, key: str) -> str:
    """Where ``key``'s job is noted: per API key (two callers' keys never meet)."""
    scope = request.headers.get("authorization", "")
    return idempotency_key(hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest())


def _overloaded(braid: Braid, pipeline: Pipeline, queue: str, waiting: int) -> Overloaded:
    """The 429 for a submission that found ``queue`` full, with when to retry: as long as
    its service took, lately, to run as many steps as the queue is over its room."""
    service = next(s for s in needs(pipeline) if s.queue == queue)
    room = dict(braid.room(pipeline))[queue]
    rate = braid.metrics.throughput.per_second(service.name, time.time())
    retry = 30 if rate <= 0 else min(300, max(1, math.ceil((waiting - room + 1) / rate)))
    return Overloaded(f"service {service.name!r} has {waiting} calls waiting, its limit "
                      f"(max_queued, or BRAID_MAX_QUEUED) is {room}: nothing was queued; "
                      f"retry in {retry} s", retry, service=service.name)


def _never_connected(exc: BaseException) -> bool:
    """Whether ``exc`` came from connecting to Redis (so nothing was sent), not later."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _unavailable(braid: Braid, request: Request, job: str,
                       exc: Exception) -> BraidError:
    """Redis failed while the job was written: the job exists if the write reached Redis
    before its reply was lost. Say which, where the API can still tell; a 503 never hides a
    job that runs."""
    if isinstance(exc, redis.exceptions.ResponseError) and "OOM" in str(exc):
        return BrokerUnavailable(
            f"Redis is full ({exc}): nothing was queued; retry once jobs expire or are "
            "deleted, or give Redis more memory (its maxmemory; the embedded one's is "
            "BRAID_EMBEDDED_REDIS_MAXMEMORY) or keep jobs shorter (BRAID_JOB_TTL_S)")
    if _never_connected(exc):
        return BrokerUnavailable(f"could not reach Redis to store the job ({exc}); nothing was "
                                 "queued, retry once Redis is back")
    try:
        exists = bool(await braid.store.client.exists(job_key(job)))
    except Exception:
        return BrokerUnavailable(
            f"Redis failed while the job was stored ({exc}) and cannot be asked whether it "
            f"was: job {job} may exist ({status_url(request, braid, job)}); to retry safely, "
            f"send the same {IDEMPOTENCY_KEY}", job=job)
    if exists:
        return BrokerUnavailable(
            f"Redis failed after the job was stored ({exc}): job {job} exists and runs "
            f"({status_url(request, braid, job)}); do not submit it again", job=job)
    return BrokerUnavailable(f"could not store and publish the job ({exc}); nothing was "
                             "queued, retry once Redis is back")


def _steps(fields: dict[str, str]) -> dict[str, dict[str, Any]]:
    steps: dict[str, dict[str, str]] = {}
    for key, value in fields.items():
        name, attr = split_step_field(key)
        steps.setdefault(name, {})[attr] = value
    out: dict[str, dict[str, Any]] = {}
    for name, s in steps.items():
        out[name] = {
            "service": s.get(StepField.service), "api": s.get(StepField.api),
            "kind": s.get(StepField.kind, "step"), "state": s.get(StepField.state, "queued"),
            "attempts": int(s.get(StepField.attempts, 0)), "worker": s.get(StepField.worker),
            "task_id": s.get(StepField.task_id),
            "queued_at": _time(s.get(StepField.queued_at)),
            "started_at": _time(s.get(StepField.started_at)),
            "finished_at": _time(s.get(StepField.finished_at)),
            "error": json.loads(s[StepField.error]) if s.get(StepField.error) else None,
        }
        if StepField.batch in s:
            out[name]["batch"] = {"id": s[StepField.batch], "size": int(s[StepField.batch_size])}
        if StepField.size in s:
            out[name]["size"] = int(s[StepField.size])
            out[name]["done"] = int(s.get(StepField.done, 0))
    for name, view in out.items():
        base = map_of(name)
        if base is not None and base in out:
            view["service"], view["api"] = out[base]["service"], out[base]["api"]
    return out


async def render(braid: Braid, record: dict[str, str], steps: dict[str, str] | None) -> JobView:
    state = record[JobField.state]
    view: dict[str, Any] = {
        "id": record[JobField.id], "pipeline": record.get(JobField.pipeline), "state": state,
        "created_at": _time(record.get(JobField.created_at)),
        "started_at": _time(record.get(JobField.started_at)),
        "finished_at": _time(record.get(JobField.finished_at)),
        "progress": {"done": int(record.get(JobField.done, 0)),
                     "total": int(record.get(JobField.total, 0))},
    }
    if steps is not None:
        view["steps"] = _steps(steps)
    if state == JobState.succeeded and JobField.result in record:
        view["result"] = to_rest(await braid.store.result(record[JobField.result]))
    if record.get(JobField.error):
        view["error"] = json.loads(record[JobField.error])
    return JobView.model_validate(view)


class ViewResponse(JSONResponse):
    """The JSON of a view (a pydantic model), serialized once, in pydantic's core.

    Routes declare the view as ``response_model`` (for the schema in /docs) and return
    this: FastAPI then neither validates the view again nor converts it to a dict first,
    which costs more than the rest of a GET for a large ``result``."""

    def render(self, content: Any) -> bytes:
        assert isinstance(content, BaseModel)
        return content.__pydantic_serializer__.to_json(content)


FINAL = {s.value for s in JobState if s.final}


async def until_final(braid: Braid, job: str, events: asyncio.Queue[dict[str, Any]],
                      timeout: float) -> JobView:
    """The job once it ended, or as it is after ``timeout`` seconds (pushed events, no
    polling: ``events`` must have been registered before the job could end)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while (left := end - loop.time()) > 0 and await end_told(events, left):
        view = await read_job(braid, job)
        if view.state.final:
            return view
    return await read_job(braid, job)


async def end_told(events: asyncio.Queue[dict[str, Any]], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the job's events to tell its end (or a resync,
    after which it may have ended); whether they did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            event = await asyncio.wait_for(events.get(), left)
        except TimeoutError:
            return False
        if event.get("final") or event.get("state") == "resync":
            return True
    return False


async def read_job(braid: Braid, job: str, with_steps: bool = True) -> JobView:
    found = await braid.store.read(job)
    if found is None:
        raise JobNotFound(f"no job {job!r} (unknown, or older than BRAID_JOB_TTL_S)")
    record, steps = found
    if record[JobField.state] in ("queued", "running") and \
            float(record.get(JobField.deadline, "inf")) < time.time():
        await expire(braid.store, job)
        found = await braid.store.read(job)
        assert found is not None
        record, steps = found
    return await render(braid, record, steps if with_steps else None)
