"""GPT2: text generation (scenario 5), on a GPU where there is one."""

from __future__ import annotations

from app import Resources, api, device, models, service


class _Generator:
    """Text generation with a model from the store."""

    tag = ""

    def __init__(self) -> None:
        from transformers import pipeline

        self.pipe = pipeline("text-generation", model=str(models.get(self.tag).path),
                             device=device())

    def _generate(self, sentence: str, max_new_tokens: int, num_return_sequences: int) -> list[str]:
        # greedy unless several sequences are asked for (greedy would repeat one of them)
        outputs = self.pipe(sentence, max_new_tokens=max_new_tokens,
                            do_sample=num_return_sequences > 1,
                            num_return_sequences=num_return_sequences)
        return [str(o["generated_text"]) for o in outputs]


@service(resources=Resources(gpu=1, memory="4Gi"), timeout=60, models=["gpt2:latest"])
class GPT2(_Generator):
    tag = "gpt2"

    @api
    def generate(self, sentence: str, max_new_tokens: int = 16,
                 num_return_sequences: int = 1) -> list[str]:
        """``num_return_sequences`` continuations of ``sentence`` (greedy for one), each
        ``max_new_tokens`` tokens longer."""
        return self._generate(sentence, max_new_tokens, num_return_sequences)
