"""Push, not sleep: one Redis subscription per API process fans job events out to the
requests waiting on them; a sweeper fails jobs that passed their deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from app import JobState
from app._jobs import JobStore
from app._protocol import EVENTS

__all__ = ["Hub"]

log = logging.getLogger("braid.api")


class Hub:
    def __init__(self, pubsub_client: aioredis.Redis, store: JobStore, sweep_s: float,
                 pipelines: Sequence[str] = ()) -> None:
        self._client = pubsub_client
        self._store = store
        self._pipelines = list(pipelines)
        self._sweep_s = sweep_s
        self._watchers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self.listeners: list[Callable[[dict[str, Any]], Awaitable[None]]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._sweep())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 5)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task

    @contextlib.asynccontextmanager
    async def watch(self, job: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """Events of ``job`` from now on. Register before reading the job, so that none is
        missed between the read and the wait."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._watchers[job].add(queue)
        try:
            yield queue
        finally:
            self._watchers[job].discard(queue)
            if not self._watchers[job]:
                del self._watchers[job]

    def _wake_all(self) -> None:
        for job, queues in self._watchers.items():
            for q in queues:
                q.put_nowait({"job": job, "state": "resync", "step": None})

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(EVENTS)
                    self._ready.set()
                    self._wake_all()
                    backoff = 0.1
                    async for message in pubsub.listen():
                        data = json.loads(message["data"])
                        for q in self._watchers.get(data.get("job", ""), ()):
                            q.put_nowait(data)
                        for listener in self.listeners:
                            await listener(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event subscription lost (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_s)
            try:
                now = time.time()
                for job in await self._store.overdue(now):
                    await expire(self._store, job)
                await self._store.trim(now, self._pipelines)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("deadline sweep failed: %s", exc)


async def expire(store: JobStore, job: str) -> None:
    """Fail ``job`` for passing its deadline, unless it already ended."""
    ended = await store.end(job, JobState.failed, {
        "type": "DeadlineExceeded",
        "message": "the job did not finish before its deadline; a step may be stuck or its "
                   "queue has no worker (see /readyz), or raise the pipeline's deadline",
    })
    if isinstance(ended, str):
        await store.forget(job)
