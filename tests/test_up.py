"""`braid up`: the whole system from one command, serving a module from outside the repo,
saying when it is ready, quietly, and inspectable while it runs in the foreground."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.chaos import Chaos
from tests.foreground import Up, kill, start
from tests.harness import wait_for
from tests.jobs_helpers import run, submit, wait
from tests.processes import alive, children, tree


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[Up]:
    system = start(tmp_path_factory.mktemp("up"), model_store, BRAID_VISIBILITY_MARGIN_S="2",
                   BRAID_RESTORE_INTERVAL_S="1", BRAID_TIME_LIMIT_GRACE_S="1",
                   BRAID_LOG_JSON="1", BRAID_LOG_STEPS="1")
    try:
        yield system
    finally:
        kill(system)  # if the Ctrl-C test did not run


def test_everything_is_up_within_90_seconds_and_serves_the_outside_module(up: Up) -> None:
    def ready() -> bool:
        names = sorted(n.split("@")[0] for n in up.flower_workers())
        return names == ["braid", "outside", "outside", "outside", "reader", "shouter"]

    wait_for(lambda: httpx.get(f"{up.url}/healthz", timeout=1).status_code == 200, 90, "the API")
    wait_for(ready, 90, "both workers in Flower", interval=0.5)
    with httpx.Client(base_url=up.url, timeout=30) as http:
        assert run(http, "/v1/services/outside/hello/jobs", {"name": "braid"})["result"] == \
            "hello braid"


def test_flower_lists_every_worker_with_its_queue_behind_auth(up: Up) -> None:
    assert httpx.get(f"{up.flower}/api/workers", timeout=10).status_code == 401
    queues = sorted((name.split("@")[0], [q["name"] for q in info["active_queues"]])
                    for name, info in up.flower_workers().items())
    assert queues == [("braid", ["braid"]), ("outside", ["outside"]), ("outside", ["outside"]),
                      ("outside", ["outside"]), ("reader", ["reader"]), ("shouter", ["shouter"])]
    # every worker answered Flower's inspections (their replies are JSON)
    assert "Control command error" not in up.output()


def test_flower_is_read_only_it_refuses_to_apply_revoke_or_shut_down(up: Up) -> None:
    """Given Flower under `braid up` (BRAID_FLOWER_CONTROL off), when its API is asked, with
    the right password, to run a task, revoke one or shut a worker down, then each is a 403
    naming the setting, while its read-only pages still answer."""
    auth = ("admin", up.env["BRAID_FLOWER_PASSWORD"])
    node = wait_for(lambda: next(iter(up.flower_workers()), None), 90, "a worker in Flower",
                    interval=0.5)
    for path in ["/api/task/async-apply/outside.hello", "/api/task/apply/celery.accumulate",
                 "/api/task/revoke/abc", f"/api/worker/shutdown/{node}",
                 f"/api/worker/pool/shrink/{node}"]:
        answer = httpx.post(f"{up.flower}{path}", auth=auth, json={"args": ["x"]}, timeout=10)
        assert answer.status_code == 403, path
        assert "BRAID_FLOWER_CONTROL" in answer.json()["error"]
    assert node in up.flower_workers(), "the worker is still there"
    assert httpx.get(f"{up.flower}/api/task/types", auth=auth, timeout=10).status_code == 200


def _ready_line(up: Up) -> str:
    return wait_for(lambda: next((line for line in up.output().splitlines()
                                  if line.startswith("Braid is ready in ")), None),
                    120, "the ready line")


def test_it_says_what_it_still_waits_for_and_then_that_it_is_ready(up: Up) -> None:
    """Given `braid up`, when the API and every service's worker are live, then it prints
    how long that took and where the API is, after saying what it was waiting for."""
    ready = _ready_line(up)
    assert re.fullmatch(rf"Braid is ready in \d+\.\d s: {up.url} \(docs /docs\); Ctrl-C stops it",
                        ready), ready
    assert httpx.get(f"{up.url}/readyz", timeout=10).status_code == 200
    lines = up.output().splitlines()
    waits = [line for line in lines[:lines.index(ready)] if line.startswith("waiting for: ")]
    assert waits, "it said what it waited for before it was ready"
    assert any("(loading models)" in line for line in waits)


def test_urls_come_first_flower_included_as_it_is_on(up: Up) -> None:
    lines = up.output().splitlines()
    assert lines[1] == f"  API     {up.url}  (docs: /docs)"
    assert lines[2].startswith(f"  Flower  {up.flower}  (user admin")


ALARMING = [
    "Supervisor is running as root",           # supervisord, as root without user=
    "without any HTTP authentication",        # supervisord, control socket without a password
    "SecurityWarning", "superuser privileges",  # Celery, as root
    "Memory overcommit must be enabled",      # redis-server
    "Loading weights",                        # transformers' progress bars
    "torchvision",                            # transformers' import of it
    "Registered tasks", "Inspect method",     # Flower, while workers still load
    " -------------- ",                       # Celery's banner, one per worker
]


def test_start_up_output_has_none_of_the_alarming_lines(up: Up) -> None:
    """Given `braid up` with a transformers model, once every model is loaded, nothing in
    its output looks like trouble; running as root is said once, as a note."""
    _ready_line(up)
    wait_for(lambda: "service 'reader' loaded" in up.output(), 60, "the transformers model")
    output = up.output()
    assert [a for a in ALARMING if a in output] == []
    notes = [line for line in output.splitlines() if line.startswith("note: running as root")]
    assert len(notes) == (1 if os.geteuid() == 0 else 0)


def test_status_shows_each_service_and_the_programs_of_the_foreground_system(up: Up) -> None:
    """Given `braid up` in the foreground, `braid status` (another terminal, same
    environment) shows each service's depth, live workers, devices and models, the internal
    service labelled as such, and supervisord's program states."""
    _ready_line(up)
    result = up.braid("status")
    assert result.returncode == 0, result.stderr
    rows = {cells[0]: cells for cells in (re.split(r" {2,}", line.strip())
                                          for line in result.stdout.splitlines())}
    assert rows["SERVICE"] == ["SERVICE", "DEPTH", "WORKERS", "DEVICES", "MODELS", "PROGRAMS"]
    assert rows["outside"] == ["outside", "0", "3", "cpu x6", "-", "3 RUNNING"]
    assert rows["reader"] == ["reader", "0", "1", "cpu", "bert-sentiment:v1", "RUNNING"]
    assert rows["braid (internal: maps)"][1:3] == ["0", "1"]
    assert "in the foreground" in result.stdout
    assert [rows[name][1] for name in ("api", "flower", "redis")] == ["RUNNING"] * 3


def test_logs_of_a_foreground_system_say_where_they_go(up: Up) -> None:
    result = up.braid("logs", "outside")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("braid: the Braid running from ")
    assert "go to the terminal of its `braid up`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_scaled_service_runs_a_burst_on_three_workers_and_its_queue_drains(up: Up) -> None:
    with httpx.Client(base_url=up.url, timeout=30) as http:
        jobs = [submit(http, "/v1/services/outside/slow/jobs", {"seconds": 0.3})
                for _ in range(30)]
        depth = up.metric("braid_queue_depth", "outside")
        views = [wait(http, job) for job in jobs]
    assert depth > 0
    assert len({v["steps"]["slow"]["worker"] for v in views}) == 3
    wait_for(lambda: up.metric("braid_queue_depth", "outside") == 0, 10, "the queue to drain")


def _redis_password(up: Up) -> str:
    return (Path(up.env["BRAID_STATE_DIR"]) / "redis-password").read_text().strip()


def test_the_embedded_redis_refuses_clients_without_its_generated_password(up: Up) -> None:
    """Given `braid up` with the embedded Redis, when a local process connects without the
    password, then every command is refused; the password is in the state dir, readable by
    its owner alone, and with it the same command succeeds."""
    port = int(up.env["BRAID_EMBEDDED_REDIS_PORT"])
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).lpush("outside", "anything")
    path = Path(up.env["BRAID_STATE_DIR"]) / "redis-password"
    assert path.stat().st_mode & 0o077 == 0
    assert redis.Redis(port=port, password=_redis_password(up)).ping()


def test_a_worker_started_separately_joins_and_takes_jobs(up: Up) -> None:
    port = up.env["BRAID_EMBEDDED_REDIS_PORT"]
    env = {**up.env, "BRAID_REDIS_URL": f"redis://:{_redis_password(up)}@127.0.0.1:{port}/0"}
    extra = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "outside", "--app",
                              "outside_app"], cwd=up.log.parent, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        node = f"outside@{os.uname().nodename}-{extra.pid}"
        wait_for(lambda: node in up.flower_workers(), 60, "the extra worker", interval=0.5)
        with httpx.Client(base_url=up.url, timeout=30) as http:
            def served() -> bool:
                jobs = [submit(http, "/v1/services/outside/slow/jobs", {"seconds": 0.2})
                        for _ in range(8)]
                return node in {wait(http, j)["steps"]["slow"]["worker"] for j in jobs}

            wait_for(served, 60, "a job on the extra worker", interval=0)
    finally:
        os.killpg(extra.pid, signal.SIGTERM)
        extra.wait(30)


def test_json_logs_show_every_step_of_a_job_across_workers(up: Up) -> None:
    with httpx.Client(base_url=up.url, timeout=30) as http:
        view = run(http, "/v1/pipelines/greet/jobs", {"name": "ann"})
    assert view["result"] == "HELLO ANN!!"

    def lines() -> list[dict[str, Any]]:
        found = []
        for line in up.log.read_text(errors="replace").splitlines():
            if view["id"] in line and line.startswith("{"):
                found.append(json.loads(line))
        return found

    wait_for(lambda: {e.get("step") for e in lines()} >= set(view["steps"]), 10, "the log lines")
    records = [e for e in lines() if e.get("step")]
    assert {e["step"] for e in records} == set(view["steps"]) == {
        "shouter.shout", "outside.hello", "shouter.shout-2"}
    assert {e["service"] for e in records} == {"shouter", "outside"}
    assert all(e["job"] == view["id"] and e["task_id"] for e in records)


def _running_node(http: httpx.Client, job: str, step: str = "slow") -> str:
    def node() -> str | None:
        record = http.get(f"/v1/jobs/{job}").json()["steps"][step]
        return str(record["worker"]) if record["state"] == "running" else None

    return wait_for(node, 20, "the step to start")


def test_killing_a_pool_process_requeues_its_step_at_once(up: Up) -> None:
    with httpx.Client(base_url=up.url, timeout=30) as http:
        job = submit(http, "/v1/services/outside/slow/jobs", {"seconds": 1.5})
        main = up.worker_main(_running_node(http, job))
        pool = children(main)
        assert len(pool) == 2, "outside runs two prefork processes per worker"
        for child in pool:  # one of them runs the step
            os.kill(child, signal.SIGKILL)
        view = wait(http, job, timeout=15)
    assert view["state"] == "succeeded"
    assert view["steps"]["slow"]["attempts"] == 2


def test_killing_a_worker_main_process_restarts_it_and_redelivers_the_step(up: Up) -> None:
    with httpx.Client(base_url=up.url, timeout=30) as http:
        job = submit(http, "/v1/services/outside/slow/jobs", {"seconds": 1.5})
        node = _running_node(http, job)
        old = up.worker_main(node)
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: up.worker_main(node) != old, 20, "the restarted worker")
        view = wait(http, job, timeout=40)
    assert view["state"] == "succeeded"
    assert view["steps"]["slow"]["attempts"] == 2


def test_killing_a_solo_worker_mid_step_hands_its_step_back_when_it_restarts(up: Up) -> None:
    """A one-process service runs its steps in the worker process itself (no pool child to
    lose): the restarted worker hands back what its predecessor was running at once, rather
    than after the broker's visibility timeout."""
    with httpx.Client(base_url=up.url, timeout=30) as http:
        job = submit(http, "/v1/services/shouter/slow/jobs", {"seconds": 1.5})
        node = _running_node(http, job)
        old = up.worker_main(node)
        assert children(old) == [], "shouter runs its steps in the worker process (solo)"
        os.kill(old, signal.SIGKILL)
        view = wait(http, job, timeout=40)
        assert view["state"] == "succeeded"
        assert view["steps"]["slow"]["attempts"] == 2
    handed_back = [json.loads(line) for line in up.log.read_text(errors="replace").splitlines()
                   if line.startswith("{") and "handed back the 1 message(s) that" in line]
    assert any(node in entry["message"] for entry in handed_back)


def test_chaos_kills_and_a_redis_restart_lose_hang_fail_and_repeat_nothing(up: Up) -> None:
    """Given the system under `braid up`, when 200 three-step jobs run (4 clients, each
    submitting its next job once its last ended) while, after every 12 ended jobs, a
    worker's main process or a pool child is SIGKILLed, and Redis restarts once, then every
    job succeeds with its result and no step's success is recorded twice."""
    figures = Chaos(up, every_jobs=12).run(200)
    print(figures.summary())
    assert figures.kills["redis restart"] == 1 and figures.kills["main"] >= 5
    assert figures.kills["pool child"] >= 3
    assert figures.jobs == figures.succeeded == 200, figures.summary()
    assert figures.clean, (figures.failed, figures.lost, figures.hung, figures.twice)


def test_ctrl_c_stops_everything_and_leaves_no_process(up: Up) -> None:
    processes = tree(up.proc.pid)
    assert len(processes) >= 5
    os.kill(up.proc.pid, signal.SIGINT)
    up.proc.wait(60)
    wait_for(lambda: not any(alive(p) for p in processes), 30, "every process to exit")
