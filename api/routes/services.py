"""``/v1/services``: what is served, and one-step jobs of a service API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Authorized, BraidDep
from api.routes._typed import add_submit_route
from app._registry import Registry

__all__ = ["router"]


def router(registry: Registry) -> APIRouter:
    r = APIRouter(prefix="/v1/services", tags=["services"], dependencies=[Authorized])

    @r.get("", summary="List services, their queues, resources and API schemas")
    async def list_services(braid: BraidDep) -> dict[str, Any]:
        stats = await braid.queues()
        return {"services": [
            {**svc.describe(), **stats[svc.name].describe(), "apis": [
                {"name": a.name, "task": a.task_name,
                 "submit_url": f"/v1/services/{svc.name}/{a.name}/jobs",
                 "input_schema": a.input_model.model_json_schema(),
                 "output_schema": a.output_schema()}
                for a in svc.apis.values()]}
            for svc in braid.registry.all_services
        ]}

    for svc in registry.services.values():
        for spec in svc.apis.values():
            add_submit_route(r, f"/{svc.name}/{spec.name}/jobs", registry.api_pipeline(
                svc.name, spec.name), f"Run {svc.name}.{spec.name}", spec.func.__doc__)

    @r.post("/{service}/{api}/jobs", include_in_schema=False)
    async def unknown(service: str, api: str, braid: BraidDep) -> None:
        braid.registry.api(service, api)

    return r
