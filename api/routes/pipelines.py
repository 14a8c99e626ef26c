"""``/v1/pipelines``: declared pipelines and their jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter

from api.catalog import PipelineInfo, PipelineList, pipeline_info
from api.deps import Authorized, BraidDep
from api.problems import UNAUTHORIZED, responses
from api.routes._typed import add_submit_route
from app._registry import Registry

__all__ = ["router"]


def router(registry: Registry, image_formats: Sequence[str]) -> APIRouter:
    """The routes, a submit route per pipeline of ``registry`` (whose multipart image parts
    may be of ``image_formats``)."""
    r = APIRouter(prefix="/v1/pipelines", tags=["pipelines"], dependencies=[Authorized],
                  responses=responses(UNAUTHORIZED))

    @r.get("", summary="List pipelines with their input schemas and step graphs",
           response_model=PipelineList)
    async def list_pipelines(braid: BraidDep) -> dict[str, Any]:
        return {"pipelines": [pipeline_info(p) for p in braid.registry.pipelines.values()]}

    @r.get("/{name}", summary="One pipeline: its input schema, step graph and submit URL",
           response_model=PipelineInfo,
           responses=responses({404: "No such pipeline (the answer names the known ones)"}))
    async def get_pipeline(name: str, braid: BraidDep) -> dict[str, Any]:
        return pipeline_info(braid.registry.pipeline(name))

    for p in registry.pipelines.values():
        add_submit_route(r, f"/{p.name}/jobs", p, f"Run pipeline {p.name}", p.func.__doc__,
                         image_formats)

    @r.post("/{name}/jobs", include_in_schema=False)
    async def unknown(name: str, braid: BraidDep) -> None:
        braid.registry.pipeline(name)

    return r
