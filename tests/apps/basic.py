"""Small services on several queues: echo and wire types, failures, sleeps, a GPU service."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import redis
from PIL import Image

from app import Resources, Retry, api, device, get_settings, service


def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().broker_url)


def holding(key: str) -> bool:
    """Whether a test holds the steps that wait on ``key`` (it set ``test:hold:<key>``)."""
    return bool(_redis().exists(f"test:hold:{key}"))


def mark(key: str) -> int:
    """Count an execution in Redis, so tests can prove what ran (and what never did)."""
    return int(_redis().incr(f"test:mark:{key}"))


def _ping(depth: int) -> int:
    if depth == 0:
        raise ValueError("bottom")
    return _pong(depth - 1)


def _pong(depth: int) -> int:
    return _ping(depth)


@service(timeout=10)
class Echo:
    def __init__(self) -> None:
        self.loads = mark("echo-loads")

    @api
    def echo(self, value: Any) -> Any:
        return value

    @api
    def arrays(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        return [a, b]

    @api
    def images(self, rgb: Image.Image, gray: Image.Image) -> list[Image.Image]:
        return [rgb, gray]

    @api
    def nbytes(self, data: bytes) -> int:
        return len(data)

    @api
    def big(self, n: int) -> bytes:
        return b"x" * n

    @api
    def boom(self, message: str) -> str:
        raise ValueError(message)

    @api
    async def aboom(self, message: str) -> str:
        """Raises, from a coroutine."""
        await asyncio.sleep(0)
        raise ValueError(message)

    @api
    def deep(self, depth: int) -> int:
        """Raises ValueError ``depth`` calls down (through two functions in turn, so that
        Python does not fold the traceback's repeated lines)."""
        return _ping(depth)

    @api
    def not_a_number(self) -> float:
        return float("nan")

    @api
    def mark(self, key: str) -> int:
        return mark(key)


class Transient(Exception):
    pass


@service(timeout=3)
class Slow:
    def __init__(self) -> None:
        pass

    @api
    def sleep(self, seconds: float, key: str = "slow", after: Any = None) -> float:
        """Sleep; ``after`` only orders this step after the one whose output it is."""
        mark(f"{key}:start")
        time.sleep(seconds)
        mark(f"{key}:end")
        return seconds

    @api
    async def asleep(self, seconds: float, key: str = "slow") -> float:
        """Sleep on the event loop (a coroutine API)."""
        mark(f"{key}:start")
        await asyncio.sleep(seconds)
        mark(f"{key}:end")
        return seconds

    @api
    def inc(self, x: int) -> int:
        return x + 1

    @api(retry=Retry(on=(Transient,), max_attempts=3, backoff_s=0.1))
    def flaky(self, key: str, failures: int) -> int:
        attempt = mark(key)
        if attempt <= failures:
            raise Transient(f"attempt {attempt} failed")
        return attempt


@service(resources=Resources(gpu=1, memory="1Gi"), timeout=10)
class GpuModel:
    def __init__(self) -> None:
        self.device = device()

    @api
    def where(self) -> str:
        return self.device


@service(timeout=10)
class Parked:
    """No worker serves it unless a test starts one: its queue shows what the broker holds."""

    def __init__(self) -> None:
        pass

    @api
    def size(self, data: bytes) -> int:
        return len(data)

    @api
    def mark(self, key: str) -> int:
        return mark(key)


@service(timeout=10, max_queued=2)
class Crowded:
    """At most two calls wait in its queue (no worker unless a test starts one)."""

    def __init__(self) -> None:
        pass

    @api
    def mark(self, key: str) -> int:
        return mark(key)


@service(resources=Resources(memory="600Mi"), timeout=30)
class Hungry:
    """Steps that take memory, under a guard of 600 MiB (no worker unless a test starts one)."""

    def __init__(self) -> None:
        pass

    @api
    def grow(self, mib: int) -> int:
        """Holds ``mib`` MiB, 16 MiB at a time."""
        held = []
        for _ in range(0, mib, 16):
            held.append(bytearray(16 << 20))
            time.sleep(0.01)
        return len(held) * 16


@service(timeout=15)
class Patient:
    """Long steps, for graceful-shutdown tests (no worker unless a test starts one)."""

    def __init__(self) -> None:
        pass

    @api
    def wait(self, seconds: float, key: str) -> float:
        mark(f"{key}:start")
        time.sleep(seconds)
        mark(f"{key}:end")
        return seconds

    @api
    def nap(self, seconds: float) -> float:
        """Sleep, touching nothing else (Redis may be down meanwhile)."""
        time.sleep(seconds)
        return seconds


@service(timeout=10)
class SlowStart:
    """Takes seconds to load its model (no worker unless a test starts one)."""

    def __init__(self) -> None:
        time.sleep(4)

    @api
    def ok(self) -> bool:
        return True


@service(timeout=1)
class Stubborn:
    """A step that ignores its soft time limit (no worker unless a test starts one)."""

    def __init__(self) -> None:
        pass

    @api
    def hold(self, seconds: float) -> float:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                time.sleep(end - time.monotonic())
            except BaseException:  # the point: it swallows the interrupt
                continue
        return seconds
