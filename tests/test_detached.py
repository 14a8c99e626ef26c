"""`braid up -d`: the system in the background, then, from another terminal that only shares
its working directory, `braid status`, `logs`, `models import` + `restart`, and `down`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.harness import ROOT, free_port, wait_for
from tests.jobs_helpers import run
from tests.processes import alive, tree

TOY = '''
from app import api, models, service


@service(timeout=10, models=["toy:latest"])
class ToyReader:
    """Serves whichever version of the toy model it loaded."""

    def __init__(self) -> None:
        self.loaded = models.get("toy:latest").version

    @api
    def which(self) -> str:
        return self.loaded
'''


class Detached:
    def __init__(self, root: Path, env: dict[str, str], up: subprocess.CompletedProcess[str]) -> None:
        self.root = root
        self.env = env
        self.up = up
        self.state = root / "state"
        self.url = f"http://127.0.0.1:{env['BRAID_API_PORT']}"
        # another terminal: the same working directory and code, none of the BRAID_* settings
        # but the state dir (the default .braid there)
        self.terminal = {k: v for k, v in env.items() if not k.startswith("BRAID_")}
        self.terminal["BRAID_STATE_DIR"] = str(self.state)

    def braid(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=self.root,
                              env=env or self.terminal, capture_output=True, text=True,
                              timeout=240)

    def supervisord(self) -> int:
        return int((self.state / "supervisord.pid").read_text())

    def which(self) -> str:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            return str(run(http, "/v1/services/toy-reader/which/jobs", {})["result"])


def _weights(folder: Path, value: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"weight": np.full((2, 2), value, dtype=np.float32)}, str(folder / "toy.safetensors"))
    return folder


@pytest.fixture(scope="module")
def detached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Detached]:
    root = tmp_path_factory.mktemp("detached")
    (root / "toy_app.py").write_text(textwrap.dedent(TOY))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAID_")}
    env.update({
        "PYTHONPATH": f"{root}{os.pathsep}{ROOT}", "PYTHONUNBUFFERED": "1",
        "BRAID_STATE_DIR": str(root / "state"), "BRAID_MODELS_DIR": str(root / "models"),
        "BRAID_EMBEDDED_REDIS_PORT": str(free_port()), "BRAID_API_PORT": str(free_port()),
        "BRAID_FLOWER": "0", "BRAID_LOG_STEPS": "1",
    })
    system = Detached(root, env, subprocess.CompletedProcess([], 0))
    imported = system.braid("models", "import", "toy", str(_weights(root / "toy-1", 1.0)),
                            "--framework", "torch", env=env)
    assert imported.returncode == 0, imported.stderr
    system.up = system.braid("up", "-d", "--app", "toy_app", env=env)
    try:
        yield system
    finally:
        if (system.state / "supervisord.pid").exists():
            for pid in tree(system.supervisord()):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_up_d_returns_once_ready_saying_where_the_api_and_the_logs_are(detached: Detached) -> None:
    """Given `braid up -d` with Flower off, it returns 0 once the system is ready, having said
    where the API and the logs are and nothing about Flower, and the system keeps running."""
    assert detached.up.returncode == 0, detached.up.stderr
    lines = detached.up.stdout.splitlines()
    assert f"  API     {detached.url}  (docs: /docs)" in lines
    assert f"  Logs    {detached.state}/logs/<process>.log  (braid logs SERVICE [-f])" in lines
    assert not any("Flower" in line for line in lines)
    assert any(re.fullmatch(rf"Braid is ready in \d+\.\d s: {detached.url} \(docs /docs\)", line)
               for line in lines), lines
    assert httpx.get(f"{detached.url}/readyz", timeout=10).status_code == 200
    assert detached.which() == "v1"


def test_status_from_another_terminal_finds_the_system_by_its_state_dir(detached: Detached) -> None:
    """Given the detached system, `braid status` with only its state dir in common shows its
    services and, once supervisord counts them started (startsecs), its programs running."""

    def settled() -> tuple[str, dict[str, list[str]]] | None:
        result = detached.braid("status")
        assert result.returncode == 0, result.stderr
        rows = {cells[0]: cells for cells in (re.split(r" {2,}", line.strip())
                                              for line in result.stdout.splitlines())}
        return None if "STARTING" in result.stdout else (result.stdout, rows)

    out, rows = wait_for(settled, 30, "every program to be started", interval=0.5)
    assert rows["toy-reader"] == ["toy-reader", "0", "1", "cpu", "toy:v1", "RUNNING"]
    assert rows["braid (internal: maps)"][1:3] == ["0", "1"]
    assert [rows[name][1] for name in ("api", "redis")] == ["RUNNING", "RUNNING"]
    assert "flower" not in rows
    assert f"logs in {detached.state}/logs" in out


def test_logs_print_a_service_s_last_lines(detached: Detached) -> None:
    result = detached.braid("logs", "toy-reader", "-n", "200")
    assert result.returncode == 0, result.stderr
    assert "service 'toy-reader' loaded on cpu" in result.stdout
    assert len(detached.braid("logs", "toy-reader", "-n", "2").stdout.splitlines()) == 2


def test_logs_follow_prints_lines_as_the_service_writes_them(detached: Detached) -> None:
    out = detached.root / "follow.out"
    with out.open("w") as handle:
        follower = subprocess.Popen([sys.executable, "-m", "app.cli", "logs", "toy-reader", "-f",
                                     "-n", "0"], cwd=detached.root, env=detached.terminal,
                                    stdout=handle, stderr=subprocess.STDOUT)
    jobs: list[str] = []

    def followed() -> bool:
        # the follower starts reading at the end of the log once it has started: a job run
        # before that is not shown, one run after it is
        with httpx.Client(base_url=detached.url, timeout=30) as http:
            jobs.append(run(http, "/v1/services/toy-reader/which/jobs", {})["id"])
        text = out.read_text()
        return any(f"step which of job {job} succeeded" in text for job in jobs)

    try:
        wait_for(followed, 30, "a job's line in the followed log", interval=0.5)
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0


def test_a_model_import_then_restart_makes_the_service_serve_the_new_version(
        detached: Detached) -> None:
    """Given a running toy-reader on toy:v1, importing toy again names the service to
    restart; until then it serves v1 (status says v2 is the latest); `braid restart` returns
    once it is live again on v2."""
    imported = detached.braid("models", "import", "toy", str(_weights(detached.root / "toy-2", 2.0)),
                              "--framework", "torch")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.splitlines()[-1] == \
        "restart its services to serve it: braid restart toy-reader"
    assert detached.which() == "v1"
    assert "toy:v1 (latest is v2)" in detached.braid("status").stdout

    restarted = detached.braid("restart", "toy-reader")
    assert restarted.returncode == 0, restarted.stderr
    assert re.search(r"toy-reader is live again in \d+\.\d s, serving toy:v2", restarted.stdout)
    assert detached.which() == "v2"


def test_restart_of_a_service_that_does_not_run_names_those_that_do(detached: Detached) -> None:
    result = detached.braid("restart", "nope")
    assert result.returncode == 1
    assert result.stderr == "braid: no service 'nope' runs here; it runs: api, braid, redis, toy-reader\n"


def test_down_stops_everything_and_leaves_no_process(detached: Detached) -> None:
    processes = tree(detached.supervisord())
    assert len(processes) >= 4
    result = detached.braid("down")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "stopped"
    wait_for(lambda: not any(alive(p) for p in processes), 30, "every process to exit")
    again = detached.braid("down")
    assert again.returncode == 1 and again.stderr.startswith("braid: no Braid runs from")
