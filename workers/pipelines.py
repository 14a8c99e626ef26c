"""The reference pipelines: BentoML's model-composition scenarios, rebuilt on Braid."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from app import Value, each, pipeline, step, stream
from workers._values import Prompt, Text, TextsOrEmbeddings
from workers.aggregator import Aggregator
from workers.bert_base_uncased import BertBaseUncased, Every
from workers.data import DataModel
from workers.distilgpt2 import DistilGPT2
from workers.gpt2 import GPT2, NewTokens
from workers.image import ImageModel
from workers.inference import InferenceService
from workers.model_a import ModelAService
from workers.model_b import ModelBService
from workers.preprocessing import PreprocessingService
from workers.text import TextModel


@pipeline(name="inference-orchestrator")
def inference_orchestrator(image: Image.Image, text: Text,
                           data: dict[str, Any]) -> dict[str, Value[Any]]:
    """Scenario 1: an image, a text and a record, each to its model in parallel; one result."""
    return {"image": step(ImageModel.process_image, image),
            "text": step(TextModel.analyze_text, text),
            "data": step(DataModel.process_data, data)}


@pipeline(name="preprocess-predict")
def preprocess_predict(input_data: TextsOrEmbeddings) -> Value[np.ndarray]:
    """Scenario 3: embed on a CPU service, predict on a GPU service (embeddings already
    computed skip the embedding)."""
    return step(InferenceService.predict, step(PreprocessingService.preprocess, input_data))


@pipeline(name="ensemble")
def ensemble(input_data: TextsOrEmbeddings) -> Value[np.ndarray]:
    """Scenario 4: two models on the same embeddings concurrently, averaged (texts are
    embedded first; embeddings already computed skip the embedding)."""
    features = step(PreprocessingService.preprocess, input_data)
    return step(Aggregator.average, step(ModelAService.predict, features),
                step(ModelBService.predict, features))


@pipeline(name="inference-graph")
def inference_graph(original_sentence: Prompt = "I have an idea!") -> Value[list[dict[str, Any]]]:
    """Scenario 5: generate with two models in parallel, score every generated text (a map),
    return ``[{generated, score}, ...]``."""
    texts = step(Aggregator.concat, step(GPT2.generate, original_sentence),
                 step(DistilGPT2.generate, original_sentence))
    scores = each(BertBaseUncased.classify_generated_texts, texts)
    return step(Aggregator.pair, texts, scores)


@pipeline(name="draft-and-score")
def draft_and_score(prompt: Prompt = "I have an idea!", max_new_tokens: NewTokens = 32,
                    every: Every = 4) -> Value[list[dict[str, Any]]]:
    """Scenario 6, a compound LLM: GPT-2 drafts a continuation and streams it, token by
    token, into BERT, which scores the draft as it grows (every ``every`` tokens);
    ``GET /v1/jobs/{id}/stream`` sends each score as it comes."""
    draft = stream(GPT2.draft, prompt, max_new_tokens=max_new_tokens)
    return step(BertBaseUncased.score_draft, draft, every=every)
