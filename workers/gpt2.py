"""GPT2: text generation (scenario 5), on a GPU where there is one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from pydantic import Field

from app import Resources, api, device, models, service
from workers._batching import BATCH
from workers._values import Prompt

NewTokens = Annotated[int, Field(ge=1, le=128)]
Sequences = Annotated[int, Field(ge=1, le=8)]


class _Generator:
    """Text generation with a model from the store."""

    tag = ""

    def __init__(self) -> None:
        from transformers import pipeline

        self.pipe = pipeline("text-generation", model=str(models.get(self.tag).path),
                             device=device())
        # a batch of prompts of different lengths is padded on the left, so that every
        # prompt's continuation starts right after its last token
        tokenizer = self.pipe.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def _generate(self, sentences: list[str], max_new_tokens: int, num_return_sequences: int,
                  do_sample: bool) -> list[list[str]]:
        # without sampling, several sequences are the best beams (greedy search has one);
        # "hole" drops the prompt's start when prompt + new tokens exceed the model's length
        beams = 1 if do_sample else num_return_sequences
        outputs = self.pipe(sentences, max_new_tokens=max_new_tokens, do_sample=do_sample,
                            num_beams=beams, num_return_sequences=num_return_sequences,
                            handle_long_generation="hole", batch_size=len(sentences))
        return [[str(o["generated_text"]) for o in out] for out in outputs]

    def _tokens(self, prompt: str, max_new_tokens: int) -> Iterator[str]:
        """Greedy generation, one token at a time (the model's cache keeps what it read):
        the text each new token adds."""
        import torch

        model, tokenizer = self.pipe.model, self.pipe.tokenizer
        room = model.config.n_positions - max_new_tokens
        ids = tokenizer(prompt, return_tensors="pt").input_ids[:, -room:].to(model.device)
        cache, produced, text = None, [], ""
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                out = model(input_ids=ids, cache=cache, use_cache=True)
                cache = out.cache
                ids = out.logits[:, -1, :].argmax(-1, keepdim=True)
                produced.append(int(ids[0, 0]))
                # decoded whole each time: a token may end a character another one began
                full = tokenizer.decode(produced, skip_special_tokens=True)
                if full != text and not full.endswith("\ufffd"):
                    yield full[len(text):]
                    text = full
                if produced[-1] == tokenizer.eos_token_id:
                    break


@service(resources=Resources(gpu=1, memory="4Gi"), timeout=60, models=["gpt2:latest"])
class GPT2(_Generator):
    tag = "gpt2"

    @api(batch=BATCH)
    def generate(self, sentence: list[Prompt], max_new_tokens: NewTokens = 16,
                 num_return_sequences: Sequences = 1,
                 do_sample: bool = False) -> list[list[str]]:
        """``num_return_sequences`` continuations of ``sentence``, each ``max_new_tokens``
        tokens longer: the most likely ones (greedy, or beam search for several), or sampled
        with ``do_sample``. A prompt longer than the model reads loses its start."""
        return self._generate(sentence, max_new_tokens, num_return_sequences, do_sample)

    @api
    def draft(self, prompt: Prompt, max_new_tokens: NewTokens = 32) -> Iterator[str]:
        """A greedy continuation of ``prompt``, streamed: each chunk is the text one more
        token adds (scenario 6's drafter)."""
        yield from self._tokens(prompt, max_new_tokens)
