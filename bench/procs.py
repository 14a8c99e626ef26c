"""A system under test as a tree of processes: start it, count its CPU time, stop all of it.

CPU time is utime + stime from ``/proc/PID/stat`` of the root and every descendant. A tree
walk rather than the process group: BentoML starts each service worker in a session of its
own, so ``killpg`` and group membership miss them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    pid: int
    state: str  # "Z": a zombie, dead but not yet reaped
    ppid: int
    start: int  # jiffies since boot: with the pid, names one process even after pid reuse
    cpu_s: float


def _stat(pid: int) -> Stat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces; the fields follow the last ')'
    fields = raw[raw.rindex(")") + 2:].split()
    return Stat(pid, fields[0], int(fields[1]), int(fields[19]),
                (int(fields[11]) + int(fields[12])) / TICK)


def _all() -> list[Stat]:
    found = (_stat(int(name)) for name in os.listdir("/proc") if name.isdigit())
    return [s for s in found if s is not None]


def tree(root: int) -> list[Stat]:
    """``root`` and its live descendants."""
    stats = _all()
    children: dict[int, list[Stat]] = {}
    for s in stats:
        children.setdefault(s.ppid, []).append(s)
    found = [s for s in stats if s.pid == root]
    for s in found:  # grows while it is walked: breadth first
        found.extend(children.get(s.pid, []))
    return found


class Group:
    """Processes started from one command in a session of their own."""

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str], cwd: Path,
                 log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self._seen: dict[int, int] = {}

    def members(self) -> list[Stat]:
        live = tree(self.proc.pid)
        self._seen.update((s.pid, s.start) for s in live)
        return live

    def cpu_s(self) -> float:
        """CPU seconds the live processes of the tree have used so far."""
        return sum(s.cpu_s for s in self.members())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        self.members()  # the processes to wait for, and to kill if they outstay
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)

    def finish(self, deadline: float) -> None:
        """After :meth:`terminate`: wait until ``deadline``, then SIGKILL what is left of the
        tree (what was seen of it, by pid and start time: a reused pid is not touched)."""
        while time.monotonic() < deadline and self._left():
            time.sleep(0.2)
        for pid in self._left():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def _left(self) -> list[int]:
        self.proc.poll()  # reap the root, or it lingers as a zombie
        left = []
        for pid, start in self._seen.items():
            s = _stat(pid)
            if s is not None and s.start == start and s.state != "Z":
                left.append(pid)
        return left

