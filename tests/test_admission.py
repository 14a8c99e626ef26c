"""Admission control: a submission that would queue behind a full queue is refused at once
with 429 and when to retry, instead of piling up past every deadline. Real API and Redis."""

from __future__ import annotations

import httpx

from tests.harness import System
from tests.jobs_helpers import marks, submit, wait

CROWDED = "/v1/services/crowded/mark/jobs"


def test_a_full_queue_gives_429_with_retry_after_and_queues_nothing(
        system: System, http: httpx.Client) -> None:
    # given a service whose queue may hold two calls, and two waiting (no worker)
    jobs = [submit(http, CROWDED, {"key": "crowded"}) for _ in range(2)]
    # when a third is submitted
    refused = http.post(CROWDED, json={"key": "crowded"})
    # then it is a 429 saying which service is full and when to retry, and nothing is queued
    assert refused.status_code == 429, refused.text
    problem = refused.json()
    assert problem["code"] == "overloaded" and problem["service"] == "crowded"
    assert "its limit (max_queued, or BRAID_MAX_QUEUED) is 2" in problem["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    assert system.redis().llen("crowded") == 2
    # and once a worker drains the queue, the waiting jobs ran and submissions are taken again
    name = system.start_worker("crowded")
    try:
        assert [wait(http, job, 60)["state"] for job in jobs] == ["succeeded"] * 2
        assert wait(http, submit(http, CROWDED, {"key": "crowded"}), 30)["state"] == "succeeded"
        assert marks(system.redis(), "crowded") == 3
    finally:
        system.stop(name)
