"""BertBaseUncased: scores generated texts (scenario 5's map step)."""

from __future__ import annotations

from app import Resources, api, device, models, service


@service(resources=Resources(cpu=2, memory="2Gi"), timeout=30, models=["bert-sentiment:latest"])
class BertBaseUncased:
    def __init__(self) -> None:
        from transformers import pipeline

        self.pipe = pipeline("text-classification", model=str(models.get("bert-sentiment").path),
                             device=device())

    @api
    def classify_generated_texts(self, sentence: str) -> float:
        """The probability that ``sentence`` is POSITIVE (read up to the model's maximum
        length)."""
        scores = {r["label"]: r["score"] for r in self.pipe(sentence, top_k=None, truncation=True)}
        return float(scores["POSITIVE"])
