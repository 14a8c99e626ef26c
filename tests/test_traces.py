"""Traces: with BRAID_OTLP_ENDPOINT set, a job is one trace exported over OTLP/HTTP, its
submitting request the root span and a span per step under it. The receiver here is a real
HTTP server on a local port, taking what a collector takes at /v1/traces."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from app._protocol import traced_key
from tests.harness import System, free_port, wait_for
from tests.jobs_helpers import run, wait


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.paths.append(self.path)
        for resource in body["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                self.server.spans.extend(
                    {**span, "resource": resource["resource"]} for span in scope["spans"])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()


def _attributes(span: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}


def test_a_pipeline_job_is_one_trace_with_a_span_per_step_under_its_request(
        system: System, receiver: _Receiver) -> None:
    # given an API that exports traces to the receiver
    url = system.start_api("api-traced", free_port(), BRAID_OTLP_ENDPOINT=receiver.url)
    try:
        # when a three-step pipeline job runs through it
        with httpx.Client(base_url=url, timeout=30) as http:
            job = http.post("/v1/pipelines/chain-3/jobs", json={"x": 4}).json()["id"]
            view = wait(http, job)
        assert view["state"] == "succeeded"

        def exported() -> list[dict[str, Any]] | None:
            spans = [s for s in receiver.spans if s["traceId"] == job]
            return spans if len(spans) == 4 else None

        spans = wait_for(exported, 20, "the job's trace to be exported")
    finally:
        system.stop("api-traced")
    # then it is one trace (the job's id): the request at its root, each step a child of it
    assert set(receiver.paths) == {"/v1/traces"}
    roots = [s for s in spans if not s.get("parentSpanId")]
    assert len(roots) == 1
    root = roots[0]
    assert root["name"] == "POST /v1/pipelines/chain-3/jobs"
    assert _attributes(root)["http.response.status_code"] == "202"
    steps = {_attributes(s)["braid.step"]: s for s in spans if s is not root}
    assert set(steps) == set(view["steps"]) == {"calc.double", "echo.echo", "slow.inc"}
    assert all(s["parentSpanId"] == root["spanId"] for s in steps.values())
    assert len({s["spanId"] for s in spans}) == 4
    # each step span is timed as its step ran, and says where and how
    for name, span in steps.items():
        attributes = _attributes(span)
        assert span["name"] == f"{attributes['braid.service']}.{attributes['braid.api']}"
        assert attributes["braid.attempt"] == "1" and attributes["braid.state"] == "succeeded"
        assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"])
        assert float(attributes["braid.run_s"]) >= 0 and float(attributes["braid.queue_wait_s"]) >= 0
        assert attributes["braid.worker"] == view["steps"][name]["worker"]
    order = sorted(steps, key=lambda n: int(steps[n]["startTimeUnixNano"]))
    assert order == ["calc.double", "echo.echo", "slow.inc"]
    assert root["resource"]["attributes"] == [{"key": "service.name",
                                               "value": {"stringValue": "braid"}}]


def test_without_an_endpoint_no_trace_is_made(system: System, http: httpx.Client) -> None:
    # given the session's API, which has no BRAID_OTLP_ENDPOINT
    # when a job runs
    view = run(http, "/v1/pipelines/chain-3/jobs", {"x": 1})
    # then no API process claimed its trace for export
    assert view["state"] == "succeeded"
    assert system.redis().exists(traced_key(view["id"])) == 0
