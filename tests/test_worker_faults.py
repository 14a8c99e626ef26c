"""A worker that stops mid-step without exiting cleanly: its step runs again on another
worker within a few heartbeats, and the old attempt can never finish it as well. Real
workers and Redis."""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx

from app._protocol import alive_key
from tests.harness import System, wait_for
from tests.jobs_helpers import marks, submit, wait

HEARTBEAT_S = 1.0
"""The heartbeat of this test's workers (a peer is dead after three missed beats)."""


def _step(http: httpx.Client, job: str) -> dict[str, Any]:
    step: dict[str, Any] = http.get(f"/v1/jobs/{job}").json()["steps"]["wait"]
    return step


def test_a_stalled_workers_step_runs_again_elsewhere_and_its_own_attempt_is_fenced(
        system: System, http: httpx.Client) -> None:
    # given two workers of one service, one of them running a step
    beat = {"BRAID_HEARTBEAT_S": str(HEARTBEAT_S)}
    workers = [system.start_worker("patient", 3, **beat), system.start_worker("patient", 4, **beat)]
    try:
        wait_for(lambda: system.redis().zcard(alive_key("patient")) == 2 or None, 60,
                 "both patient workers to be live")
        job = submit(http, "/v1/services/patient/wait/jobs", {"seconds": 1.0, "key": "stalled"})
        first = wait_for(lambda: _step(http, job)["worker"], 20, "the step to start")
        stalled = workers[0] if first.endswith("-3") else workers[1]
        pid = system.procs[stalled].pid
        # when that worker stalls mid-step (SIGSTOP: no heartbeat, no exit, nothing acked)
        os.kill(pid, signal.SIGSTOP)
        try:
            # then within three heartbeats + 5 s the other worker runs the step again
            wait_for(lambda: _step(http, job)["attempts"] == 2 or None, 3 * HEARTBEAT_S + 5,
                     "the step's second attempt")
            view = wait(http, job)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert view["state"] == "succeeded" and view["steps"]["wait"]["worker"] != first
        # and once the stalled worker resumes, its attempt ends without changing anything
        wait_for(lambda: "attempt 1 ended after a later attempt started" in system.log(stalled)
                 or None, 30, "the stalled attempt to end")
        assert marks(system.redis(), "stalled:end") == 2, "both attempts ran to their end"
        assert http.get(f"/v1/jobs/{job}").json() == view
    finally:
        for name in workers:
            system.stop(name)
