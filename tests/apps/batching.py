"""A batched service, and pipelines that run its steps in a chain, a chord and a map."""

from __future__ import annotations

import time
from typing import Any

from app import Batch, Value, api, each, pipeline, service, step
from tests.apps.basic import mark
from tests.apps.calc import Calc

POISON = 13

# a large latency: a test that sees a lone call start at once knows it did not wait for it
BATCH = Batch(max_size=8, max_latency_ms=2000)
# no wait at all: a busy model's next batch runs with what has come
NO_WAIT = Batch(max_size=8, max_latency_ms=0)


@service(timeout=20)
class Batcher:
    """Steps that batch: each model call takes a list, one entry per step."""

    def __init__(self) -> None:
        pass

    @api(batch=BATCH)
    def double(self, xs: list[int]) -> list[int]:
        """2x per call; a batch holding POISON raises as a whole (as a model would)."""
        if POISON in xs:
            raise ValueError(f"{POISON} poisons the batch")
        return [2 * x for x in xs]

    @api(batch=BATCH)
    def lone(self, xs: list[int]) -> list[int]:
        """Its identity (only the lone-call test calls it: its batches are its own)."""
        return xs

    @api(batch=BATCH)
    def hold(self, seconds: list[float], key: str) -> list[float]:
        """Sleeps as long as the longest call asks, counting one run per call as ``key``."""
        time.sleep(max(seconds))
        for _ in seconds:
            mark(key)
        return seconds

    @api(batch=NO_WAIT)
    def rush(self, seconds: list[float]) -> list[float]:
        """Sleeps as long as the longest call asks; its batches never wait for more calls."""
        time.sleep(max(seconds))
        return seconds


@pipeline(name="batched-chain")
def batched_chain(x: int) -> Value[int]:
    return step(Batcher.double, step(Batcher.double, x))


@pipeline(name="batched-chord")
def batched_chord(x: int, y: int) -> Value[Any]:
    return step(Calc.pair, step(Batcher.double, x), step(Batcher.double, y))


@pipeline(name="batched-map")
def batched_map(n: int) -> Value[list[int]]:
    return each(Batcher.double, step(Calc.span, n))


@pipeline(name="batched-bad-input")
def batched_bad_input() -> Value[int]:
    """Passes a text where the batched API takes an int: its worker refuses the input."""
    return step(Batcher.double, step(Calc.collect, "not a number", "bad-input"))


@pipeline(name="inline-join")
def inline_join(x: int, y: int) -> Value[Any]:
    """Two batched steps, then an inline one (their chord's body)."""
    return step(Calc.join, step(Batcher.double, x), step(Batcher.double, y))


@pipeline(name="inline-held")
def inline_held(x: int, key: str) -> Value[Any]:
    """A batched step, then an inline one that holds (the next of its chain)."""
    return step(Calc.held, step(Batcher.double, x), key)
