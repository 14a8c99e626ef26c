"""Python clients of the Braid API, sync (:class:`Client`) and async (:class:`AsyncClient`).

    with Client() as braid:                  # http://BRAID_API_HOST:BRAID_API_PORT
        job = braid.submit("ensemble", input_data=["I love this movie"])
        print(job.result(timeout=60))        # a numpy array: the pipeline declares one
        print(job.status().progress.done)
        braid.submit("text-model.analyze_text", text="hi").result(timeout=30)   # SERVICE.API

Inputs may hold numpy arrays, PIL images and bytes (also inside lists and dicts); results
come back as such wherever the pipeline's output schema (``GET /v1/pipelines``) declares
them. Jobs are :class:`~app._views.JobView` objects, as the API describes them in ``/docs``;
their ``result`` is the REST JSON. When the API cannot be reached, every call raises
:class:`~app._errors.ApiUnreachable`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn

import httpx
from pydantic import MISSING

from app._decoder import decode
from app._errors import ApiUnreachable, BraidError, JobFailed, error_for
from app._jobs import JobState
from app._protocol import IDEMPOTENCY_KEY
from app._settings import Settings
from app._types import to_rest
from app._views import Chunk, JobList, JobView

__all__ = ["AsyncClient", "AsyncJob", "Client", "Job"]

log = logging.getLogger("braid.client")

_LONG_POLL = 60.0


def _target(url: str | None, api_key: str | None, settings: Settings | None) -> tuple[str, str | None]:
    """The API's base URL and key: those given, else the settings' (read now, from BRAID_*)."""
    if url is None or api_key is None:
        settings = settings or Settings()
        url = url or settings.api_url
        if api_key is None and settings.api_key is not None:
            api_key = settings.api_key.get_secret_value()
    return url.rstrip("/"), api_key


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _unreachable(url: str, exc: httpx.TransportError) -> ApiUnreachable:
    reason = str(exc) or type(exc).__name__
    return ApiUnreachable(f"cannot reach the Braid API at {url}: is `braid up` running? ({reason})")


_NO_CONNECTION = (httpx.ConnectError, httpx.ConnectTimeout)


class _Transport(httpx.HTTPTransport):
    """httpx's transport, saying :class:`ApiUnreachable` when no connection can be made."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except _NO_CONNECTION as exc:
            raise _unreachable(self.url, exc) from None


class _AsyncTransport(httpx.AsyncHTTPTransport):
    """The async twin of :class:`_Transport`."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except _NO_CONNECTION as exc:
            raise _unreachable(self.url, exc) from None


_LOST = (httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.WriteError)
"""Transport errors after which a submission may have been made: its reply was lost."""


def _submission(pipeline: str, inputs: dict[str, Any]) -> tuple[str, Any, dict[str, str]]:
    """The path, body and headers of a submission, with an idempotency key of its own."""
    return _submit_path(pipeline), to_rest(inputs), {IDEMPOTENCY_KEY: uuid.uuid4().hex}


def _submit_path(name: str) -> str:
    """The jobs route of pipeline ``name``, or of a service API named ``service.api``."""
    if "." in name:
        service, _, api = name.partition(".")
        return f"/v1/services/{service}/{api}/jobs"
    return f"/v1/pipelines/{name}/jobs"


class _Schemas:
    """The declared output schemas by pipeline name (``service.api`` for a service API), read
    once from the API's listings; ``None`` for a name a listing does not declare."""

    def __init__(self) -> None:
        self.known: dict[str, dict[str, Any] | None] = {}

    def listing(self, name: str) -> str | None:
        """The listing that declares ``name``'s output, unless it was read already."""
        if name in self.known:
            return None
        return "/v1/services" if "." in name else "/v1/pipelines"

    def learn(self, name: str, listing: dict[str, Any] | None) -> None:
        """What ``listing`` declares; a listing that could not be read is asked again."""
        if listing is None:
            return
        for p in listing.get("pipelines", []):
            self.known[p["name"]] = p.get("output_schema")
        for svc in listing.get("services", []):
            for a in svc.get("apis", []):
                self.known[f"{svc['name']}.{a['name']}"] = a.get("output_schema")
        self.known.setdefault(name, None)

    def decode(self, name: str | None, value: Any) -> Any:
        schema = self.known.get(name) if name is not None else None
        return value if schema is None else decode(value, schema)


def _listing(response: httpx.Response) -> dict[str, Any] | None:
    if not response.is_success:
        return None
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        return None
    return body


def _repr(kind: str, job: Job | AsyncJob) -> str:
    pipeline = f", pipeline={job.pipeline!r}" if job.pipeline else ""
    return f"{kind}({job.id!r}{pipeline}, url={job.url!r})"


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


def _follow(http: httpx.Client, path: str, timeout: httpx.Timeout | None,
            params: dict[str, str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """The server-sent events of ``GET path``, as ``(kind, data)``."""
    with http.stream("GET", path, params=params, timeout=timeout) as r:
        if not r.is_success:
            r.read()
            _check(r)
        parser = _Sse()
        for line in r.iter_lines():
            if (event := parser.feed(line)) is not None:
                yield event


async def _afollow(http: httpx.AsyncClient, path: str, timeout: httpx.Timeout | None,
                   params: dict[str, str] | None = None
                   ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """As :func:`_follow`."""
    async with http.stream("GET", path, params=params, timeout=timeout) as r:
        if not r.is_success:
            await r.aread()
            _check(r)
        parser = _Sse()
        async for line in r.aiter_lines():
            if (event := parser.feed(line)) is not None:
                yield event


def _chunks(kind: str, data: dict[str, Any]) -> list[Chunk]:
    """The chunks of a ``/stream`` event; its ``end`` raises JobFailed if the job did not
    succeed."""
    if kind == "end":
        _result(JobView.model_validate(data))
        return []
    if kind != "chunk":
        return []
    return [Chunk(step=data["step"], attempt=data["attempt"], index=data["first"] + i,
                  value=value) for i, value in enumerate(data["items"])]


_STREAM_TIMEOUT = httpx.Timeout(30.0, read=None)


class Job:
    """A submitted job, followed over REST: ``Job('5f0c…', pipeline='ensemble',
    url='http://127.0.0.1:8000/v1/jobs/5f0c…')``."""

    def __init__(self, client: Client, job_id: str, pipeline: str | None = None) -> None:
        self.client = client
        self.id = job_id
        self.pipeline = pipeline
        self.url = f"{client.url}/v1/jobs/{job_id}"

    def __repr__(self) -> str:
        return _repr("Job", self)

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
        """The job's result, with numpy arrays, PIL images and bytes where the pipeline's
        output schema declares them (the plain JSON if the schema cannot be read); raises
        JobFailed if it failed or was cancelled, TimeoutError if it is still going."""
        view = self.wait(timeout)
        return self.client._decoded(view.pipeline or self.pipeline, _result(view))

    def cancel(self) -> JobView:
        """Cancel the job; returns it, cancelled."""
        return _view(self.client.http.delete(f"/v1/jobs/{self.id}"))

    def events(self) -> Iterator[tuple[str, JobView | dict[str, Any]]]:
        """``(kind, data)`` pairs: a ``snapshot`` (a :class:`JobView`), then ``step``
        transitions (dicts: job, step, state, ts, and error for failures), then ``end`` (the
        final :class:`JobView`)."""
        for event in _follow(self.client.http, f"/v1/jobs/{self.id}/events", None):
            yield _event(*event)

    def stream(self, step: str | None = None) -> Iterator[Chunk]:
        """The chunks the job's streaming step yields (``step``: another streaming step of
        its pipeline), each as soon as it was written, until the job ends; raises JobFailed
        at the end if it failed or was cancelled. A chunk whose ``attempt`` is higher than
        the one before starts the chunks over."""
        params = {"step": step} if step else {}
        for event in _follow(self.client.http, f"/v1/jobs/{self.id}/stream", _STREAM_TIMEOUT,
                             params):
            yield from _chunks(*event)


class Client:
    """Submit and follow jobs: ``Client(url=None, api_key=None)``.

    Without ``url``, the API at ``http://{settings.api_host}:{settings.api_port}``; without
    ``api_key``, ``settings.api_key``; ``settings`` defaults to :class:`Settings` read from
    the ``BRAID_*`` variables when the client is made."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 30.0,
                 *, settings: Settings | None = None) -> None:
        self.url, key = _target(url, api_key, settings)
        self.http = httpx.Client(base_url=self.url, headers=_headers(key), timeout=timeout,
                                 transport=_Transport(self.url))
        self._schemas = _Schemas()

    def submit(self, pipeline: str, /, **inputs: Any) -> Job:
        """Start a job of ``pipeline`` (or of a service API, as ``"service.api"``) with
        ``inputs`` as its request body; numpy arrays, PIL images and bytes are sent in their
        REST forms. The submission carries an ``Idempotency-Key`` of its own, so when its
        reply is lost it is sent again, once, and answers with the same job."""
        path, body, headers = _submission(pipeline, inputs)
        try:
            response = self.http.post(path, json=body, headers=headers)
        except _LOST as exc:
            log.info("the reply to a submission was lost (%r); asking again", exc)
            response = self.http.post(path, json=body, headers=headers)
        accepted = _check(response)
        return Job(self, accepted["id"], accepted.get("pipeline", pipeline))

    def call(self, service: str, api: str, /, **inputs: Any) -> Job:
        """Start a one-step job of ``service``'s ``api``: ``submit("service.api", ...)``."""
        return self.submit(f"{service}.{api}", **inputs)

    def _decoded(self, pipeline: str | None, value: Any) -> Any:
        """``value``, a result of ``pipeline`` in its REST form, as Python values."""
        if pipeline is not None and (path := self._schemas.listing(pipeline)) is not None:
            try:
                listing = _listing(self.http.get(path))
            except (httpx.HTTPError, BraidError):
                listing = None
            self._schemas.learn(pipeline, listing)
        return self._schemas.decode(pipeline, value)

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

    def __init__(self, client: AsyncClient, job_id: str, pipeline: str | None = None) -> None:
        self.client = client
        self.id = job_id
        self.pipeline = pipeline
        self.url = f"{client.url}/v1/jobs/{job_id}"

    def __repr__(self) -> str:
        return _repr("AsyncJob", self)

    async def status(self) -> JobView:
        return _view(await self.client.http.get(f"/v1/jobs/{self.id}"))

    async def wait(self, timeout: float | None = None) -> JobView:
        poll = _LongPoll(timeout)
        while True:
            view = _view(await self.client.http.get(f"/v1/jobs/{self.id}", **poll.next()))
            if poll.over(view):
                return view

    async def result(self, timeout: float | None = None) -> Any:
        view = await self.wait(timeout)
        return await self.client._decoded(view.pipeline or self.pipeline, _result(view))

    async def cancel(self) -> JobView:
        return _view(await self.client.http.delete(f"/v1/jobs/{self.id}"))

    async def events(self) -> AsyncIterator[tuple[str, JobView | dict[str, Any]]]:
        async for event in _afollow(self.client.http, f"/v1/jobs/{self.id}/events", None):
            yield _event(*event)

    async def stream(self, step: str | None = None) -> AsyncIterator[Chunk]:
        """As :meth:`Job.stream`."""
        params = {"step": step} if step else {}
        async for event in _afollow(self.client.http, f"/v1/jobs/{self.id}/stream",
                                    _STREAM_TIMEOUT, params):
            for chunk in _chunks(*event):
                yield chunk


class AsyncClient:
    """The async twin of :class:`Client`."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 30.0,
                 *, settings: Settings | None = None) -> None:
        self.url, key = _target(url, api_key, settings)
        self.http = httpx.AsyncClient(base_url=self.url, headers=_headers(key), timeout=timeout,
                                      transport=_AsyncTransport(self.url))
        self._schemas = _Schemas()

    async def submit(self, pipeline: str, /, **inputs: Any) -> AsyncJob:
        path, body, headers = _submission(pipeline, inputs)
        try:
            response = await self.http.post(path, json=body, headers=headers)
        except _LOST as exc:
            log.info("the reply to a submission was lost (%r); asking again", exc)
            response = await self.http.post(path, json=body, headers=headers)
        accepted = _check(response)
        return AsyncJob(self, accepted["id"], accepted.get("pipeline", pipeline))

    async def call(self, service: str, api: str, /, **inputs: Any) -> AsyncJob:
        return await self.submit(f"{service}.{api}", **inputs)

    async def _decoded(self, pipeline: str | None, value: Any) -> Any:
        if pipeline is not None and (path := self._schemas.listing(pipeline)) is not None:
            try:
                listing = _listing(await self.http.get(path))
            except (httpx.HTTPError, BraidError):
                listing = None
            self._schemas.learn(pipeline, listing)
        return self._schemas.decode(pipeline, value)

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
