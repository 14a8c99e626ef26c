"""DistilGPT2: a smaller text generator (scenario 5)."""

from __future__ import annotations

from app import Resources, api, service
from workers.gpt2 import _Generator


@service(resources=Resources(gpu=1, memory="2Gi"), timeout=60, models=["distilgpt2:latest"])
class DistilGPT2(_Generator):
    tag = "distilgpt2"

    @api
    def generate(self, sentence: str, max_new_tokens: int = 16,
                 num_return_sequences: int = 1) -> list[str]:
        """``num_return_sequences`` continuations of ``sentence`` (greedy for one), each
        ``max_new_tokens`` tokens longer."""
        return self._generate(sentence, max_new_tokens, num_return_sequences)
