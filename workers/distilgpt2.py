"""DistilGPT2: a smaller text generator (scenario 5)."""

from __future__ import annotations

from app import Resources, api, service
from workers._batching import BATCH
from workers._values import Prompt
from workers.gpt2 import NewTokens, Sequences, _Generator


@service(resources=Resources(gpu=1, memory="2Gi"), timeout=60, models=["distilgpt2:latest"])
class DistilGPT2(_Generator):
    tag = "distilgpt2"

    @api(batch=BATCH)
    def generate(self, sentence: list[Prompt], max_new_tokens: NewTokens = 16,
                 num_return_sequences: Sequences = 1,
                 do_sample: bool = False) -> list[list[str]]:
        """``num_return_sequences`` continuations of ``sentence``, each ``max_new_tokens``
        tokens longer: the most likely ones (greedy, or beam search for several), or sampled
        with ``do_sample``. A prompt longer than the model reads loses its start."""
        return self._generate(sentence, max_new_tokens, num_return_sequences, do_sample)
