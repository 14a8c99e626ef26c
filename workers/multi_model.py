"""MultiModelService: two models in one service (scenario 2), loaded once per worker process."""

from __future__ import annotations

import os
from typing import Any

from app import Resources, api, device, models, service
from workers._embedding import Embedder
from workers._values import Text

LOADS = {"classifier": 0, "embedder": 0}


@service(resources=Resources(gpu=1, memory="4Gi"), timeout=30,
         models=["bert-sentiment:latest", "all-minilm-l6-v2:latest"])
class MultiModelService:
    def __init__(self) -> None:
        from transformers import pipeline

        self.classifier = pipeline("text-classification",
                                   model=str(models.get("bert-sentiment").path), device=device())
        LOADS["classifier"] += 1
        self.embedder = Embedder(models.get("all-minilm-l6-v2").path, device())
        LOADS["embedder"] += 1

    @api
    def process_a(self, text: Text) -> list[dict[str, Any]]:
        """Model A: sentiment labels and scores (a text longer than the model reads is
        truncated)."""
        return list(self.classifier(text, top_k=None, truncation=True))

    @api
    def process_b(self, text: Text) -> list[float]:
        """Model B: the MiniLM sentence embedding (384 floats, unit length)."""
        return [float(x) for x in self.embedder([text])[0]]

    @api
    def combined_process(self, text: Text) -> dict[str, Any]:
        """Both models on the same input, in one task."""
        return {"a": self.process_a(text), "b": self.process_b(text)}

    @api
    def loads(self) -> dict[str, int]:
        """How often this worker process loaded each model, and its pid."""
        return {**LOADS, "pid": os.getpid()}
