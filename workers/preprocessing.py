"""PreprocessingService: texts to MiniLM embeddings (the first step of scenarios 3 and 4)."""

from __future__ import annotations

import numpy as np

from app import Resources, api, device, models, service
from workers._batching import BATCH
from workers._embedding import Embedder
from workers._values import Embeddings, Text, TextsOrEmbeddings


@service(resources=Resources(cpu=2, memory="2Gi"), timeout=30,
         models=["all-minilm-l6-v2:latest"])
class PreprocessingService:
    def __init__(self) -> None:
        self.embedder = Embedder(models.get("all-minilm-l6-v2").path, device())

    @api(batch=BATCH)
    def preprocess(self, input_data: list[TextsOrEmbeddings]) -> list[Embeddings]:
        """One 384-dimensional unit vector per text (float32); embeddings already computed
        (an array of shape (n, 384)) are passed on as they are. The texts of all the calls
        of a batch are embedded together."""
        texts = [t for item in input_data if not isinstance(item, np.ndarray) for t in item]
        vectors = self._embed(texts) if texts else np.zeros((0, 384), dtype=np.float32)
        out: list[np.ndarray] = []
        at = 0
        for item in input_data:
            if isinstance(item, np.ndarray):
                out.append(item)
            else:
                out.append(vectors[at:at + len(item)])
                at += len(item)
        return out

    @api
    def similarity(self, a: Text, b: Text) -> float:
        """Cosine similarity of two sentences' embeddings."""
        vectors = self._embed([a, b])
        return float(np.dot(vectors[0], vectors[1]))

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.embedder(texts), dtype=np.float32)
