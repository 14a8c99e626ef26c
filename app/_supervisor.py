"""The process supervisor behind ``braid up``: supervisord's configuration, and its control
channel, XML-RPC over a unix socket in the state dir (what ``braid status``, ``restart``,
``logs`` and ``down`` talk to), only for its user (the socket's mode) and with a password
generated into the state dir.

Each model service is one supervisord program named ``worker-<service>``, with one process
per worker (``worker-<service>-<N>``, run as ``braid worker <service> --index N``); Redis,
the API and Flower are the programs ``redis``, ``api`` and ``flower``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shlex
import tempfile
import time
import xmlrpc.client
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app._errors import BraidError

__all__ = ["INDEX", "Control", "Program", "config", "control", "log_dir", "socket_path", "wait_exit",
           "worker_group"]

INDEX = "{index}"
"""In a :class:`Program`'s command, the number of each of its processes."""

_NUMBER = "%(process_num)d"
_STOP_WAIT_S = 20
"""How long a stopping process may take before supervisord kills it."""
_STOPPED = frozenset({"STOPPED", "EXITED", "FATAL"})
"""supervisord's states of a process that does not run."""
# AF_UNIX paths are limited to 108 bytes; a deep state dir gets a socket in the temp dir
_SOCKET_MAX = 100


@dataclass(frozen=True)
class Program:
    """One supervisord program: ``processes`` copies of ``command``, where an argument equal
    to :data:`INDEX` becomes each copy's number (and its name ``<name>-<number>``)."""

    name: str
    command: list[str]
    priority: int
    processes: int = 1
    startsecs: int = 2
    extra: dict[str, str] = field(default_factory=dict)


def worker_group(service: str) -> str:
    """The supervisord program that runs ``service``'s workers."""
    return f"worker-{service}"


def log_dir(state: Path) -> Path:
    """Where a detached system's programs log: one ``<process>.log`` each."""
    return state / "logs"


def socket_path(state: Path) -> Path:
    """The control socket of the system started from ``state``."""
    path = state.resolve() / "supervisor.sock"
    if len(str(path)) <= _SOCKET_MAX:
        return path
    digest = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"braid-{digest}.sock"


_USER = "braid"


def _password(state: Path, make: bool = False) -> str:
    path = state / "supervisor-password"
    if make and not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(16))
    return path.read_text().strip() if path.exists() else ""


def _escape(text: str) -> str:
    return text.replace("%", "%%")


def _section(program: Program, state: Path, detached: bool) -> str:
    # shlex quotes the number's parentheses; supervisord expands it inside the quotes
    command = shlex.join(_NUMBER if arg == INDEX else _escape(arg) for arg in program.command)
    process = f"%(program_name)s-{_NUMBER}" if INDEX in program.command else "%(program_name)s"
    options = {
        "command": command, "process_name": process,
        "numprocs": str(program.processes), "priority": str(program.priority),
        "autostart": "true", "autorestart": "true", "startsecs": str(program.startsecs),
        "startretries": "10", "stopasgroup": "true", "killasgroup": "true",
        "stopsignal": "TERM", "stopwaitsecs": str(_STOP_WAIT_S), "redirect_stderr": "true",
    }
    if detached:
        logs = _escape(str(log_dir(state)))
        options |= {"stdout_logfile": f"{logs}/{process}.log",
                    "stdout_logfile_maxbytes": "20MB", "stdout_logfile_backups": "2"}
    else:
        options |= {"stdout_logfile": "/dev/stdout", "stdout_logfile_maxbytes": "0"}
    options |= program.extra
    return f"[program:{program.name}]\n" + "".join(f"{k}={v}\n" for k, v in options.items())


def config(state: Path, programs: list[Program], detached: bool) -> str:
    """supervisord.conf for ``programs``, controlled over :func:`socket_path`; a detached
    system's programs log to files under :func:`log_dir`, a foreground one's to stdout. It
    holds the control password: write it readable only by its user."""
    sock = _escape(str(socket_path(state)))
    auth = [f"username={_USER}", f"password={_escape(_password(state, make=True))}"]
    head = [
        "[supervisord]", "nodaemon=true", "logfile=/dev/null", "logfile_maxbytes=0",
        f"pidfile={_escape(str(state / 'supervisord.pid'))}", "loglevel=warn",
    ]
    if os.geteuid() == 0:
        # root stays root (as `braid up` said); without this supervisord prints a CRIT line
        head.append("user=root")
    head += ["", "[unix_http_server]", f"file={sock}", "chmod=0700", *auth, "",
             "[rpcinterface:supervisor]",
             "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
             "", "[supervisorctl]", f"serverurl=unix://{sock}", *auth, ""]
    return "\n".join(head) + "\n" + "\n".join(_section(p, state, detached) for p in programs)


class Control:
    """A running supervisord, over its control socket."""

    def __init__(self, state: Path) -> None:
        from supervisor.xmlrpc import SupervisorTransport

        self.state = state
        transport = SupervisorTransport(_USER, _password(state), f"unix://{socket_path(state)}")
        self._proxy = xmlrpc.client.ServerProxy("http://localhost", transport=transport)
        self._rpc: Any = self._proxy.supervisor

    def close(self) -> None:
        self._proxy("close")()

    def pid(self) -> int:
        return int(self._rpc.getPID())

    def processes(self) -> list[dict[str, Any]]:
        """supervisord's view of every process: ``name``, ``group``, ``statename``, ``pid``,
        ``description``, ``stdout_logfile``."""
        found: list[dict[str, Any]] = self._rpc.getAllProcessInfo()
        return found

    def groups(self) -> list[str]:
        return sorted({p["group"] for p in self.processes()})

    def detached(self) -> bool:
        """Whether the programs log to files (``braid up -d``) rather than to stdout."""
        return any(p["stdout_logfile"] not in ("", "/dev/stdout") for p in self.processes())

    def restart(self, group: str) -> None:
        """Stop every process of ``group``, then start them; returns once they run."""
        self._rpc.stopProcessGroup(group, True)
        self._rpc.startProcessGroup(group, True)

    def shutdown(self, last: Collection[str] = ()) -> None:
        """Stop every program at once, but those named in ``last``, which stop once the rest
        have; then supervisord, which has nothing left to stop. (supervisord's own shutdown
        stops one program after another, each once the one before has exited, and looks at
        the next only at its loop's next tick, a second: with a worker program per service,
        `braid down` of the demos took 27 s.)"""
        groups = self.groups()
        first = [g for g in groups if g not in last]
        for group in first:
            self._rpc.stopProcessGroup(group, False)
        # supervisord kills what still runs after _STOP_WAIT_S
        deadline = time.monotonic() + _STOP_WAIT_S + 5
        while time.monotonic() < deadline and any(
                p["group"] in first and p["statename"] not in _STOPPED for p in self.processes()):
            time.sleep(0.1)
        for group in last:
            if group in groups:
                self._rpc.stopProcessGroup(group, True)
        self._rpc.shutdown()


@contextlib.contextmanager
def control(state: Path) -> Iterator[Control | None]:
    """The supervisord running from ``state``, or None where nothing answers."""
    if not socket_path(state).exists():
        yield None
        return
    handle = Control(state)
    try:
        handle.pid()
    except (OSError, xmlrpc.client.Error):
        handle.close()
        yield None
        return
    try:
        yield handle
    except xmlrpc.client.Fault as fault:
        raise BraidError(f"supervisord refused: {fault.faultString}") from None
    finally:
        handle.close()


def _exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    # a zombie (exited, not reaped yet: a detached supervisord's parent is gone) has stopped
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait until the process ``pid`` has exited; False if it still runs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not _exited(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
