"""Issue 13's listing figure: the newest 50 jobs of one pipeline out of 100,000 in Redis,
counted in Redis round trips (and timed), through the API's own job store.

The jobs are written straight into a Redis of its own (records as the API writes them, in
each jobs list), four pipelines, states mixed; then :meth:`app._jobs.JobStore.recent` lists
a page of one pipeline, a page after it, and a page of one state of it, each with a client
that counts its round trips.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from app._jobs import JobStore
from app._protocol import JOBS, JobField, job_key, pipeline_jobs_key
from app._redis_server import redis_command
from bench.systems import free_port

JOBS_IN_ALL = 100_000
PIPELINES = ("inference-graph", "ensemble", "preprocess-predict", "draft-and-score")
STATES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled")
PAGE = 50


class _Counted:
    """A client whose round trips are counted: each command sent alone, each pipeline."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.trips = 0
        self._client = client
        execute: Any = client.execute_command
        pipeline = client.pipeline

        async def counted_command(*args: Any, **options: Any) -> Any:
            self.trips += 1
            return await execute(*args, **options)

        def counted_pipeline(*args: Any, **options: Any) -> Any:
            pipe: Any = pipeline(*args, **options)
            run = pipe.execute

            async def counted_execute(*a: Any, **o: Any) -> Any:
                self.trips += 1
                return await run(*a, **o)

            pipe.execute = counted_execute
            return pipe

        client.execute_command = counted_command  # type: ignore[method-assign]
        client.pipeline = counted_pipeline  # type: ignore[method-assign]


def _fill(url: str) -> None:
    client = redis.Redis.from_url(url)
    now = time.time() - JOBS_IN_ALL * 0.001
    pipe = client.pipeline(transaction=False)
    for i in range(JOBS_IN_ALL):
        job, pipeline, created = f"{i:032x}", PIPELINES[i % len(PIPELINES)], now + i * 0.001
        pipe.hset(job_key(job), mapping={
            JobField.id: job, JobField.pipeline: pipeline, JobField.state: STATES[i % len(STATES)],
            JobField.created_at: created, JobField.finished_at: created + 0.5,
            JobField.total: 3, JobField.done: 3, JobField.sinks: 1, JobField.sinks_done: 1,
            JobField.output: json.dumps({"$r": "o:x"}), JobField.result: "7"})
        pipe.zadd(JOBS, {job: created})
        pipe.zadd(pipeline_jobs_key(pipeline), {job: created})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()


async def _pages(url: str) -> list[str]:
    client = aioredis.Redis.from_url(url)
    counted = _Counted(client)
    store = JobStore(client, 7 * 24 * 3600)
    lines = []
    before = None
    for label, state in (("newest", None), ("the page after", None), ("newest succeeded", "succeeded")):
        counted.trips = 0
        started = time.perf_counter()
        found, after = await store.recent(PAGE, PIPELINES[0], state,
                                          before if label == "the page after" else None)
        took = (time.perf_counter() - started) * 1000
        before = after if label == "newest" else before
        assert len(found) == PAGE and all(r[JobField.pipeline] == PIPELINES[0] for r in found)
        lines.append(f"listing: {label} {PAGE} jobs of {PIPELINES[0]!r} out of {JOBS_IN_ALL:,}: "
                     f"{counted.trips} Redis round trips, {took:.1f} ms")
    await client.aclose()
    return lines


def measure() -> list[str]:
    """The listing figures, on a Redis of their own."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="braid-listing-") as folder:
        server = subprocess.Popen(redis_command(port, Path(folder)), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(url)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            _fill(url)
            return asyncio.run(_pages(url))
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    print("\n".join(measure()))
