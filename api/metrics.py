"""Prometheus metrics of the API process.

Job and step metrics come from the job event stream this process subscribes to, so each API
replica reports every job (take one replica's series, or ``max`` across them, not the sum).
Queue depth, live workers and dead letters are read from Redis at scrape time.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app._protocol import JobField, job_key
from app._queues import QueueStats

__all__ = ["Metrics", "Throughput"]

_OPEN_LIMIT = 100_000
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Throughput:
    """Steps ended per second, per service, over the last :attr:`window_s` seconds (as this
    API process's event stream saw them)."""

    window_s = 60.0

    def __init__(self) -> None:
        self._ends: dict[str, collections.deque[float]] = {}

    def ended(self, service: str, at: float) -> None:
        ends = self._ends.setdefault(service, collections.deque(maxlen=10_000))
        ends.append(at)

    def per_second(self, service: str, now: float) -> float:
        ends = self._ends.get(service)
        if not ends:
            return 0.0
        while ends and ends[0] < now - self.window_s:
            ends.popleft()
        return len(ends) / self.window_s


class Metrics:
    def __init__(self) -> None:
        self.throughput = Throughput()
        self.registry = CollectorRegistry()
        self._open: dict[str, tuple[str, float]] = {}
        r = self.registry
        self.submitted = Counter("braid_jobs_submitted", "Jobs accepted, by pipeline",
                                 ["pipeline"], registry=r)
        self.finished = Counter("braid_jobs_finished", "Jobs that ended, by pipeline and state",
                                ["pipeline", "state"], registry=r)
        self.job_seconds = Histogram("braid_job_duration_seconds",
                                     "From submission to the end, by pipeline", ["pipeline"],
                                     buckets=_BUCKETS, registry=r)
        self.step_wait = Histogram("braid_step_queue_seconds",
                                   "From a step's inputs being ready to its start",
                                   ["service", "api"], buckets=_BUCKETS, registry=r)
        self.step_run = Histogram("braid_step_run_seconds", "A step's run time",
                                  ["service", "api", "state"], buckets=_BUCKETS, registry=r)
        self.batch_size = Histogram("braid_batch_size", "Steps per model call of a batched API",
                                    ["service", "api"], buckets=_SIZES, registry=r)
        self.batch_run = Histogram("braid_batch_run_seconds", "A batch's model call, in seconds",
                                   ["service", "api"], buckets=_BUCKETS, registry=r)
        self.depth = Gauge("braid_queue_depth",
                           "Messages waiting in a service's queue plus reserved and unacked",
                           ["service"], registry=r)
        self.waiting = Gauge("braid_queue_waiting", "Messages waiting in a service's queue",
                             ["service"], registry=r)
        self.reserved = Gauge("braid_queue_reserved", "Messages reserved by a service's workers "
                              "and not acked yet", ["service"], registry=r)
        self.dead_letters = Gauge("braid_dead_letters", "Broker messages that workers refused "
                                  "and kept aside (the newest are kept)", registry=r)
        self.workers = Gauge("braid_live_workers", "Workers of a service that sent a heartbeat "
                             "recently", ["service"], registry=r)

    def accepted(self, job: str, pipeline: str, created: float) -> None:
        """Count a job this process accepted, and remember it until it ends (so that its end
        costs no read of the job)."""
        self.submitted.labels(pipeline).inc()
        self._open[job] = (pipeline, created)
        if len(self._open) > _OPEN_LIMIT:  # jobs that ended while this process was away
            self._open.pop(next(iter(self._open)))

    async def observe(self, event: dict[str, Any], client: Any) -> None:
        """Count one job event (called for every event on the stream)."""
        if event.get("final"):
            known = self._open.pop(event["job"], None)
            if known is None:  # submitted through another API process
                pipeline, created, finished = await client.hmget(
                    job_key(event["job"]),
                    [JobField.pipeline, JobField.created_at, JobField.finished_at])
                if pipeline is None:
                    return
                known = (pipeline.decode(), float(created or 0))
                event = {**event, "ts": float(finished or 0)}
            name, created_at = known
            self.finished.labels(name, event["state"]).inc()
            if created_at and event.get("ts"):
                self.job_seconds.labels(name).observe(float(event["ts"]) - created_at)
        elif event.get("state") == "batch":
            labels = (event["service"], event["api"])
            self.batch_size.labels(*labels).observe(event["size"])
            self.batch_run.labels(*labels).observe(event["batch_run"])
        elif "run" in event and "service" in event:
            self.throughput.ended(event["service"], float(event.get("ts") or time.time()))
            labels = (event["service"], event["api"])
            self.step_wait.labels(*labels).observe(max(0.0, event["wait"]))
            self.step_run.labels(*labels, event["state"]).observe(event["run"])

    def render(self, stats: dict[str, QueueStats], dead_letters: int) -> bytes:
        self.dead_letters.set(dead_letters)
        for name, s in stats.items():
            self.depth.labels(name).set(s.depth)
            self.waiting.labels(name).set(s.waiting)
            self.reserved.labels(name).set(s.reserved)
            self.workers.labels(name).set(s.workers)
        return bytes(generate_latest(self.registry))
