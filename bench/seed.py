"""The seed inference graph, served with only the services it needs.

``braid up --app bench.seed`` starts GPT2, DistilGPT2, BertBaseUncased and Aggregator (and the
built-in service), not every demo model: thirteen model workers take over a minute to start on
two cores, and the idle ones would add noise to the figures.
"""

from __future__ import annotations

from typing import Any

from app import Value, pipeline
from workers import pipelines as _seed


@pipeline(name="inference-graph")
def inference_graph(original_sentence: str = "I have an idea!") -> Value[list[dict[str, Any]]]:
    """Braid's seed inference graph, declared by calling ``workers.pipelines``' own function so
    the two cannot drift apart: two generators in parallel, concat, a BERT score per text, pair.

    It replaces the ``inference-graph`` that importing ``workers.pipelines`` declared, with the
    same graph; the registry serves it because it lives in this module, and with it only the
    services it uses.
    """
    return _seed.inference_graph(original_sentence)


@pipeline(name="draft-and-score")
def draft_and_score(prompt: str = "I have an idea!", max_new_tokens: int = 32,
                    every: int = 4) -> Value[list[dict[str, Any]]]:
    """Scenario 6 (GPT-2 streaming its draft into BERT), for the streaming figures."""
    return _seed.draft_and_score(prompt, max_new_tokens, every)
