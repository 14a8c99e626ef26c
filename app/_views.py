"""What a client sees of a job: the typed bodies of ``/v1/jobs`` and of the submit routes.

The API answers with these models (so ``/docs`` shows them) and the Python clients parse
into them. ``view.model_dump(mode="json")`` is the JSON the API sends: times are ISO 8601
in UTC ending in ``Z``, and the parts a job does not have yet are left out rather than
``null`` (``steps`` when not asked for, ``error`` unless something failed, ``result``
unless the job succeeded). In Python such a part is ``None``, except ``result``, which is
``pydantic.MISSING`` when absent, since ``None`` is a result a job can have.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal

from pydantic import MISSING, BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from app._jobs import JobState

__all__ = ["Chunk", "JobAccepted", "JobError", "JobList", "JobView", "Progress", "StepState", "StepView"]


def _absent_if_none(value: Any) -> bool:
    return value is None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _omitted(description: str) -> Any:
    """A field that is left out of the JSON, not ``null``, while it is ``None``."""
    return Field(default=None, exclude_if=_absent_if_none, description=description,
                 json_schema_extra=_no_default)


class StepState(enum.StrEnum):
    """What a step is doing: like a job's state, plus `retrying` (it failed and waits for
    its next attempt under the API's retry policy) and `skipped` (its job failed before it
    started). A step of a cancelled job that had not started is `cancelled`; every step of
    a job that ended is final, save one still running that ends on its own."""

    queued = "queued"
    running = "running"
    retrying = "retrying"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    skipped = "skipped"


class JobError(BaseModel):
    """Why a job or a step failed, or why a job was cancelled."""

    model_config = ConfigDict(extra="allow")

    step: str | SkipJsonSchema[None] = _omitted(
        "The step that failed, in a job's error; left out for a step's own error and for "
        "errors that are no step's (a cancel, a passed deadline)")
    type: str = Field(description="The error's kind: the exception's class name "
                      "(`ValueError`, `StepTimeout`, `DeadlineExceeded`, `Cancelled`, ...)")
    message: str = Field(description="What went wrong")
    traceback: str | SkipJsonSchema[None] = _omitted(
        "Where the service's code raised it: the traceback from the API's method down (its "
        "last 8,000 characters); only for exceptions raised by a service's own code")


class Progress(BaseModel):
    """How many of a job's steps are done. A map is one step (done when all its elements
    are); how far a map got is its step's `done` of `size`."""

    done: int = Field(description="Steps that succeeded")
    total: int = Field(description="Steps the job has: fixed when it is submitted")


class BatchRun(BaseModel):
    """The batch a step ran in: its model was called once for all of the batch's steps."""

    id: str
    size: int = Field(description="How many steps the batch ran")


class StepView(BaseModel):
    """One step of a job: a service API call, a map over a list, or one element of a map
    (named `step[i]`)."""

    service: str | None = Field(description="The service that runs the step")
    api: str | None = Field(description="The service API the step calls")
    kind: Literal["step", "map"] = Field(description="`map` for a map over a list (its "
                                         "elements are steps of their own), else `step`")
    state: StepState
    attempts: int = Field(description="Times the step started (retries count)")
    worker: str | None = Field(description="The worker that ran it last (`service@host-n`)")
    task_id: str | None = Field(description="Its Celery task id")
    queued_at: dt.datetime | None = Field(description="When its inputs were ready")
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: JobError | None = Field(description="Its last error (also while `retrying`)")
    size: int | SkipJsonSchema[None] = _omitted("A map's number of elements, once known; "
                                                "only maps have it")
    done: int | SkipJsonSchema[None] = _omitted("A map's elements that succeeded (of `size`); "
                                                "only maps have it")
    batch: BatchRun | SkipJsonSchema[None] = _omitted("The batch it ran in, for a step of a "
                                                      "batched API")


class JobView(BaseModel):
    """A job: what `GET /v1/jobs/{id}` answers, and a submit with `?wait=` when the job
    ended in time. Parts it does not have are left out: `steps` where jobs are listed,
    `result` unless it succeeded, `error` unless it failed or was cancelled."""

    id: str = Field(description="The job id")
    pipeline: str | None = Field(description="The pipeline it runs (a service API's one-step "
                                 "pipeline is named `service.api`)")
    state: JobState
    created_at: dt.datetime | None = Field(description="When it was submitted")
    started_at: dt.datetime | None = Field(description="When its first step started")
    finished_at: dt.datetime | None = Field(description="When it ended")
    progress: Progress
    steps: dict[str, StepView] | SkipJsonSchema[None] = _omitted(
        "Its steps by name; left out where jobs are listed")
    result: Any | MISSING = Field(default=MISSING, description=(
        "What the pipeline returned, in its REST form (arrays and images as in the "
        "API's output schema); there only once the job succeeded, and then possibly "
        "`null`"))
    error: JobError | SkipJsonSchema[None] = _omitted("Why it failed or was cancelled; there "
                                                      "only then")


class JobAccepted(BaseModel):
    """The 202 answer of a submit: the job is stored and queued; follow `status_url`."""

    id: str = Field(description="The job id")
    state: JobState = Field(description="Always `queued`")
    pipeline: str = Field(description="The pipeline it runs")
    created_at: dt.datetime = Field(description="When it was submitted")
    status_url: str = Field(description="Where to follow it (`GET`, also in `Location`)")


class JobList(BaseModel):
    """Recent jobs, newest first, without their steps."""

    jobs: list[JobView]
    next: float | None = Field(default=None, description="Where the next page starts: pass "
                               "it as `before` (null: this page is the last)")


class Chunk(BaseModel):
    """One item a streaming step yielded, as ``Job.stream()`` gives it. When ``attempt``
    changes, the step was run again (its worker died, say) and its chunks start over: what
    came before from the earlier attempt is void."""

    model_config = ConfigDict(frozen=True)

    step: str = Field(description="The streaming step that yielded it")
    attempt: int = Field(description="Which run of the step wrote it (1, then 2 after a restart)")
    index: int = Field(description="Its place among the chunks of its attempt, from 0")
    value: Any = Field(description="The item, in its REST form")
