"""ModelBService: one of the ensemble's two models (scenario 4), a classifier over
embeddings."""

from __future__ import annotations

from app import Resources, api, device, models, service
from workers._head import Head
from workers._values import Embeddings, Probabilities


@service(resources=Resources(gpu=1, memory="2Gi"), timeout=30, models=["ensemble-head-b:latest"])
class ModelBService:
    def __init__(self) -> None:
        self.head = Head(models.get("ensemble-head-b").path, device())

    @api
    def predict(self, input_data: Embeddings) -> Probabilities:
        """Class probabilities (float32, one row per embedding)."""
        return self.head(input_data)
