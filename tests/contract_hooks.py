"""What Schemathesis needs to know to send valid files: how to make an image and a ``.npy``
file of a given dtype and shape (a JSON schema says "a PNG" or "float32, (*, 384)" in
words: ``format: base64-image`` and the media type of a multipart part, see
:mod:`app._types`). Loaded by ``st run`` with ``SCHEMATHESIS_HOOKS=tests.contract_hooks``.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image

from app._registry import load
from app._types import IMAGE_FORMAT, Array, array_spec, is_array_type

_SIDE = st.integers(1, 8)
"""Image sides: small enough for any BRAID_MAX_IMAGE_PIXELS a test sets."""


@st.composite
def _image(draw: st.DrawFn, fmt: str = "PNG") -> bytes:
    size = (draw(_SIDE), draw(_SIDE))
    colour = draw(st.tuples(*[st.integers(0, 255)] * 3))
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


def _as_text(data: bytes) -> st.SearchStrategy[str]:
    text = base64.b64encode(data).decode()
    return st.sampled_from([text, f"data:image/png;base64,{text}"])


@st.composite
def _npy(draw: st.DrawFn, spec: Array) -> bytes:
    shape = tuple(draw(st.integers(1, 3)) if d is None else d
                  for d in (spec.shape if spec.shape is not None else (None,)))
    dtype = np.dtype(spec.dtype or "float32")
    values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).random(shape)
    out = io.BytesIO()
    np.save(out, (values * 100).astype(dtype), allow_pickle=False)
    return out.getvalue()


schemathesis.openapi.format(IMAGE_FORMAT, _image().flatmap(_as_text))
Image.init()  # PIL registers its formats' media types lazily
for _fmt, _mime in Image.MIME.items():
    if _fmt in {"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"}:
        schemathesis.openapi.media_type(_mime, _image(_fmt))

# a .npy part's media type names its dtype and shape: one strategy per declared array
_registry = load(os.environ.get("BRAID_APPS", "workers").split(","))
_pipelines = [*_registry.pipelines.values(),
              *(_registry.api_pipeline(svc.name, api) for svc in _registry.services.values()
                for api in svc.apis)]
_specs = {Array()} | {array_spec(field.metadata) for pipeline in _pipelines
                      for field in pipeline.input_model.model_fields.values()
                      if is_array_type(field.annotation)}
for _spec in _specs:
    schemathesis.openapi.media_type(_spec.media_type, _npy(_spec))


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> bool:
    """Drop a positive multipart case that breaks its own schema: Schemathesis 4.32's
    coverage phase, building a form around parts it has media-type strategies for, fills
    every other required part with "" (an object input too)."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return True
    if not (case.media_type or "").startswith("multipart/") or not isinstance(case.body, dict):
        return True
    body = case.operation.get_body_for_media_type(case.media_type or "")
    properties = ((body.resolved_schema or {}).get("properties", {}) if body is not None else {})
    return not any(properties.get(name, {}).get("type") in ("object", "array") and value == ""
                   for name, value in case.body.items())
