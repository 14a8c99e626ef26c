"""Traces of jobs, exported over OTLP/HTTP (JSON) when ``BRAID_OTLP_ENDPOINT`` is set.

A job is one trace, its id the job's id (128 bits). The API's request that submitted it is
the root span, exported as the request ends; when the job ends, one API process (the first
to claim it in Redis) exports a span per step that ran, each a child of the request span:
its service, API, queue wait, run time, attempt and batch. The step spans are built from the
job's record, so any API process can export them, whichever took the submission. Without an
endpoint nothing is built, sent or claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from app._jobs import JobStore
from app._pipeline import Pipeline
from app._protocol import JobField, StepField, map_of, split_step_field, traced_key

__all__ = ["Traces", "request_span_id"]

log = logging.getLogger("braid.api")

_QUEUED = 1000
"""Exports waiting to be sent; past it new ones are dropped (and counted in the log)."""
_SERVER, _INTERNAL = 2, 1
_ERROR = 2


def request_span_id(job: str) -> str:
    """The span id of the request that submitted ``job`` (derived, so that any process can
    parent the job's step spans to it)."""
    return hashlib.sha256(f"request:{job}".encode()).hexdigest()[:16]


def _span_id(job: str, step: str) -> str:
    return hashlib.sha256(f"step:{job}:{step}".encode()).hexdigest()[:16]


def _nanos(seconds: float) -> str:
    return str(round(seconds * 1e9))


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _attributes(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in values.items() if v is not None]


class Traces:
    """The API process's trace exporter (a queue and one task that posts it)."""

    def __init__(self, endpoint: str, service_name: str, store: JobStore,
                 pipelines: Callable[[str], Pipeline | None]) -> None:
        self._url = endpoint.rstrip("/") + "/v1/traces"
        self._resource = {"attributes": _attributes({"service.name": service_name})}
        self._store = store
        self._pipelines = pipelines
        self._queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue(maxsize=_QUEUED)
        self._task: asyncio.Task[None] | None = None
        self._dropped = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._send_all())

    async def stop(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._queue.join(), 5)
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def request(self, job: str, method: str, path: str, started: float, ended: float,
                status: int) -> None:
        """The span of the request that submitted ``job``."""
        self._put([{
            "traceId": job, "spanId": request_span_id(job), "name": f"{method} {path}",
            "kind": _SERVER, "startTimeUnixNano": _nanos(started),
            "endTimeUnixNano": _nanos(ended),
            "attributes": _attributes({"http.request.method": method, "url.path": path,
                                       "http.response.status_code": status,
                                       "braid.job": job}),
        }])

    async def observe(self, event: dict[str, Any]) -> None:
        """On a job's final event: claim the job and export its steps' spans."""
        if not event.get("final"):
            return
        job = str(event["job"])
        if not await self._store.client.set(traced_key(job), 1, nx=True, ex=self._store.ttl_s):
            return  # another API process exports it
        found = await self._store.read(job)
        if found is not None:
            self._put(self._steps(job, *found))

    def _steps(self, job: str, record: dict[str, str], fields: dict[str, str]) -> list[dict[str, Any]]:
        steps: dict[str, dict[str, str]] = {}
        for key, value in fields.items():
            step, name = split_step_field(key)
            steps.setdefault(step, {})[name] = value
        pipeline = self._pipelines(record.get(JobField.pipeline, ""))
        created = float(record.get(JobField.created_at) or 0)
        spans = []
        for step, f in steps.items():
            if StepField.started_at not in f or StepField.finished_at not in f:
                continue  # it never ran (a cancel, a failure elsewhere first)
            started, finished = float(f[StepField.started_at]), float(f[StepField.finished_at])
            ready = self._ready(step, steps, pipeline, created)
            span: dict[str, Any] = {
                "traceId": job, "spanId": _span_id(job, step), "parentSpanId": request_span_id(job),
                "name": f"{f.get(StepField.service, '')}.{f.get(StepField.api, '')}",
                "kind": _INTERNAL, "startTimeUnixNano": _nanos(started),
                "endTimeUnixNano": _nanos(finished),
                "attributes": _attributes({
                    "braid.job": job, "braid.step": step, "braid.service": f.get(StepField.service),
                    "braid.api": f.get(StepField.api), "braid.state": f.get(StepField.state),
                    "braid.attempt": int(f.get(StepField.attempts) or 1),
                    "braid.worker": f.get(StepField.worker),
                    "braid.queue_wait_s": round(max(0.0, started - ready), 6),
                    "braid.run_s": round(finished - started, 6),
                    "braid.batch.id": f.get(StepField.batch),
                    "braid.batch.size": int(f[StepField.batch_size]) if StepField.batch_size in f else None,
                }),
            }
            if f.get(StepField.state) == "failed":
                span["status"] = {"code": _ERROR, "message": f.get(StepField.error, "")[:500]}
            spans.append(span)
        return spans

    @staticmethod
    def _ready(step: str, steps: Mapping[str, Mapping[str, str]], pipeline: Pipeline | None,
               created: float) -> float:
        """When ``step`` could start: its inputs' last finish (a map element: its map's
        expansion), else the job's creation."""
        parent = map_of(step)
        if parent is not None:
            return float(steps.get(parent, {}).get(StepField.started_at) or created)
        node = pipeline.nodes.get(step) if pipeline is not None else None
        ends = [float(steps.get(d, {}).get(StepField.finished_at) or created)
                for d in (node.deps if node is not None else ())]
        return max([created, *ends])

    def _put(self, spans: list[dict[str, Any]]) -> None:
        if not spans:
            return
        try:
            self._queue.put_nowait(spans)
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped in (1, 10, 100) or self._dropped % 1000 == 0:
                log.warning("%d trace exports dropped: the OTLP endpoint %s keeps up with less "
                            "than the jobs", self._dropped, self._url)

    async def _send_all(self) -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                spans = await self._queue.get()
                body = {"resourceSpans": [{"resource": self._resource, "scopeSpans": [
                    {"scope": {"name": "braid"}, "spans": spans}]}]}
                try:
                    response = await http.post(self._url, json=body)
                    if response.status_code >= 300:
                        log.warning("OTLP export to %s: HTTP %d", self._url, response.status_code)
                except httpx.HTTPError as exc:
                    log.warning("OTLP export to %s failed: %s", self._url, exc)
                finally:
                    self._queue.task_done()
