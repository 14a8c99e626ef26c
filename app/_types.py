"""How numpy arrays, PIL images and bytes look over REST.

Arrays: a nested JSON list, or ``{"data": <nested list>, "dtype": "float32"}``; results come
back as ``{"dtype", "shape", "data"}``. Images: a base64 string (or data URL) of an image
file, or ``{"data": <base64>}``; results come back as ``{"media_type": "image/png", "mode",
"size", "data"}``. Bytes: base64 strings. Their JSON schemas say which is which:
``"x-braid-type": "ndarray" | "image" | "bytes"`` (:data:`REST_TYPE`), so a client can turn
a result back into arrays, images and bytes.
"""

from __future__ import annotations

import base64
import binascii
import io
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

__all__ = ["IMAGE_FORMAT", "NPY_MEDIA_TYPE", "REST_TYPE", "Array", "array_spec", "is_array_type",
           "is_image_type", "rest_annotation", "to_rest"]

REST_TYPE = "x-braid-type"
"""The JSON schema key that marks a REST array (``ndarray``), image (``image``) or ``bytes``."""


def is_array_type(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return getattr(origin, "__module__", None) == "numpy" and getattr(origin, "__name__", "") == "ndarray"


def is_image_type(annotation: Any) -> bool:
    return getattr(annotation, "__module__", "").startswith("PIL.") and getattr(
        annotation, "__name__", ""
    ) == "Image"


@dataclass(frozen=True)
class Array:
    """The dtype and shape an ndarray parameter must have (``None`` in ``shape``: any size)::

        features: Annotated[np.ndarray, Array("float32", (None, 384))]

    A list without a dtype is cast when the cast is safe; an array of another dtype or shape
    is refused with an error that names the expected and the given dtype and shape."""

    dtype: str | None = None
    shape: tuple[int | None, ...] | None = None

    def _expected(self) -> str:
        dims = "any shape" if self.shape is None else "shape (" + ", ".join(
            "*" if d is None else str(d) for d in self.shape) + ")"
        return f"{self.dtype or 'any dtype'}, {dims}"

    def check(self, value: Any, cast: bool = False) -> Any:
        """``value`` if it has this dtype and shape; with ``cast``, a safe cast is allowed
        (for JSON lists, whose dtype was inferred rather than stated)."""
        import numpy as np

        if not isinstance(value, np.ndarray):
            raise ValueError(f"expected an array ({self._expected()}), got {type(value).__name__}")
        got = f"{value.dtype}, shape {tuple(value.shape)}"
        if self.dtype is not None and value.dtype != np.dtype(self.dtype):
            if not (cast and np.can_cast(value.dtype, self.dtype, "same_kind")):
                raise ValueError(f"expected {self._expected()}; got {got}")
            value = value.astype(self.dtype)
        if self.shape is not None and (value.ndim != len(self.shape) or any(
                want is not None and want != have for want, have in zip(self.shape, value.shape,
                                                                         strict=True))):
            raise ValueError(f"expected {self._expected()}; got {got}")
        return value

    def parse(self, value: Any) -> Any:
        """An array from its REST form, checked against this spec."""
        # a list's dtype is inferred (so is an object's without "dtype"): it may be cast
        inferred = isinstance(value, list) or (isinstance(value, dict) and "dtype" not in value)
        array = _array_from_rest(value, self.dtype)
        if array.size == 0 and array.ndim == 1 and self.shape is not None and len(self.shape) > 1 \
                and self.shape[0] in (None, 0) and None not in self.shape[1:]:
            # an empty list cannot say the sizes of its rows: it is no rows of the declared size
            array = array.reshape((0, *typing.cast(tuple[int, ...], self.shape[1:])))
        return self.check(array, cast=inferred)

    @property
    def media_type(self) -> str:
        """How a multipart body's ``.npy`` part of this array is documented (its dtype and
        shape as media type parameters, ``*`` for any size)."""
        params = [] if self.dtype is None else [f"dtype={self.dtype}"]
        if self.shape is not None:
            params.append("shape=" + "x".join("*" if d is None else str(d) for d in self.shape))
        return "; ".join([NPY_MEDIA_TYPE, *params])

    def json_schema(self) -> JsonSchemaValue:
        """The JSON forms of an array of this spec: a nested list, or ``{data, dtype}``."""
        nested = _nested(_element(self.dtype), self.shape)
        dtypes = [self.dtype] if self.dtype is not None else list(_DTYPES)
        return {"anyOf": [nested, {
            "type": "object", "properties": {"data": nested, "dtype": {"enum": dtypes}},
            "required": ["data"], "additionalProperties": False}],
            "description": f"numpy array ({self._expected()}): a nested list, or "
                           "{data, dtype} (a result's {dtype, shape, data} is taken back too)"}

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))


NPY_MEDIA_TYPE = "application/x-npy"
"""A ``.npy`` file (``numpy.save``), as an array's part of a multipart body."""

_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64",
           "uint32", "uint16", "uint8", "bool")
"""The dtypes an array object may name (and results have)."""


def _element(dtype: str | None) -> JsonSchemaValue:
    """The JSON schema of one element of an array of ``dtype``."""
    import numpy as np

    kind = "f" if dtype is None else np.dtype(dtype).kind
    if kind == "b":
        return {"type": "boolean"}
    if kind in "iu":
        info = np.iinfo(np.dtype(dtype))
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    if dtype is None:
        return {"type": "number"}
    largest = float(np.finfo(np.dtype(dtype)).max)
    return {"type": "number", "minimum": -largest, "maximum": largest}


def _nested(element: JsonSchemaValue, shape: tuple[int | None, ...] | None) -> JsonSchemaValue:
    """Nested lists of ``element``, ``shape`` deep (sized where a size is given); for no
    shape, a list of elements or of rows (what a schema can say: deeper lists are taken too,
    and the rows must be of one length)."""
    if shape is None:
        return {"type": "array", "minItems": 1, "items": {"anyOf": [
            element, {"type": "array", "items": {"type": "number"}}]}}
    schema = element
    for size in reversed(shape):
        schema = {"type": "array", "items": schema}
        if size is not None:
            schema |= {"minItems": size, "maxItems": size}
    return schema


def _has_bool(value: Any) -> bool:
    if isinstance(value, list):
        return any(_has_bool(v) for v in value)
    return isinstance(value, bool)


def _array_from_rest(value: Any, want: str | None = None) -> Any:
    """The array in ``value`` (its REST form: a nested list, an object, .npy bytes); the
    elements of a list must be numbers, or booleans for a ``want``ed bool dtype."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            loaded = np.load(io.BytesIO(value), allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"not a valid .npy file ({exc})") from exc
        if not isinstance(loaded, np.ndarray):
            raise ValueError("a .npy file holding one array is expected")
        return loaded
    dtype = None
    shape = None
    if isinstance(value, dict):
        if "data" not in value or not set(value) <= {"data", "dtype", "shape"}:
            raise ValueError('an array object has "data" (a nested list) and may give "dtype" '
                             'and "shape", nothing else')
        dtype, shape, value = value.get("dtype"), value.get("shape"), value["data"]
        if dtype is not None and dtype not in (*_DTYPES, want):
            raise ValueError(f"dtype {str(dtype)[:40]!r} is not one of {', '.join(_DTYPES)}")
        if shape is not None and not (isinstance(shape, list) and all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise ValueError("shape is a list of sizes (integers >= 0)")
    if not isinstance(value, list):
        raise ValueError("an array is a nested JSON list or {\"data\": [...], \"dtype\": ...}")
    named = dtype or want
    if (named is None or np.dtype(named).kind != "b") and _has_bool(value):
        raise ValueError("an array's elements are numbers, not true or false (or give "
                         '"dtype": "bool")')
    try:
        array = np.asarray(value, dtype=np.dtype(dtype) if dtype else None)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"not a rectangular numeric array ({exc})") from exc
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ValueError("not a rectangular numeric array (rows differ in length, or an "
                         "element is not a number)")
    if shape is not None and list(array.shape) != list(shape):
        if array.size == 0 and 0 in shape:  # an empty nested list cannot say its other sizes
            return array.reshape(shape)
        raise ValueError(f"data has shape {list(array.shape)} but shape says {list(shape)}")
    return array


def _decode_base64(text: str) -> bytes:
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64 ({exc})") from exc


def _image_from_rest(value: Any) -> Any:
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if "data" not in value or not set(value) <= _IMAGE_KEYS:
            raise ValueError('an image object is {"data": <base64>} (a result\'s media_type, '
                             'mode and size may come with it), nothing else')
        value = value["data"]
    if isinstance(value, str):
        value = _decode_base64(value)
    if not isinstance(value, bytes | bytearray):
        raise ValueError("an image is a base64 string of an image file, or {\"data\": <base64>}")
    from app._settings import get_settings

    settings = get_settings()
    try:
        with Image.open(io.BytesIO(value)) as opened:
            if opened.format not in settings.image_formats:
                raise ValueError(f"image format {opened.format} is not accepted; send one of "
                                 f"{', '.join(settings.image_formats)}")
            pixels = opened.size[0] * opened.size[1]
            if pixels > settings.max_image_pixels:
                raise ValueError(f"image is {opened.size[0]}x{opened.size[1]} = {pixels} pixels, "
                                 f"over the limit of {settings.max_image_pixels} "
                                 "(BRAID_MAX_IMAGE_PIXELS)")
            opened.load()
            return opened.copy()
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image too large: {exc}") from exc
    except UnidentifiedImageError:
        # PIL's own message names the in-memory buffer (`<_io.BytesIO object at 0x...>`)
        raise ValueError("not a readable image file (no image format recognises these "
                         f"{len(value)} bytes); send a PNG, JPEG or another of "
                         f"{', '.join(settings.image_formats)}") from None
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"not a readable image file ({exc})") from exc


def _bytes_from_rest(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return _decode_base64(value)
    raise ValueError("bytes are sent as a base64 string")


@dataclass(frozen=True, eq=False)
class _Rest:
    """Pydantic schema for a type that has a REST form: validate from it, render it, and
    describe both (what a request may send, and what a response holds)."""

    kind: str
    parse: Any
    accepts: JsonSchemaValue
    returns: JsonSchemaValue
    array: Array | None = None
    """An array's spec."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self.parse, serialization=core_schema.plain_serializer_function_ser_schema(to_rest)
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        form = self.returns if handler.mode == "serialization" else self.accepts
        return {**form, REST_TYPE: self.kind}


_BASE64: JsonSchemaValue = {"type": "string", "contentEncoding": "base64"}
_ARRAY_RETURNS: JsonSchemaValue = {
    "type": "object",
    "properties": {"dtype": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                   "data": {"type": "array"}},
    "required": ["dtype", "shape", "data"],
    "description": "numpy array: {dtype, shape, data (nested list)}",
}


def _array_rest(spec: Array) -> _Rest:
    return _Rest("ndarray", spec.parse, accepts=spec.json_schema(), returns=_ARRAY_RETURNS,
                 array=spec)


def array_spec(metadata: Iterable[Any]) -> Array:
    """The :class:`Array` spec among a field's ``metadata`` (any dtype and shape if none)."""
    for m in metadata:
        if isinstance(m, Array):
            return m
        if isinstance(m, _Rest) and m.array is not None:
            return m.array
    return Array()


IMAGE_FORMAT = "base64-image"
"""The JSON schema ``format`` of an image sent as a string: the base64 of an image file (or a
``data:`` URL of one); a schema cannot say "an image file", so the format names it."""
_IMAGE_TEXT: JsonSchemaValue = {"type": "string", "format": IMAGE_FORMAT, "minLength": 1}
_IMAGE_KEYS = {"data", "media_type", "mode", "size"}
"""An image object's keys: its data, and what a result says beside it (taken back, unread)."""
_IMAGE = _Rest("image", _image_from_rest, accepts={
    "anyOf": [_IMAGE_TEXT, {"type": "object", "properties": {
        "data": _IMAGE_TEXT, "media_type": {"type": "string"}, "mode": {"type": "string"},
        "size": {"type": "array", "items": {"type": "integer"}}},
        "required": ["data"], "additionalProperties": False}],
    "description": "image file (PNG, JPEG, ...) as base64 or data URL",
}, returns={
    "type": "object",
    "properties": {"media_type": {"const": "image/png"}, "mode": {"type": "string"},
                   "size": {"type": "array", "items": {"type": "integer"}}, "data": _BASE64},
    "required": ["media_type", "mode", "size", "data"],
    "description": "image: a PNG file as base64, with its mode and size",
})
_BYTES = _Rest("bytes", _bytes_from_rest, accepts=_BASE64, returns=_BASE64)


def rest_annotation(annotation: Any) -> Any:
    """The annotation pydantic validates REST input with: arrays, images and bytes get their
    REST forms, also inside lists, dicts, tuples and unions."""
    if is_array_type(annotation):
        return Annotated[annotation, _array_rest(Array())]
    if typing.get_origin(annotation) is Annotated:
        inner, *meta = typing.get_args(annotation)
        spec = next((m for m in meta if isinstance(m, Array)), None)
        if is_array_type(inner) and spec is not None:
            rest = [m for m in meta if m is not spec]
            return Annotated[(inner, _array_rest(spec), *rest)]
        if is_array_type(inner) or is_image_type(inner):
            return Annotated[(inner, _array_rest(Array()) if is_array_type(inner) else _IMAGE,
                              *meta)]
        mapped_inner = rest_annotation(inner)
        if mapped_inner is not inner:  # e.g. a discriminated union of arrays and lists
            return Annotated[(mapped_inner, *meta)]
    if is_image_type(annotation):
        return Annotated[annotation, _IMAGE]
    if annotation is bytes:
        return Annotated[bytes, _BYTES]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is None or not args or origin is Annotated:
        return annotation
    mapped = tuple(rest_annotation(a) if a is not Ellipsis else a for a in args)
    if mapped == args:
        return annotation
    if origin in (typing.Union, types.UnionType):
        return typing.Union[mapped]  # noqa: UP007
    return origin[mapped]


def to_rest(value: Any) -> Any:
    """A Python value as JSON for REST responses (arrays, images, bytes, pydantic models)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): to_rest(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_rest(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    module = type(value).__module__
    if module == "numpy":
        if hasattr(value, "shape") and hasattr(value, "tolist") and value.ndim > 0:
            return {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.tolist()}
        return value.item()
    if module.startswith("PIL."):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return {"media_type": "image/png", "mode": value.mode, "size": list(value.size),
                "data": base64.b64encode(buffer.getvalue()).decode()}
    if hasattr(value, "model_dump"):
        return to_rest(value.model_dump(mode="python"))
    raise TypeError(f"cannot render {type(value).__name__} as JSON")
