"""Typed job views: /docs shows what the job routes return, and the Python client's JobView
objects are the REST JSON, field for field."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from pydantic import MISSING

from app import Client, JobState, JobView, StepState
from tests.harness import System, wait_for


def _schema(openapi: dict[str, Any], response: dict[str, Any], media: str) -> str:
    ref: str = response["content"][media]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[1]
    assert name in openapi["components"]["schemas"]
    return name


def test_openapi_documents_what_the_job_routes_return(http: httpx.Client) -> None:
    """Given the running API, when /openapi.json is fetched, then GET /v1/jobs/{job} answers
    a JobView with every field of a job, its errors are problem+json, and a submit route
    documents its 202 (JobAccepted) and its 200 with ?wait= (JobView)."""
    openapi = http.get("/openapi.json").json()
    schemas = openapi["components"]["schemas"]
    get = openapi["paths"]["/v1/jobs/{job}"]["get"]["responses"]
    assert _schema(openapi, get["200"], "application/json") == "JobView"
    view = schemas["JobView"]
    assert list(view["properties"]) == ["id", "pipeline", "state", "created_at", "started_at",
                                        "finished_at", "progress", "steps", "result", "error"]
    assert set(view["required"]) == {"id", "pipeline", "state", "created_at", "started_at",
                                     "finished_at", "progress"}
    assert view["properties"]["created_at"]["anyOf"][0]["format"] == "date-time"
    assert view["properties"]["steps"]["additionalProperties"]["$ref"].endswith("/StepView")
    assert "retrying" in schemas["StepState"]["enum"]
    assert view["properties"]["state"]["$ref"].endswith("/JobState")
    assert all(p.get("description") for name, p in view["properties"].items()
               if name not in ("state", "progress"))
    assert _schema(openapi, get["404"], "application/problem+json") == "Problem"
    assert {"type", "status", "code", "detail"} <= set(schemas["Problem"]["required"])

    assert _schema(openapi, openapi["paths"]["/v1/jobs"]["get"]["responses"]["200"],
                   "application/json") == "JobList"
    cancel = openapi["paths"]["/v1/jobs/{job}"]["delete"]["responses"]
    assert _schema(openapi, cancel["200"], "application/json") == "JobView"
    submit = openapi["paths"]["/v1/pipelines/chain-3/jobs"]["post"]["responses"]
    assert _schema(openapi, submit["202"], "application/json") == "JobAccepted"
    assert _schema(openapi, submit["200"], "application/json") == "JobView"
    assert _schema(openapi, submit["422"], "application/problem+json") == "Problem"
    assert list(schemas["JobAccepted"]["properties"]) == ["id", "state", "pipeline",
                                                          "created_at", "status_url"]


def test_client_status_is_a_job_view_equal_to_the_rest_json(system: System,
                                                            http: httpx.Client) -> None:
    """Given a map job that succeeded, when the client asks for its status, then it gets a
    JobView whose fields are typed (enums, UTC datetimes, step views) and whose JSON is the
    REST answer exactly; the event stream's snapshot and end are JobViews too."""
    with Client(system.url) as client:
        job = client.submit("mapped", n=2, key="views")
        assert job.result(timeout=30) == [0, 2]
        view = job.status()
        events = list(job.events())
    rest = http.get(f"/v1/jobs/{job.id}").json()
    assert isinstance(view, JobView)
    assert view.model_dump(mode="json") == rest
    assert view.id == job.id and view.pipeline == "mapped"
    assert view.state is JobState.succeeded and view.result == [0, 2] and view.error is None
    assert (view.progress.done, view.progress.total) == (3, 3)
    assert view.created_at is not None and view.created_at.tzinfo == dt.UTC
    assert view.finished_at is not None and view.created_at <= view.finished_at
    assert view.steps is not None
    mapped = view.steps["calc.double"]
    assert (mapped.kind, mapped.size, mapped.done, mapped.state) == (
        "map", 2, 2, StepState.succeeded)
    element = view.steps["calc.double[1]"]
    assert (element.service, element.api, element.size) == (mapped.service, mapped.api, None)
    assert "size" not in rest["steps"]["calc.double[1]"] and rest["steps"]["calc.double"]["size"] == 2
    assert [kind for kind, _ in events] == ["snapshot", "end"]
    assert all(isinstance(data, JobView) and data.model_dump(mode="json") == rest
               for _, data in events)


def test_client_views_of_failed_cancelled_and_none_result_jobs_keep_the_rest_json(
        system: System, http: httpx.Client) -> None:
    """Given jobs that failed, were cancelled, and returned None, when the client reads
    them, then a failure's error names its step, a cancel's has no step, a job with no
    result has ``result`` MISSING (not in the JSON) and a None result is ``null``."""
    with Client(system.url) as client:
        failed = client.call("echo", "boom", message="typed").wait(timeout=30)
        nothing = client.call("echo", "echo", value=None)
        assert nothing.result(timeout=30) is None
        sleeping = client.call("slow", "sleep", seconds=5)
        cancelled = sleeping.cancel()
        none_view = nothing.status()
    assert failed.state is JobState.failed and failed.result is MISSING
    assert failed.error is not None
    assert (failed.error.step, failed.error.type, failed.error.message) == \
        ("boom", "ValueError", "typed")
    assert cancelled.state is JobState.cancelled and cancelled.error is not None
    assert (cancelled.error.step, cancelled.error.type) == (None, "Cancelled")
    assert none_view.result is None
    # the cancel answers at once; the interrupted step records its end a moment later
    wait_for(lambda: http.get(f"/v1/jobs/{sleeping.id}").json()["steps"]["sleep"]["state"]
             == "cancelled", 10, "the interrupted step to record it")
    with Client(system.url) as client:
        settled = client.job(sleeping.id).status()
    for view in (failed, settled, none_view):
        rest = http.get(f"/v1/jobs/{view.id}").json()
        assert view.model_dump(mode="json") == rest
    assert "result" not in http.get(f"/v1/jobs/{failed.id}").json()
    assert http.get(f"/v1/jobs/{nothing.id}").json()["result"] is None
    assert repr(sleeping) == (f"Job({sleeping.id!r}, pipeline='slow.sleep', "
                              f"url='{system.url}/v1/jobs/{sleeping.id}')")


def test_client_jobs_are_job_views_equal_to_the_rest_list(system: System,
                                                          http: httpx.Client) -> None:
    """Given two finished jobs of a pipeline, when the client lists that pipeline's jobs,
    then it gets JobViews, newest first, without steps, equal to the REST list."""
    with Client(system.url) as client:
        first = client.submit("graph", x=1, y=1, key="views-list")
        first.wait(timeout=30)
        second = client.submit("graph", x=2, y=1, key="views-list")
        second.wait(timeout=30)
        listed = client.jobs("graph", "succeeded", limit=2)
    rest = http.get("/v1/jobs", params={"pipeline": "graph", "state": "succeeded",
                                        "limit": 2}).json()["jobs"]
    assert all(isinstance(v, JobView) for v in listed)
    assert [v.id for v in listed] == [second.id, first.id]
    assert all(v.steps is None and v.state is JobState.succeeded for v in listed)
    assert [v.model_dump(mode="json") for v in listed] == rest
