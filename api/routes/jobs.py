"""``/v1/jobs``: follow, wait for, stream and cancel jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api.deps import Authorized, BraidDep
from api.jobs import FINAL, read_job, render, until_final
from app import JobConflict, JobNotFound, JobState, NotAcceptable
from app._types import to_rest

__all__ = ["router"]

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
    ) -> JSONResponse:
        if not wait:
            return JSONResponse(await read_job(braid, job))
        async with braid.hub.watch(job) as events:
            view = await read_job(braid, job)
            if view["state"] not in FINAL:
                view = await until_final(braid, job, events, min(wait, braid.settings.max_wait_s))
        return JSONResponse(view)

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

    @r.get("/{job}/result", summary="The result alone: JSON, or a .npy / .png download",
           responses={200: {"content": {"application/json": {}, "application/x-npy": {},
                                        "image/png": {}}}})
    async def job_result(
        job: str,
        braid: BraidDep,
        request: Request,
        format: Annotated[str | None, Query(pattern="^(json|npy|png)$",
                                            description="Default: from the Accept header")] = None,
    ) -> Response:
        found = await braid.store.read(job)
        if found is None:
            raise JobNotFound(f"no job {job!r} (unknown, or older than BRAID_JOB_TTL_S)")
        record = found[0]
        if record["state"] != JobState.succeeded:
            raise JobConflict(f"job {job!r} is {record['state']}; a result exists once it "
                              "succeeded")
        value = await braid.store.result(record["result"])
        accept = request.headers.get("accept", "")
        wanted = format or ("npy" if "application/x-npy" in accept else
                            "png" if "image/png" in accept else "json")
        if wanted == "json":
            return JSONResponse(to_rest(value))
        return _download(job, value, wanted)

    @r.delete("/{job}", summary="Cancel a job: no further step starts, running ones are stopped")
    async def cancel_job(job: str, braid: BraidDep) -> dict[str, Any]:
        await read_job(braid, job, with_steps=False)
        ended = await braid.store.end(job, JobState.cancelled,
                                      {"type": "Cancelled", "message": "cancelled by request"})
        if isinstance(ended, str):
            raise JobConflict(f"job {job!r} already ended ({ended}); only queued or running "
                              "jobs can be cancelled")
        return await read_job(braid, job)

    return r


def _download(job: str, value: Any, wanted: str) -> Response:
    import io

    buffer = io.BytesIO()
    kind = type(value).__module__.split(".")[0]
    if wanted == "npy" and kind == "numpy" and hasattr(value, "shape"):
        import numpy as np

        np.save(buffer, value, allow_pickle=False)
        media = "application/x-npy"
    elif wanted == "png" and kind == "PIL":
        value.save(buffer, format="PNG")
        media = "image/png"
    else:
        raise NotAcceptable(f"the result is a {type(value).__name__}, which has no .{wanted} "
                            "form; ask for format=json")
    return Response(buffer.getvalue(), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{job}.{wanted}"'})


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"
