"""When Redis is down the API answers 503 and publishes nothing; when it is back, the same
submission succeeds, and a step that ended meanwhile is recorded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app._protocol import alive_key, stream_key
from tests.harness import System, wait_for
from tests.jobs_helpers import submit, wait


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    system = System(tmp_path_factory.mktemp("outage"), "tests.apps")
    try:
        yield system.up(["braid", "echo"])
    finally:
        system.close()


def test_redis_down_is_503_and_back_up_the_same_submission_succeeds(small: System) -> None:
    body = {"value": {"n": 1}}
    with httpx.Client(base_url=small.url, timeout=30) as http:
        small.stop_redis()
        down = http.post("/v1/services/echo/echo/jobs", json=body)
        assert down.status_code == 503
        assert down.json()["code"] == "broker_unavailable"
        assert "nothing was" in down.json()["detail"]

        small.start_redis()
        assert small.redis().zcard("braid:jobs") == 0
        up = http.post("/v1/services/echo/echo/jobs", json=body)
        assert up.status_code == 202
        assert wait(http, up.json()["id"], timeout=60)["result"] == {"n": 1}


def test_after_a_redis_restart_the_next_calls_succeed_on_fresh_connections(
        small: System) -> None:
    """Given an API whose pool holds connections to Redis (16 requests at once), when Redis
    restarts, then the next 16 requests at once all succeed: a connection that Redis closed
    is replaced on its first failed use, not answered with a 503."""
    with httpx.Client(base_url=small.url, timeout=30) as http:
        job = http.post("/v1/services/echo/echo/jobs", json={"value": 1}).json()["id"]
        wait(http, job, timeout=60)

    def burst() -> list[int]:
        async def all_at_once() -> list[int]:
            async with httpx.AsyncClient(base_url=small.url, timeout=30) as client:
                answers = await asyncio.gather(*(client.get(f"/v1/jobs/{job}")
                                                 for _ in range(16)))
            return [a.status_code for a in answers]

        return asyncio.run(all_at_once())

    assert burst() == [200] * 16
    small.stop_redis()
    small.start_redis()
    assert burst() == [200] * 16


def test_a_full_redis_refuses_a_submission_with_a_503_that_says_so(small: System) -> None:
    """Given Redis at its maxmemory (noeviction), when a job is submitted, then the answer is
    a 503 saying Redis is full and nothing was queued; with room again, it is accepted."""
    client = small.redis()
    jobs = client.zcard("braid:jobs")
    client.config_set("maxmemory", 1)  # below what it uses already: every write is refused
    try:
        with httpx.Client(base_url=small.url, timeout=30) as http:
            full = http.post("/v1/services/echo/echo/jobs", json={"value": 1})
            assert full.status_code == 503, full.text
            assert "Redis is full" in full.json()["detail"]
            assert "nothing was queued" in full.json()["detail"]
            assert client.zcard("braid:jobs") == jobs
            client.config_set("maxmemory", 0)
            ok = http.post("/v1/services/echo/echo/jobs", json={"value": 1})
            assert wait(http, ok.json()["id"], timeout=60)["result"] == 1
    finally:
        client.config_set("maxmemory", 0)


def test_a_step_that_ends_while_redis_is_down_is_recorded_once_it_is_back(
        small: System) -> None:
    """Given a step running, when Redis stops, the step's code returns while Redis is down
    and Redis then starts again, then the job succeeds with the step's output, from its one
    attempt: the worker sends the step's records again until Redis answers (it neither
    fails the step nor acks its message unrecorded)."""
    name = small.start_worker("patient", BRAID_LOG_STEPS="1")
    try:
        wait_for(lambda: small.redis().zcard(alive_key("patient")) or None, 60,
                 "the patient worker to be live")
        with httpx.Client(base_url=small.url, timeout=30) as http:
            job = submit(http, "/v1/services/patient/nap/jobs", {"seconds": 2.0})
            wait_for(lambda: http.get(f"/v1/jobs/{job}").json()["steps"]["nap"]["state"]
                     == "running", 30, "the step to start")
            small.stop_redis()
            wait_for(lambda: f"step nap of job {job} succeeded" in small.log(name), 30,
                     "the step's code to return")
            small.start_redis()
            view = wait(http, job, timeout=60)
        assert view["state"] == "succeeded" and view["result"] == 2.0
        assert view["steps"]["nap"]["attempts"] == 1
    finally:
        small.stop(name)


def test_a_streaming_step_rides_out_a_redis_restart(small: System) -> None:
    """Given a step streaming a token every 50 ms, when Redis stops after its first chunk
    and starts again, then the job succeeds from its one attempt with every token in order,
    and its stream holds each token once: a write whose reply the connection did not bring
    is sent again until Redis answers, and adds nothing if it had been written."""
    name = small.start_worker("source")
    try:
        small.wait_workers(["source"])
        client = small.redis()
        with httpx.Client(base_url=small.url, timeout=30) as http:
            job = submit(http, "/v1/services/source/count/jobs", {"n": 40, "pause_s": 0.05})
            wait_for(lambda: client.xlen(stream_key(job, "count")) or None, 30,
                     "the first chunk")
            stopped = time.monotonic()
            small.stop_redis()
            small.start_redis()
            assert time.monotonic() - stopped > 0.05  # Redis was away for a chunk at least
            view = wait(http, job, timeout=60)
        assert view["state"] == "succeeded", view
        assert view["result"] == [f"t{i} " for i in range(40)]
        assert view["steps"]["count"]["attempts"] == 1
        entries: Any = small.redis().xrange(stream_key(job, "count"))
        items = [item for _, fields in entries for item in json.loads(fields.get(b"d", b"[]"))]
        assert items[-1] == "t39 " and items == sorted(set(items), key=items.index)
    finally:
        small.stop(name)
