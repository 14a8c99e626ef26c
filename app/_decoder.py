"""Results back into Python: a REST value read by its declared JSON schema, where the parts
marked ``x-braid-type`` become numpy arrays, PIL images and bytes again::

    decode({"dtype": "float32", "shape": [1, 2], "data": [[0.5, 0.5]]}, schema)  # -> ndarray

Parts the schema does not mark, or that do not have the marked form, stay as they are.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping
from typing import Any

from app._types import REST_TYPE

__all__ = ["decode"]

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),), "boolean": (bool,), "integer": (int,), "number": (int, float),
    "string": (str,), "array": (list,), "object": (dict,),
}


def decode(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` (a REST result) with its arrays, images and bytes decoded as ``schema`` says."""
    return _Reader(schema.get("$defs", {})).read(value, schema)


def _array(value: Any) -> Any:
    import numpy as np

    if isinstance(value, dict):
        return np.asarray(value["data"], dtype=value["dtype"]).reshape(value["shape"])
    return np.asarray(value)  # a 0-d array is rendered as its number


def _image(value: dict[str, Any]) -> Any:
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(value["data"])))
    image.load()
    return image


_DECODE: dict[str, Callable[[Any], Any]] = {"ndarray": _array, "image": _image, "bytes": base64.b64decode}


def _has_form(kind: str, value: Any) -> bool:
    if kind == "ndarray":
        return (isinstance(value, dict) and {"dtype", "shape", "data"} <= value.keys()) or (
            isinstance(value, int | float) and not isinstance(value, bool))
    if kind == "image":
        return isinstance(value, dict) and {"media_type", "data"} <= value.keys()
    return kind == "bytes" and isinstance(value, str)


def _def_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


class _Reader:
    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs
        self.memo: dict[int, bool] = {}
        self.marked_defs: set[str] = set()
        while more := {name for name, body in defs.items()
                       if name not in self.marked_defs and self.marked(body)}:
            self.marked_defs |= more
            self.memo.clear()  # what was unmarked may reach a definition marked since

    def target(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """``schema``, or what its ``$ref`` names."""
        seen: set[str] = set()
        while isinstance(ref := schema.get("$ref"), str) and ref not in seen:
            seen.add(ref)
            schema = self.defs.get(_def_name(ref), {})
        return schema

    def marked(self, schema: Any) -> bool:
        """Whether anything in ``schema`` is an array, image or bytes (else there is nothing to
        decode, however large the value)."""
        if isinstance(schema, list):
            return any(self.marked(s) for s in schema)
        if not isinstance(schema, dict):
            return False
        if id(schema) not in self.memo:
            ref = schema.get("$ref")
            self.memo[id(schema)] = (
                REST_TYPE in schema or (isinstance(ref, str) and _def_name(ref) in self.marked_defs)
                or any(self.marked(s) for key, s in schema.items() if key != "$defs"))
        return self.memo[id(schema)]

    def fits(self, value: Any, schema: Mapping[str, Any]) -> bool:
        """Whether ``value`` looks like what ``schema`` (one branch of a union) describes."""
        schema = self.target(schema)
        if REST_TYPE in schema:
            return _has_form(schema[REST_TYPE], value)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return any(self.fits(value, s) for s in schema[key])
        if "const" in schema:
            return bool(value == schema["const"])
        kinds = schema.get("type")
        if kinds is None:
            return True
        names = [kinds] if isinstance(kinds, str) else kinds
        return any(isinstance(value, _JSON_TYPES.get(n, object)) and not (
            isinstance(value, bool) and n in ("integer", "number")) for n in names)

    def read(self, value: Any, schema: Mapping[str, Any]) -> Any:
        if not self.marked(schema):
            return value
        schema = self.target(schema)
        if REST_TYPE in schema:
            kind = schema[REST_TYPE]
            return _DECODE[kind](value) if _has_form(kind, value) else value
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branch = next((s for s in schema[key] if self.fits(value, s)), None)
                return value if branch is None else self.read(value, branch)
        if len(schema.get("allOf", ())) == 1:
            return self.read(value, schema["allOf"][0])
        if isinstance(value, list):
            prefix = schema.get("prefixItems", [])
            rest = schema.get("items", {})
            return [self.read(v, prefix[i] if i < len(prefix) else rest) for i, v in enumerate(value)]
        if isinstance(value, dict):
            fields = schema.get("properties", {})
            extra = schema.get("additionalProperties", {})
            extra = extra if isinstance(extra, dict) else {}
            return {k: self.read(v, fields.get(k, extra)) for k, v in value.items()}
        return value
