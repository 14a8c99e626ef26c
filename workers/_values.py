"""The typed values the demo services take and return, with the limits a request must keep.

A request over a limit is refused by the API with a 422 that names the field and the limit,
before anything is queued; a text within the limits that is longer than a model reads is
truncated by that model (its tokenizer's maximum length).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Discriminator, Field, Tag

from app import Array

MAX_TEXT = 10_000
"""Characters in one text."""
MAX_TEXTS = 512
"""Texts in one request."""

Text = Annotated[str, Field(max_length=MAX_TEXT)]
Prompt = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Texts = Annotated[list[Text], Field(min_length=1, max_length=MAX_TEXTS)]
Embeddings = Annotated[np.ndarray, Array("float32", (None, 384))]
"""MiniLM sentence embeddings: one 384-float row per text."""
Probabilities = Annotated[np.ndarray, Array("float32", (None, 2))]
"""Class probabilities: one row per input, NEGATIVE and POSITIVE."""


def _kind(value: Any) -> str:
    """Texts are a list of strings (or a string: refused as texts); anything else is read as
    an array (an empty list too: no rows of embeddings)."""
    if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], str)):
        return "texts"
    return "embeddings"


TextsOrEmbeddings = Annotated[
    Annotated[Texts, Tag("texts")] | Annotated[Embeddings, Tag("embeddings")],
    Discriminator(_kind),
]
"""Texts to embed, or embeddings already computed (an array of shape (n, 384))."""
