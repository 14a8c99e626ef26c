"""The Python client and the `braid submit` / `braid jobs` commands."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import httpx
import numpy as np
import pytest
from PIL import Image
from pydantic import TypeAdapter

from app import ApiUnreachable, AsyncClient, Client, JobFailed, JobState, ServiceNotFound, Settings
from app._decoder import decode
from app._types import REST_TYPE, rest_annotation, to_rest
from tests.harness import ROOT, System, free_port
from tests.jobs_helpers import run

RGB = Image.new("RGB", (4, 3), (200, 10, 30))
GRAY = Image.new("L", (2, 5), 77)


def _same_image(got: object, want: Image.Image) -> bool:
    return isinstance(got, Image.Image) and got.mode == want.mode and got.size == want.size and \
        got.tobytes() == want.tobytes()


def test_client_wait_returns_what_the_rest_call_returns(system: System, http: httpx.Client) -> None:
    with Client(system.url) as client:
        job = client.submit("graph", x=4, y=2, key="client")
        result = job.result(timeout=30)
        assert job.state() is JobState.succeeded
    assert result == run(http, "/v1/pipelines/graph/jobs", {"x": 4, "y": 2, "key": "client"})["result"]
    assert result == [6, 1]


def test_client_raises_the_api_errors_and_failed_jobs(system: System) -> None:
    with Client(system.url) as client:
        with pytest.raises(ServiceNotFound, match="no service 'nope'"):
            client.call("nope", "x")
        with pytest.raises(JobFailed) as failed:
            client.call("echo", "boom", message="bad input").result(timeout=30)
        assert failed.value.error["type"] == "ValueError"
        assert client.job(uuid.uuid4().hex).state() is JobState.not_found


def test_async_client_runs_jobs_concurrently(system: System) -> None:
    async def main() -> list[int]:
        async with AsyncClient(system.url) as client:
            jobs = [await client.submit("chain-3", x=i) for i in range(5)]
            return list(await asyncio.gather(*(j.result(timeout=30) for j in jobs)))

    assert asyncio.run(main()) == [2 * i + 1 for i in range(5)]


def test_explicit_deadline_fails_a_job_that_runs_too_long(system: System) -> None:
    with Client(system.url) as client:
        view = client.submit("deadlined", seconds=2.5).wait(timeout=20)
    assert view.state is JobState.failed
    assert view.error is not None and view.error.type == "DeadlineExceeded"


def test_braid_submit_wait_shows_progress_and_prints_the_result(system: System) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "submit", "mapped", "--input", '{"n": 3, "key": "cli"}',
         "--wait", "--url", system.url],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    assert "3/3" in out.stdout and "succeeded" in out.stdout
    assert out.stdout.rstrip().endswith("[\n  0,\n  2,\n  4\n]")
    listed = subprocess.run([sys.executable, "-m", "app.cli", "jobs", "--url", system.url,
                             "--pipeline", "mapped", "--limit", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert listed.stdout.split()[1:3] == ["succeeded", "3/3"]


def test_braid_submit_wait_prints_an_array_result_as_its_json(system: System) -> None:
    # given a service API that returns arrays
    body = '{"a": [[1.5, 2.5]], "b": {"data": [[1, 2]], "dtype": "int64"}}'
    # when `braid submit --wait` runs it
    out = subprocess.run([sys.executable, "-m", "app.cli", "submit", "echo.arrays", "--input",
                          body, "--wait", "--url", system.url],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    # then it prints the arrays in their REST form
    printed = json.loads(out.stdout[out.stdout.index("\n[") + 1:])
    assert [(a["dtype"], a["shape"], a["data"]) for a in printed] == [
        ("float64", [1, 2], [[1.5, 2.5]]), ("int64", [1, 2], [[1, 2]])]


def test_client_sends_and_returns_arrays_images_and_bytes_where_the_pipeline_declares_them(
        system: System) -> None:
    # given numpy arrays and PIL images as inputs, also inside a list
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    rows = [np.array([1, 2], dtype=np.int64), np.array([3, 4], dtype=np.int64)]
    with Client(system.url) as client:
        # when the media pipeline runs (it declares arrays, a map of arrays, images and bytes)
        result = client.submit("media", a=a, rows=rows, rgb=RGB, gray=GRAY, n=5).result(timeout=30)
    # then each comes back as the Python type the pipeline declares, nested as declared
    first, second = result["arrays"]
    assert first.dtype == np.float32 and np.array_equal(first, a) and np.array_equal(second, a)
    assert [[pair[0].tolist(), pair[1].shape] for pair in result["pairs"]] == [[[1, 2], (2, 3)],
                                                                               [[3, 4], (2, 3)]]
    assert _same_image(result["images"][0], RGB) and _same_image(result["images"][1], GRAY)
    assert result["blob"] == b"xxxxx"


def test_pipelines_and_service_apis_declare_their_output_types(http: httpx.Client) -> None:
    pipelines = {p["name"]: p for p in http.get("/v1/pipelines").json()["pipelines"]}
    media = pipelines["media"]["output_schema"]["properties"]
    assert media["arrays"]["items"][REST_TYPE] == "ndarray"
    assert media["pairs"]["items"]["items"][REST_TYPE] == "ndarray"
    assert media["images"]["items"][REST_TYPE] == "image"
    assert media["blob"][REST_TYPE] == "bytes"
    assert pipelines["chain-3"]["output_schema"] == {"type": "integer"}
    echo = next(s for s in http.get("/v1/services").json()["services"] if s["name"] == "echo")
    apis = {a["name"]: a for a in echo["apis"]}
    assert apis["arrays"]["output_schema"]["items"]["required"] == ["dtype", "shape", "data"]
    assert apis["arrays"]["input_schema"]["properties"]["a"][REST_TYPE] == "ndarray"


def test_submit_takes_service_dot_api_as_the_cli_does(system: System) -> None:
    with Client(system.url) as client:
        job = client.submit("echo.arrays", a=[[1, 2]], b=np.zeros((0, 3), dtype=np.uint8))
        a, b = job.result(timeout=30)
        assert job.status().pipeline == "echo.arrays"
        assert client.submit("echo.nbytes", data=b"\x00\x01\x02").result(timeout=30) == 3
    assert a.tolist() == [[1, 2]]
    assert b.dtype == np.uint8 and b.shape == (0, 3)


def test_async_client_sends_and_returns_arrays_images_and_bytes(system: System) -> None:
    async def main() -> list[object]:
        async with AsyncClient(system.url) as client:
            images = await client.submit("echo.images", rgb=RGB, gray=GRAY)
            blob = await client.submit("echo.big", n=3)
            return [await images.result(timeout=30), await blob.result(timeout=30)]

    images, blob = asyncio.run(main())
    assert isinstance(images, list) and _same_image(images[0], RGB) and _same_image(images[1], GRAY)
    assert blob == b"xxx"


def test_a_job_shows_its_id_pipeline_and_url(system: System) -> None:
    with Client(system.url + "/") as client:
        job = client.submit("chain-3", x=1)
        assert repr(job) == f"Job({job.id!r}, pipeline='chain-3', url='{system.url}/v1/jobs/{job.id}')"
        assert repr(client.job("abc")) == f"Job('abc', url='{system.url}/v1/jobs/abc')"
        assert httpx.get(job.url, params={"wait": 30}, timeout=40).json()["result"] == 3


def test_the_default_url_follows_the_settings(system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    # given BRAID_API_HOST and BRAID_API_PORT naming the running API
    monkeypatch.setenv("BRAID_API_HOST", "127.0.0.1")
    monkeypatch.setenv("BRAID_API_PORT", str(system.api_port))
    # when clients are made without a URL, then they reach it
    with Client() as client:
        assert client.submit("chain-3", x=2).result(timeout=30) == 5

    async def main() -> object:
        async with AsyncClient() as client:
            return await (await client.submit("chain-3", x=3)).result(timeout=30)

    assert asyncio.run(main()) == 7
    # and settings given explicitly win over the environment
    monkeypatch.setenv("BRAID_API_PORT", str(free_port()))
    with Client(settings=Settings(api_port=system.api_port)) as client:
        assert client.url == system.url


def test_an_unreachable_api_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    message = f"cannot reach the Braid API at {url}: is `braid up` running?"
    with Client(url) as client, pytest.raises(ApiUnreachable, match=message.replace("?", r"\?")):
        client.submit("chain-3", x=1)

    async def main() -> None:
        async with AsyncClient(url) as client:
            await client.jobs()

    with pytest.raises(ApiUnreachable, match=message.replace("?", r"\?")):
        asyncio.run(main())


def test_braid_jobs_says_in_one_line_that_the_api_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = subprocess.run([sys.executable, "-m", "app.cli", "jobs", "--url", url],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith(f"braid: cannot reach the Braid API at {url}: is `braid up` running? (")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_a_result_is_decoded_by_its_schema_through_unions_and_nesting() -> None:
    # given a declared type with optional arrays, images in lists and bytes under a dict
    declared = dict[str, np.ndarray | list[Image.Image] | bytes | str | None]
    rest_schema = TypeAdapter(rest_annotation(declared)).json_schema(mode="serialization")
    value = {"array": np.eye(2, dtype=np.float64), "none": None, "images": [GRAY], "blob": b"ab"}
    # when its REST form is decoded by that schema
    got = decode(to_rest(value), rest_schema)
    # then what could be read back is, and the rest stays as sent
    assert np.array_equal(got["array"], np.eye(2)) and got["none"] is None
    assert _same_image(got["images"][0], GRAY)
    assert got["blob"] == b"ab"
    assert decode({"plain": [1, 2]}, rest_schema) == {"plain": [1, 2]}
