"""InferenceService: class probabilities from embeddings (scenario 3's second step)."""

from __future__ import annotations

import json
from typing import Annotated

import numpy as np

from app import Array, Resources, api, device, models, service

Embeddings = Annotated[np.ndarray, Array("float32", (None, 384))]
Probabilities = Annotated[np.ndarray, Array("float32", (None, 2))]


@service(resources=Resources(gpu=1, memory="2Gi"), timeout=30, models=["embedding-head:latest"])
class InferenceService:
    def __init__(self) -> None:
        import torch
        from safetensors.torch import load_file

        path = models.get("embedding-head").path
        weights = load_file(str(path / "head.safetensors"))
        self.labels = json.loads((path / "config.json").read_text())["labels"]
        self.head = torch.nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
        self.head.load_state_dict(weights)
        self.head.to(device()).eval()
        self.device = device()

    @api
    def predict(self, features: Embeddings) -> Probabilities:
        """Softmax class probabilities, one row per embedding."""
        import torch

        with torch.no_grad():
            logits = self.head(torch.from_numpy(features).to(self.device))
        return np.asarray(torch.softmax(logits, dim=1).cpu().numpy(), dtype=np.float32)
