"""``/ui``: the job page, served by the API (no server of its own, nothing from a CDN).

Its pages are HTML shells that ``api/ui/ui.js`` fills from ``/v1`` and keeps live (the
jobs list refreshes, a job's graph follows its ``/events`` and its ``/stream``). With
``BRAID_API_KEYS`` set, a login form takes a key and keeps it in a secure, http-only,
same-site cookie, which the API accepts like a bearer header.
"""

from __future__ import annotations

import json
from html import escape
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import KEY_COOKIE, BraidDep, has_key, is_key
from app._types import to_rest

__all__ = ["router"]

_PAGES = {"jobs": "Jobs", "pipelines": "Pipelines", "services": "Services"}
_FILES = {"ui.js": "text/javascript", "ui.css": "text/css"}


def _shell(page: str, title: str, body: str = "", **data: str) -> str:
    attrs = "".join(f' data-{k}="{escape(v)}"' for k, v in data.items())
    nav = "".join(f'<a href="/ui{"" if p == "jobs" else "/" + p}">{t}</a>' for p, t in _PAGES.items())
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)} - Braid</title><link rel=\"icon\" href=\"data:,\">"
            "<link rel=\"stylesheet\" href=\"/ui/static/ui.css\">"
            "<script src=\"/ui/static/ui.js\" defer></script></head><body>"
            f"<nav><strong>Braid</strong>{nav}<a href=\"/docs\">API</a></nav>"
            f"<main data-page=\"{page}\"{attrs}>{body}<p class=\"muted\">loading...</p></main>"
            "</body></html>")


def _login(next_: str, problem: str = "") -> str:
    error = f'<p class="error" id="login-error">{escape(problem)}</p>' if problem else ""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in - Braid"
            "</title><link rel=\"stylesheet\" href=\"/ui/static/ui.css\"></head><body><main>"
            "<h1>Braid</h1><p>This Braid needs an API key (one of BRAID_API_KEYS).</p>"
            f"{error}<form method=\"post\" action=\"/ui/login\" id=\"login\">"
            f"<input type=\"hidden\" name=\"next\" value=\"{escape(next_)}\">"
            "<label>API key <input type=\"password\" name=\"key\" autocomplete=\"current-password\" "
            "autofocus></label> <button type=\"submit\">Log in</button></form></main></body></html>")


def _safe_next(next_: str) -> str:
    """Only a path of this site (no open redirect)."""
    return next_ if next_.startswith("/ui") and not next_.startswith("//") else "/ui"


def _embedded(name: str, value: Any) -> str:
    """``value`` as JSON in a <script> element the page reads (never run as script)."""
    text = json.dumps(value).replace("</", "<\\/")
    return f'<script type="application/json" id="{name}">{text}</script>'



def router() -> APIRouter:
    r = APIRouter(prefix="/ui", include_in_schema=False)

    def page(request: Request, braid: BraidDep, html: str) -> Response:
        if not has_key(request, braid.settings):
            return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @r.get("")
    async def jobs(request: Request, braid: BraidDep) -> Response:
        return page(request, braid, _shell("jobs", "Jobs"))

    @r.get("/jobs/{job}")
    async def job(job: str, request: Request, braid: BraidDep) -> Response:
        found = await braid.store.read(job) if has_key(request, braid.settings) else None
        graph = ""
        if found is not None:
            try:
                pipeline = braid.registry.job_pipeline(found[0].get("pipeline", ""))
                inputs = to_rest(await braid.store.inputs(job, list(pipeline.input_model.model_fields)))
                graph = (_embedded("pipeline", pipeline.describe()) +
                         _embedded("inputs", inputs))
            except LookupError:  # a pipeline this API no longer serves: no graph
                pass
        return page(request, braid, _shell("job", f"Job {job}", graph, id=job))

    @r.get("/pipelines")
    async def pipelines(request: Request, braid: BraidDep) -> Response:
        return page(request, braid, _shell("pipelines", "Pipelines"))

    @r.get("/services")
    async def services(request: Request, braid: BraidDep) -> Response:
        flower = braid.settings.flower_url if braid.settings.flower else ""
        return page(request, braid, _shell("services", "Services", flower=flower))

    @r.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in _FILES:
            return Response(status_code=404)
        text = (resources.files("api") / "ui" / name).read_text()
        return Response(text, media_type=_FILES[name], headers={"Cache-Control": "no-cache"})

    @r.get("/login")
    async def login_form(braid: BraidDep, next: str = "/ui") -> Response:
        if not braid.settings.api_keys:
            return RedirectResponse(_safe_next(next), status_code=303)
        return HTMLResponse(_login(_safe_next(next)))

    @r.post("/login")
    async def login(braid: BraidDep, key: Annotated[str, Form()] = "",
                    next: Annotated[str, Form()] = "/ui") -> Response:
        if braid.settings.api_keys and not is_key(key, braid.settings):
            return HTMLResponse(_login(_safe_next(next), "That key is not one of this Braid's "
                                       "keys (BRAID_API_KEYS); try again."), status_code=401)
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(KEY_COOKIE, key, httponly=True, secure=True, samesite="strict",
                            max_age=7 * 24 * 3600)
        return response

    @r.post("/logout")
    async def logout() -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(KEY_COOKIE)
        return response

    return r
