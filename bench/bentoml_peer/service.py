"""Braid's two benchmark graphs as BentoML services: the peer that ``python -m bench --against
bentoml`` measures Braid against.

This file runs in the BentoML venv the bench makes (it does not import Braid), one process per
service (``workers=1``, BentoML's default of one thread for sync APIs):

- ``NoopGraph``: A, then B and C concurrently on A's output, then C.join; each of NoopA, NoopB,
  NoopC is its own service with the same trivial functions as ``bench/services.py``.
- ``InferenceGraph``: BentoML's documented inference-graph example on Braid's stand-in models:
  GPT2 and DistilGPT2 concurrently, then a BERT score for each generated text.

The model folders come from Braid's model store through ``BENCH_GPT2_MODEL``,
``BENCH_DISTILGPT2_MODEL`` and ``BENCH_BERT_MODEL``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import bentoml
from noop import a, b, c, join  # the working dir: bench/bentoml_peer

# nothing may reach for the hub (the models are local folders)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MAX_NEW_TOKENS = 16  # workers/gpt2.py's default
ONE_PROCESS: dict[str, Any] = {
    "workers": 1,
    # no access log line per request: Braid's bench runs at log level WARNING
    "logging": {"access": {"enabled": False}},
    # BentoML 1.4.40 replaces a dependency's client session every 100 requests (and every
    # 300 s) by closing it, which aborts the calls still in flight on it ("Server
    # disconnected", HTTP 500) once calls overlap; one session for the whole run avoids that
    "runner_connection": {"max_requests": 1_000_000_000, "max_age": 1e9},
}


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


def _pipeline(task: str, variable: str) -> Any:
    import torch
    import transformers

    torch.set_num_threads(1)  # as Braid's workers: more threads than cores make p99 far worse
    return transformers.pipeline(task, model=os.environ[variable], device="cpu")


class _Generator:
    variable = ""

    def __init__(self) -> None:
        self.pipe = _pipeline("text-generation", self.variable)

    def _generate(self, sentence: str, max_new_tokens: int, num_return_sequences: int) -> list[str]:
        # the settings of workers/gpt2.py: greedy unless several sequences are asked for
        outputs = self.pipe(sentence, max_new_tokens=max_new_tokens,
                            do_sample=num_return_sequences > 1,
                            num_return_sequences=num_return_sequences)
        return [str(o["generated_text"]) for o in outputs]


@bentoml.service(**ONE_PROCESS)
class GPT2(_Generator):
    variable = "BENCH_GPT2_MODEL"

    @bentoml.api
    def generate(self, sentence: str, max_new_tokens: int = MAX_NEW_TOKENS,
                 num_return_sequences: int = 1) -> list[str]:
        return self._generate(sentence, max_new_tokens, num_return_sequences)


@bentoml.service(**ONE_PROCESS)
class DistilGPT2(_Generator):
    variable = "BENCH_DISTILGPT2_MODEL"

    @bentoml.api
    def generate(self, sentence: str, max_new_tokens: int = MAX_NEW_TOKENS,
                 num_return_sequences: int = 1) -> list[str]:
        return self._generate(sentence, max_new_tokens, num_return_sequences)


@bentoml.service(**ONE_PROCESS)
class BertBaseUncased:
    def __init__(self) -> None:
        self.pipe = _pipeline("text-classification", "BENCH_BERT_MODEL")

    @bentoml.api
    def classify_generated_texts(self, sentence: str) -> float:
        # workers/bert_base_uncased.py: the POSITIVE probability
        scores = {r["label"]: r["score"] for r in self.pipe(sentence, top_k=None)}
        return float(scores["POSITIVE"])


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
