"""The load client: N closed-loop clients, each sending its next request when the last one
answered, for a fixed time; the same code drives every system under test."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Window:
    """What one load window measured."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    cpu_s: float | None = None  # the system's CPU over the window, where it could be read
    first_error: str | None = None

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def p99_ms(self) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000

    @property
    def rate(self) -> float:
        """Successful jobs per second."""
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_ms_per_job(self) -> float | None:
        if self.cpu_s is None or not self.latencies:
            return None
        return self.cpu_s * 1000 / len(self.latencies)


async def closed_loop(concurrency: int, seconds: float,
                      one: Callable[[], Awaitable[object]]) -> Window:
    """Run ``one`` back to back from ``concurrency`` clients for ``seconds``; an exception is an
    error (counted, not retried faster: a client that fails pauses briefly)."""
    window = Window()
    started = time.monotonic()
    stop = started + seconds

    async def client() -> None:
        while time.monotonic() < stop:
            sent = time.perf_counter()
            try:
                await one()
            except Exception as exc:
                window.errors += 1
                window.first_error = window.first_error or f"{type(exc).__name__}: {exc}"[:300]
                await asyncio.sleep(0.05)
                continue
            window.latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    window.elapsed = time.monotonic() - started
    return window
