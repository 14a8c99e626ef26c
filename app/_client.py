"""Python clients of the Braid API, sync (:class:`Client`) and async (:class:`AsyncClient`).

    with Client("http://127.0.0.1:8000") as braid:
        job = braid.submit("inference-graph", original_sentence="I have an idea!")
        print(job.result(timeout=60))
        print(job.status().progress.done)

Jobs are :class:`~app._views.JobView` objects, as the API describes them in ``/docs``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn

import httpx
from pydantic import MISSING

from app._errors import BraidError, JobFailed, error_for
from app._jobs import JobState
from app._views import JobList, JobView

__all__ = ["AsyncClient", "AsyncJob", "Client", "Job"]

_LONG_POLL = 60.0


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.is_success:
        body: dict[str, Any] = response.json()
        return body
    _raise(response)


def _raise(response: httpx.Response) -> NoReturn:
    """The API's problem answer as the matching :class:`BraidError`."""
    try:
        problem = response.json()
    except ValueError:
        raise BraidError(f"HTTP {response.status_code}: {response.text[:200]}") from None
    error = error_for(problem.get("code", ""))(problem.get("detail", response.text))
    error.details = {k: v for k, v in problem.items() if k not in ("detail", "code")}
    raise error


def _view(response: httpx.Response) -> JobView:
    """The job an answer carries (parsed straight from its bytes), or the API's error."""
    if not response.is_success:
        _raise(response)
    return JobView.model_validate_json(response.content)


def _result(view: JobView) -> Any:
    if view.state is JobState.succeeded:
        return None if view.result is MISSING else view.result
    if not view.state.final:
        raise TimeoutError(f"job {view.id} is still {view.state}")
    error = view.error.model_dump() if view.error else {}
    raise JobFailed(f"job {view.id} {view.state}: "
                    f"{error.get('type', '')} in step {error.get('step')!r}: {error.get('message')}",
                    view.state, error)


def _event(kind: str, data: dict[str, Any]) -> tuple[str, JobView | dict[str, Any]]:
    return kind, JobView.model_validate(data) if kind in ("snapshot", "end") else data


def _list_params(pipeline: str | None, state: str | None, limit: int) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    params.update({k: v for k, v in (("pipeline", pipeline), ("state", state)) if v})
    return params


class _LongPoll:
    """Successive ``GET /v1/jobs/{id}?wait=`` windows until the job ends or ``timeout``."""

    def __init__(self, timeout: float | None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def next(self) -> dict[str, Any]:
        left = _LONG_POLL if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        window = min(left, _LONG_POLL)
        return {"params": {"wait": window}, "timeout": window + 30}

    def over(self, view: JobView) -> bool:
        return view.state.final or (self.deadline is not None and
                                    time.monotonic() >= self.deadline)


class _Sse:
    """Server-sent events, one line at a time."""

    def __init__(self) -> None:
        self.kind = "message"

    def feed(self, line: str) -> tuple[str, dict[str, Any]] | None:
        if line.startswith("event: "):
            self.kind = line[7:]
        elif line.startswith("data: "):
            return self.kind, json.loads(line[6:])
        return None


class Job:
    """A submitted job, followed over REST."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r}, url={str(self.client.http.base_url).rstrip('/')!r})"

    def status(self) -> JobView:
        """The job: state, progress, steps, and its result or error once it has one."""
        return _view(self.client.http.get(f"/v1/jobs/{self.id}"))

    def state(self) -> JobState:
        """The job's state; ``JobState.not_found`` for an unknown or expired id."""
        response = self.client.http.get(f"/v1/jobs/{self.id}")
        if response.status_code == 404:
            return JobState.not_found
        return JobState(_check(response)["state"])

    def wait(self, timeout: float | None = None) -> JobView:
        """Block until the job ends (or ``timeout`` seconds pass); returns it as it is then."""
        poll = _LongPoll(timeout)
        while True:
            view = _view(self.client.http.get(f"/v1/jobs/{self.id}", **poll.next()))
            if poll.over(view):
                return view

    def result(self, timeout: float | None = None) -> Any:
        """The job's result; raises JobFailed if it failed or was cancelled."""
        return _result(self.wait(timeout))

    def cancel(self) -> JobView:
        """Cancel the job; returns it, cancelled."""
        return _view(self.client.http.delete(f"/v1/jobs/{self.id}"))

    def events(self) -> Iterator[tuple[str, JobView | dict[str, Any]]]:
        """``(kind, data)`` pairs: a ``snapshot`` (a :class:`JobView`), then ``step``
        transitions (dicts: job, step, state, ts, and error for failures), then ``end`` (the
        final :class:`JobView`)."""
        with self.client.http.stream("GET", f"/v1/jobs/{self.id}/events", timeout=None) as r:
            if not r.is_success:
                r.read()
                _check(r)
            parser = _Sse()
            for line in r.iter_lines():
                if (event := parser.feed(line)) is not None:
                    yield _event(*event)


class Client:
    """Submit and follow jobs: ``Client(url, api_key=None)``."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 timeout: float = 30.0) -> None:
        self.http = httpx.Client(base_url=url, headers=_headers(api_key), timeout=timeout)

    def submit(self, pipeline: str, /, **inputs: Any) -> Job:
        """Start a job of ``pipeline`` with ``inputs`` as its request body."""
        return Job(self, _check(self.http.post(f"/v1/pipelines/{pipeline}/jobs", json=inputs))["id"])

    def call(self, service: str, api: str, /, **inputs: Any) -> Job:
        """Start a one-step job of ``service``'s ``api``."""
        path = f"/v1/services/{service}/{api}/jobs"
        return Job(self, _check(self.http.post(path, json=inputs))["id"])

    def job(self, job_id: str) -> Job:
        return Job(self, job_id)

    def jobs(self, pipeline: str | None = None, state: str | None = None,
             limit: int = 50) -> list[JobView]:
        """Recent jobs, newest first (without their steps)."""
        response = self.http.get("/v1/jobs", params=_list_params(pipeline, state, limit))
        if not response.is_success:
            _raise(response)
        return JobList.model_validate_json(response.content).jobs

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncJob:
    """A submitted job, followed over REST without blocking the event loop."""

    def __init__(self, client: AsyncClient, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"AsyncJob({self.id!r}, url={str(self.client.http.base_url).rstrip('/')!r})"

    async def status(self) -> JobView:
        return _view(await self.client.http.get(f"/v1/jobs/{self.id}"))

    async def wait(self, timeout: float | None = None) -> JobView:
        poll = _LongPoll(timeout)
        while True:
            view = _view(await self.client.http.get(f"/v1/jobs/{self.id}", **poll.next()))
            if poll.over(view):
                return view

    async def result(self, timeout: float | None = None) -> Any:
        return _result(await self.wait(timeout))

    async def cancel(self) -> JobView:
        return _view(await self.client.http.delete(f"/v1/jobs/{self.id}"))

    async def events(self) -> AsyncIterator[tuple[str, JobView | dict[str, Any]]]:
        async with self.client.http.stream("GET", f"/v1/jobs/{self.id}/events",
                                           timeout=None) as r:
            if not r.is_success:
                await r.aread()
                _check(r)
            parser = _Sse()
            async for line in r.aiter_lines():
                if (event := parser.feed(line)) is not None:
                    yield _event(*event)


class AsyncClient:
    """The async twin of :class:`Client`."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 timeout: float = 30.0) -> None:
        self.http = httpx.AsyncClient(base_url=url, headers=_headers(api_key), timeout=timeout)

    async def submit(self, pipeline: str, /, **inputs: Any) -> AsyncJob:
        response = await self.http.post(f"/v1/pipelines/{pipeline}/jobs", json=inputs)
        return AsyncJob(self, _check(response)["id"])

    async def call(self, service: str, api: str, /, **inputs: Any) -> AsyncJob:
        response = await self.http.post(f"/v1/services/{service}/{api}/jobs", json=inputs)
        return AsyncJob(self, _check(response)["id"])

    def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, job_id)

    async def jobs(self, pipeline: str | None = None, state: str | None = None,
                   limit: int = 50) -> list[JobView]:
        response = await self.http.get("/v1/jobs", params=_list_params(pipeline, state, limit))
        if not response.is_success:
            _raise(response)
        return JobList.model_validate_json(response.content).jobs

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
