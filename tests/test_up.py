"""`braid up`: the whole system from one command, serving a module from outside the repo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import ROOT, free_port, wait_for
from tests.jobs_helpers import run, submit, wait

OUTSIDE = '''
import time

from app import api, service


@service(timeout=4)
class Outside:
    """A service written outside the Braid repository."""

    def __init__(self) -> None:
        pass

    @api
    def hello(self, name: str) -> str:
        return f"hello {name}"

    @api
    def slow(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds
'''


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _tree(pid: int) -> set[int]:
    out = {pid}
    for child in _children(pid):
        out |= _tree(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Up:
    def __init__(self, proc: subprocess.Popen[bytes], env: dict[str, str], log: Path) -> None:
        self.proc = proc
        self.env = env
        self.log = log
        self.url = f"http://127.0.0.1:{env['BRAID_API_PORT']}"
        self.flower = f"http://127.0.0.1:{env['BRAID_FLOWER_PORT']}"

    def worker_main(self, service: str) -> int:
        mains = [p for p in _children(self.proc.pid) if f"worker {service}" in _cmdline(p)]
        assert len(mains) == 1, mains
        return mains[0]

    def flower_workers(self) -> dict[str, Any]:
        response = httpx.get(f"{self.flower}/api/workers", params={"refresh": "1"},
                             auth=("admin", self.env["BRAID_FLOWER_PASSWORD"]), timeout=10)
        response.raise_for_status()
        workers: dict[str, Any] = response.json()
        return workers


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("up")
    (tmp / "outside_app.py").write_text(textwrap.dedent(OUTSIDE))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAID_")}
    env.update({
        "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}", "PYTHONUNBUFFERED": "1",
        "BRAID_STATE_DIR": str(tmp / "state"), "BRAID_EMBEDDED_REDIS_PORT": str(free_port()),
        "BRAID_API_PORT": str(free_port()), "BRAID_FLOWER_PORT": str(free_port()),
        "BRAID_FLOWER_PASSWORD": "flower-secret", "BRAID_VISIBILITY_MARGIN_S": "2",
        "BRAID_RESTORE_INTERVAL_S": "1", "BRAID_TIME_LIMIT_GRACE_S": "1",
    })
    log = tmp / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--app", "outside_app"],
                                cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    system = Up(proc, env, log)
    try:
        yield system
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_everything_is_up_within_90_seconds_and_serves_the_outside_module(up: Up) -> None:
    def ready() -> bool:
        names = {n.split("@")[0] for n in up.flower_workers()}
        return {"braid", "outside"} <= names

    wait_for(lambda: httpx.get(f"{up.url}/healthz", timeout=1).status_code == 200, 90, "the API")
    wait_for(ready, 90, "both workers in Flower", interval=0.5)
    with httpx.Client(base_url=up.url, timeout=30) as http:
        assert run(http, "/v1/services/outside/hello/jobs", {"name": "braid"})["result"] == \
            "hello braid"


def test_flower_lists_every_worker_with_its_queue_behind_auth(up: Up) -> None:
    assert httpx.get(f"{up.flower}/api/workers", timeout=10).status_code == 401
    queues = {name.split("@")[0]: [q["name"] for q in info["active_queues"]]
              for name, info in up.flower_workers().items()}
    assert queues == {"braid": ["braid"], "outside": ["outside"]}


def test_killing_a_pool_process_requeues_its_step_at_once(up: Up) -> None:
    main = up.worker_main("outside")
    with httpx.Client(base_url=up.url, timeout=30) as http:
        job = submit(http, "/v1/services/outside/slow/jobs", {"seconds": 1.5})
        wait_for(lambda: http.get(f"/v1/jobs/{job}").json()["state"] == "running", 20, "start")
        pool = _children(main)
        assert pool
        os.kill(pool[0], signal.SIGKILL)
        view = wait(http, job, timeout=15)
    assert view["state"] == "succeeded"
    assert view["steps"]["slow"]["attempts"] == 2


def test_killing_a_worker_main_process_restarts_it_and_redelivers_the_step(up: Up) -> None:
    old = up.worker_main("outside")
    with httpx.Client(base_url=up.url, timeout=30) as http:
        job = submit(http, "/v1/services/outside/slow/jobs", {"seconds": 1.5})
        wait_for(lambda: http.get(f"/v1/jobs/{job}").json()["state"] == "running", 20, "start")
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: up.worker_main("outside") != old, 20, "the restarted worker")
        # visibility timeout (4 s limit + 1 s grace + 2 s margin... of the longest service,
        # the built-in one at 10 s: 13 s) plus the 1 s restore sweep and a restart
        view = wait(http, job, timeout=40)
    assert view["state"] == "succeeded"
    assert view["steps"]["slow"]["attempts"] == 2


def test_ctrl_c_stops_everything_and_leaves_no_process(up: Up) -> None:
    processes = _tree(up.proc.pid)
    assert len(processes) >= 5
    os.kill(up.proc.pid, signal.SIGINT)
    up.proc.wait(60)
    wait_for(lambda: not any(_alive(p) for p in processes), 30, "every process to exit")
    time.sleep(0.5)
    assert not [p for p in processes if _alive(p)]
