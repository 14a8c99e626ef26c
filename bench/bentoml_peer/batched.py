"""The seed inference graph served with BentoML's adaptive batching: the "BentoML-batched"
peer of ``python -m bench --against bentoml``.

The graph of ``service.py``'s ``InferenceGraph`` (GPT2 and DistilGPT2 concurrently, a BERT score
per generated text, paired) on the same models and settings, but each model's API is
``batchable``: it takes and returns a list, and BentoML's dispatcher merges the lists of the
calls that reach it together into one model call of up to ``MAX_BATCH_SIZE`` items, as Braid's
batched APIs do. The graph still calls them one item at a time; its ``generate`` passes one
sentence on to GPT2.generate, the call the bench's burst sends.

A batchable API takes one argument, so the generators run with their defaults only (greedy, one
sequence of ``MAX_NEW_TOKENS``), which is all the graph asks for.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import bentoml
from inference import ONE_PROCESS, Classifier, Generator  # the working dir: bench/bentoml_peer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MAX_BATCH_SIZE = 16  # Braid's Batch(max_size=16, ...) on the same APIs
# BentoML's max_latency_ms is not Braid's (how long a batch waits for more calls) but a
# deadline: its dispatcher answers 503 for a call it expects to finish later than that after
# it arrived (its wait plus its estimate of the batch's run time, which grows with the queue),
# and learns how long to wait on its own. At Braid's 10 ms it refused over 90% of 8 clients'
# calls here (one GPT-2 call takes about 8 ms), and at 1 s most of a burst of 100, so it keeps
# its default of 60 s: it refuses none.
MAX_LATENCY_MS = int(os.environ.get("BENCH_BENTOML_MAX_LATENCY_MS", "60000"))
BATCHED = bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE,
                      max_latency_ms=MAX_LATENCY_MS)


@bentoml.service(**ONE_PROCESS)
class GPT2(Generator):
    variable = "BENCH_GPT2_MODEL"

    @BATCHED
    def generate(self, sentences: list[str]) -> list[list[str]]:
        return self.generate_batch(sentences)


@bentoml.service(**ONE_PROCESS)
class DistilGPT2(Generator):
    variable = "BENCH_DISTILGPT2_MODEL"

    @BATCHED
    def generate(self, sentences: list[str]) -> list[list[str]]:
        return self.generate_batch(sentences)


@bentoml.service(**ONE_PROCESS)
class BertBaseUncased(Classifier):
    @BATCHED
    def classify_generated_texts(self, sentences: list[str]) -> list[float]:
        return self.positive_batch(sentences)


@bentoml.service(**ONE_PROCESS)
class InferenceGraph:
    gpt2_generator = bentoml.depends(GPT2)
    distilgpt2_generator = bentoml.depends(DistilGPT2)
    bert_classifier = bentoml.depends(BertBaseUncased)

    @bentoml.api
    async def generate_score(self, original_sentence: str = "I have an idea!") -> list[dict[str, Any]]:
        generated = await asyncio.gather(
            self.gpt2_generator.to_async.generate(sentences=[original_sentence]),
            self.distilgpt2_generator.to_async.generate(sentences=[original_sentence]),
        )
        texts = [text for batch in generated for text in batch[0]]
        scores = await asyncio.gather(
            *(self.bert_classifier.to_async.classify_generated_texts(sentences=[t]) for t in texts))
        return [{"generated": t, "score": s[0]} for t, s in zip(texts, scores, strict=True)]

    @bentoml.api
    async def generate(self, sentence: str) -> list[str]:
        """GPT2.generate for one sentence: the route the bench's burst of calls goes to."""
        texts: list[list[str]] = await self.gpt2_generator.to_async.generate(sentences=[sentence])
        return texts[0]
