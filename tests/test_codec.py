"""The wire format round-trips exactly and keeps large values off the broker."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from app import _codec


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    np.arange(-6, 6, dtype=np.int64).reshape(4, 3) * 2**40,
    np.zeros((0, 3), dtype=np.uint8),
])
def test_arrays_round_trip_exactly(array: np.ndarray) -> None:
    back = _codec.decode(json.loads(_codec.dumps(_codec.encode(array))))
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16", "F"])
def test_images_round_trip_exactly(mode: str) -> None:
    image = Image.effect_mandelbrot((31, 17), (-2, -1.5, 1, 1.5), 50).convert(
        "L" if mode in ("I;16", "F") else mode)
    if mode in ("I;16", "F"):
        image = image.convert(mode) if mode == "F" else image.convert("I").convert(mode)
    back = _codec.decode(json.loads(_codec.dumps(_codec.encode(image))))
    assert (back.mode, back.size) == (image.mode, image.size)
    assert back.tobytes() == image.tobytes()
    if mode == "P":
        assert back.getpalette() == image.getpalette()


def test_nested_values_and_bytes_round_trip() -> None:
    value = {"a": [1, 2.5, None, "x"], "b": b"\x00\xff", "c": {"d": np.int64(3)}}
    assert _codec.decode(_codec.loads(_codec.dumps(_codec.encode(value)))) == {
        "a": [1, 2.5, None, "x"], "b": b"\x00\xff", "c": {"d": 3}}


def test_values_above_threshold_become_references() -> None:
    small, blob = _codec.pack("x" * 10, threshold=100)
    assert blob is None and json.loads(small) == "x" * 10
    ref, blob = _codec.pack("x" * 1000, threshold=100)
    assert blob is not None and len(ref) < 100
    assert _codec.is_ref(json.loads(ref)) and json.loads(blob[1]) == "x" * 1000


def test_unsendable_values_say_what_to_send() -> None:
    with pytest.raises(TypeError, match="return JSON types, pydantic models, numpy arrays"):
        _codec.encode(object())


def test_references_are_recognised_without_parsing() -> None:
    ref, _ = _codec.pack("x" * 1000, threshold=100)
    assert _codec.is_ref_text(ref.encode())
    assert not _codec.is_ref_text(_codec.pack({"k": "v"}, threshold=100)[0].encode())
