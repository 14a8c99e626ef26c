"""One typed route per service API and per pipeline, so /docs shows each request body.

A body is a JSON object, or ``multipart/form-data`` whose file parts fill image, array
(``.npy``) and bytes parameters and whose other parts are values (JSON where they parse; a
list input is a part per item). The OpenAPI document shows the multipart form where an API
takes files."""

from __future__ import annotations

import functools
import json
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from api import stream
from api.deps import Authorized, Braid, BraidDep
from api.examples import example
from api.jobs import submit
from api.problems import UNAUTHORIZED, invalid_input, responses
from app import InvalidInput, PayloadTooLarge
from app._codec import nesting
from app._pipeline import Pipeline
from app._protocol import IDEMPOTENCY_KEY
from app._types import array_spec, is_array_type, is_image_type
from app._views import JobAccepted, JobView

__all__ = ["add_submit_route", "read_body"]

# 202 is the route's response_model (JobAccepted); submit() answers with a ViewResponse of
# it, or of the final JobView, so neither is validated or serialized twice.
_ACCEPTED = responses(UNAUTHORIZED | {
    404: "Unknown service, API or pipeline",
    409: "The `Idempotency-Key` was used before for another request; or, with `Accept: "
         "text/event-stream`, the pipeline has no streaming step (nothing was queued)",
    413: "The request is over BRAID_MAX_UPLOAD_BYTES",
    422: "The body does not match the declared types",
    429: "A queue the job needs is full (`max_queued`): nothing was queued; retry after "
         "`Retry-After` seconds",
    503: "Redis is unreachable: nothing was queued, or (saying so, with its `job` id) the job "
         "may exist",
}, also={
    200: {"model": JobView, "content": {"text/event-stream": {}},
          "description": "With `?wait=`: the job ended in time; the final job, as `GET "
                         "/v1/jobs/{id}` gives it. With `Accept: text/event-stream` (a "
                         "pipeline with a streaming step): the job's chunks as they come, as "
                         "`GET /v1/jobs/{id}/stream` sends them, in the one request; the job "
                         "is in `Location`."},
    202: {"description": "Accepted: the job is queued; follow `status_url` (also in "
                         "`Location`)."},
})


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request is {size} bytes, over the limit of {limit} bytes "
                           "(BRAID_MAX_UPLOAD_BYTES)")


def _shallow(text: bytes, depth: int, what: str) -> bytes:
    """``text``, refused before it is parsed when it nests deeper than ``depth``."""
    found = nesting(text, depth)
    if found is not None:
        raise InvalidInput(f"{what} nests arrays and objects {found} levels deep, over the "
                           f"limit of {depth} (BRAID_MAX_JSON_DEPTH)")
    return text


def _form_value(text: str, depth: int, name: str) -> Any:
    if text[:1] in ("{", "["):
        raw = _shallow(text.encode(), depth, f"the field {name!r}")
        try:
            return json.loads(raw)
        except ValueError:
            return text
    return text


async def _read(request: Request, limit: int) -> bytes:
    """The body, read no further than ``limit`` bytes (a chunked body declares no length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request is over the limit of {limit} bytes "
                                  "(BRAID_MAX_UPLOAD_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, braid: Braid, model: type[BaseModel]) -> BaseModel:
    """The request body validated against ``model`` (JSON or multipart)."""
    limit = braid.settings.max_upload_bytes
    depth = braid.settings.max_json_depth
    declared = int(request.headers.get("content-length") or 0)
    if declared > limit:
        raise _too_large(declared, limit)
    data: Any
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            form = await request.form(max_part_size=limit)
        except HTTPException as exc:  # Starlette's answer to a body it cannot parse
            if "maximum size" in str(exc.detail):
                raise PayloadTooLarge(f"a part of the multipart body is over the limit of "
                                      f"{limit} bytes (BRAID_MAX_UPLOAD_BYTES)") from None
            raise InvalidInput(f"the multipart body cannot be read ({exc.detail}): send "
                               "multipart/form-data with one part per parameter, or a JSON "
                               "object") from None
        parts: dict[str, list[Any]] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                content = await value.read()
                if len(content) > limit:
                    raise _too_large(len(content), limit)
                parts.setdefault(key, []).append(content)
            else:
                parts.setdefault(key, []).append(_form_value(value, depth, key))
        data = _form_data(model, parts)
    else:
        raw = _shallow(await _read(request, limit), depth, "the body")
        try:
            data = json.loads(raw or b"{}")
        except ValueError as exc:
            raise InvalidInput(f"the body is not JSON ({exc}); send a JSON object or "
                               "multipart/form-data") from None
        if not isinstance(data, dict):
            raise InvalidInput("the body must be a JSON object of the API's parameters")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc.errors()) from None


def _form_data(model: type[BaseModel], parts: dict[str, list[Any]]) -> dict[str, Any]:
    """A multipart body's parts as the input: a list input is its parts in order (or one
    part of a JSON list), no part of it an empty list; any other input is one part."""
    lists = _list_inputs(model)
    data: dict[str, Any] = {name: [] for name in lists if model.model_fields[name].is_required()}
    for key, values in parts.items():
        if key in lists:
            data[key] = values[0] if len(values) == 1 and isinstance(values[0], list) else values
        elif len(values) > 1:
            raise InvalidInput(f"the field {key!r} was sent {len(values)} times; send it once "
                               "(only a list input is sent as a part per item)")
        else:
            data[key] = values[0]
    return data


def _bare(annotation: Any) -> Any:
    """``annotation`` without its Optional and Annotated layers."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else None
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


@functools.cache
def _list_inputs(model: type[BaseModel]) -> frozenset[str]:
    """The inputs of ``model`` that are lists (repeated parts in a multipart body)."""
    return frozenset(name for name, field in model.model_fields.items()
                     if typing.get_origin(_bare(field.annotation)) in (list, tuple, set, frozenset))


_FILES = {"image": "An image file (PNG, JPEG, ...)", "array": "A .npy file (numpy.save)",
          "bytes": "A file: its bytes"}


def _file_kind(annotation: Any) -> str | None:
    """Which file an input is sent as in a multipart body, if it is one."""
    annotation = _bare(annotation)
    if is_image_type(annotation):
        return "image"
    if is_array_type(annotation):
        return "array"
    return "bytes" if annotation is bytes else None


def _multipart(model: type[BaseModel], schema: dict[str, Any],
               image_formats: Sequence[str]) -> dict[str, Any] | None:
    """The multipart form of ``schema``, for an input model with files (None without): image,
    array and bytes inputs are file parts (a file picker in /docs) of the media types they
    are read as; a list input is a part per item (so none is an empty list, and it may be
    left out); an object or other structured input is one part of JSON; a string or number
    is one part of text."""
    properties = dict(schema.get("properties", {}))
    encoding: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if name not in properties:
            continue
        kind = _file_kind(field.annotation)
        if kind is None:  # (a structured input's part is JSON: OpenAPI's default for it)
            continue
        properties[name] = {"type": "string", "format": "binary",
                            "title": properties[name].get("title", name),
                            "description": _FILES[kind]}
        if kind == "image":
            Image.init()  # PIL registers its formats' media types lazily
            types_ = [Image.MIME[f] for f in image_formats if f in Image.MIME]
            encoding[name] = {"contentType": ", ".join(types_)}
        elif kind == "array":
            encoding[name] = {"contentType": array_spec(field.metadata).media_type}
        else:
            encoding[name] = {"contentType": "application/octet-stream"}
    if not any(p.get("format") == "binary" for p in properties.values()):
        return None
    lists = _list_inputs(model)
    required = [name for name in schema.get("required", []) if name not in lists]
    form = {**schema, "properties": properties, "required": required}
    if not required:
        del form["required"]
    return {"schema": form, "encoding": encoding}


def add_submit_route(router: APIRouter, path: str, pipeline: Pipeline, summary: str,
                     description: str | None, image_formats: Sequence[str]) -> None:
    model = pipeline.input_model
    schema = model.model_json_schema()

    async def endpoint(
        request: Request,
        braid: BraidDep,
        wait: Annotated[float | None, Query(ge=0, description="Seconds to wait for the job to "
                                            "end: 200 with the final job if it does, else 202 "
                                            "(at most 60)")] = None,
        idempotency_key: Annotated[str | None, Header(
            alias=IDEMPOTENCY_KEY, min_length=1, max_length=255,
            description="Any unique string: a submission repeated with it (a retry after a "
            "lost reply) answers with the job the first made, and runs nothing again; with "
            "another body it is a 409. Kept as long as the job.")] = None,
    ) -> Response:
        body = await read_body(request, braid, model)
        if "text/event-stream" not in request.headers.get("accept", ""):
            return await submit(braid, request, pipeline, body, wait, idempotency_key)
        # submit and stream in one request: refused before anything is queued where there
        # is nothing to stream
        step = stream.streaming_step(pipeline, None)
        if wait is not None:
            raise InvalidInput("a submission answered with its stream (Accept: "
                               "text/event-stream) does not wait: leave out ?wait=")
        accepted = await submit(braid, request, pipeline, body, None, idempotency_key)
        url = accepted.headers["location"]
        return StreamingResponse(stream.job_chunks(braid, url.rsplit("/", 1)[-1], step, None),
                                 media_type="text/event-stream",
                                 headers={"Location": url, "Cache-Control": "no-cache"})

    # a body of no required input may be left out (it is then {})
    content: dict[str, Any] = {"application/json": {"schema": schema,
                                                    "example": example(pipeline)}}
    form = _multipart(model, schema, image_formats)
    if form is not None:  # (a body of files is also taken as JSON: base64)
        content["multipart/form-data"] = form
    body = {"required": bool(schema.get("required")), "content": content}
    router.add_api_route(path, endpoint, methods=["POST"], status_code=202, summary=summary,
                         description=description, response_model=JobAccepted,
                         responses=_ACCEPTED,
                         dependencies=[Authorized], operation_id=f"submit_{pipeline.name}",
                         openapi_extra={"requestBody": body})
