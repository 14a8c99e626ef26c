"""What routes depend on, as ``Annotated`` dependencies."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, Request

from api.hub import Hub
from api.metrics import Metrics
from app import Settings, Unauthorized
from app._canvas import Template
from app._jobs import JobStore
from app._pipeline import Pipeline
from app._registry import Registry

__all__ = ["Authorized", "Braid", "BraidDep"]


@dataclass
class Braid:
    """The API process's long-lived parts."""

    settings: Settings
    registry: Registry
    store: JobStore
    celery: Celery
    hub: Hub
    metrics: Metrics

    templates: dict[str, Template] = field(default_factory=dict)

    def template(self, pipeline: Pipeline) -> Template:
        """``pipeline``'s first messages, built on its first job."""
        found = self.templates.get(pipeline.name)
        if found is None:
            found = self.templates[pipeline.name] = Template.of(self.celery, pipeline)
        return found

    async def queues(self) -> dict[str, Any]:
        """Queue depth and live workers per service (the autoscaling signal)."""
        from app._queues import queue_stats

        window = self.settings.alive_window_s
        return await queue_stats(self.store.client, self.registry.all_services, window)


# async, like every dependency here: FastAPI runs a sync one in a thread pool, a thread
# hop per request that cost the submit path more than the rest of its dependencies
async def _braid(request: Request) -> Braid:
    braid: Braid = request.app.state.braid
    return braid


BraidDep = Annotated[Braid, Depends(_braid)]


async def _authorize(request: Request, braid: BraidDep) -> None:
    keys = braid.settings.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not any(
        secrets.compare_digest(token.encode(), k.get_secret_value().encode()) for k in keys
    ):
        raise Unauthorized("this API needs `Authorization: Bearer <key>` with a key from "
                           "BRAID_API_KEYS")


Authorized = Depends(_authorize)
