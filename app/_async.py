"""``async def`` APIs in a worker, whose steps run synchronously: a coroutine is run on an
event loop of its call's own, an async generator's chunks are taken one by one on one, and
a stream it reads (a parameter typed ``AsyncIterator[T]``) is given as an async iterator
whose waits for the next chunk run in a thread, so the loop goes on meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

__all__ = ["is_async", "synchronous"]

_DONE = object()


def is_async(func: Callable[..., Any]) -> bool:
    """Whether ``func`` is an ``async def`` (a coroutine or an async generator function)."""
    return inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)


async def _chunks_of(items: Iterable[Any]) -> AsyncIterator[Any]:
    """``items`` as an async iterator: each ``next`` (a read that may wait for the stream's
    writer) in the loop's default thread pool."""
    it = iter(items)
    while (item := await asyncio.to_thread(next, it, _DONE)) is not _DONE:
        yield item


def _wrapped(kwargs: dict[str, Any], streams: tuple[str, ...]) -> dict[str, Any]:
    return {k: _chunks_of(v) if k in streams else v for k, v in kwargs.items()}


def synchronous(func: Callable[..., Any], streams: tuple[str, ...]) -> Callable[..., Any]:
    """``func`` as the step calls it: itself if it is a plain method, else a function that
    runs it to its end (an async generator: a generator of its chunks); the arguments named
    in ``streams`` (iterables) become async iterators."""
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        def chunks(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with asyncio.Runner() as runner:
                agen = func(*args, **_wrapped(kwargs, streams))
                try:
                    while True:
                        try:
                            yield runner.run(agen.__anext__())
                        except StopAsyncIteration:
                            return
                finally:  # (a failed close must not hide why the step stopped)
                    with contextlib.suppress(Exception):
                        runner.run(agen.aclose())

        return chunks
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(func(*args, **_wrapped(kwargs, streams)))

        return call
    return func
