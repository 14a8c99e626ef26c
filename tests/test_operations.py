"""Metrics, readiness and graceful shutdown of a running system."""

from __future__ import annotations

import os
import re
import signal

import httpx

from tests.harness import System, wait_for
from tests.jobs_helpers import marks, run, submit, wait


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{([^}]*)\} (\S+)$", line)
        if match and match.group(1) == name:
            have = ",".join(sorted(match.group(2).split(",")))
            if have == wanted:
                return float(match.group(3))
    return 0.0


def test_metrics_count_a_known_workload(http: httpx.Client) -> None:
    before = http.get("/metrics").text
    ok = [submit(http, "/v1/pipelines/chain-3/jobs", {"x": i}) for i in range(10)]
    bad = [submit(http, "/v1/pipelines/fail-in-join/jobs", {"x": 1, "key": "m"}) for _ in range(2)]
    for job in ok + bad:
        wait(http, job)

    def counted() -> str | None:
        text = http.get("/metrics").text
        done = _metric(text, "braid_jobs_finished_total", pipeline="fail-in-join", state="failed")
        return text if done - _metric(before, "braid_jobs_finished_total",
                                      pipeline="fail-in-join", state="failed") >= 2 else None

    after = wait_for(counted, 10, "the failed jobs to be counted")

    def delta(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert delta("braid_jobs_submitted_total", pipeline="chain-3") == 10
    assert delta("braid_jobs_submitted_total", pipeline="fail-in-join") == 2
    assert delta("braid_jobs_finished_total", pipeline="chain-3", state="succeeded") == 10
    assert delta("braid_jobs_finished_total", pipeline="fail-in-join", state="failed") == 2
    assert delta("braid_job_duration_seconds_count", pipeline="chain-3") == 10
    assert delta("braid_step_queue_seconds_count", service="echo", api="echo") == 10
    assert delta("braid_step_run_seconds_count", service="calc", api="fail_if",
                 state="failed") == 2
    assert _metric(after, "braid_live_workers", service="calc") == 1
    # a failed join's sibling may still be queued; it drains (and skips) right after
    wait_for(lambda: _metric(http.get("/metrics").text, "braid_queue_depth", service="calc") == 0,
             10, "the calc queue to drain")


def test_readyz_names_a_service_without_workers_until_it_is_back(system: System,
                                                                 http: httpx.Client) -> None:
    assert http.get("/readyz").status_code == 200
    system.stop("worker-calc")
    try:
        response = http.get("/readyz")
        assert response.status_code == 503
        assert "calc" in response.json()["services_without_workers"]
        assert response.json()["pipelines_blocked"]["mapped"] == ["calc"]
    finally:
        system.start_worker("calc")
    wait_for(lambda: http.get("/readyz").status_code == 200, 60, "readiness after the restart")


def test_sigterm_finishes_the_running_step_and_queued_work_moves_on(
        system: System, http: httpx.Client) -> None:
    first, second = system.start_worker("patient", 1), system.start_worker("patient", 2)
    try:
        system.wait_workers(["patient"])
        wait_for(lambda: http.get("/v1/services").json() and next(
            s for s in http.get("/v1/services").json()["services"] if s["name"] == "patient"
        )["live_workers"] == 2, 60, "both patient workers")
        long = submit(http, "/v1/services/patient/wait/jobs", {"seconds": 5, "key": "term"})
        wait_for(lambda: http.get(f"/v1/jobs/{long}").json()["state"] == "running", 20, "start")
        node = http.get(f"/v1/jobs/{long}").json()["steps"]["wait"]["worker"]
        victim = first if node.endswith("-1") else second
        proc = system.procs[victim]
        proc.send_signal(signal.SIGTERM)
        queued = [submit(http, "/v1/services/patient/wait/jobs", {"seconds": 0.2, "key": "after"})
                  for _ in range(3)]
        views = [wait(http, job) for job in queued]
        assert node not in {v["steps"]["wait"]["worker"] for v in views}
        assert proc.wait(30) == 0
        done = wait(http, long)
        assert done["state"] == "succeeded"
        assert done["steps"]["wait"]["attempts"] == 1 and done["steps"]["wait"]["worker"] == node
        assert marks(system.redis(), "term:end") == marks(system.redis(), "term:start") == 1
    finally:
        system.stop(first)
        system.stop(second)


def test_a_worker_is_live_only_once_its_model_is_loaded(system: System,
                                                         http: httpx.Client) -> None:
    """Given a model that takes 4 s to load, its worker is counted live (and /readyz lists
    it) only after the load: whatever its pool, it never takes steps before."""
    def live() -> int:
        services = http.get("/v1/services").json()["services"]
        return int(next(s for s in services if s["name"] == "slow-start")["live_workers"])

    name = system.start_worker("slow-start")
    seen_loading = False
    try:
        def loaded() -> bool:
            nonlocal seen_loading
            log_before = system.log(name)
            if live() == 0:
                seen_loading = seen_loading or "loaded on" not in log_before
                return False
            assert "'slow-start' loaded on" in system.log(name), "live before its model loaded"
            return True

        assert "slow-start" in http.get("/readyz").json()["services_without_workers"]
        wait_for(loaded, 60, "the model to load")
        assert seen_loading, "never saw the worker while its model loaded"
        assert run(http, "/v1/services/slow-start/ok/jobs", {})["result"] is True
    finally:
        system.stop(name)
    assert live() == 0


def test_workers_run_at_a_lower_cpu_priority_than_the_api(system: System) -> None:
    # given the session's system, started with the default BRAID_WORKER_NICE (10)
    workers = [proc.pid for name, proc in system.procs.items() if name.startswith("worker-")]
    assert workers
    # then every worker runs 10 nice steps below the API (which keeps its parent's), so a
    # forward pass never delays the API's replies on a shared host
    api = os.getpriority(os.PRIO_PROCESS, system.procs["api"].pid)
    assert api == os.getpriority(os.PRIO_PROCESS, 0)
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in workers} == {min(19, api + 10)}


def test_the_grafana_dashboard_asks_only_for_series_the_api_exports(http: httpx.Client) -> None:
    import json

    from tests.harness import ROOT

    # given the dashboard in deploy/, and what /metrics declares
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    declared = dict(re.findall(r"^# TYPE (\S+) (\S+)$", http.get("/metrics").text, re.M))
    # then every series a panel asks for is one of them (a histogram's by its _bucket,
    # _sum or _count)
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"\bbraid_[a-z_]+", target["expr"])}
    assert len(asked) >= 9
    for name in asked:
        histogram = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in declared or declared.get(histogram) == "histogram", \
            f"{name}: /metrics has no such series"
