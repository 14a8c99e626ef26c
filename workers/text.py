"""TextModel: sentiment of a text (scenario 1's text branch)."""

from __future__ import annotations

from typing import Any

from app import Resources, api, device, models, service


@service(resources=Resources(cpu=2, memory="2Gi"), timeout=20, models=["bert-sentiment:latest"])
class TextModel:
    def __init__(self) -> None:
        from transformers import pipeline

        self.pipe = pipeline("text-classification", model=str(models.get("bert-sentiment").path),
                             device=device())

    @api
    def analyze_text(self, text: str, top_k: int = 1) -> list[dict[str, Any]]:
        """Labels of ``text`` with their scores, best first."""
        return list(self.pipe(text, top_k=top_k))
