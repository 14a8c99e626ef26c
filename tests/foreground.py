"""A whole Braid system under `braid up`, in the foreground, serving a module written
outside the repository (:data:`OUTSIDE`): for the tests of `braid up` and for `make soak`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx

from tests.harness import ROOT, free_port
from tests.processes import alive, children, cmdline, tree

OUTSIDE = '''
import time

from app import Value, api, models, pipeline, service, step


@service(timeout=4, concurrency=2)
class Outside:
    """A service written outside the Braid repository (two processes each: prefork)."""

    def __init__(self) -> None:
        pass

    @api
    def hello(self, name: str, seconds: float = 0.0) -> str:
        time.sleep(seconds)
        return f"hello {name}"

    @api
    def slow(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


@service(timeout=4)
class Shouter:
    def __init__(self) -> None:
        pass

    @api
    def shout(self, text: str) -> str:
        return text.upper() + "!"

    @api
    def slow(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


@service(timeout=20, models=["bert-sentiment:latest"])
class Reader:
    """A transformers model from the store, loaded the way a new user's service loads one."""

    def __init__(self) -> None:
        from transformers import pipeline

        self.pipe = pipeline("text-classification", model=str(models.get("bert-sentiment").path))

    @api
    def read(self, text: str) -> str:
        return str(self.pipe(text)[0]["label"])


@pipeline(name="greet")
def greet(name: str) -> Value[str]:
    return step(Shouter.shout, step(Outside.hello, step(Shouter.shout, name)))


@pipeline(name="linger")
def linger(name: str, seconds: float) -> Value[str]:
    """greet, its middle step taking ``seconds``."""
    return step(Shouter.shout, step(Outside.hello, step(Shouter.shout, name), seconds))
'''


class Up:
    """`braid up` running ``OUTSIDE`` in the foreground, with its env and its output."""

    def __init__(self, proc: subprocess.Popen[bytes], env: dict[str, str], log: Path) -> None:
        self.proc = proc
        self.env = env
        self.log = log
        self.url = f"http://127.0.0.1:{env['BRAID_API_PORT']}"
        self.flower = f"http://127.0.0.1:{env['BRAID_FLOWER_PORT']}"

    def supervisord(self) -> int:
        """The supervisord that `braid up` runs as its child."""
        found = [p for p in children(self.proc.pid) if "supervisor.supervisord" in cmdline(p)]
        assert len(found) == 1, found
        return found[0]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def braid(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run another braid command beside this system, as its user would (same env)."""
        return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=self.log.parent,
                              env=self.env, capture_output=True, text=True, timeout=120)

    def worker_main(self, node: str) -> int:
        """The main process of the worker named ``node`` (service@host-N)."""
        service, index = node.split("@")[0], node.rsplit("-", 1)[1]
        mains = [p for p in children(self.supervisord())
                 if cmdline(p).rstrip().endswith(f"worker {service} --index {index}")]
        assert len(mains) == 1, (node, mains)
        return mains[0]

    def metric(self, name: str, service: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(f'{name}{{service="{service}"}} '):
                return float(line.split()[-1])
        raise AssertionError(f"{name} for {service} missing")

    def flower_workers(self) -> dict[str, Any]:
        response = httpx.get(f"{self.flower}/api/workers", params={"refresh": "1"},
                             auth=("admin", self.env["BRAID_FLOWER_PASSWORD"]), timeout=10)
        response.raise_for_status()
        workers: dict[str, Any] = response.json()
        return workers


def start(tmp: Path, models: Path, **settings: str) -> Up:
    """`braid up` of :data:`OUTSIDE` (three `outside` workers) in ``tmp``, on free ports, with
    ``settings`` (BRAID_*) on top of the defaults; it may still be starting."""
    (tmp / "outside_app.py").write_text(textwrap.dedent(OUTSIDE))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAID_")}
    env.update({
        "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}", "PYTHONUNBUFFERED": "1",
        "BRAID_STATE_DIR": str(tmp / "state"), "BRAID_EMBEDDED_REDIS_PORT": str(free_port()),
        "BRAID_API_PORT": str(free_port()), "BRAID_FLOWER_PORT": str(free_port()),
        "BRAID_FLOWER_PASSWORD": "flower-secret", "BRAID_MODELS_DIR": str(models), **settings,
    })
    log = tmp / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--app", "outside_app",
                                 "--scale", "outside=3"],
                                cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Up(proc, env, log)


def kill(up: Up) -> None:
    """Kill every process of ``up`` that still runs (supervisord's programs run in process
    groups of their own, so a signal to `braid up` alone would leave them)."""
    if up.proc.poll() is None:
        for pid in tree(up.proc.pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        up.proc.wait(10)
