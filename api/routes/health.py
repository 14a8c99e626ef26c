"""``/healthz``, ``/readyz`` and ``/metrics``: is the API alive, can it run every pipeline,
and what it has measured."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from api.deps import Authorized, BraidDep
from api.problems import UNAUTHORIZED, UNAVAILABLE, responses
from app._pipeline import Pipeline
from app._registry import CORE

__all__ = ["Readiness", "router"]


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether every pipeline can run now (the same body with 200 and with 503)."""

    status: Literal["ok", "unavailable"]
    services_without_workers: list[str] = Field(
        default_factory=list, description="Services with no live worker")
    pipelines_blocked: dict[str, list[str]] = Field(
        default_factory=dict, description="Per pipeline that cannot run, the services it "
        "waits for")
    redis: str | None = Field(default=None, description="Why Redis is unreachable, when it is")


def _needs(pipeline: Pipeline) -> set[str]:
    """The services a pipeline's jobs need workers of."""
    needed = {n.service.name for n in pipeline.nodes.values()}
    if any(n.is_map for n in pipeline.nodes.values()):
        needed.add(CORE.name)
    return needed


def router() -> APIRouter:
    r = APIRouter(tags=["health"])

    @r.get("/healthz", summary="The API process is alive", response_model=Liveness)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @r.get("/readyz", summary="Redis is reachable and every pipeline has live workers for "
           "its services", response_model=Readiness,
           responses={200: {"description": "Ready"}, 503: {
               "model": Readiness, "description": "Redis is unreachable, or a pipeline has "
               "a service without live workers"}})
    async def readyz(braid: BraidDep) -> Any:
        try:
            stats = await braid.queues()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "redis": str(exc)}, status_code=503)
        idle = sorted(name for name, s in stats.items() if s.workers == 0)
        blocked = {p.name: sorted(set(idle) & _needs(p)) for p in braid.registry.pipelines.values()}
        blocked = {name: services for name, services in blocked.items() if services}
        body = {"status": "unavailable" if blocked else "ok",
                "services_without_workers": idle, "pipelines_blocked": blocked}
        return JSONResponse(body, status_code=503 if blocked else 200)

    @r.get("/metrics", summary="Prometheus metrics", dependencies=[Authorized],
           response_class=PlainTextResponse,
           responses=responses(UNAUTHORIZED | UNAVAILABLE, also={200: {
               "content": {CONTENT_TYPE_LATEST: {}}, "description": "The text exposition"}}))
    async def metrics(braid: BraidDep) -> PlainTextResponse:
        return PlainTextResponse(braid.metrics.render(await braid.queues()),
                                 media_type=CONTENT_TYPE_LATEST)

    return r
