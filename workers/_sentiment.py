"""Class probabilities of a sentiment classifier, shared by the ensemble's two models."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Probabilities:
    def __init__(self, path: Path, device: str) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path)).to(device).eval()
        self.device = device

    def __call__(self, texts: list[str]) -> Any:
        """A float32 array (len(texts), labels) of softmax probabilities."""
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits
        return torch.softmax(logits, dim=1).cpu().numpy().astype("float32")
