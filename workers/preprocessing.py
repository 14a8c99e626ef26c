"""PreprocessingService: texts to MiniLM embeddings (scenario 3's first step; scenario 5's
embedder check)."""

from __future__ import annotations

from typing import Annotated

import numpy as np

from app import Array, Resources, api, device, models, service
from workers._embedding import Embedder

Embeddings = Annotated[np.ndarray, Array("float32", (None, 384))]


@service(resources=Resources(cpu=2, memory="2Gi"), timeout=30,
         models=["all-minilm-l6-v2:latest"])
class PreprocessingService:
    def __init__(self) -> None:
        self.embedder = Embedder(models.get("all-minilm-l6-v2").path, device())

    @api
    def preprocess(self, input_data: list[str]) -> Embeddings:
        """One 384-dimensional unit vector per text (float32)."""
        return np.asarray(self.embedder(input_data), dtype=np.float32)

    @api
    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two sentences' embeddings."""
        vectors = self.embedder([a, b])
        return float(np.dot(vectors[0], vectors[1]))
