"""``/v1/services``: what is served, and one-step jobs of a service API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter

from api.catalog import ServiceInfo, ServiceList, service_info
from api.deps import Authorized, BraidDep
from api.problems import UNAUTHORIZED, UNAVAILABLE, responses
from api.routes._typed import add_submit_route
from app._registry import Registry

__all__ = ["router"]


def router(registry: Registry, image_formats: Sequence[str]) -> APIRouter:
    """The routes, a submit route per service API of ``registry`` (whose multipart image
    parts may be of ``image_formats``)."""
    r = APIRouter(prefix="/v1/services", tags=["services"], dependencies=[Authorized],
                  responses=responses(UNAUTHORIZED))

    @r.get("", summary="List services, their queues, resources and API schemas",
           response_model=ServiceList,
           responses=responses(UNAVAILABLE))
    async def list_services(braid: BraidDep) -> dict[str, Any]:
        stats = await braid.queues()
        processes = await braid.processes()
        return {"services": [service_info(svc, stats[svc.name], processes[svc.name])
                             for svc in braid.registry.all_services]}

    @r.get("/{name}", summary="One service: its queue, resources and API schemas",
           response_model=ServiceInfo,
           responses=responses({404: "No such service (the answer names the known ones)"}
                               | UNAVAILABLE))
    async def get_service(name: str, braid: BraidDep) -> dict[str, Any]:
        service = braid.registry.service(name)
        stats = await braid.queues()
        processes = await braid.processes()
        return service_info(service, stats[service.name], processes[service.name])

    for svc in registry.services.values():
        for spec in svc.apis.values():
            add_submit_route(r, f"/{svc.name}/{spec.name}/jobs", registry.api_pipeline(
                svc.name, spec.name), f"Run {svc.name}.{spec.name}", spec.func.__doc__,
                image_formats)

    @r.post("/{service}/{api}/jobs", include_in_schema=False)
    async def unknown(service: str, api: str, braid: BraidDep) -> None:
        braid.registry.api(service, api)

    return r
