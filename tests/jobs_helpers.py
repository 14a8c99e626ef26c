"""Submitting and waiting for jobs over REST, for the tests."""

from __future__ import annotations

from typing import Any

import httpx

FINAL = {"succeeded", "failed", "cancelled"}


def submit(http: httpx.Client, path: str, body: dict[str, Any]) -> str:
    response = http.post(path, json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait(http: httpx.Client, job: str, timeout: float = 30) -> dict[str, Any]:
    """The job once final; fails if it is not final within ``timeout`` seconds."""
    view: dict[str, Any] = http.get(f"/v1/jobs/{job}", params={"wait": timeout},
                                    timeout=timeout + 10).json()
    assert view["state"] in FINAL, f"job still {view['state']} after {timeout}s: {view}"
    return view


def run(http: httpx.Client, path: str, body: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    return wait(http, submit(http, path, body), timeout)


def marks(redis_client: Any, key: str) -> int:
    return int(redis_client.get(f"test:mark:{key}") or 0)


def drained(http: httpx.Client, *services: str, timeout: float = 20) -> None:
    """Wait until nothing is waiting in, or reserved from, these services' queues: a step
    published there by mistake has then been consumed and run to its end (acks are late)."""
    from tests.harness import wait_for

    def empty() -> bool:
        depths = {s["name"]: s["depth"] for s in http.get("/v1/services").json()["services"]}
        return all(depths[name] == 0 for name in services)

    wait_for(empty, timeout, f"the queues of {', '.join(services)} to drain")
