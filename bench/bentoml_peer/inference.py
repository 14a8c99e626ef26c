"""What the stock peer (``service.py``) and the batched one (``batched.py``) beside this file
share: the services' configuration and the seed graph's model code (Braid's stand-in models,
with the settings of Braid's workers). It imports neither Braid nor BentoML."""

from __future__ import annotations

import os
from typing import Any

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


def pipeline(task: str, variable: str) -> Any:
    """The transformers pipeline for ``task`` on the model folder named by env ``variable``."""
    import torch
    import transformers

    torch.set_num_threads(1)  # as Braid's workers: more threads than cores make p99 far worse
    return transformers.pipeline(task, model=os.environ[variable], device="cpu")


class Generator:
    """Text generation on the model folder named by ``variable``."""

    variable = ""

    def __init__(self) -> None:
        self.pipe = pipeline("text-generation", self.variable)
        # a batch's shorter prompts are padded on the left, so that every prompt ends where
        # generation starts (the stand-ins have a pad token); one prompt has no padding
        self.pipe.tokenizer.padding_side = "left"

    def generate_one(self, sentence: str, max_new_tokens: int,
                     num_return_sequences: int) -> list[str]:
        # the settings of workers/gpt2.py: greedy unless several sequences are asked for
        outputs = self.pipe(sentence, max_new_tokens=max_new_tokens,
                            do_sample=num_return_sequences > 1,
                            num_return_sequences=num_return_sequences)
        return [str(o["generated_text"]) for o in outputs]

    def generate_batch(self, sentences: list[str]) -> list[list[str]]:
        """One greedy sequence of ``MAX_NEW_TOKENS`` for each sentence, in one model call."""
        outputs = self.pipe(sentences, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                            batch_size=len(sentences))
        return [[str(o["generated_text"]) for o in one] for one in outputs]


class Classifier:
    """Sentiment on the BERT stand-in: the POSITIVE probability, as workers/bert_base_uncased.py."""

    def __init__(self) -> None:
        self.pipe = pipeline("text-classification", "BENCH_BERT_MODEL")

    def positive(self, sentence: str) -> float:
        return _positive(self.pipe(sentence, top_k=None))

    def positive_batch(self, sentences: list[str]) -> list[float]:
        """:meth:`positive` of each sentence, in one model call."""
        return [_positive(one) for one in self.pipe(sentences, top_k=None,
                                                    batch_size=len(sentences))]


def _positive(results: list[dict[str, Any]]) -> float:
    return float({r["label"]: r["score"] for r in results}["POSITIVE"])
