"""The systems under test, behind one interface the load client drives, and Braid's start.

Braid starts as a user would start it: ``braid up`` with its default settings (``--lean``
turns task events and Flower off), serving the no-op services and the seed graph's services.
The one setting changed caps every pool at one process, so both systems run one worker process
per model. The unbatched baseline is a second ``braid up`` with ``BRAID_BATCHING=0``, serving
the seed graph's services only.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procs import Group
from bench.workloads import Workload

ROOT = Path(__file__).resolve().parent.parent
SEED_MODELS = ("gpt2", "distilgpt2", "bert-sentiment")


def state_dir() -> Path:
    """Where the bench keeps its venv, logs and BentoML's home: ``<state dir>/bench``."""
    return Path(os.environ.get("BRAID_STATE_DIR") or ROOT / ".braid").resolve() / "bench"


def models_dir() -> Path:
    """Braid's model store (``BRAID_MODELS_DIR``, default ``<state dir>/models``)."""
    configured = os.environ.get("BRAID_MODELS_DIR")
    return Path(configured).resolve() if configured else state_dir().parent / "models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class System:
    """One system under test: how to send one job, and the processes that serve it."""

    def __init__(self, name: str, groups: list[Group], workloads: tuple[Workload, ...],
                 clients: tuple[int, ...] | None = None) -> None:
        self.name = name
        self.groups = groups
        self.workloads = workloads
        """What it serves: :func:`ready` waits for one job of each, and it is measured on them."""
        self.clients = clients
        """The client counts it is measured at (None: every one asked for)."""

    def measures(self, workload: Workload, clients: int) -> bool:
        return workload in self.workloads and (self.clients is None or clients in self.clients)

    async def call(self, http: httpx.AsyncClient, workload: Workload,
                   body: dict[str, Any] | None = None) -> Any:
        """Send one job (``body``, default the workload's) and return its result; raise on
        anything but success."""
        raise NotImplementedError

    def cpu_s(self) -> float | None:
        """CPU seconds used so far by every process serving it (None: not ours to read)."""
        return sum(g.cpu_s() for g in self.groups) if self.groups else None

    def check_alive(self) -> None:
        for group in self.groups:
            if not group.alive():
                raise SystemExit(f"{group.name} exited ({group.proc.returncode}); see {group.log}")


def stop_all(systems: list[System], timeout: float = 20) -> None:
    """Stop every process of every system: all asked at once, the stragglers killed."""
    groups = [g for s in systems for g in s.groups]
    for group in groups:
        group.terminate()
    deadline = time.monotonic() + timeout
    for group in groups:
        group.finish(deadline)


def ok_json(response: httpx.Response) -> Any:
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    return response.json()


class Braid(System):
    """A single request per job: submit with ``?wait=`` returns the final record."""

    def __init__(self, url: str, groups: list[Group], workloads: tuple[Workload, ...],
                 name: str = "Braid", clients: tuple[int, ...] | None = None,
                 settings: Any = None) -> None:
        super().__init__(name, groups, workloads, clients)
        self.url = url
        self.settings = settings
        """The settings it runs with (its Redis, its stream retention), where it was started
        here."""

    async def call(self, http: httpx.AsyncClient, workload: Workload,
                   body: dict[str, Any] | None = None) -> Any:
        view = ok_json(await http.post(f"{self.url}{workload.path}", params={"wait": 60},
                                       json=workload.body if body is None else body))
        if view.get("state") != "succeeded":
            raise RuntimeError(f"job {view.get('id')} {view.get('state')}: {view.get('error')}")
        return view.get("result")

    async def submit(self, http: httpx.AsyncClient, workload: Workload) -> None:
        """Submit only (no wait): the API's acceptance rate."""
        response = await http.post(f"{self.url}{workload.path}", json=workload.body)
        if response.status_code != 202:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")


def start_braid(state: Path, logs: Path, lean: bool, workloads: tuple[Workload, ...], *,
                name: str = "Braid", apps: tuple[str, ...] = ("bench.services", "bench.seed"),
                settings: dict[str, str] | None = None,
                clients: tuple[int, ...] | None = None) -> Braid:
    """``braid up`` for ``apps``, on free ports, state in ``state``; ``settings`` are BRAID_*
    variables on top of the bench's."""
    from app import Settings

    port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAID_")}
    env.update({"BRAID_STATE_DIR": str(state), "BRAID_API_PORT": str(port),
                "BRAID_FLOWER_PORT": str(free_port()),
                "BRAID_EMBEDDED_REDIS_PORT": str(redis_port),
                "BRAID_MODELS_DIR": str(models_dir()),
                # BertBaseUncased asks for two CPUs, which would be two pool processes
                "BRAID_MAX_CONCURRENCY": "1",
                "BRAID_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    if lean:
        env.update({"BRAID_TASK_EVENTS": "0", "BRAID_FLOWER": "0"})
    env.update(settings or {})
    command = [sys.executable, "-m", "app.cli", "up"]
    for app in apps:
        command += ["--app", app]
    group = Group(f"braid up ({name})", command, env, ROOT, logs / f"{name.lower()}.log")
    # what the started system reads (its Redis password appears in state_dir once it is up)
    fields: dict[str, Any] = {k.removeprefix("BRAID_").lower(): v for k, v in (settings or {}).items()}
    read = Settings(state_dir=state, embedded_redis_port=redis_port, **fields)
    return Braid(f"http://127.0.0.1:{port}", [group], workloads, name, clients, read)


def bootstrap_models() -> None:
    """Build the seed graph's stand-in models where the store lacks them, before either
    system starts (both load the same folders)."""
    import workers._stand_ins  # noqa: F401 - registers how the stand-ins are built
    from app import _models

    store = _models.ModelStore(models_dir())
    _models.bootstrap(store, list(SEED_MODELS))  # skips those the store has


async def ready(system: System, timeout: float = 300) -> None:
    """Wait until one job of every workload the system serves has succeeded."""
    deadline = time.monotonic() + timeout
    pending = list(system.workloads)
    error = ""
    async with httpx.AsyncClient(timeout=30) as http:
        while pending:
            system.check_alive()
            try:
                await system.call(http, pending[0])
                pending.pop(0)
                continue
            except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                logs = ", ".join(str(g.log) for g in system.groups)
                raise SystemExit(f"{system.name} did not come up in {timeout:.0f} s "
                                 f"({error}); see {logs}")
            await asyncio.sleep(0.5)
