"""PreprocessingService: texts to MiniLM embeddings (the first step of scenarios 3 and 4)."""

from __future__ import annotations

import numpy as np

from app import Resources, api, device, models, service
from workers._embedding import Embedder
from workers._values import Embeddings, Text, TextsOrEmbeddings


@service(resources=Resources(cpu=2, memory="2Gi"), timeout=30,
         models=["all-minilm-l6-v2:latest"])
class PreprocessingService:
    def __init__(self) -> None:
        self.embedder = Embedder(models.get("all-minilm-l6-v2").path, device())

    @api
    def preprocess(self, input_data: TextsOrEmbeddings) -> Embeddings:
        """One 384-dimensional unit vector per text (float32); embeddings already computed
        (an array of shape (n, 384)) are passed on as they are."""
        if isinstance(input_data, np.ndarray):
            return input_data
        return self._embed(input_data)

    @api
    def similarity(self, a: Text, b: Text) -> float:
        """Cosine similarity of two sentences' embeddings."""
        vectors = self._embed([a, b])
        return float(np.dot(vectors[0], vectors[1]))

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.embedder(texts), dtype=np.float32)
