"""A job's server-sent events, resumable.

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
from api.jobs import read_job
from app import JobNotFound
from app._views import JobView

__all__ = ["ended_before", "job_events"]

_KEEP_ALIVE_S = 15.0


def _sse(kind: str, data: JobView | dict[str, Any], at: float) -> str:
    text = data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data)
    return f"id: {at!r}\nevent: {kind}\ndata: {text}\n\n"


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
