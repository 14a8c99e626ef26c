"""Braid's two benchmark graphs as BentoML services: the peer that ``python -m bench --against
bentoml`` measures Braid against.

This file runs in the BentoML venv the bench makes (it does not import Braid), one process per
service (``workers=1``, BentoML's default of one thread for sync APIs):

- ``NoopGraph``: A, then B and C concurrently on A's output, then C.join; each of NoopA, NoopB,
  NoopC is its own service with the same trivial functions as ``bench/services.py``.
- ``InferenceGraph``: BentoML's documented inference-graph example on Braid's stand-in models:
  GPT2 and DistilGPT2 concurrently, then a BERT score for each generated text. ``batched.py``
  serves the same graph with BentoML's adaptive batching.

The model folders come from Braid's model store through ``BENCH_GPT2_MODEL``,
``BENCH_DISTILGPT2_MODEL`` and ``BENCH_BERT_MODEL``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import bentoml
from inference import MAX_NEW_TOKENS, ONE_PROCESS, Classifier, Generator
from noop import a, b, c, join  # the working dir: bench/bentoml_peer

# nothing may reach for the hub (the models are local folders)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# sync APIs like Braid's: a worker runs one call at a time
@bentoml.service(**ONE_PROCESS)
class NoopA:
    @bentoml.api
    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        return a(payload)


@bentoml.service(**ONE_PROCESS)
class NoopB:
    @bentoml.api
    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        return b(payload)


@bentoml.service(**ONE_PROCESS)
class NoopC:
    @bentoml.api
    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        return c(payload)

    @bentoml.api
    def join(self, left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
        return join(left, right)


@bentoml.service(**ONE_PROCESS)
class NoopGraph:
    noop_a = bentoml.depends(NoopA)
    noop_b = bentoml.depends(NoopB)
    noop_c = bentoml.depends(NoopC)

    @bentoml.api
    async def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        first = await self.noop_a.to_async.run(payload=payload)
        left, right = await asyncio.gather(self.noop_b.to_async.run(payload=first),
                                           self.noop_c.to_async.run(payload=first))
        return await self.noop_c.to_async.join(left=left, right=right)


@bentoml.service(**ONE_PROCESS)
class GPT2(Generator):
    variable = "BENCH_GPT2_MODEL"

    @bentoml.api
    def generate(self, sentence: str, max_new_tokens: int = MAX_NEW_TOKENS,
                 num_return_sequences: int = 1) -> list[str]:
        return self.generate_one(sentence, max_new_tokens, num_return_sequences)


@bentoml.service(**ONE_PROCESS)
class DistilGPT2(Generator):
    variable = "BENCH_DISTILGPT2_MODEL"

    @bentoml.api
    def generate(self, sentence: str, max_new_tokens: int = MAX_NEW_TOKENS,
                 num_return_sequences: int = 1) -> list[str]:
        return self.generate_one(sentence, max_new_tokens, num_return_sequences)


@bentoml.service(**ONE_PROCESS)
class BertBaseUncased(Classifier):
    @bentoml.api
    def classify_generated_texts(self, sentence: str) -> float:
        return self.positive(sentence)


@bentoml.service(**ONE_PROCESS)
class InferenceGraph:
    gpt2_generator = bentoml.depends(GPT2)
    distilgpt2_generator = bentoml.depends(DistilGPT2)
    bert_classifier = bentoml.depends(BertBaseUncased)

    @bentoml.api
    async def generate_score(self, original_sentence: str = "I have an idea!") -> list[dict[str, Any]]:
        generated = await asyncio.gather(
            self.gpt2_generator.to_async.generate(sentence=original_sentence),
            self.distilgpt2_generator.to_async.generate(sentence=original_sentence),
        )
        texts = [text for texts in generated for text in texts]
        # the docs' example awaits the scores one by one; Braid's `each` maps them in
        # parallel, so they are gathered here to keep the two graphs the same shape
        scores = await asyncio.gather(
            *(self.bert_classifier.to_async.classify_generated_texts(sentence=t) for t in texts))
        return [{"generated": t, "score": s} for t, s in zip(texts, scores, strict=True)]
