"""What the benchmark runs: each workload is a Braid pipeline and, where there is one, the
BentoML service and route that serve the same graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PAYLOAD = {"text": "hello", "n": 1}


@dataclass(frozen=True)
class Workload:
    name: str
    """The Braid pipeline (``bench/services.py``, ``bench/seed.py``)."""
    hops: int
    """Steps one job takes, the divisor of CPU per hop (the same for both systems)."""
    body: dict[str, Any]
    """The request body, the same for both systems."""
    peer: tuple[str, str] | None = None
    """The BentoML service in ``bench/bentoml_peer/service.py`` and its route."""


NOOP_GRAPH = Workload("noop-graph", 4, {"payload": PAYLOAD}, ("NoopGraph", "/run"))
SEED_GRAPH = Workload("inference-graph", 6, {"original_sentence": "I have an idea!"},
                      ("InferenceGraph", "/generate_score"))
# Braid alone: the 1-step floor and a long chain (no peer graphs for them)
NOOP_1 = Workload("noop-1", 1, {"payload": PAYLOAD})
NOOP_CHAIN_10 = Workload("noop-chain-10", 10, {"payload": PAYLOAD})

ALL = (NOOP_GRAPH, SEED_GRAPH, NOOP_1, NOOP_CHAIN_10)
PEERED = tuple(w for w in ALL if w.peer is not None)
