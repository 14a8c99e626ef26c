"""``/v1/jobs``: follow, wait for, stream and cancel jobs."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api import stream
from api.deps import Authorized, BraidDep
from api.jobs import ViewResponse, read_job, render, until_final
from api.problems import responses
from api.stream import ended_before
from app import InvalidInput, JobConflict, JobNotFound, JobState, NotAcceptable
from app._protocol import JobField
from app._types import to_rest
from app._views import JobList, JobView

__all__ = ["router"]

_UNKNOWN = {404: "No such job (unknown, or older than BRAID_JOB_TTL_S)"}
_INVALID = {422: "A parameter does not match its type or range"}


def router() -> APIRouter:
    r = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Authorized],
                  responses=responses({401: "Missing or wrong API key (with BRAID_API_KEYS)"}))

    # Routes answer with a ViewResponse of the view they declare as response_model: the
    # schema is in /docs, and the view is serialized once, with no second validation.

    @r.get("", summary="Recent jobs, newest first", response_model=JobList,
           responses=responses(_INVALID, also={200: {"description": "The jobs, without steps"}}))
    async def list_jobs(
        braid: BraidDep,
        pipeline: str | None = None,
        state: JobState | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[float | None, Query(ge=0, description="Jobs created before this "
                                              "time: the `next` of the page before")] = None,
    ) -> Response:
        records, more = await braid.store.recent(limit, pipeline, state.value if state else None,
                                                 before)
        return ViewResponse(JobList(jobs=[await render(braid, rec, None) for rec in records],
                                    next=more))

    @r.get("/{job}", summary="A job's state, progress, steps and result", response_model=JobView,
           responses=responses(_UNKNOWN | _INVALID, also={200: {
               "description": "The job; with `?wait=`, once it ended or the wait is over"}}))
    async def get_job(
        job: str,
        braid: BraidDep,
        wait: Annotated[float | None, Query(ge=0, description="Seconds to wait for the job to "
                                            "end (long-poll, at most 60)")] = None,
    ) -> Response:
        if not wait:
            return ViewResponse(await read_job(braid, job))
        async with braid.hub.watch(job) as events:
            view = await read_job(braid, job)
            if not view.state.final:
                view = await until_final(braid, job, events, min(wait, braid.settings.max_wait_s))
        return ViewResponse(view)

    @r.get("/{job}/events", summary="Server-sent events of step transitions, ending with the "
           "final state", responses=responses(_UNKNOWN | _INVALID, also={
               200: {"content": {"text/event-stream": {}},
                     "description": "`snapshot` (the job, as GET /v1/jobs/{id} gives it), then "
                                    "`step` events (a step's transition: job, step, state, ts "
                                    "and, for failures, error), then `end` (the final job). "
                                    "Each has an `id:` (the transition's time); with "
                                    "`Last-Event-ID` the stream resumes after it, without "
                                    "a snapshot."},
               204: {"description": "With `Last-Event-ID`: the client saw the job's end "
                                    "already (an `EventSource` stops reconnecting)"}}),
           openapi_extra=_last_event_id("this event id", _EVENT_ID))
    async def job_events(job: str, braid: BraidDep, request: Request) -> Response:
        since = _event_id(request.headers.get("last-event-id"))
        view = await read_job(braid, job, with_steps=False)
        if ended_before(view, since):
            return Response(status_code=204)
        return StreamingResponse(stream.job_events(braid, job, since),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @r.get("/{job}/stream", summary="Server-sent events of the chunks its streaming step "
           "yields, as they come, ending with the final state",
           responses=responses(_INVALID | {
               404: "No such job (unknown, or older than `BRAID_JOB_TTL_S`), or its pipeline "
                    "has no streaming step of that name",
               409: "The job's pipeline has no streaming step"}, also={
               200: {"content": {"text/event-stream": {}},
                     "description": "`chunk` events (step, attempt, first: the index of the "
                                    "first item, items), a `restart` (step, attempt) where the "
                                    "step was run again and its chunks start over, then `end` "
                                    "(the final job). Each chunk's `id:` is its place in the "
                                    "stream; with `Last-Event-ID` the stream resumes after it."},
               204: {"description": "With `Last-Event-ID`: the client saw every chunk and the "
                                    "job's end already"}}),
           openapi_extra=_last_event_id("this chunk's id", stream.ENTRY_ID))
    async def job_stream(
        job: str,
        braid: BraidDep,
        request: Request,
        step: Annotated[str | None, Query(description="The streaming step to follow (default: "
                                          "the one that gives the result, else the last)")] = None,
    ) -> Response:
        after = request.headers.get("last-event-id")
        if after is not None and re.fullmatch(stream.ENTRY_ID, after) is None:
            raise InvalidInput(f"Last-Event-ID {after[:40]!r} is not an id this stream sent "
                               "(like 1764680000000-0); reconnect without it to start over")
        view = await read_job(braid, job, with_steps=False)
        chosen = stream.streaming_step(braid.registry.job_pipeline(view.pipeline or ""), step)
        if after is not None and view.state.final and \
                not await stream.entries_after(braid, job, chosen, after):
            return Response(status_code=204)
        return StreamingResponse(stream.job_chunks(braid, job, chosen, after),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @r.get("/{job}/result", summary="The result alone: JSON, or a .npy / .png download",
           responses=responses(_UNKNOWN | _INVALID | {
               406: "The result has no such form (a .npy of a non-array, a .png of a "
                    "non-image)",
               409: "The job has not succeeded (yet): it has no result"},
               also={200: {"content": {"application/json": {}, "application/x-npy": {},
                                       "image/png": {}}}}))
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
        if record[JobField.state] != JobState.succeeded:
            raise JobConflict(f"job {job!r} is {record[JobField.state]}; a result exists once it "
                              "succeeded")
        value = await braid.store.result(record[JobField.result])
        accept = request.headers.get("accept", "")
        wanted = format or ("npy" if "application/x-npy" in accept else
                            "png" if "image/png" in accept else "json")
        if wanted == "json":
            return JSONResponse(to_rest(value))
        return _download(job, value, wanted)

    @r.delete("/{job}", summary="Cancel a job: no further step starts, running ones are stopped",
              response_model=JobView, responses=responses(_UNKNOWN | _INVALID | {
                  409: "The job already ended: only queued or running jobs can be cancelled"}))
    async def cancel_job(job: str, braid: BraidDep) -> Response:
        await read_job(braid, job, with_steps=False)
        ended = await braid.store.end(job, JobState.cancelled,
                                      {"type": "Cancelled", "message": "cancelled by request"})
        if isinstance(ended, str):
            raise JobConflict(f"job {job!r} already ended ({ended}); only queued or running "
                              "jobs can be cancelled")
        return ViewResponse(await read_job(braid, job))

    return r


def _last_event_id(what: str, pattern: str) -> dict[str, Any]:
    """The ``Last-Event-ID`` header of an event stream, for the OpenAPI schema. It is read
    from the request: a declared optional header would be documented as string-or-null, and
    a header is never null."""
    return {"parameters": [{
        "name": "Last-Event-ID", "in": "header", "required": False,
        "description": f"Resume after {what} (an `id:` this stream sent)",
        "schema": {"type": "string", "pattern": pattern}}]}


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


_EVENT_ID = r"^[0-9]+(\.[0-9]+)?$"
"""An event's id: the time of its transition, in seconds (what the stream's ``id:`` says)."""


def _event_id(text: str | None) -> float | None:
    if text is None:
        return None
    if re.fullmatch(_EVENT_ID, text) is None:
        raise InvalidInput(f"Last-Event-ID {text[:40]!r} is not an id this stream sent (a "
                           "number); reconnect without it for a fresh snapshot")
    return float(text)
