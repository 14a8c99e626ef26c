"""Submissions that can be retried safely: an ``Idempotency-Key`` answers a repeated
submission with the job the first one made. Real API, workers and Redis."""

from __future__ import annotations

import uuid

import httpx

from app import Client
from app._protocol import JOBS, idempotency_key
from tests.harness import System, free_port
from tests.jobs_helpers import marks, wait

MARK = "/v1/services/echo/mark/jobs"


def test_a_submission_repeated_with_its_key_returns_the_same_job_and_runs_once(
        system: System, http: httpx.Client) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    jobs = system.redis().zcard(JOBS)
    first = http.post(MARK, json={"key": "idempotent"}, headers=key)
    again = http.post(MARK, json={"key": "idempotent"}, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert wait(http, first.json()["id"])["state"] == "succeeded"
    assert system.redis().zcard(JOBS) == jobs + 1
    assert marks(system.redis(), "idempotent") == 1


def test_a_submission_whose_reply_was_lost_is_answered_with_its_job_when_repeated(
        system: System, http: httpx.Client) -> None:
    # given a submission that waits for its job, whose client gives up before the reply
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"seconds": 1.0, "key": "lost-reply"}
    try:
        http.post("/v1/services/slow/sleep/jobs", params={"wait": 5}, json=body, headers=key,
                  timeout=0.3)
        raise AssertionError("the reply came in time")
    except httpx.ReadTimeout:
        pass
    # when it is sent again with its key, waiting for the end
    again = http.post("/v1/services/slow/sleep/jobs", params={"wait": 10}, json=body,
                      headers=key)
    # then the answer is the first submission's job, which ran once
    assert again.status_code == 200 and again.json()["state"] == "succeeded"
    assert marks(system.redis(), "lost-reply:start") == 1


def test_a_key_used_again_with_another_body_is_a_409_naming_the_first_job(
        http: httpx.Client) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = http.post(MARK, json={"key": "one"}, headers=key).json()["id"]
    other = http.post(MARK, json={"key": "two"}, headers=key)
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_conflict"
    assert first in other.json()["detail"]


def test_the_same_key_from_two_api_keys_makes_two_jobs(system: System) -> None:
    url = system.start_api("api-two-keys", port=free_port(), BRAID_API_KEYS="alice,bob")
    try:
        key = uuid.uuid4().hex
        ids = [httpx.post(f"{url}{MARK}", json={"key": "scoped"}, headers={
            "Idempotency-Key": key, "Authorization": f"Bearer {who}"}).json()["id"]
               for who in ("alice", "bob")]
        assert ids[0] != ids[1]
    finally:
        system.stop("api-two-keys")


def test_the_python_client_sends_a_key_of_its_own_with_each_submission(
        system: System) -> None:
    before = set(system.redis().scan_iter(idempotency_key("*")))
    with Client(system.url) as client:
        jobs = [client.submit("echo.echo", value=i) for i in range(2)]
    assert jobs[0].id != jobs[1].id
    assert len(set(system.redis().scan_iter(idempotency_key("*"))) - before) == 2
