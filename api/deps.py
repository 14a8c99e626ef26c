"""What routes depend on, as ``Annotated`` dependencies."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any

import redis.asyncio as aioredis
from celery import Celery
from fastapi import Depends, Request

from api.hub import Hub
from api.metrics import Metrics
from api.traces import Traces
from app import Settings, Unauthorized
from app._canvas import Template
from app._jobs import JobStore
from app._pipeline import Pipeline
from app._protocol import DEAD_LETTERS
from app._registry import CORE, Registry
from app._service import ServiceSpec

__all__ = ["KEY_COOKIE", "Authorized", "Braid", "BraidDep", "Documented", "has_key", "is_key",
           "needs"]


def needs(pipeline: Pipeline) -> list[ServiceSpec]:
    """The services whose workers a pipeline's jobs need (the core one runs its maps)."""
    found = {n.service.name: n.service for n in pipeline.nodes.values()}
    if any(n.is_map for n in pipeline.nodes.values()):
        found[CORE.name] = CORE
    return list(found.values())


@dataclass
class Braid:
    """The API process's long-lived parts."""

    settings: Settings
    registry: Registry
    store: JobStore
    celery: Celery
    hub: Hub
    metrics: Metrics
    streams: aioredis.Redis
    """The client that follows chunk streams (blocking reads, a pool of its own)."""
    traces: Traces | None = None
    """The trace exporter, where BRAID_OTLP_ENDPOINT is set."""

    templates: dict[str, Template] = field(default_factory=dict)
    rooms: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def template(self, pipeline: Pipeline) -> Template:
        """``pipeline``'s first messages, built on its first job."""
        found = self.templates.get(pipeline.name)
        if found is None:
            found = self.templates[pipeline.name] = Template.of(self.celery, pipeline)
        return found

    def room(self, pipeline: Pipeline) -> list[tuple[str, int]]:
        """Each queue ``pipeline``'s jobs need, and how many messages may wait in it."""
        found = self.rooms.get(pipeline.name)
        if found is None:
            found = self.rooms[pipeline.name] = sorted(
                (s.queue, s.max_queued or self.settings.max_queued) for s in needs(pipeline))
        return found

    async def queues(self) -> dict[str, Any]:
        """Queue depth and live workers per service (the autoscaling signal)."""
        from app._queues import queue_stats

        window = self.settings.alive_window_s
        return await queue_stats(self.store.client, self.registry.all_services, window)

    async def processes(self) -> dict[str, list[dict[str, Any]]]:
        """Per service, its live workers' processes: device, loaded model versions."""
        from app._queues import live_processes

        return await live_processes(self.store.client, self.registry.all_services,
                                    self.settings.alive_window_s)

    async def dead_letters(self) -> int:
        """How many refused broker messages are kept aside (see app._dead_letters)."""
        return int(await self.store.client.llen(DEAD_LETTERS))


# async, like every dependency here: FastAPI runs a sync one in a thread pool, a thread
# hop per request that cost the submit path more than the rest of its dependencies
async def _braid(request: Request) -> Braid:
    braid: Braid = request.app.state.braid
    return braid


BraidDep = Annotated[Braid, Depends(_braid)]


KEY_COOKIE = "braid_key"
"""The cookie the job page's login sets (http-only, secure, same-site): a browser sends it
with the page's own requests, which cannot carry a bearer header (``EventSource``)."""


def is_key(token: str, settings: Settings) -> bool:
    """Whether ``token`` is one of ``BRAID_API_KEYS``."""
    return any(secrets.compare_digest(token.encode(), k.get_secret_value().encode())
               for k in settings.api_keys)


def has_key(request: Request, settings: Settings) -> bool:
    """Whether ``request`` may see what ``BRAID_API_KEYS`` guards (always, without keys):
    it carries a key as ``Authorization: Bearer <key>``, or in the job page's cookie."""
    if not settings.api_keys:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and is_key(token, settings):
        return True
    return is_key(request.cookies.get(KEY_COOKIE, ""), settings)


async def _authorize(request: Request, braid: BraidDep) -> None:
    if not has_key(request, braid.settings):
        raise Unauthorized("this API needs `Authorization: Bearer <key>` with a key from "
                           "BRAID_API_KEYS")


async def _authorize_docs(request: Request, braid: BraidDep) -> None:
    if not braid.settings.public_docs:
        await _authorize(request, braid)


Authorized = Depends(_authorize)
"""A route that needs a key from ``BRAID_API_KEYS`` (where keys are set)."""
Documented = Depends(_authorize_docs)
"""A route of the docs: as :data:`Authorized`, unless ``BRAID_PUBLIC_DOCS`` publishes them."""
