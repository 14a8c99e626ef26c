"""The FastAPI app: ``uvicorn --factory api.main:create_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from api import docs, problems
from api.deps import Braid
from api.hub import Hub
from api.metrics import Metrics
from api.routes import health, home, jobs, pipelines, services, ui
from api.traces import Traces
from app import Settings, get_settings
from app._celery import create_celery
from app._jobs import JobStore
from app._pipeline import Pipeline
from app._registry import Registry, load

__all__ = ["create_app"]

_REDIS_CONNECTIONS = 100
_STREAM_CONNECTIONS = 2000
"""How many clients of one API process can follow chunk streams at once
(``/v1/jobs/{id}/stream``); Redis's own limit is 10,000 clients in all."""


def _pipeline_named(registry: Registry, name: str) -> Pipeline | None:
    try:
        return registry.job_pipeline(name)
    except LookupError:  # a pipeline this API no longer serves
        return None


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """Build the API for the services and pipelines of ``settings.apps``."""
    settings = settings or get_settings()
    registry = registry or load(settings.apps)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # a request waits for a free connection (up to the socket timeout): redis-py's
        # default pool answers a burst beyond its 100 connections with "Too many
        # connections", which would fail those jobs' submissions with 503
        client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
            settings.broker_url, max_connections=_REDIS_CONNECTIONS, timeout=10,
            socket_connect_timeout=2, socket_timeout=10, health_check_interval=30,
            # a pooled connection that Redis closed (a restart) fails on its first use: it
            # reconnects and sends again (a pool's connections retry nothing by default;
            # every write of the API is safe to send twice, see create_job.lua)
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3)))
        listener = aioredis.Redis.from_url(settings.broker_url, socket_connect_timeout=2)
        # a stream's follower holds a connection while its read blocks: followers have a
        # pool of their own, so that however many there are, submissions never wait for one
        streams = aioredis.Redis.from_url(settings.broker_url, socket_connect_timeout=2,
                                          socket_timeout=10, max_connections=_STREAM_CONNECTIONS)
        store = JobStore(client, settings.job_ttl_s)
        # the jobs lists it trims: each pipeline's, and each direct API call's
        named = [*registry.pipelines, *(a.task_name for s in registry.all_services
                                        for a in s.apis.values())]
        hub = Hub(listener, store, settings.sweep_interval_s, named)
        celery = create_celery(settings, registry.all_services)
        metrics = Metrics()
        hub.listeners.append(lambda event: metrics.observe(event, client))
        traces = None
        if settings.otlp_endpoint:
            traces = Traces(settings.otlp_endpoint, settings.otlp_service_name, store,
                            partial(_pipeline_named, registry))
            hub.listeners.append(traces.observe)
            await traces.start()
        app.state.braid = Braid(settings, registry, store, celery, hub, metrics, streams, traces)
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            if traces is not None:
                await traces.stop()
            await client.aclose()
            await listener.aclose()
            await streams.aclose()

    # /docs and /openapi.json are served by api.docs (local files, and behind the API's keys
    # unless published), and ReDoc (CDN only) is left out
    app = FastAPI(title="Braid", summary="Composed ML models as REST jobs",
                  version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    problems.install(app)
    docs.install(app)
    app.include_router(home.router())
    app.include_router(services.router(registry, settings.image_formats))
    app.include_router(pipelines.router(registry, settings.image_formats))
    app.include_router(jobs.router())
    app.include_router(health.router())
    app.include_router(ui.router())
    return app
