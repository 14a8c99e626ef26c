"""Example request bodies for ``/docs``, made from a pipeline's input types.

Each input gets its default where it has one, else a placeholder of its type that the input
accepts: an array of the declared dtype and shape, a one-pixel PNG for images and bytes, the
first value of an enum, numbers and texts within their bounds. No placeholder is null: the
OpenAPI document leaves nulls out."""

from __future__ import annotations

import operator
import typing
from typing import Annotated, Any

from app._pipeline import Pipeline
from app._types import IMAGE_FORMAT, Array, is_array_type

__all__ = ["example"]

# a 1x1 PNG: an image every default BRAID_IMAGE_FORMATS accepts, and valid base64 for bytes
PNG_BASE64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP438AAAAQBAYDFKhhdAAAAA"
              "ElFTkSuQmCC")

_FORMATS = {"date-time": "2025-01-01T00:00:00Z", "date": "2025-01-01", "time": "00:00:00",
            "uuid": "00000000-0000-0000-0000-000000000000", "email": "user@example.com",
            "uri": "https://example.com"}


def example(pipeline: Pipeline) -> dict[str, Any]:
    """A JSON body that ``pipeline``'s input model accepts."""
    schema = pipeline.input_model.model_json_schema()
    defs = schema.get("$defs", {})
    hints = typing.get_type_hints(pipeline.func, include_extras=True)
    body: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        hint = hints.get(name)
        if "default" not in prop and _is_array(hint):
            body[name] = _array(_spec(hint))
        else:
            body[name] = _value(prop, defs, 0)
    return body


def _is_array(hint: Any) -> bool:
    if typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    return is_array_type(hint)


def _spec(hint: Any) -> Array | None:
    meta = typing.get_args(hint)[1:] if typing.get_origin(hint) is Annotated else ()
    return next((m for m in meta if isinstance(m, Array)), None)


def _array(spec: Array | None) -> Any:
    shape = spec.shape if spec is not None and spec.shape is not None else (2,)
    data: Any = 0.0
    for size in reversed(shape):
        data = [data] * (1 if size is None else size)
    if spec is not None and spec.dtype is not None:
        return {"data": data, "dtype": spec.dtype}
    return data


_BOUNDS = {"minimum": operator.ge, "maximum": operator.le, "exclusiveMinimum": operator.gt,
           "exclusiveMaximum": operator.lt}


def _number(schema: dict[str, Any], integer: bool) -> float:
    """0 where the bounds allow it, else the first that they allow of: a bound, a value just
    inside an open bound, the middle."""
    bounds = {key: schema[key] for key in _BOUNDS if key in schema}
    inside = [bounds[key] + step for key, step in (("exclusiveMinimum", 1),
                                                   ("exclusiveMaximum", -1)) if key in bounds]
    middle = [(min(bounds.values()) + max(bounds.values())) / 2] if len(bounds) > 1 else []
    for value in (0, *bounds.values(), *inside, *middle):
        value = int(value) if integer else value
        if all(_BOUNDS[key](value, bound) for key, bound in bounds.items()):
            return value
    return 0


def _value(schema: dict[str, Any], defs: dict[str, Any], depth: int) -> Any:
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        # a recursive model ends in an empty object rather than recursing forever
        return _value(defs[ref.rsplit("/", 1)[1]], defs, depth + 1) if depth < 8 else {}
    for key in ("anyOf", "oneOf", "allOf"):
        options = [s for s in schema.get(key, []) if s.get("type") != "null"]
        if options:
            return _value(options[0], defs, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "string":
        if schema.get("contentEncoding") == "base64" or schema.get("format") == IMAGE_FORMAT:
            return PNG_BASE64
        text = _FORMATS.get(schema.get("format", ""), "string")
        text = text.ljust(schema.get("minLength", 0), "x")
        return text[:schema.get("maxLength", len(text))]
    if kind == "integer":
        return int(_number(schema, integer=True))
    if kind == "number":
        return _number(schema, integer=False)
    if kind == "boolean":
        return False
    if kind == "array":
        if "prefixItems" in schema:
            return [_value(s, defs, depth) for s in schema["prefixItems"]]
        items = schema.get("items")
        return [_value(items, defs, depth)] * max(1, schema.get("minItems", 1)) if items else []
    if kind == "object":
        return {k: _value(s, defs, depth) for k, s in schema.get("properties", {}).items()}
    # anything (`Any`): not null, which the OpenAPI document leaves out
    return "any"
