"""The Python client and the `braid submit` / `braid jobs` commands."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import httpx
import pytest

from app import AsyncClient, Client, JobFailed, JobState, ServiceNotFound
from tests.harness import ROOT, System
from tests.jobs_helpers import run


def test_client_wait_returns_what_the_rest_call_returns(system: System, http: httpx.Client) -> None:
    with Client(system.url) as client:
        job = client.submit("graph", x=4, y=2, key="client")
        result = job.result(timeout=30)
        assert job.state() is JobState.succeeded
    assert result == run(http, "/v1/pipelines/graph/jobs", {"x": 4, "y": 2, "key": "client"})["result"]
    assert result == [6, 1]


def test_client_raises_the_api_errors_and_failed_jobs(system: System) -> None:
    with Client(system.url) as client:
        with pytest.raises(ServiceNotFound, match="no service 'nope'"):
            client.call("nope", "x")
        with pytest.raises(JobFailed) as failed:
            client.call("echo", "boom", message="bad input").result(timeout=30)
        assert failed.value.error["type"] == "ValueError"
        assert client.job(uuid.uuid4().hex).state() is JobState.not_found


def test_async_client_runs_jobs_concurrently(system: System) -> None:
    async def main() -> list[int]:
        async with AsyncClient(system.url) as client:
            jobs = [await client.submit("chain-3", x=i) for i in range(5)]
            return list(await asyncio.gather(*(j.result(timeout=30) for j in jobs)))

    assert asyncio.run(main()) == [2 * i + 1 for i in range(5)]


def test_explicit_deadline_fails_a_job_that_runs_too_long(system: System) -> None:
    with Client(system.url) as client:
        view = client.submit("deadlined", seconds=2.5).wait(timeout=20)
    assert view.state is JobState.failed
    assert view.error is not None and view.error.type == "DeadlineExceeded"


def test_braid_submit_wait_shows_progress_and_prints_the_result(system: System) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "submit", "mapped", "--input", '{"n": 3, "key": "cli"}',
         "--wait", "--url", system.url],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    assert "5/5" in out.stdout and "succeeded" in out.stdout
    assert out.stdout.rstrip().endswith("[\n  0,\n  2,\n  4\n]")
    listed = subprocess.run([sys.executable, "-m", "app.cli", "jobs", "--url", system.url,
                             "--pipeline", "mapped", "--limit", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert listed.stdout.split()[1:3] == ["succeeded", "5/5"]
