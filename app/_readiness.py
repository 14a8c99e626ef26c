"""Watching a starting system until it is ready: its API's ``/readyz`` answers 200 and no
service is without a live worker. Meanwhile it says what it still waits for, each time that
changes (the API, Redis, the services still loading their models)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

__all__ = ["Readiness", "watch"]

_POLL_S = 0.25


@dataclass(frozen=True)
class Readiness:
    """How the watch ended: ``seconds`` since the start when ready, else None, with what
    it was still waiting for."""

    seconds: float | None
    waiting: str | None


def _waiting(http: httpx.Client, url: str) -> str | None:
    """What the system at ``url`` still waits for; None once it is ready."""
    try:
        response = http.get(f"{url}/readyz")
    except httpx.HTTPError:
        return "the API (starting)"
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if "redis" in body:
        return "Redis (the API cannot reach it yet)"
    idle = body.get("services_without_workers")
    if isinstance(idle, list) and idle:
        return f"{', '.join(map(str, idle))} (loading models)"
    if response.status_code == 200:
        return None
    return f"the API (/readyz answered {response.status_code})"


def watch(url: str, started: float, echo: Callable[[str], None], running: Callable[[], bool],
          timeout: float | None = None) -> Readiness:
    """Poll ``url``/readyz until the system is ready, ``running()`` turns false or
    ``timeout`` seconds pass since ``started`` (a ``time.monotonic()``); echo
    ``waiting for: ...`` each time what it waits for changes."""
    last: str | None = None
    with httpx.Client(timeout=2) as http:
        while running():
            waiting = _waiting(http, url)
            elapsed = time.monotonic() - started
            if waiting is None:
                return Readiness(elapsed, None)
            if waiting != last:
                echo(f"waiting for: {waiting}")
                last = waiting
            if timeout is not None and elapsed > timeout:
                break
            time.sleep(_POLL_S)
    return Readiness(None, last)
