"""Hooks around a step, as dramatiq's middleware: timing, logs, time limits and interrupts
plug in here (and later metrics and traces), instead of into one long step function.

Each worker process runs its steps through one :class:`Hooks`: ``before`` in order, then the
step, then ``after`` (or ``on_error``) in reverse order. A hook that raises in ``before``
fails the step like the step's own code would.
"""

from __future__ import annotations

import contextvars
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app._protocol import StepCall
from app._service import ApiSpec, ServiceSpec

__all__ = ["Hook", "Hooks", "Interrupts", "LogContext", "MemoryGuard", "MemoryLimitExceeded",
           "StepRun", "TimeLimit", "rss_bytes"]

log = logging.getLogger("braid.worker")


@dataclass
class StepRun:
    """One run of one step, as the hooks see it."""

    service: ServiceSpec
    api: ApiSpec
    job: str
    step: str
    call: StepCall
    task_id: str
    attempts: int = 0
    ready_at: float = 0.0
    started_at: float = field(default_factory=time.time)

    def timing(self) -> dict[str, Any]:
        """What a step event carries for the metrics: queue wait and run time."""
        return {"service": self.service.name, "api": self.api.name,
                "wait": self.started_at - self.ready_at, "run": time.time() - self.started_at}


class Hook:
    """A no-op hook; override what you need."""

    def on_load(self, service: ServiceSpec) -> None:
        """The worker process loaded ``service``'s model."""

    def before(self, run: StepRun) -> None:
        """The step is about to call the model (its inputs are read)."""

    def after(self, run: StepRun) -> None:
        """The model returned and its output is validated and encoded (it is stored next)."""

    def on_error(self, run: StepRun, error: BaseException) -> None:
        """The step failed, timed out, was interrupted or will be retried."""


class Hooks:
    """The hooks of one worker process, called in order (``after``/``on_error`` reversed)."""

    def __init__(self, hooks: Sequence[Hook] = ()) -> None:
        self.hooks = list(hooks)

    def on_load(self, service: ServiceSpec) -> None:
        for hook in self.hooks:
            hook.on_load(service)

    def before(self, run: StepRun) -> None:
        for hook in self.hooks:
            hook.before(run)

    def after(self, run: StepRun) -> None:
        for hook in reversed(self.hooks):
            hook.after(run)

    def on_error(self, run: StepRun, error: BaseException) -> None:
        for hook in reversed(self.hooks):
            hook.on_error(run, error)


LOG_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "braid_log_context", default=None)


class LogContext(Hook):
    """Every log record of a running step carries its job, step, service and task id (see
    :class:`app._logging.StepContext`). A line as each step starts and ends is logged at
    ``level``: DEBUG unless ``BRAID_LOG_STEPS`` is on, so a busy worker's log stays quiet."""

    def __init__(self, level: int = logging.DEBUG) -> None:
        self.level = level

    def before(self, run: StepRun) -> None:
        LOG_CONTEXT.set({"job": run.job, "step": run.step, "service": run.service.name,
                         "task_id": run.task_id})
        log.log(self.level, "step %s of job %s started (attempt %d)", run.step, run.job,
                run.attempts)

    def after(self, run: StepRun) -> None:
        log.log(self.level, "step %s of job %s succeeded", run.step, run.job)
        LOG_CONTEXT.set(None)

    def on_error(self, run: StepRun, error: BaseException) -> None:
        LOG_CONTEXT.set(None)


class Interrupt(BaseException):
    """Raised in a running step when its time is up or its job was cancelled; a
    BaseException, so that a step's ``except Exception`` does not swallow it."""


_ARMED = threading.Event()
"""Set while a step's own code runs: only then does the interrupt signal raise (one that
arrives as the step ends is dropped)."""


class MemoryLimitExceeded(Interrupt):
    """Raised in a running step whose worker process grew past its service's memory guard
    (``Resources(memory=...)``)."""


_OVER_MEMORY = threading.Event()
"""Set by :class:`MemoryGuard` when the step's process is past its guard: the interrupt is
then a :class:`MemoryLimitExceeded`."""


def _interrupt(signum: int, frame: Any) -> None:
    if _ARMED.is_set():
        raise MemoryLimitExceeded() if _OVER_MEMORY.is_set() else Interrupt()


INTERRUPT_SIGNAL = signal.SIGALRM
"""The signal that interrupts the step running in a worker process (time limit, cancel)."""


def install_interrupt() -> None:
    """Make :data:`INTERRUPT_SIGNAL` raise :class:`Interrupt` in this process's main thread."""
    signal.signal(INTERRUPT_SIGNAL, _interrupt)


class Interrupts(Hook):
    """Knows which task this process runs, so that a cancel can interrupt exactly that, and
    lets the interrupt signal raise only while the step's own code runs. Put it before
    :class:`TimeLimit`."""

    def __init__(self) -> None:
        self.running: str | None = None
        self._main = threading.main_thread().ident

    def before(self, run: StepRun) -> None:
        self.running = run.task_id
        _ARMED.set()

    def after(self, run: StepRun) -> None:
        _ARMED.clear()
        self.running = None

    def on_error(self, run: StepRun, error: BaseException) -> None:
        _ARMED.clear()
        self.running = None

    def cancel(self, task_ids: Sequence[str]) -> None:
        """Called from the cancel listener's thread."""
        running = self.running
        if running is not None and running in task_ids and self._main is not None:
            signal.pthread_kill(self._main, INTERRUPT_SIGNAL)


class TimeLimit(Hook):
    """Time limits where no pool enforces them (the solo pool runs steps in the worker's
    own process): at the soft limit the step is interrupted; at the hard limit, if it still
    runs (stuck in native code), ``on_hard_limit`` records it and the process exits, so the
    supervisor restarts the worker. One watchdog thread serves every step; it wakes once a
    second, so arming costs a timer syscall and no thread switch."""

    def __init__(self, soft_s: float, hard_s: float,
                 on_hard_limit: Callable[[StepRun, float], None]) -> None:
        self.soft_s = soft_s
        self.hard_s = hard_s
        self.on_hard_limit = on_hard_limit
        self._armed: tuple[float, StepRun] | None = None
        self._watchdog: threading.Thread | None = None

    def before(self, run: StepRun) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="braid-time-limit",
                                              daemon=True)
            self._watchdog.start()
        self._armed = (time.monotonic() + self.hard_s, run)
        signal.setitimer(signal.ITIMER_REAL, self.soft_s)

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            armed = self._armed
            if armed is not None and time.monotonic() > armed[0]:
                try:
                    self.on_hard_limit(armed[1], self.hard_s)
                finally:
                    log.critical("step %s of job %s ran past its hard time limit of %g s; the "
                                 "worker exits and restarts", armed[1].step, armed[1].job,
                                 self.hard_s)
                    os._exit(70)

    def _disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._armed = None

    def after(self, run: StepRun) -> None:
        self._disarm()

    def on_error(self, run: StepRun, error: BaseException) -> None:
        self._disarm()


def rss_bytes() -> int | None:
    """This process's resident memory, where /proc tells it (Linux), else None."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class MemoryGuard(Hook):
    """The ``memory`` resource as a guard on each step: a watchdog thread reads the process's
    resident memory every :attr:`interval_s` while a step runs, and past ``limit_bytes``
    interrupts the step with :class:`MemoryLimitExceeded` (its job fails ``MemoryLimit``; what
    the step allocated is freed as the exception unwinds, and the worker serves on). Put it
    after :class:`Interrupts`."""

    interval_s = 0.05

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._running: StepRun | None = None
        self._watchdog: threading.Thread | None = None
        self._main = threading.main_thread().ident

    def before(self, run: StepRun) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="braid-memory-guard",
                                              daemon=True)
            self._watchdog.start()
        _OVER_MEMORY.clear()
        self._running = run

    def _watch(self) -> None:
        while True:
            time.sleep(self.interval_s)
            run = self._running
            if run is None or _OVER_MEMORY.is_set():
                continue
            rss = rss_bytes()
            if rss is not None and rss > self.limit_bytes and self._main is not None:
                log.warning("step %s of job %s: the worker holds %d MiB, past its memory guard "
                            "of %d MiB; interrupting it", run.step, run.job, rss >> 20,
                            self.limit_bytes >> 20)
                _OVER_MEMORY.set()
                signal.pthread_kill(self._main, INTERRUPT_SIGNAL)

    def after(self, run: StepRun) -> None:
        self._running = None

    def on_error(self, run: StepRun, error: BaseException) -> None:
        self._running = None
