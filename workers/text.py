"""TextModel: sentiment of a text (scenario 1's text branch)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from app import Resources, api, device, models, service
from workers._batching import BATCH
from workers._values import Text


@service(resources=Resources(cpu=2, memory="2Gi"), timeout=20, models=["bert-sentiment:latest"])
class TextModel:
    def __init__(self) -> None:
        from transformers import pipeline

        self.pipe = pipeline("text-classification", model=str(models.get("bert-sentiment").path),
                             device=device())

    @api(batch=BATCH)
    def analyze_text(self, text: list[Text], top_k: Annotated[int, Field(ge=1, le=100)] = 1
                     ) -> list[list[dict[str, Any]]]:
        """The ``top_k`` best labels of ``text`` with their scores, best first (a text longer
        than the model reads is truncated)."""
        return [list(labels) for labels in
                self.pipe(text, top_k=top_k, truncation=True, batch_size=len(text))]
