"""The no-op graph's functions, shared by Braid's bench services (``bench/services.py``) and
the BentoML peer (``service.py`` beside this file), so both graphs run the same code. It
imports nothing of either system: the peer runs in its own venv."""

from __future__ import annotations

from typing import Any


def a(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


def b(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


def c(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


def join(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    return {"b": left, "c": right}
