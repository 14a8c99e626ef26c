"""What the benchmark runs: each workload is a Braid pipeline (or one service API) and, where
there is one, the BentoML service and route that serve the same thing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PAYLOAD = {"text": "hello", "n": 1}


@dataclass(frozen=True)
class Workload:
    name: str
    """The Braid pipeline (``bench/services.py``, ``bench/seed.py``), or with ``api`` a label."""
    hops: int
    """Steps one job takes, the divisor of CPU per hop (the same for both systems)."""
    body: dict[str, Any]
    """The request body, the same for both systems."""
    peer: tuple[str, str] | None = None
    """The BentoML graph service (in ``bench/bentoml_peer/``) and its route."""
    api: str | None = None
    """``service/api``: a job of this one service API rather than of the pipeline ``name``."""

    @property
    def path(self) -> str:
        """Where Braid takes a job of it."""
        kind = f"services/{self.api}" if self.api else f"pipelines/{self.name}"
        return f"/v1/{kind}/jobs"


NOOP_GRAPH = Workload("noop-graph", 4, {"payload": PAYLOAD}, ("NoopGraph", "/run"))
SEED_GRAPH = Workload("inference-graph", 6, {"original_sentence": "I have an idea!"},
                      ("InferenceGraph", "/generate_score"))
# Braid alone: the 1-step floor and a long chain (no peer graphs for them)
NOOP_1 = Workload("noop-1", 1, {"payload": PAYLOAD})
NOOP_CHAIN_10 = Workload("noop-chain-10", 10, {"payload": PAYLOAD})

ALL = (NOOP_GRAPH, SEED_GRAPH, NOOP_1, NOOP_CHAIN_10)
PEERED = tuple(w for w in ALL if w.peer is not None)

# The burst: BURST_SIZE calls of one batched API at once, each its own job, distinct
# sentences (so no layer can answer one from another); BentoML-batched serves the same call
# through its graph service (``bench/bentoml_peer/batched.py``)
GPT2_GENERATE = Workload("gpt2.generate", 1, {"sentence": "I have an idea!"},
                         ("InferenceGraph", "/generate"), api="gpt2/generate")
BURST_SIZE = 100
BURST = tuple({"sentence": f"I have an idea number {i}!"} for i in range(BURST_SIZE))
