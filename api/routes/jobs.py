"""``/v1/jobs``: follow, wait for, stream and cancel jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import Authorized, BraidDep
from api.jobs import read_job, render
from app import JobConflict, JobNotFound, JobState

__all__ = ["router"]

FINAL = {s.value for s in JobState if s.final}


def router() -> APIRouter:
    r = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Authorized])

    @r.get("", summary="Recent jobs, newest first")
    async def list_jobs(
        braid: BraidDep,
        pipeline: str | None = None,
        state: JobState | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        records = await braid.store.recent(limit, pipeline, state.value if state else None)
        return {"jobs": [await render(braid, rec, None) for rec in records]}

    @r.get("/{job}", summary="A job's state, progress, steps and result")
    async def get_job(
        job: str,
        braid: BraidDep,
        wait: Annotated[float | None, Query(ge=0, description="Seconds to wait for the job to "
                                            "end (long-poll, at most 60)")] = None,
    ) -> dict[str, Any]:
        if not wait:
            return await read_job(braid, job)
        timeout = min(wait, braid.settings.max_wait_s)
        async with braid.hub.watch(job) as events:
            view = await read_job(braid, job)
            if view["state"] in FINAL:
                return view
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            while (left := end - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(events.get(), left)
                except TimeoutError:
                    break
                if event.get("final") or event.get("state") == "resync":
                    view = await read_job(braid, job)
                    if view["state"] in FINAL:
                        return view
        return await read_job(braid, job)

    @r.get("/{job}/events", summary="Server-sent events of step transitions, ending with the "
           "final state")
    async def job_events(job: str, braid: BraidDep) -> StreamingResponse:
        await read_job(braid, job, with_steps=False)

        async def stream() -> AsyncIterator[str]:
            async with braid.hub.watch(job) as events:
                view = await read_job(braid, job)
                yield _sse("snapshot", view)
                while view["state"] not in FINAL:
                    try:
                        event = await asyncio.wait_for(events.get(), 15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        with contextlib.suppress(JobNotFound):
                            view = await read_job(braid, job, with_steps=False)
                        continue
                    if event.get("final") or event.get("state") == "resync":
                        view = await read_job(braid, job)
                    else:
                        yield _sse("step", event)
                yield _sse("end", await read_job(braid, job))

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @r.delete("/{job}", summary="Cancel a job: no further step starts, running ones are stopped")
    async def cancel_job(job: str, braid: BraidDep) -> dict[str, Any]:
        await read_job(braid, job, with_steps=False)
        ended = await braid.store.end(job, JobState.cancelled,
                                      {"type": "Cancelled", "message": "cancelled by request"})
        if isinstance(ended, str):
            raise JobConflict(f"job {job!r} already ended ({ended}); only queued or running "
                              "jobs can be cancelled")
        if ended:
            await run_in_threadpool(braid.celery.control.revoke, ended, terminate=True,
                                    signal="SIGUSR1")
        return await read_job(braid, job)

    return r


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"
