"""The burst: ``BURST_SIZE`` calls of one batched API sent at once, each its own job; the
figure is the wall time until every one has answered (a batching worker runs them in a few
model calls, an unbatched one in as many as there are calls)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.systems import System
from bench.workloads import BURST, GPT2_GENERATE

LABEL = f"{len(BURST)} x {GPT2_GENERATE.name}"


@dataclass(frozen=True)
class Burst:
    """What one burst measured."""

    seconds: float
    """From the first request sent to the last answer."""
    results: list[Any]
    """Each call's result, in the order of ``BURST``; None where it failed."""
    errors: int
    first_error: str | None


async def burst(system: System) -> Burst:
    """Send every body of ``BURST`` to ``GPT2_GENERATE`` on ``system`` at once."""
    limits = httpx.Limits(max_connections=len(BURST) + 4, max_keepalive_connections=len(BURST) + 4)
    async with httpx.AsyncClient(timeout=90, limits=limits) as http:
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(system.call(http, GPT2_GENERATE, body) for body in BURST),
                                        return_exceptions=True)
        seconds = time.perf_counter() - started
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    first = f"{type(failed[0]).__name__}: {failed[0]}"[:300] if failed else None
    return Burst(seconds, [None if isinstance(o, BaseException) else o for o in outcomes],
                 len(failed), first)


def line(system: System, b: Burst) -> str:
    text = f"{system.name:<15} burst {LABEL:<16}    {b.seconds:6.2f} s until all answered"
    if b.errors:
        text += f"  errors={b.errors} (first: {b.first_error})"
    return text


def agreement(names: Sequence[str], bursts: Sequence[Burst]) -> str:
    """How many of each system's burst results equal the first system's (the same models and
    settings: batched or not, the answers should be the same)."""
    first = bursts[0].results
    counts = [f"{name} {sum(a is not None and a == b for a, b in zip(first, o.results, strict=True))}"
              f"/{len(first)}" for name, o in zip(names[1:], bursts[1:], strict=True)]
    return f"burst results equal to {names[0]}'s: {', '.join(counts)}"
