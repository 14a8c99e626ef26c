"""``/healthz``, ``/readyz`` and ``/metrics``: is the API alive, can it run every pipeline,
and what it has measured."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from api.deps import Authorized, Braid, BraidDep, has_key, needs
from api.problems import UNAUTHORIZED, UNAVAILABLE, responses

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


async def _readiness(braid: Braid) -> dict[str, Any]:
    try:
        stats = await braid.queues()
    except Exception as exc:
        return {"status": "unavailable", "redis": str(exc)}
    idle = sorted(name for name, s in stats.items() if s.workers == 0)
    blocked = {p.name: sorted(set(idle) & {s.name for s in needs(p)})
               for p in braid.registry.pipelines.values()}
    blocked = {name: services for name, services in blocked.items() if services}
    return {"status": "unavailable" if blocked else "ok", "services_without_workers": idle,
            "pipelines_blocked": blocked}


def router() -> APIRouter:
    r = APIRouter(tags=["health"])

    @r.get("/healthz", summary="The API process is alive", response_model=Liveness)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @r.get("/readyz", summary="Redis is reachable and every pipeline has live workers for "
           "its services", response_model=Readiness,
           description="Where BRAID_API_KEYS is set, a request without a key gets the status "
           "alone (which services and pipelines wait is for key holders).",
           responses={200: {"description": "Ready"}, 503: {
               "model": Readiness, "description": "Redis is unreachable, or a pipeline has "
               "a service without live workers"}})
    async def readyz(request: Request, braid: BraidDep) -> Any:
        body = await _readiness(braid)
        status = 200 if body["status"] == "ok" else 503
        if not has_key(request, braid.settings):
            body = {"status": body["status"]}
        return JSONResponse(body, status_code=status)

    @r.get("/metrics", summary="Prometheus metrics", dependencies=[Authorized],
           response_class=PlainTextResponse,
           responses=responses(UNAUTHORIZED | UNAVAILABLE, also={200: {
               "content": {CONTENT_TYPE_LATEST: {}}, "description": "The text exposition"}}))
    async def metrics(braid: BraidDep) -> PlainTextResponse:
        return PlainTextResponse(braid.metrics.render(await braid.queues(),
                                                      await braid.dead_letters()),
                                 media_type=CONTENT_TYPE_LATEST)

    return r
