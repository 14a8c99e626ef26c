"""A light arithmetic service for the composition tests."""

from __future__ import annotations

import random
import time
from typing import Any

from app import api, service
from tests.apps.basic import holding, mark


@service(timeout=10)
class Calc:
    def __init__(self) -> None:
        pass

    @api
    def add(self, a: int, b: int) -> int:
        return a + b

    @api
    def double(self, x: int) -> int:
        return 2 * x

    @api
    def delayed(self, i: int, max_ms: int = 20) -> int:
        time.sleep(random.uniform(0, max_ms) / 1000)
        return i

    @api
    def total(self, values: list[int]) -> int:
        return sum(values)

    @api
    def span(self, n: int) -> list[int]:
        return list(range(n))

    @api
    def collect(self, values: Any, key: str) -> Any:
        """Return ``values`` and count the call under ``key``."""
        mark(key)
        return values

    @api
    def pair(self, a: Any, b: Any) -> list[Any]:
        """A glue step: both values in a list; raises when they are equal."""
        if a == b:
            raise ValueError(f"cannot pair {a!r} with itself")
        return [a, b]

    @api
    def fail_if(self, x: int, bad: int) -> int:
        if x == bad:
            raise RuntimeError(f"element {x} is bad")
        return x

    @api(inline=True)
    def join(self, a: Any, b: Any) -> list[Any]:
        """Inline glue: both values in a list; raises when they are equal."""
        if a == b:
            raise ValueError(f"cannot join {a!r} with itself")
        return [a, b]

    @api(inline=True)
    def held(self, x: Any, key: str) -> Any:
        """Inline: counts a run under ``key``, then holds while ``test:hold:<key>`` exists
        (at most 20 s), and returns ``x``."""
        mark(key)
        deadline = time.monotonic() + 20
        while holding(key) and time.monotonic() < deadline:
            time.sleep(0.02)
        return x
