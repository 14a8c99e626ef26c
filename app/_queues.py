"""What an autoscaler needs per service: queue depth (messages waiting in the queue plus
messages a worker reserved and has not acked yet) and live workers (from heartbeats)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from app._protocol import alive_key, processes_key
from app._service import ServiceSpec
from app._transport import UNACKED

__all__ = ["QueueStats", "live_processes", "queue_stats"]


@dataclass(frozen=True)
class QueueStats:
    waiting: int
    reserved: int
    workers: int

    @property
    def depth(self) -> int:
        return self.waiting + self.reserved

    def describe(self) -> dict[str, int]:
        return {"waiting": self.waiting, "reserved": self.reserved, "depth": self.depth,
                "live_workers": self.workers}


async def queue_stats(client: aioredis.Redis, specs: Sequence[ServiceSpec],
                      alive_within_s: float) -> dict[str, QueueStats]:
    """Per service name, its queue's stats now (one round trip plus the unacked scan)."""
    since = time.time() - alive_within_s
    async with client.pipeline(transaction=False) as pipe:
        for spec in specs:
            pipe.llen(spec.queue)
            pipe.zcount(alive_key(spec.name), since, "+inf")
        pipe.hvals(UNACKED)
        replies = await pipe.execute()
    reserved: dict[str, int] = {}
    for raw in replies[-1]:
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            continue
        reserved[routing_key] = reserved.get(routing_key, 0) + 1
    return {spec.name: QueueStats(int(replies[2 * i]), reserved.get(spec.queue, 0),
                                  int(replies[2 * i + 1]))
            for i, spec in enumerate(specs)}


async def live_processes(client: aioredis.Redis, specs: Sequence[ServiceSpec],
                         alive_within_s: float) -> dict[str, list[dict[str, Any]]]:
    """Per service name, its live workers' processes (process, node, device, the model
    tags it loaded, since when), in one round trip."""
    since = time.time() - alive_within_s
    async with client.pipeline(transaction=False) as pipe:
        for spec in specs:
            pipe.zrangebyscore(alive_key(spec.name), since, "+inf")
            pipe.hvals(processes_key(spec.name))
        replies = await pipe.execute()
    out: dict[str, list[dict[str, Any]]] = {}
    for i, spec in enumerate(specs):
        alive = {n.decode() if isinstance(n, bytes) else str(n) for n in replies[2 * i]}
        records = [json.loads(v) for v in replies[2 * i + 1]]
        out[spec.name] = [r for r in records if r.get("node") in alive]
    return out
