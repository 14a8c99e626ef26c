"""``/v1/pipelines``: declared pipelines and their jobs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Authorized, BraidDep
from api.routes._typed import add_submit_route
from app._registry import Registry

__all__ = ["router"]


def router(registry: Registry) -> APIRouter:
    r = APIRouter(prefix="/v1/pipelines", tags=["pipelines"], dependencies=[Authorized])

    @r.get("", summary="List pipelines with their input schemas and step graphs")
    async def list_pipelines(braid: BraidDep) -> dict[str, Any]:
        return {"pipelines": [
            {**p.describe(), "submit_url": f"/v1/pipelines/{p.name}/jobs"}
            for p in braid.registry.pipelines.values()
        ]}

    for p in registry.pipelines.values():
        add_submit_route(r, f"/{p.name}/jobs", p, f"Run pipeline {p.name}", p.func.__doc__)

    @r.post("/{name}/jobs", include_in_schema=False)
    async def unknown(name: str, braid: BraidDep) -> None:
        braid.registry.pipeline(name)

    return r
