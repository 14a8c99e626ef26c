"""``/docs`` and ``/openapi.json``: Swagger UI, its script and style served from the installed
``fastapi-swagger`` package, so the page works on a machine without internet. Where
BRAID_API_KEYS is set they need a key, as ``/v1`` does, unless BRAID_PUBLIC_DOCS publishes
them; the page's static files are public (they are Swagger UI's own)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from api.deps import Documented
from app import NotFound

__all__ = ["ASSETS", "OPENAPI", "install"]

OPENAPI = "/openapi.json"
"""Where the OpenAPI document is served (the app is built with ``openapi_url=None``)."""

ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "favicon-32x32.png": "image/png"}
"""The files /docs loads, under ``/docs/static/``, with their media types."""


def install(app: FastAPI) -> None:
    """Serve ``/docs``, its assets and the OpenAPI document (the app is built with
    ``docs_url=None`` and ``openapi_url=None``)."""
    folder = Path(str(files("fastapi_swagger.resources")))

    @app.get(OPENAPI, include_in_schema=False, dependencies=[Documented])
    async def openapi() -> JSONResponse:
        schema: dict[str, Any] = app.openapi()
        return JSONResponse(schema)

    @app.get("/docs", include_in_schema=False, dependencies=[Documented])
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI}", title=f"{app.title} API",
            swagger_js_url=f"{root}/docs/static/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/static/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/static/favicon-32x32.png",
            # the default validator badge would call validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None})

    @app.get("/docs/static/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise NotFound(f"no docs asset {name!r}; /docs loads {', '.join(ASSETS)}")
        return FileResponse(folder / name, media_type=ASSETS[name])
