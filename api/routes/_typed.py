"""One typed route per service API and per pipeline, so /docs shows each request body."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import Authorized, BraidDep
from api.jobs import submit
from app._pipeline import Pipeline

__all__ = ["add_submit_route"]

_ACCEPTED = {202: {"description": "Accepted: the job is queued; follow `status_url`."},
             404: {"description": "Unknown service, API or pipeline"},
             422: {"description": "The body does not match the declared types"},
             503: {"description": "Redis is unreachable; nothing was queued"}}


def add_submit_route(router: APIRouter, path: str, pipeline: Pipeline, summary: str,
                     description: str | None) -> None:
    model = pipeline.input_model

    async def endpoint(request: Request, braid: BraidDep, body: BaseModel) -> JSONResponse:
        return await submit(braid, request, pipeline, body)

    params = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        inspect.Parameter("braid", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=BraidDep),
        inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=Annotated[model, Body()]),
    ]
    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler: Callable[..., Awaitable[Any]] = endpoint
    router.add_api_route(path, handler, methods=["POST"], status_code=202, summary=summary,
                         description=description, responses=_ACCEPTED,  # type: ignore[arg-type]
                         dependencies=[Authorized], operation_id=f"submit_{pipeline.name}")
