"""Sentence embeddings with mean pooling and L2 normalisation (all-MiniLM-L6-v2's recipe),
shared by the services that embed text. Plain transformers: no sentence-transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_CHUNK = 32


class Embedder:
    def __init__(self, path: Path, device: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).to(device).eval()
        self.device = device

    def __call__(self, sentences: list[str]) -> Any:
        """A float32 array (len(sentences), dim) of unit vectors. Many sentences are embedded
        in chunks of similar lengths (each chunk is padded to its longest only)."""
        import numpy as np

        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        chunks = [self._embed([sentences[i] for i in order[at:at + _CHUNK]])
                  for at in range(0, len(order), _CHUNK)]
        out = np.empty((len(sentences), chunks[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(chunks)
        return out

    def _embed(self, sentences: list[str]) -> Any:
        import torch

        batch = self.tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.no_grad():
            tokens = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).cpu().numpy()
