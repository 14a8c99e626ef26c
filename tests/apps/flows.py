"""Pipelines exercising every canvas shape: chain, group, chord, map and graphs."""

from __future__ import annotations

from typing import Any

from app import Value, each, pipeline, step
from tests.apps.basic import Echo, Slow
from tests.apps.calc import Calc


@pipeline(name="chain-3")
def chain_3(x: int) -> Value[int]:
    """calc -> echo -> slow: (2x) echoed, plus one."""
    doubled = step(Calc.double, x)
    echoed = step(Echo.echo, doubled)
    return step(Slow.inc, echoed)


@pipeline(name="parallel-200")
def parallel_200(max_ms: int = 20) -> list[Value[int]]:
    return [step(Calc.delayed, i, max_ms) for i in range(200)]


@pipeline(name="join-200")
def join_200(max_ms: int = 20) -> Value[int]:
    return step(Calc.total, [step(Calc.delayed, i, max_ms) for i in range(200)])


@pipeline(name="mapped")
def mapped(n: int, key: str) -> Value[Any]:
    items = step(Calc.span, n)
    return step(Calc.collect, each(Calc.double, items), key)


@pipeline(name="graph")
def graph(x: int, y: int, key: str) -> Value[Any]:
    """parallel(A, B) -> map(C) -> D"""
    a = step(Calc.span, x)
    b = step(Calc.span, y)
    both = step(Calc.collect, [a, b], "graph-join")
    lengths = each(Calc.total, both)
    return step(Calc.collect, lengths, key)


@pipeline(name="map-input")
def map_input(xs: list[int]) -> Value[list[int]]:
    """A map over a pipeline input: no step produced the list, the built-in map task expands it."""
    return each(Calc.double, xs)


@pipeline(name="map-last")
def map_last(n: int) -> Value[list[int]]:
    """A map that ends the pipeline: its elements are the last steps."""
    return each(Calc.double, step(Calc.span, n))


@pipeline(name="map-and-list")
def map_and_list(n: int) -> dict[str, Value[Any]]:
    """Both the list and the map over it are part of the result."""
    items = step(Calc.span, n)
    return {"items": items, "doubled": each(Calc.double, items)}


@pipeline(name="glue-raises")
def glue_raises(x: int, y: int, key: str) -> Value[Any]:
    """Two steps in parallel, a glue step that joins them (and raises if they are equal)."""
    joined = step(Calc.pair, step(Calc.double, x), step(Calc.double, y))
    return step(Calc.collect, joined, key)


@pipeline(name="fail-in-join")
def fail_in_join(x: int, key: str) -> Value[Any]:
    bad = step(Calc.fail_if, x, 1)
    good = step(Calc.double, x)
    return step(Calc.collect, [bad, good], key)


@pipeline(name="fail-in-map")
def fail_in_map(n: int, bad: int, key: str) -> Value[Any]:
    checked = each(Calc.fail_if, step(Calc.span, n), bad)
    return step(Calc.collect, checked, key)


@pipeline(name="fail-before-parallel")
def fail_before_parallel(x: int, key1: str, key2: str) -> list[Value[Any]]:
    a = step(Calc.fail_if, x, x)
    return [step(Calc.collect, a, key1), step(Calc.collect, a, key2)]


@pipeline(name="four-steps")
def four_steps(first: float, second: float, key: str) -> Value[Any]:
    """slow -> slow -> calc -> calc; steps 3 and 4 count their runs as ``<key>``."""
    s1 = step(Slow.sleep, first, "four:1")
    s2 = step(Slow.sleep, second, "four:2", after=s1)
    s3 = step(Calc.collect, s2, key)
    return step(Calc.collect, s3, key)


@pipeline(name="hang")
def hang(seconds: float) -> Value[float]:
    return step(Slow.sleep, seconds, "hang")


@pipeline(name="retrying")
def retrying(key: str, failures: int) -> Value[int]:
    return step(Slow.flaky, key, failures)


@pipeline(name="deadlined", deadline=1.5)
def deadlined(seconds: float) -> Value[float]:
    """Fails after 1.5 s whatever its steps' own timeouts say."""
    return step(Slow.sleep, seconds, "deadlined")
