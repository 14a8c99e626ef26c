"""Streaming services: a source that yields tokens, sinks that read a stream as it is
written, and pipelines that join them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from app import Value, api, pipeline, service, step, stream


@service(timeout=30)
class Source:
    def __init__(self) -> None:
        pass

    @api
    def count(self, n: int, pause_s: float = 0.0, fail_at: int = -1) -> Iterator[str]:
        """``t0 ``, ``t1 ``, ... ``n`` tokens, ``pause_s`` apart; raises at ``fail_at``."""
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"token {i} is poisoned")
            if pause_s and i:
                time.sleep(pause_s)
            yield f"t{i} "


@service(timeout=30)
class Sink:
    def __init__(self) -> None:
        pass

    @api
    def upper(self, tokens: Iterator[str], fail_at: int = -1) -> Iterator[str]:
        """Each token upper-cased, as it comes; raises at the ``fail_at``-th."""
        for i, token in enumerate(tokens):
            if i == fail_at:
                raise ValueError(f"cannot upper-case token {i}")
            yield token.upper()

    @api
    def taken(self, tokens: Iterator[str], pause_s: float = 0.0) -> list[float]:
        """When it took each token (epoch seconds), ``pause_s`` per token: a slow reader."""
        times = []
        for _ in tokens:
            times.append(time.time())
            time.sleep(pause_s)
        return times


    @api
    async def aupper(self, tokens: AsyncIterator[str]) -> AsyncIterator[str]:
        """Each token upper-cased as it comes: an async generator reading an async
        iterator."""
        async for token in tokens:
            yield token.upper()

    @api
    async def joined(self, tokens: AsyncIterator[str]) -> str:
        """The tokens, joined once the last came: a coroutine reading an async iterator."""
        return "".join([token async for token in tokens])


@pipeline(name="stream-upper")
def stream_upper(n: int, pause_s: float = 0.0, fail_at: int = -1) -> Value[list[str]]:
    """Two streaming stages: the source's tokens, upper-cased as they come."""
    return step(Sink.upper, stream(Source.count, n, pause_s=pause_s), fail_at=fail_at)


@pipeline(name="stream-slow-reader")
def stream_slow_reader(n: int, pause_s: float) -> Value[list[float]]:
    """A fast source read by a slow reader."""
    return step(Sink.taken, stream(Source.count, n), pause_s=pause_s)


@pipeline(name="stream-async")
def stream_async(n: int, pause_s: float = 0.0) -> dict[str, Value[Any]]:
    """The source's tokens read by two async APIs at once: one streams them upper-cased,
    one joins them."""
    tokens = stream(Source.count, n, pause_s=pause_s)
    return {"upper": step(Sink.aupper, tokens), "joined": step(Sink.joined, tokens)}
