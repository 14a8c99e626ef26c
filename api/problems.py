"""Every error answer is ``application/problem+json`` with a stable ``code``."""

from __future__ import annotations

import re
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException

from app import BraidError, BrokerUnavailable, InvalidInput, NotFound, Overloaded, Unauthorized

__all__ = ["UNAUTHORIZED", "UNAVAILABLE", "Problem", "install", "problem", "responses"]

MEDIA_TYPE = "application/problem+json"

UNAUTHORIZED = {401: "Missing or wrong API key (with BRAID_API_KEYS)"}
UNAVAILABLE = {503: "Redis is unreachable"}

# The framework's own errors that have a code of their own; the others are `http_error`.
_HTTP_CODES = {405: "method_not_allowed"}


class FieldError(BaseModel):
    """One request field that does not match its declared type."""

    field: str = Field(description="The field, dotted for nested ones (`body` for the whole)")
    message: str


class Problem(BaseModel):
    """An error answer (RFC 9457 problem details, `application/problem+json`)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`urn:braid:problem:<code>`")
    title: str | SkipJsonSchema[None] = Field(default=None, description="The error's class "
                                              "name")
    status: int = Field(description="The HTTP status")
    code: str = Field(description="Stable machine-readable code (`job_not_found`, "
                      "`invalid_input`, ...): what the Python client raises is chosen by it")
    detail: str = Field(description="What went wrong and how to fix it")
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        default=None, description="With `invalid_input`: every offending field")


_REF = {"$ref": "#/components/schemas/Problem"}


def responses(described: dict[int, str], *, also: dict[int | str, dict[str, Any]] | None = None
              ) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for problem answers (their descriptions by status), and ``also``
    the route's other documented answers."""
    out: dict[int | str, dict[str, Any]] = dict(also or {})
    for status, text in described.items():
        out[status] = {"description": text, "content": {MEDIA_TYPE: {"schema": _REF}}}
    return out


def problem(error: BraidError, **extra: Any) -> JSONResponse:
    body = {"type": f"urn:braid:problem:{error.code}", "title": type(error).__name__,
            "status": error.status, "code": error.code, "detail": error.message,
            **error.details, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
    if isinstance(error, Overloaded):
        headers = {"Retry-After": str(error.retry_after_s)}
    return JSONResponse(body, status_code=error.status, media_type=MEDIA_TYPE, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def invalid_input(errors: list[Any]) -> InvalidInput:
    """One InvalidInput naming every offending field, from pydantic's errors."""
    items = [{"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
             for e in errors]
    detail = "; ".join(f"{i['field']}: {i['message']}" for i in items)
    return InvalidInput(f"invalid request: {detail}", errors=items)


def _allowed(request: Request, given: str) -> str:
    """Every method the request's path answers: FastAPI's ``Allow`` (``given``) names only
    the first route that matched the path, where a path has one route per method."""
    methods = {m.strip() for m in given.split(",") if m.strip()}
    for template, operations in request.app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {m.upper() for m in operations}
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    """Map Braid's exception tree (and the framework's own errors) onto problem answers."""

    async def braid_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BraidError)
        return problem(exc)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem(invalid_input(list(exc.errors())))

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return problem(BrokerUnavailable(
            f"Redis is unreachable ({type(exc).__name__}); nothing was published. Retry once "
            "Redis is back (check BRAID_REDIS_URL)."))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return problem(NotFound(f"no route {request.method} {request.url.path}; see /docs"))
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail, headers = str(exc.detail), exc.headers
        if exc.status_code == 405:
            allowed = _allowed(request, (headers or {}).get("Allow", ""))
            detail = (f"{request.method} is not allowed on {request.url.path}; it answers "
                      f"{allowed}. See /docs")
            headers = {**(headers or {}), "Allow": allowed}
        body = {"type": f"urn:braid:problem:{code}", "status": exc.status_code, "code": code,
                "detail": detail}
        return JSONResponse(body, status_code=exc.status_code, media_type=MEDIA_TYPE,
                            headers=headers)

    app.add_exception_handler(BraidError, braid_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(redis.exceptions.ConnectionError, unavailable)
    app.add_exception_handler(redis.exceptions.TimeoutError, unavailable)
    app.add_exception_handler(OperationalError, unavailable)
    app.add_exception_handler(HTTPException, http_error)
    _document(app)


_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _problem_content(schema: dict[str, Any]) -> None:
    """FastAPI documents a request's validation errors as its own ``HTTPValidationError``
    JSON; they are answered as problems (``invalid_input``), so say so."""
    for operation in (op for ops in schema.get("paths", {}).values() for op in ops.values()):
        content = operation.get("responses", {}).get("422", {}).get("content", {})
        if content.get("application/json", {}).get("schema") == {"$ref": _FASTAPI_422}:
            content.clear()
            content[MEDIA_TYPE] = {"schema": _REF}
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)


def _document(app: FastAPI) -> None:
    """Put :class:`Problem` into the OpenAPI components, where :func:`responses` points."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # which FastAPI keeps as app.openapi_schema
            _problem_content(schema)
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            found = schema.setdefault("components", {}).setdefault("schemas", {})
            found.update(problem.pop("$defs", {}))
            found["Problem"] = problem
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
