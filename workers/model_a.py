"""ModelAService: one of the ensemble's two models (scenario 4)."""

from __future__ import annotations

import numpy as np

from app import Resources, api, device, models, service
from workers._sentiment import Probabilities


@service(resources=Resources(gpu=1, memory="2Gi"), timeout=30, models=["bert-sentiment:latest"])
class ModelAService:
    def __init__(self) -> None:
        self.model = Probabilities(models.get("bert-sentiment").path, device())

    @api
    def predict(self, input_data: list[str]) -> np.ndarray:
        """Class probabilities (float32, one row per text)."""
        return np.asarray(self.model(input_data))
