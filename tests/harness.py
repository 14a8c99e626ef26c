"""Real processes for the tests: a Redis server, Braid workers and the API, on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis

from app._redis_server import redis_command

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / ".braid" / "models"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], T | None], timeout: float, what: str,
              interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


class System:
    """One Braid deployment made of real processes, logging into ``root``."""

    def __init__(self, root: Path, apps: str, **env: str) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port()
        self.api_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {
            **os.environ,
            "BRAID_REDIS_URL": self.redis_url,
            "BRAID_APPS": apps,
            "BRAID_STATE_DIR": str(root / "state"),
            "BRAID_MODELS_DIR": str(MODELS),
            "BRAID_MAX_CONCURRENCY": "1",
            "BRAID_VISIBILITY_MARGIN_S": "5",
            "BRAID_RESTORE_INTERVAL_S": "1",
            "BRAID_TIME_LIMIT_GRACE_S": "2",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def _spawn(self, name: str, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        out = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        popen.setdefault("env", self.env)
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, **popen)
        out.close()
        self.procs[name] = proc
        return proc

    def start_redis(self) -> None:
        self._spawn("redis", redis_command(self.redis_port, self.root / "redis"))
        wait_for(lambda: self.redis().ping(), 10, "redis")

    def stop_redis(self) -> None:
        self.stop("redis")

    def start_worker(self, service: str, index: int = 0, **env: str) -> str:
        name = f"worker-{service}" + (f"-{index}" if index else "")
        self._spawn(name, [sys.executable, "-m", "app.cli", "worker", service,
                           "--index", str(index)], env={**self.env, **env})
        return name

    def start_api(self, name: str = "api", port: int | None = None, **env: str) -> str:
        """Start an API process (another one, with ``name``, ``port`` and ``env``)."""
        port = port or self.api_port
        self._spawn(name, [sys.executable, "-m", "app.cli", "api", "--port", str(port)],
                    env={**self.env, **env})
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, 30,
                 f"the API at {url}")
        return url

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def kill_group(self, name: str) -> None:
        """SIGKILL a process and its children (a worker and its pool)."""
        self.stop(name, signal.SIGKILL)

    def ping(self) -> set[str]:
        from app._celery import create_celery
        from app._settings import Settings

        celery = create_celery(Settings(redis_url=self.redis_url), [_core()])
        try:
            return {name for reply in celery.control.ping(timeout=0.5) for name in reply}
        finally:
            celery.close()

    def wait_workers(self, services: list[str], timeout: float = 90) -> None:
        def up() -> bool:
            names = {n.split("@")[0] for n in self.ping()}
            return set(services) <= names

        wait_for(up, timeout, f"workers {services}", interval=0.3)

    def up(self, services: list[str], timeout: float = 90) -> System:
        """Redis, one worker per service, the API; returns once every worker answers."""
        self.start_redis()
        for service in services:
            self.start_worker(service)
        self.start_api()
        self.wait_workers(services, timeout)
        return self

    def close(self) -> None:
        for name in [n for n in self.procs if n != "redis"]:
            self.stop(name)
        self.stop("redis")


def _core() -> Any:
    from app._registry import CORE

    return CORE
