"""The FastAPI app: ``uvicorn --factory api.main:create_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api import problems
from api.deps import Authorized, Braid, BraidDep
from api.hub import Hub
from api.metrics import Metrics
from api.routes import jobs, pipelines, services
from app import Settings, get_settings
from app._celery import create_celery
from app._jobs import JobStore
from app._pipeline import Pipeline
from app._registry import CORE, Registry, load

__all__ = ["create_app"]


def _needs(pipeline: Pipeline) -> set[str]:
    """The services a pipeline's jobs need workers of."""
    needed = {n.service.name for n in pipeline.nodes.values()}
    if any(n.is_map for n in pipeline.nodes.values()):
        needed.add(CORE.name)
    return needed


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """Build the API for the services and pipelines of ``settings.apps``."""
    settings = settings or get_settings()
    registry = registry or load(settings.apps)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = aioredis.Redis.from_url(settings.broker_url, socket_connect_timeout=2,
                                         socket_timeout=10)
        listener = aioredis.Redis.from_url(settings.broker_url, socket_connect_timeout=2)
        store = JobStore(client, settings.job_ttl_s)
        hub = Hub(listener, store, settings.sweep_interval_s)
        celery = create_celery(settings, registry.all_services)
        metrics = Metrics()
        hub.listeners.append(lambda event: metrics.observe(event, client))
        app.state.braid = Braid(settings, registry, store, celery, hub, metrics)
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            await client.aclose()
            await listener.aclose()

    app = FastAPI(title="Braid", summary="Composed ML models as REST jobs",
                  version="0.1.0", lifespan=lifespan)
    problems.install(app)
    app.include_router(services.router(registry))
    app.include_router(pipelines.router(registry))
    app.include_router(jobs.router())

    @app.get("/healthz", tags=["health"], summary="The API process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Redis is reachable and every pipeline has "
             "live workers for its services")
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

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics",
             dependencies=[Authorized], response_class=PlainTextResponse)
    async def metrics(braid: BraidDep) -> PlainTextResponse:
        return PlainTextResponse(braid.metrics.render(await braid.queues()),
                                 media_type=CONTENT_TYPE_LATEST)

    return app
