"""What ``braid status`` shows: per service its queue depth, its live workers and the devices
and model versions of their processes (from Redis, wherever the workers run), and, when a
``braid up`` runs from the state dir, the state of each of its supervisord programs."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from app._models import ModelStore
from app._queues import QueueStats, queue_stats
from app._registry import CORE
from app._service import ServiceSpec
from app._settings import Settings
from app._supervisor import worker_group

__all__ = ["program_lines", "queues", "service_table"]


def queues(settings: Settings, specs: Sequence[ServiceSpec]) -> dict[str, QueueStats]:
    """Each service's queue stats now; live workers are those seen within three beats."""

    async def read() -> dict[str, QueueStats]:
        client = aioredis.Redis.from_url(settings.broker_url, socket_connect_timeout=2)
        try:
            return await queue_stats(client, specs, settings.alive_window_s)
        finally:
            await client.aclose()

    return asyncio.run(read())


def _label(spec: ServiceSpec) -> str:
    return f"{spec.name} (internal: maps)" if spec is CORE else spec.name


def _devices(processes: list[dict[str, Any]]) -> str:
    counts = collections.Counter(str(p.get("device", "?")) for p in processes)
    return ", ".join(d if n == 1 else f"{d} x{n}" for d, n in sorted(counts.items())) or "-"


def _models(spec: ServiceSpec, processes: list[dict[str, Any]], store: ModelStore) -> str:
    """The loaded versions, each with the store's newer ``latest`` where the service asks for
    ``latest`` and has not loaded it (it serves it once restarted)."""
    loaded = sorted({tag for p in processes for tag in p.get("models", [])})
    follows_latest = {t.partition(":")[0] for t in spec.models if t.partition(":")[2] in ("", "latest")}
    shown = []
    for tag in loaded:
        name = tag.partition(":")[0]
        newest = store.find(name) if name in follows_latest else None
        shown.append(tag if newest is None or newest.tag == tag
                     else f"{tag} (latest is {newest.version})")
    return ", ".join(shown) or "-"


def _states(spec: ServiceSpec, programs: list[dict[str, Any]]) -> str:
    counts = collections.Counter(p["statename"] for p in programs
                                 if p["group"] == worker_group(spec.name))
    if list(counts.values()) == [1]:
        return str(next(iter(counts)))
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "-"


def service_table(specs: Sequence[ServiceSpec], stats: dict[str, QueueStats],
                  processes: dict[str, list[dict[str, Any]]], store: ModelStore,
                  programs: list[dict[str, Any]] | None) -> list[str]:
    """One line per service (and a header): depth, live workers, devices, models and, with
    ``programs`` (supervisord's processes), the states of its worker programs."""
    header = ["SERVICE", "DEPTH", "WORKERS", "DEVICES", "MODELS"]
    rows = []
    for spec in specs:
        mine = processes.get(spec.name, [])
        stat = stats.get(spec.name, QueueStats(0, 0, 0))
        row = [_label(spec), str(stat.depth), str(stat.workers), _devices(mine),
               _models(spec, mine, store)]
        rows.append(row + ([_states(spec, programs)] if programs is not None else []))
    if programs is not None:
        header.append("PROGRAMS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 2}
    return ["  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                      for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in [header, *rows]]


def program_lines(programs: list[dict[str, Any]]) -> list[str]:
    """supervisord's state of the programs that are not workers (Redis, the API, Flower)."""
    others = [p for p in programs if not p["group"].startswith("worker-")]
    width = max((len(p["name"]) for p in others), default=0)
    return [f"{p['name']:<{width}}  {p['statename']:<8}  {p['description']}" for p in others]
