"""The process supervisor behind `braid up`, on a real supervisord: how a system stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from app._supervisor import Program, config, control, log_dir, wait_exit
from tests.foreground import kill, start
from tests.harness import wait_for
from tests.processes import alive, tree

# a program that notes when SIGTERM came and when it exited, taking 1 s in between (as a
# worker's warm shutdown takes a while)
_SLOW_STOP = (
    "import signal, sys, time\n"
    "def stop(*_):\n"
    "    open(sys.argv[1], 'a').write(f'term {time.time()}\\n'); time.sleep(1.0)\n"
    "    open(sys.argv[1], 'a').write(f'exit {time.time()}\\n'); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "while True: time.sleep(0.05)\n"
)


def _running(state: Path, names: list[str]) -> bool:
    """Whether the supervisord of ``state`` answers, running every program of ``names``."""
    with control(state) as running:
        if running is None:
            return False
        states = {p["group"]: p["statename"] for p in running.processes()}
        return all(states.get(n) == "RUNNING" for n in names)


def test_shutdown_stops_every_program_at_once_and_those_named_last_after_them(
        tmp_path: Path) -> None:
    # given a supervisord running three programs that each take 1 s to stop
    names = ["first", "second", "last"]
    script = tmp_path / "slow_stop.py"
    script.write_text(_SLOW_STOP)
    programs = [Program(n, [sys.executable, str(script), str(tmp_path / f"{n}.times")],
                        priority=10 if n != "last" else 1, startsecs=1) for n in names]
    state = tmp_path / "state"
    log_dir(state).mkdir(parents=True)
    conf = state / "supervisord.conf"
    conf.write_text(config(state, programs, detached=True))
    conf.chmod(0o600)
    supervisord = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-c",
                                    str(conf)])
    try:
        wait_for(lambda: _running(state, names) or None, 30, "every program to run")
        # when it is shut down, "last" named to stop after the rest
        with control(state) as running:
            assert running is not None
            running.shutdown(last=("last",))
        assert wait_exit(supervisord.pid, 30)
    finally:
        supervisord.kill()
        supervisord.wait()
    times = {n: dict(line.split() for line in (tmp_path / f"{n}.times").read_text().splitlines())
             for n in names}
    term = {n: float(t["term"]) for n, t in times.items()}
    exit_ = {n: float(t["exit"]) for n, t in times.items()}
    # then both of the rest were told to stop before either had exited (not one after the
    # other, as supervisord's own shutdown does), and "last" only once both had
    assert max(term["first"], term["second"]) < min(exit_["first"], exit_["second"])
    assert term["last"] >= max(exit_["first"], exit_["second"])


def test_a_sigterm_to_braid_up_alone_stops_everything_at_once(tmp_path: Path,
                                                               model_store: Path) -> None:
    # given `braid up` in the foreground, ready
    up = start(tmp_path, model_store, BRAID_FLOWER="0")
    try:
        wait_for(lambda: httpx.get(f"{up.url}/readyz", timeout=1).status_code == 200, 120,
                 "the system to be ready")
        processes = tree(up.proc.pid)
        assert len(processes) >= 5
        # when it alone is sent SIGTERM (as kill or systemd send it)
        os.kill(up.proc.pid, signal.SIGTERM)
        up.proc.wait(60)
        # then every process exits, stopped at once over supervisord's control channel: the
        # signal was not passed on to supervisord, whose own shutdown stops its programs one
        # after another
        wait_for(lambda: not any(alive(p) for p in processes) or None, 30, "every process to exit")
        assert up.proc.returncode == 0
        assert "received SIGTERM indicating exit request" not in up.output()
    finally:
        kill(up)
