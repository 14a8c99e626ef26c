"""The wire format: JSON only, never pickle.

JSON-safe values travel as they are. numpy arrays, PIL images and bytes travel in a tagged
envelope (``{"__braid__": "ndarray", ...}``) that round-trips exactly (dtype, shape, image
mode, size and palette); so does a dict that has the key ``"__braid__"`` itself. An encoded
value larger than the blob threshold is stored in Redis under its own key with a TTL and
travels as a reference.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any, Protocol

from app._protocol import blob_key

__all__ = ["BlobStore", "decode", "dumps", "encode", "is_ref", "is_ref_text", "load_wire", "loads",
           "pack", "pack_text"]

TAG = "__braid__"


class BlobStore(Protocol):
    """Where large values go: a sync Redis client is one."""

    def get(self, name: str) -> Any: ...


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode(value: Any) -> Any:
    """A Python value as a JSON-safe structure (envelopes for arrays, images, bytes)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        items = {_key(k): encode(v) for k, v in value.items()}
        # a dict of the envelopes' own key travels in an envelope of its own
        return {TAG: "dict", "items": items} if TAG in items else items
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return {TAG: "bytes", "b64": _b64(bytes(value))}
    module = type(value).__module__
    if module == "numpy":
        if type(value).__name__ == "ndarray":
            if value.dtype.hasobject:
                raise TypeError("numpy arrays of dtype object cannot be sent; use a numeric dtype")
            return {TAG: "ndarray", "dtype": value.dtype.str, "shape": list(value.shape),
                    "b64": _b64(value.tobytes(order="C"))}
        return value.item()
    if module.startswith("PIL."):
        envelope = {TAG: "image", "mode": value.mode, "size": list(value.size),
                    "b64": _b64(value.tobytes())}
        palette = value.getpalette() if value.mode in ("P", "PA") else None
        if palette is not None:
            envelope["palette"] = palette
        return envelope
    if hasattr(value, "model_dump"):
        return encode(value.model_dump(mode="python"))
    raise TypeError(
        f"cannot send a {type(value).__module__}.{type(value).__name__}: return JSON types, "
        "pydantic models, numpy arrays, PIL images or bytes"
    )


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int | float | bool) or key is None:
        return json.dumps(key)
    raise TypeError(f"dict keys must be strings, not {type(key).__name__}")


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(TAG)
    if kind is None:
        return {k: decode(v) for k, v in value.items()}
    if kind == "dict":
        return {k: decode(v) for k, v in value["items"].items()}
    if kind == "bytes":
        return base64.b64decode(value["b64"])
    if kind == "ndarray":
        import numpy as np

        buffer = base64.b64decode(value["b64"])
        return np.frombuffer(buffer, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()
    if kind == "image":
        from PIL import Image

        image = Image.frombytes(value["mode"], tuple(value["size"]), base64.b64decode(value["b64"]))
        if "palette" in value:
            image.putpalette(value["palette"])
        return image
    raise ValueError(f"unknown wire envelope {kind!r}")


def dumps(value: Any) -> str:
    """Strict JSON: NaN and infinities are refused (no JSON reader could take them back)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads(text: str | bytes) -> Any:
    return json.loads(text)


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting(text: bytes, limit: int) -> int | None:
    """How deeply JSON ``text`` nests arrays and objects, when deeper than ``limit``, else
    None; without parsing it (a parser recurses: past about 1,000 levels it fails with a
    ``RecursionError``). Linear and vectorised: it runs on the API's event loop."""
    if text.count(b"[") + text.count(b"{") <= limit:  # too few to nest that deep
        return None
    import numpy as np

    brackets = np.frombuffer(_STRING.sub(b"", text).translate(None, _NOT_BRACKETS), np.uint8)
    levels = np.cumsum(np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1))
    deepest = int(levels.max()) if levels.size else 0
    return deepest if deepest > limit else None


def pack(value: Any, threshold: int) -> tuple[str, tuple[str, str] | None]:
    """Encode ``value`` to JSON text. Above ``threshold`` bytes the text must be stored under
    a key of its own: returns a reference and ``(key, text)`` to store, else ``(text, None)``."""
    return pack_text(dumps(encode(value)), threshold)


_REF_PREFIX = dumps({TAG: "ref"})[:-1].encode()


def pack_text(text: str, threshold: int) -> tuple[str, tuple[str, str] | None]:
    """:func:`pack` for text that is already wire JSON."""
    if len(text) <= threshold:
        return text, None
    key = blob_key(uuid.uuid4().hex)
    return dumps({TAG: "ref", "key": key, "size": len(text)}), (key, text)


def is_ref(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get(TAG) == "ref"


def is_ref_text(text: bytes) -> bool:
    """Whether packed wire text is a reference, without parsing it (``pack_text`` writes
    references exactly this way)."""
    return text.startswith(_REF_PREFIX)


def load_wire(text: str | bytes, blobs: BlobStore) -> Any:
    """Wire JSON (envelopes not decoded), following a reference to a stored blob."""
    raw = loads(text)
    if is_ref(raw):
        stored = blobs.get(raw["key"])
        if stored is None:
            raise LookupError(f"value {raw['key']} expired; raise BRAID_JOB_TTL_S")
        raw = loads(stored)
    return raw
