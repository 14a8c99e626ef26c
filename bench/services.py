"""No-op services (one queue each) and the pipelines the benchmark runs."""

from __future__ import annotations

from typing import Any

from app import Value, api, pipeline, service, step
from bench.bentoml_peer.noop import a, b, c, join


@service(name="noop-a", timeout=10)
class NoopA:
    def __init__(self) -> None:
        pass

    @api
    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        return a(payload)


@service(name="noop-b", timeout=10)
class NoopB:
    def __init__(self) -> None:
        pass

    @api
    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        return b(payload)


@service(name="noop-c", timeout=10)
class NoopC:
    def __init__(self) -> None:
        pass

    @api
    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        return c(payload)

    @api
    def join(self, left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
        return join(left, right)


@pipeline(name="noop-1")
def noop_1(payload: dict[str, Any]) -> Value[dict[str, Any]]:
    return step(NoopA.run, payload)


@pipeline(name="noop-graph")
def noop_graph(payload: dict[str, Any]) -> Value[dict[str, Any]]:
    """A, then B and C in parallel on A's output, joined."""
    first = step(NoopA.run, payload)
    return step(NoopC.join, step(NoopB.run, first), step(NoopC.run, first))


@pipeline(name="noop-chain-10")
def noop_chain_10(payload: dict[str, Any]) -> Value[dict[str, Any]]:
    value = step(NoopA.run, payload)
    for i in range(9):
        value = step((NoopA.run, NoopB.run, NoopC.run)[(i + 1) % 3], value)
    return value

