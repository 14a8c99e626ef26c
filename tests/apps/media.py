"""A pipeline that takes and returns numpy arrays, PIL images and bytes (on the echo service)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from app import Value, each, pipeline, step
from tests.apps.basic import Echo


@pipeline(name="media")
def media(a: np.ndarray, rows: list[np.ndarray], rgb: Image.Image, gray: Image.Image,
          n: int) -> dict[str, Value[Any]]:
    """Arrays, a map of arrays, images and bytes, side by side in one result."""
    return {"arrays": step(Echo.arrays, a, a), "pairs": each(Echo.arrays, rows, a),
            "images": step(Echo.images, rgb, gray), "blob": step(Echo.big, n)}
