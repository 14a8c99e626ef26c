"""InferenceService: class probabilities from embeddings (scenario 3's second step)."""

from __future__ import annotations

from app import Resources, api, device, models, service
from workers._head import Head
from workers._values import Embeddings, Probabilities


@service(resources=Resources(gpu=1, memory="2Gi"), timeout=30, models=["embedding-head:latest"])
class InferenceService:
    def __init__(self) -> None:
        self.head = Head(models.get("embedding-head").path, device())

    @api
    def predict(self, features: Embeddings) -> Probabilities:
        """Softmax class probabilities, one row per embedding."""
        return self.head(features)
