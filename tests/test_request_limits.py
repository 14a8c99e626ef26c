"""What one request may ask of the API: bounded nesting and size, refused with a 4xx that
names the limit, before anything is parsed or buffered past it. Real uvicorn."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from app import Settings
from tests.harness import System
from tests.jobs_helpers import run

DEPTH = Settings().max_json_depth


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_a_body_nested_past_the_limit_is_a_422_naming_it_and_queues_nothing(
        system: System, http: httpx.Client) -> None:
    # given a body nested far deeper than the limit (deep enough to break a recursive parser)
    queued = system.redis().llen("parked")
    body = '{"key": ' + "[" * 5000 + "]" * 5000 + "}"
    # when it is submitted
    answer = http.post("/v1/services/parked/mark/jobs", content=body,
                       headers={"content-type": "application/json"})
    # then it is refused, saying how deep it is and which setting bounds it
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "invalid_input"
    assert "5001 levels deep" in answer.json()["detail"]
    assert f"limit of {DEPTH} (BRAID_MAX_JSON_DEPTH)" in answer.json()["detail"]
    assert system.redis().llen("parked") == queued


def test_a_body_nested_to_the_limit_is_served(http: httpx.Client) -> None:
    value = _nested(DEPTH - 1)  # inside {"value": ...}: DEPTH levels in all
    assert run(http, "/v1/services/echo/echo/jobs", {"value": value})["result"] == value


def test_a_multipart_field_nested_past_the_limit_is_a_422_naming_the_field(
        http: httpx.Client) -> None:
    answer = http.post("/v1/services/parked/mark/jobs",
                       files={"key": (None, json.dumps(_nested(DEPTH + 1)))})
    assert answer.status_code == 422, answer.text
    assert "the field 'key' nests arrays and objects" in answer.json()["detail"]


def test_a_multipart_body_that_cannot_be_parsed_is_a_422_saying_so(
        system: System, http: httpx.Client) -> None:
    # given a multipart body whose part has no headers (what a fuzzer sent)
    queued = system.redis().llen("parked")
    boundary = "aac828efedff4ace8df0f2e935ab8385"
    body = f"--{boundary}\r\n%\xf8\xfd!--{boundary}--\r\n".encode("latin-1")
    # when it is submitted
    answer = http.post("/v1/services/parked/mark/jobs", content=body, headers={
        "content-type": f"multipart/form-data; boundary={boundary}"})
    # then it is refused with what to send instead, and nothing is queued
    assert answer.status_code == 422, answer.text
    assert "the multipart body cannot be read" in answer.json()["detail"]
    assert system.redis().llen("parked") == queued


def _peak_rss_mib(pid: int) -> float:
    """The most memory the process ``pid`` ever held (VmHWM), in MiB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def test_a_chunked_body_over_the_upload_limit_is_refused_without_being_buffered(
        system: System) -> None:
    """Given a chunked upload (no Content-Length) ten times the upload limit, when it is
    sent, then the API answers 413 naming the limit, and its memory never held the body."""
    limit = Settings().max_upload_bytes
    api = system.procs["api"].pid
    peak = _peak_rss_mib(api)
    chunk = b"[" + b"0," * (2**19) + b"0]"  # about 1 MiB
    address = urlsplit(system.url)
    assert address.hostname is not None and address.port is not None
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/services/echo/echo/jobs HTTP/1.1\r\nHost: braid\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"%x\r\n{\"value\": \r\n" % len(b'{"value": '))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(10 * limit // len(chunk)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert b"BRAID_MAX_UPLOAD_BYTES" in reply
    # it reads no more than the limit (the old API held all 200 MiB, and more)
    assert _peak_rss_mib(api) - peak < 3 * limit / 2**20, "the API held the body in memory"
