"""BertBaseUncased: scores generated texts (scenario 5's map step)."""

from __future__ import annotations

from app import Resources, api, device, models, service
from workers._batching import BATCH


@service(resources=Resources(cpu=2, memory="2Gi"), timeout=30, models=["bert-sentiment:latest"])
class BertBaseUncased:
    def __init__(self) -> None:
        from transformers import pipeline

        self.pipe = pipeline("text-classification", model=str(models.get("bert-sentiment").path),
                             device=device())

    @api(batch=BATCH)
    def classify_generated_texts(self, sentence: list[str]) -> list[float]:
        """The probability that ``sentence`` is POSITIVE (read up to the model's maximum
        length)."""
        results = self.pipe(sentence, top_k=None, truncation=True, batch_size=len(sentence))
        return [float({r["label"]: r["score"] for r in labels}["POSITIVE"]) for labels in results]
