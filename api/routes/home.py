"""``GET /``: where to start. An HTML page for browsers (``Accept: text/html``), the same
links as JSON for everyone else (curl, scripts). Guarded like ``/docs``: it names what
``/openapi.json`` shows."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from api.deps import BraidDep, Documented
from api.jobs import ViewResponse
from api.problems import UNAUTHORIZED, responses

__all__ = ["Home", "router"]


class Link(BaseModel):
    """One place to go from here."""

    href: str
    title: str


class Home(BaseModel):
    """The API's entry points, and what it serves."""

    name: str = "Braid"
    links: list[Link]
    pipelines: list[Link] = Field(description="Each pipeline, at `GET /v1/pipelines/{name}`")
    services: list[Link] = Field(description="Each service, at `GET /v1/services/{name}`")


def _links(flower: str | None) -> list[Link]:
    links = [Link(href="/ui", title="The job page: jobs, their step graphs live, pipelines, "
                                   "services"),
             Link(href="/docs", title="API docs (Swagger UI; try every route)"),
             Link(href="/openapi.json", title="OpenAPI schema"),
             Link(href="/v1/pipelines", title="Pipelines: input schemas, step graphs"),
             Link(href="/v1/services", title="Services: queues, workers, API schemas"),
             Link(href="/v1/jobs", title="Recent jobs"),
             Link(href="/healthz", title="Liveness"),
             Link(href="/readyz", title="Readiness: Redis, and workers for every pipeline"),
             Link(href="/metrics", title="Prometheus metrics")]
    if flower is not None:
        links.append(Link(href=flower, title="Flower: workers, queues, pools (basic auth)"))
    return links


def _html(home: Home) -> str:
    def items(links: list[Link]) -> str:
        return "".join(f'<li><a href="{escape(link.href)}">{escape(link.title)}</a></li>'
                       for link in links) or "<li>none</li>"

    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Braid</title></head>"
            "<body><h1>Braid</h1><p>Composed ML models as REST jobs: submit, then poll, "
            "wait for or stream the job.</p>"
            f"<ul>{items(home.links)}</ul><h2>Pipelines</h2><ul>{items(home.pipelines)}</ul>"
            f"<h2>Services</h2><ul>{items(home.services)}</ul></body></html>")


def router() -> APIRouter:
    r = APIRouter(tags=["home"])

    @r.get("/", summary="Where to start: links to the docs, the resources and health",
           response_model=Home, dependencies=[Documented],
           responses=responses(UNAUTHORIZED, also={200: {
               "content": {"text/html": {}},
               "description": "HTML for `Accept: text/html`, else JSON"}}))
    async def home(request: Request, braid: BraidDep) -> Response:
        settings = braid.settings
        flower = settings.flower_url if settings.flower else None
        found = Home(
            links=_links(flower),
            pipelines=[Link(href=f"/v1/pipelines/{name}", title=name)
                       for name in braid.registry.pipelines],
            services=[Link(href=f"/v1/services/{s.name}", title=s.name)
                      for s in braid.registry.all_services])
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_html(found))
        return ViewResponse(found)

    return r
