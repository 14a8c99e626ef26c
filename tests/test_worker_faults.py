"""A worker that stops mid-step without exiting cleanly: its step runs again on another
worker within a few heartbeats, and the old attempt can never finish it as well. Real
workers and Redis."""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

import httpx

from app._protocol import alive_key, inflight_key, reserved_key
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


def test_a_message_taken_by_a_worker_that_died_at_once_runs_when_it_restarts(
        system: System, http: httpx.Client) -> None:
    """A worker takes a message by moving it to its reserved list: when Redis hands a
    message to a connection whose process just died (before Redis saw it close), the
    message waits there instead of being lost, and the worker's next incarnation (or a peer
    that sees it dead) hands it back."""
    # given a queued job of a service without workers
    job = submit(http, "/v1/services/parked/mark/jobs", {"key": "taken-by-the-dead"})
    # when a worker of it takes the message and dies before noting its delivery
    node = f"parked@{socket.gethostname()}-7"
    assert system.redis().lmove("parked", reserved_key(node), "RIGHT", "LEFT") is not None
    assert system.redis().llen("parked") == 0
    # then the worker, restarted under its name, hands it back, and the job runs
    name = system.start_worker("parked", 7)
    try:
        assert wait(http, job, 60)["state"] == "succeeded"
        assert marks(system.redis(), "taken-by-the-dead") == 1
        assert system.redis().llen(reserved_key(node)) == 0
    finally:
        system.stop(name)


def test_once_its_jobs_end_no_worker_holds_a_message(system: System, http: httpx.Client) -> None:
    """What a worker notes as taken or running (its reserved list, its inflight hash) is
    cleared as each message ends: nothing is left to hand back twice later."""
    jobs = [submit(http, "/v1/services/echo/echo/jobs", {"value": i}) for i in range(5)]
    jobs += [submit(http, "/v1/services/batcher/double/jobs", {"xs": i}) for i in range(5)]
    jobs.append(submit(http, "/v1/pipelines/inline-join/jobs", {"x": 1, "y": 2}))
    assert {wait(http, job)["state"] for job in jobs} == {"succeeded"}
    client = system.redis()

    def held() -> dict[bytes, int]:
        lists = {k: client.llen(k) for k in client.scan_iter(reserved_key("*"))}
        hashes = {k: client.hlen(k) for k in client.scan_iter(inflight_key("*"))}
        return {k: n for k, n in {**lists, **hashes}.items() if n}

    wait_for(lambda: not held() or None, 10, "every worker to hold nothing")


def test_a_step_past_its_memory_guard_fails_memory_limit_and_the_worker_serves_on(
        system: System, http: httpx.Client) -> None:
    # given a worker of a service whose memory guard is 600 MiB
    name = system.start_worker("hungry")
    try:
        system.wait_workers(["hungry"])
        # when a step grows its process far past it (it would hold 4 GiB)
        failed = wait(http, submit(http, "/v1/services/hungry/grow/jobs", {"mib": 4096}), 60)
        # then its job fails with MemoryLimit naming the guard
        assert failed["state"] == "failed", failed
        assert failed["error"]["type"] == "MemoryLimit"
        assert "memory guard of 'hungry', 600Mi" in failed["error"]["message"]
        # and the same worker runs the next job
        done = wait(http, submit(http, "/v1/services/hungry/grow/jobs", {"mib": 64}), 60)
        assert done["state"] == "succeeded" and done["result"] == 64
        assert done["steps"]["grow"]["worker"] == failed["steps"]["grow"]["worker"]
    finally:
        system.stop(name)
