"""Sentence embeddings with mean pooling and L2 normalisation (all-MiniLM-L6-v2's recipe),
shared by the services that embed text. Plain transformers: no sentence-transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Embedder:
    def __init__(self, path: Path, device: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).to(device).eval()
        self.device = device

    def __call__(self, sentences: list[str]) -> Any:
        """A float32 array (len(sentences), dim) of unit vectors."""
        import torch

        batch = self.tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.no_grad():
            tokens = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).cpu().numpy()
