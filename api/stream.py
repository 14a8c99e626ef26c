"""A job's server-sent events, resumable: its transitions (``/events``) and the chunks of
its streaming step (``/stream``).

Every event has an ``id:``, the time (epoch seconds) of the transition it tells: a step
event's own ``ts``, the latest transition a ``snapshot`` shows, the job's end for ``end``. A
client that reconnects with ``Last-Event-ID`` (as browsers' ``EventSource`` does) gets no
snapshot but the transitions after that id, read back from the job's record, then the live
ones; one that already saw the ``end`` gets 204, which tells an ``EventSource`` to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from api.deps import Braid
from api.jobs import end_told, read_job
from app import JobConflict, JobNotFound, NotFound, _codec
from app._pipeline import Pipeline
from app._protocol import (
    STREAM_ATTEMPT,
    ChunkEntry,
    output_ref,
    ref_spec,
    stream_key,
    stream_state_key,
)
from app._types import to_rest
from app._views import JobView

__all__ = ["ENTRY_ID", "ended_before", "entries_after", "job_chunks", "job_events", "streaming_step"]

_KEEP_ALIVE_S = 15.0
_BLOCK_MS = 1000
"""How long a chunk stream's read waits before it looks whether its job's end was told."""
_ENDING_MS = 100
"""How long a read waits once the stream's attempt ended, before it looks for the job's end."""
ENTRY_ID = r"^[0-9]+(-[0-9]+)?$"
"""A chunk event's id: its stream entry's."""


def _sse(kind: str, data: JobView | dict[str, Any], at: float, entry: str | None = None) -> str:
    """An event; its id is the time ``at``, or a stream's ``entry`` id."""
    text = data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data)
    return f"id: {entry if entry is not None else repr(at)}\nevent: {kind}\ndata: {text}\n\n"


def _us(t: float) -> int:
    """``t`` in whole microseconds: records hold times to the microsecond, events (and their
    ids) the same times as floats, so they are compared at that resolution."""
    return round(t * 1_000_000)


def _latest(view: JobView) -> float:
    """When the last transition that ``view`` shows happened."""
    times = [view.created_at, view.started_at, view.finished_at]
    for step in (view.steps or {}).values():
        times += [step.started_at, step.finished_at]
    return max(t.timestamp() for t in times if t is not None)


def _missed(view: JobView, since: float) -> list[dict[str, Any]]:
    """The step transitions after ``since``, as the live step events told them."""
    out: list[dict[str, Any]] = []
    for name, step in (view.steps or {}).items():
        if step.started_at is not None and _us(step.started_at.timestamp()) > _us(since):
            extra: dict[str, Any] = {"size": step.size} if step.kind == "map" else {}
            state = "expanded" if step.kind == "map" else "running"
            out.append({"job": view.id, "step": name, "state": state,
                        "ts": step.started_at.timestamp(), **extra})
        if step.finished_at is not None and _us(step.finished_at.timestamp()) > _us(since):
            failure = {"error": step.error.model_dump(exclude_none=True)} if step.error else {}
            out.append({"job": view.id, "step": name, "state": step.state.value,
                        "ts": step.finished_at.timestamp(), **failure})
    return sorted(out, key=lambda e: float(e["ts"]))


def ended_before(view: JobView, since: float | None) -> bool:
    """Whether a client resuming after ``since`` saw this job's ``end`` already (whose id
    is the job's end, or a later step event's)."""
    return since is not None and view.finished_at is not None and \
        view.state.final and _us(since) >= _us(view.finished_at.timestamp())


async def job_events(braid: Braid, job: str, since: float | None) -> AsyncIterator[str]:
    """The event stream of ``job``: a snapshot (or, resuming after ``since``, what was
    missed), its step transitions as they happen, and its end."""
    async with braid.hub.watch(job) as events:
        view = await read_job(braid, job)
        # what the first answer shows: transitions up to `shown`; a live event from before
        # it is a duplicate. Ids never go back, though events of several workers may arrive
        # a little out of their times' order.
        shown = _latest(view) if since is None else max(_latest(view), since)
        cursor = shown
        if since is None:
            yield _sse("snapshot", view, cursor)
        else:
            for missed in _missed(view, since):
                yield _sse("step", missed, float(missed["ts"]))
        while not view.state.final:
            try:
                event = await asyncio.wait_for(events.get(), _KEEP_ALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                with contextlib.suppress(JobNotFound):
                    view = await read_job(braid, job, with_steps=False)
                continue
            if event.get("final") or event.get("state") == "resync":
                view = await read_job(braid, job)
            elif _us(float(event.get("ts", 0))) > _us(shown):
                cursor = max(cursor, float(event["ts"]))
                yield _sse("step", event, cursor)
        end = await read_job(braid, job)
        finished = end.finished_at.timestamp() if end.finished_at else cursor
        yield _sse("end", end, max(cursor, finished))


def streaming_step(pipeline: Pipeline, wanted: str | None) -> str:
    """The step of ``pipeline`` whose chunks ``/stream`` sends: ``wanted``, or by default
    the streaming step that gives the job's result, else the last streaming step."""
    streaming = [n.id for n in pipeline.nodes.values() if n.api.streams]
    if wanted is not None:
        if wanted not in streaming:
            raise NotFound(f"pipeline {pipeline.name!r} has no streaming step {wanted!r}; its "
                           f"streaming steps: {', '.join(streaming) or 'none'}")
        return wanted
    if not streaming:
        raise JobConflict(f"pipeline {pipeline.name!r} has no streaming step (an API that "
                          "yields); follow its jobs with /events instead")
    whole = [s for s in streaming if pipeline.output == ref_spec(output_ref(s))]
    return (whole or streaming)[-1]


async def entries_after(braid: Braid, job: str, step: str, after: str) -> bool:
    """Whether ``step``'s stream has entries after the id ``after``."""
    return bool(await braid.store.client.xrange(stream_key(job, step), f"({after}", "+", count=1))


async def job_chunks(braid: Braid, job: str, step: str, after: str | None) -> AsyncIterator[str]:
    """The chunks of ``step`` of ``job`` as its worker writes them (``chunk`` events, whose
    ids are the stream's entry ids), a ``restart`` where a new attempt starts over, then the
    job's ``end``. Resuming ``after`` an id goes on from there."""
    client = braid.streams
    key = stream_key(job, step)
    last = after or "0-0"
    attempt: int | None = None
    if after is not None:  # the attempt of the entry the client saw last
        seen: Any = await client.xrange(key, after, after)
        if seen:
            attempt = ChunkEntry.of(seen[0][1]).attempt
    if attempt is None:
        current = await client.hget(stream_state_key(job, step), STREAM_ATTEMPT)
        attempt = None if current is None else int(current)
    async with braid.hub.watch(job) as events:
        ended = False  # the attempt ended: the job's end follows soon (a restart, rarely)
        idle = 0.0
        while True:
            # once the stream's attempt ended, the job's end follows in a few milliseconds:
            # the client hears it then, not after a read's whole block
            if ended and await end_told(events, _ENDING_MS / 1000):
                view = await read_job(braid, job, with_steps=False)
                if view.state.final:
                    yield _sse("end", view, 0.0, last)
                    return
            found: Any = await client.xread({key: last}, count=256,
                                            block=_ENDING_MS if ended else _BLOCK_MS)
            if not found:
                idle += (_ENDING_MS if ended else _BLOCK_MS) / 1000
                if ended or _told_end(events) or idle >= _KEEP_ALIVE_S:
                    view = await read_job(braid, job, with_steps=False)
                    if view.state.final:
                        yield _sse("end", view, 0.0, last)
                        return
                if idle >= _KEEP_ALIVE_S:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                continue
            for entry_id, fields in found[0][1]:
                last, entry = entry_id.decode(), ChunkEntry.of(fields)
                if attempt is not None and entry.attempt < attempt:
                    continue
                if attempt is not None and entry.attempt > attempt:
                    yield _sse("restart", {"step": step, "attempt": entry.attempt}, 0.0, last)
                attempt = entry.attempt
                if entry.items:
                    yield _sse("chunk", {"step": step, "attempt": entry.attempt,
                                         "first": entry.first,
                                         "items": [to_rest(_codec.decode(i)) for i in entry.items]},
                               0.0, last)
                ended = entry.end is not None


def _told_end(events: asyncio.Queue[dict[str, Any]]) -> bool:
    """Whether the job's events so far tell its end (or a resync, after which it may have)."""
    told = False
    while not events.empty():
        event = events.get_nowait()
        told = told or bool(event.get("final")) or event.get("state") == "resync"
    return told
