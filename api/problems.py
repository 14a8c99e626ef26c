"""Every error answer is ``application/problem+json`` with a stable ``code``."""

from __future__ import annotations

from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from starlette.exceptions import HTTPException

from app import BraidError, BrokerUnavailable, InvalidInput, NotFound, Unauthorized

__all__ = ["install", "problem"]

MEDIA_TYPE = "application/problem+json"


def problem(error: BraidError, **extra: Any) -> JSONResponse:
    body = {"type": f"urn:braid:problem:{error.code}", "title": type(error).__name__,
            "status": error.status, "code": error.code, "detail": error.message,
            **error.details, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
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
        error = BraidError(str(exc.detail))
        body = {"type": "about:blank", "status": exc.status_code, "code": "http_error",
                "detail": error.message}
        return JSONResponse(body, status_code=exc.status_code, media_type=MEDIA_TYPE)

    app.add_exception_handler(BraidError, braid_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(redis.exceptions.ConnectionError, unavailable)
    app.add_exception_handler(redis.exceptions.TimeoutError, unavailable)
    app.add_exception_handler(OperationalError, unavailable)
    app.add_exception_handler(HTTPException, http_error)
