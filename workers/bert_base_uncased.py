"""BertBaseUncased: scores generated texts (scenario 5's map step)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Field

from app import Resources, api, device, models, service
from workers._batching import BATCH

Every = Annotated[int, Field(ge=1, le=64)]
"""How many chunks of a draft come between two scores."""


@service(resources=Resources(cpu=2, memory="2Gi"), timeout=30, models=["bert-sentiment:latest"])
class BertBaseUncased:
    def __init__(self) -> None:
        from transformers import pipeline

        self.pipe = pipeline("text-classification", model=str(models.get("bert-sentiment").path),
                             device=device())
        self._positive = int(self.pipe.model.config.label2id["POSITIVE"])

    @api(batch=BATCH)
    def classify_generated_texts(self, sentence: list[str]) -> list[float]:
        """The probability that ``sentence`` is POSITIVE (read up to the model's maximum
        length)."""
        results = self.pipe(sentence, top_k=None, truncation=True, batch_size=len(sentence))
        return [float({r["label"]: r["score"] for r in labels}["POSITIVE"]) for labels in results]

    @api
    def score_draft(self, tokens: Iterator[str], every: Every = 4) -> Iterator[dict[str, Any]]:
        """Scores a text as it is written: after every ``every`` chunks of ``tokens`` (and
        at its end), the text so far and the probability that it is POSITIVE (scenario 6)."""
        text, unscored = "", 0
        for token in tokens:
            text, unscored = text + token, unscored + 1
            if unscored == every:
                yield self._scored(text)
                unscored = 0
        if unscored or not text:
            yield self._scored(text)

    def _scored(self, text: str) -> dict[str, Any]:
        # the model called directly, not through the pipeline: what the pipeline adds around
        # one short text (its argument checks and pre- and post-processing steps) is a fifth
        # to a quarter of a score with this small model, and a draft is scored as it grows
        import torch

        model = self.pipe.model
        encoded = self.pipe.tokenizer(text, truncation=True, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            probabilities = model(**encoded).logits[0].softmax(-1)
        return {"text": text, "positive": float(probabilities[self._positive])}
