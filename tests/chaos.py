"""Chaos against a running `braid up` (:mod:`tests.foreground`): clients run `greet` jobs
while worker processes are SIGKILLed and Redis restarts, and :class:`Figures` says what became
of every job. The suite's chaos test and `make soak` (:mod:`tests.soak`) run it."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from app._protocol import EVENTS
from tests.foreground import Up
from tests.harness import wait_for
from tests.jobs_helpers import FINAL
from tests.processes import children, cmdline

__all__ = ["Chaos", "Figures"]


@dataclass
class Figures:
    """What became of the jobs of a chaos run."""

    jobs: int = 0
    """Jobs accepted (202)."""
    succeeded: int = 0
    wrong: list[str] = field(default_factory=list)
    """Jobs that succeeded with another result than their input's."""
    failed: list[tuple[str, Any]] = field(default_factory=list)
    """(job, error) of each job that failed or was cancelled."""
    lost: list[str] = field(default_factory=list)
    """Jobs accepted and then not found."""
    hung: list[str] = field(default_factory=list)
    """Jobs not ended within the bound."""
    twice: list[tuple[str, str]] = field(default_factory=list)
    """(job, step) of each step whose success was recorded more than once (from the events:
    a missed event can hide one, never invent one)."""
    kills: collections.Counter[str] = field(default_factory=collections.Counter)
    redelivered_s: list[float] = field(default_factory=list)
    """For each step that started more than once: from the last kill before its last start
    to that start."""
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        """0 lost, 0 hung, 0 failed, 0 wrong, 0 steps that succeeded twice."""
        return not (self.wrong or self.failed or self.lost or self.hung or self.twice)

    def summary(self) -> str:
        times = sorted(self.redelivered_s)
        redelivery = ("none redelivered" if not times else
                      f"{len(times)} steps redelivered, median {times[len(times) // 2]:.1f} s, "
                      f"max {times[-1]:.1f} s after their kill")
        kills = ", ".join(f"{n} {what}" for what, n in sorted(self.kills.items()))
        return (f"{self.jobs} jobs in {self.seconds:.0f} s with kills: {kills}\n"
                f"  succeeded {self.succeeded}, failed {len(self.failed)}, lost "
                f"{len(self.lost)}, hung {len(self.hung)}, wrong result {len(self.wrong)}, "
                f"steps succeeded twice {len(self.twice)}\n  {redelivery}")


class Chaos:
    """Jobs of ``up``'s `greet` pipeline (`linger`, its middle step taking ``seconds``, when
    they are not 0) from ``clients`` clients (each submits its next job when its last
    ended) while a worker process is SIGKILLed at every beat (a main process, or a pool
    child every third beat) and Redis restarts (SIGTERM) at beat ``redis_at``. A beat is
    every ``every_jobs`` ended jobs, or every ``every_s`` seconds."""

    def __init__(self, up: Up, *, clients: int = 4, redis_at: int = 3,
                 every_jobs: int | None = None, every_s: float | None = None,
                 seconds: float = 0.0, bound_s: float = 180) -> None:
        assert (every_jobs is None) != (every_s is None), "beat by jobs or by seconds"
        self.up, self.clients, self.redis_at = up, clients, redis_at
        self.every_jobs, self.every_s, self.bound_s = every_jobs, every_s, bound_s
        self.seconds = seconds
        self.views: dict[str, dict[str, Any] | None] = {}
        self.kill_times: list[float] = []
        self.figures = Figures()
        self.successes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.done = threading.Event()
        self.listening = False

    def run(self, jobs: int) -> Figures:
        """Run ``jobs`` jobs, once every pipeline has live workers."""
        wait_for(lambda: httpx.get(f"{self.up.url}/readyz", timeout=5).status_code == 200,
                 120, "the system to be ready", interval=0.5)
        names = [f"n{i}" for i in range(jobs)]
        started = time.monotonic()
        threads = [threading.Thread(target=self._client, args=(names[i::self.clients],))
                   for i in range(self.clients)]
        helpers = [threading.Thread(target=self._monkey), threading.Thread(target=self._events)]
        for thread in [*threads, *helpers]:
            thread.start()
        for thread in threads:
            thread.join()
        self.done.set()
        for thread in helpers:
            thread.join(30)
        assert self.listening, "the events were not followed: successes went uncounted"
        self.figures.seconds = time.monotonic() - started
        self._count(names)
        return self.figures

    # -- the clients ------------------------------------------------------------------------

    def _client(self, names: list[str]) -> None:
        with httpx.Client(base_url=self.up.url, timeout=30) as http:
            for name in names:
                job = self._submit(http, name)
                self.views[name] = self._final(http, job)

    def _submit(self, http: httpx.Client, name: str) -> str:
        """Submit until accepted, with one Idempotency-Key (a retry never makes a second
        job), while Redis is away (503) or the queues are full (429)."""
        key = {"Idempotency-Key": uuid.uuid4().hex}
        path, body = self._job(name)
        deadline = time.monotonic() + self.bound_s
        while time.monotonic() < deadline:
            try:
                answer = http.post(path, json=body, headers=key)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code == 202:
                return str(answer.json()["id"])
            if answer is not None and answer.status_code not in (429, 503):
                raise AssertionError(f"submit answered {answer.status_code}: {answer.text}")
            time.sleep(0.2)
        raise AssertionError(f"the job for {name} was not accepted within {self.bound_s} s")

    def _job(self, name: str) -> tuple[str, dict[str, Any]]:
        """The URL and body of the job for ``name``."""
        if not self.seconds:
            return "/v1/pipelines/greet/jobs", {"name": name}
        return "/v1/pipelines/linger/jobs", {"name": name, "seconds": self.seconds}

    def _final(self, http: httpx.Client, job: str) -> dict[str, Any] | None:
        """The job once it ended (each ask waits up to 5 s for that); just its id if it is
        not found; None if it did not end in time."""
        deadline = time.monotonic() + self.bound_s
        while time.monotonic() < deadline:
            try:
                answer = http.get(f"/v1/jobs/{job}", params={"wait": 5}, timeout=15)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code == 404:
                return {"id": job}
            if answer is not None and answer.status_code == 200:
                view: dict[str, Any] = answer.json()
                if view.get("state") in FINAL:
                    return view
            else:  # the API or Redis is away: ask again shortly
                time.sleep(0.2)
        return None

    # -- the kills --------------------------------------------------------------------------

    def _beat(self, beat: int) -> bool:
        """Wait for beat number ``beat``; False once the clients are done."""
        if self.every_s is not None:
            return not self.done.wait(self.every_s)
        assert self.every_jobs is not None
        while len(self.views) < self.every_jobs * beat:
            if self.done.wait(0.05):
                return False
        return True

    def _monkey(self) -> None:
        for beat in itertools.count(1):
            if not self._beat(beat):
                return
            programs = children(self.up.supervisord())
            mains = [p for p in programs
                     if any(f"worker {s} " in cmdline(p) for s in ("outside", "shouter"))]
            pool = [c for p in mains for c in children(p)]
            if beat == self.redis_at:
                victims = [c for p in programs if cmdline(p).rstrip().endswith("app.cli redis")
                           for c in children(p)]
                what, sig = "redis restart", signal.SIGTERM
            elif beat % 3 == 0 and pool:
                victims, what, sig = [pool[beat % len(pool)]], "pool child", signal.SIGKILL
            else:
                victims, what, sig = [mains[beat % len(mains)]], "main", signal.SIGKILL
            self.kill_times.append(time.time())
            for pid in victims:
                os.kill(pid, sig)
            self.figures.kills[what] += 1

    # -- what happened ----------------------------------------------------------------------

    def _events(self) -> None:
        """Count the recorded successes of each step, from the events channel (resubscribing
        when Redis restarts)."""
        port = int(self.up.env["BRAID_EMBEDDED_REDIS_PORT"])
        password = (Path(self.up.env["BRAID_STATE_DIR"]) / "redis-password").read_text().strip()
        while not self.done.is_set():
            try:
                pubsub = redis.Redis(port=port, password=password).pubsub()  # type: ignore[no-untyped-call]
                pubsub.subscribe(EVENTS)
                self.listening = True
                while not self.done.is_set():
                    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if message is not None:
                        event = json.loads(message["data"])
                        if event.get("state") == "succeeded" and event.get("step"):
                            self.successes[event["job"], event["step"]] += 1
            except redis.RedisError:
                self.done.wait(0.1)

    def _count(self, names: list[str]) -> None:
        f = self.figures
        f.jobs = len(self.views)  # a client records each job it got accepted, ended or not
        for name in names:
            view = self.views.get(name)
            if view is None:
                f.hung.append(name)
            elif "state" not in view:
                f.lost.append(view["id"])
            elif view["state"] != "succeeded":
                f.failed.append((view["id"], view.get("error")))
            elif view["result"] != f"HELLO {name.upper()}!!":
                f.wrong.append(view["id"])
            else:
                f.succeeded += 1
            for step in (view or {}).get("steps", {}).values():
                if step["attempts"] > 1 and step["started_at"]:
                    f.redelivered_s.append(_since_kill(self.kill_times, step["started_at"]))
        f.twice = sorted(k for k, n in self.successes.items() if n > 1)


def _since_kill(kills: list[float], started_at: str) -> float:
    start = dt.datetime.fromisoformat(started_at).timestamp()
    return start - max((t for t in kills if t <= start), default=start)

