"""Aggregator: light glue and aggregation steps of the demo pipelines, on a CPU queue.

Each is inline: a pipeline step of it runs in the worker that finished its inputs (no hop
through the aggregator queue); the aggregator's own workers run direct calls of it."""

from __future__ import annotations

from typing import Any

import numpy as np

from app import Resources, api, service
from workers._values import Probabilities


@service(resources=Resources(cpu=1), timeout=10)
class Aggregator:
    def __init__(self) -> None:
        pass

    @api(inline=True)
    def average(self, a: Probabilities, b: Probabilities) -> Probabilities:
        """The ensemble's aggregation: ``(a + b) / 2`` of two models' probabilities."""
        if a.shape != b.shape:
            raise ValueError(f"cannot average arrays of shapes {a.shape} and {b.shape}")
        return np.asarray((a + b) / 2, dtype=np.result_type(a, b))

    @api(inline=True)
    def concat(self, a: list[str], b: list[str]) -> list[str]:
        """Both lists, one after the other."""
        return [*a, *b]

    @api(inline=True)
    def pair(self, texts: list[str], scores: list[float]) -> list[dict[str, Any]]:
        """``[{generated, score}, ...]``."""
        return [{"generated": t, "score": s} for t, s in zip(texts, scores, strict=True)]
