"""TextModel: sentiment of a text, a real transformers pipeline on a tiny local model."""

from __future__ import annotations

from typing import Any

from app import Resources, api, device, get_settings, service
from workers._tiny import ensure_text_classifier


@service(resources=Resources(cpu=2, memory="2Gi"), timeout=20)
class TextModel:
    def __init__(self) -> None:
        from transformers import pipeline

        path = ensure_text_classifier(get_settings().model_root / "text-classifier")
        self.pipe = pipeline("text-classification", model=str(path), device=device())

    @api
    def analyze_text(self, text: str, top_k: int = 1) -> list[dict[str, Any]]:
        """Labels of ``text`` with their scores, best first."""
        return list(self.pipe(text, top_k=top_k))
