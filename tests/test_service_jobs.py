"""One-step jobs of a service API over REST, against real workers and Redis."""

from __future__ import annotations

import base64
import io
import json
import os
import uuid

import httpx
import numpy as np
from kombu.connection import Connection
from kombu.entity import Exchange
from PIL import Image

from tests.harness import System, wait_for
from tests.jobs_helpers import marks, run, submit, wait


def test_submit_answers_202_with_location(http: httpx.Client) -> None:
    response = http.post("/v1/services/echo/echo/jobs", json={"value": 1})
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "queued" and response.headers["location"] == body["status_url"]
    assert body["status_url"].endswith(f"/v1/jobs/{body['id']}")


def test_wrong_type_is_422_naming_the_field_and_publishes_nothing(
        system: System, http: httpx.Client) -> None:
    jobs_before = system.redis().zcard("braid:jobs")
    queued_before = system.redis().llen("parked")
    response = http.post("/v1/services/parked/mark/jobs", json={"key": ["not", "a", "string"]})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid_input"
    assert [e["field"] for e in problem["errors"]] == ["key"]
    assert "key: Input should be a valid string" in problem["detail"]
    missing = http.post("/v1/services/slow/sleep/jobs", json={"key": "k"})
    assert [e["field"] for e in missing.json()["errors"]] == ["seconds"]
    assert "seconds: Field required" in missing.json()["detail"]
    assert system.redis().zcard("braid:jobs") == jobs_before
    assert system.redis().llen("parked") == queued_before


def test_unknown_service_api_and_job_are_404(http: httpx.Client) -> None:
    for path, code in [("/v1/services/nope/echo/jobs", "service_not_found"),
                       ("/v1/services/echo/nope/jobs", "service_not_found")]:
        response = http.post(path, json={})
        assert response.status_code == 404 and response.json()["code"] == code
    response = http.get(f"/v1/jobs/{uuid.uuid4().hex}")
    assert response.status_code == 404 and response.json()["code"] == "job_not_found"


def test_raising_model_fails_the_job_and_the_worker_keeps_serving(http: httpx.Client) -> None:
    view = run(http, "/v1/services/echo/boom/jobs", {"message": "no such label"})
    assert view["state"] == "failed"
    assert {k: view["error"][k] for k in ("step", "type", "message")} == {
        "step": "boom", "type": "ValueError", "message": "no such label"}
    assert view["steps"]["boom"]["state"] == "failed"
    assert run(http, "/v1/services/echo/echo/jobs", {"value": "still here"})["result"] == "still here"


def test_a_failed_step_keeps_the_service_codes_traceback_in_the_job_and_the_log(
        system: System, http: httpx.Client) -> None:
    # given a service API that raises
    # when a job of it fails
    view = run(http, "/v1/services/echo/boom/jobs", {"message": "traced"})
    # then the job's and the step's error carry the traceback from the API's method down
    trace = view["error"]["traceback"]
    assert view["steps"]["boom"]["error"]["traceback"] == trace
    assert trace.startswith("Traceback (most recent call last):")
    assert 'tests/apps/basic.py", line' in trace and ", in boom\n" in trace
    assert "raise ValueError(message)" in trace and trace.endswith("ValueError: traced\n")
    assert "app/_step.py" not in trace
    # and the worker's log shows the same traceback
    wait_for(lambda: "ValueError: traced" in system.log("worker-echo") or None, 10, "the log line")
    assert "raise ValueError(message)" in system.log("worker-echo")


def test_a_failed_async_api_keeps_its_own_traceback(http: httpx.Client) -> None:
    # given a coroutine API that raises
    # when a job of it fails
    view = run(http, "/v1/services/echo/aboom/jobs", {"message": "awaited"})
    # then the job failed with its error, and the traceback starts at the API's coroutine:
    # not at the event loop or the wrapper that runs it
    assert view["state"] == "failed" and view["error"]["type"] == "ValueError"
    trace = view["error"]["traceback"]
    frames = [line for line in trace.splitlines() if line.startswith('  File "')]
    assert frames[0].endswith(", in aboom"), trace
    assert "app/_async.py" not in trace and "asyncio" not in trace
    assert trace.endswith("ValueError: awaited\n")


def test_a_deep_traceback_is_kept_to_its_last_8000_characters(http: httpx.Client) -> None:
    # given a service API that raises 300 calls down
    # when its job fails
    trace = run(http, "/v1/services/echo/deep/jobs", {"depth": 300})["error"]["traceback"]
    # then the traceback kept is its end: bounded, and still naming the error
    assert len(trace) <= 8004 and trace.startswith("...\n")
    assert trace.endswith("ValueError: bottom\n") and ", in _ping\n" in trace


def test_arrays_round_trip_exactly(http: httpx.Client) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.integers(-2**62, 2**62, size=(2, 5), dtype=np.int64)
    view = run(http, "/v1/services/echo/arrays/jobs", {
        "a": {"data": a.tolist(), "dtype": "float32"},
        "b": {"data": b.tolist(), "dtype": "int64"},
    })
    out_a, out_b = view["result"]
    assert (out_a["dtype"], out_a["shape"]) == ("float32", [3, 4])
    assert (out_b["dtype"], out_b["shape"]) == ("int64", [2, 5])
    assert np.array_equal(np.array(out_a["data"], dtype=np.float32), a)
    assert np.array_equal(np.array(out_b["data"], dtype=np.int64), b)


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_images_round_trip_exactly(http: httpx.Client) -> None:
    rgb = Image.effect_mandelbrot((40, 30), (-2, -1.5, 1, 1.5), 60).convert("RGB")
    gray = Image.linear_gradient("L").resize((33, 21))
    view = run(http, "/v1/services/echo/images/jobs", {"rgb": _png(rgb), "gray": _png(gray)})
    for sent, got in zip([rgb, gray], view["result"], strict=True):
        back = Image.open(io.BytesIO(base64.b64decode(got["data"])))
        assert (back.mode, back.size) == (sent.mode, sent.size)
        assert back.tobytes() == sent.tobytes()


def test_bytes_that_are_no_image_are_422_saying_so_without_pythons_internals(
        http: httpx.Client) -> None:
    # given an image field whose bytes are no image file
    gray = _png(Image.linear_gradient("L"))
    # when it is submitted
    response = http.post("/v1/services/echo/images/jobs",
                         json={"rgb": base64.b64encode(b"GIF89 not really").decode(), "gray": gray})
    # then the 422 names the field and what to send, and no Python object's repr
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "rgb"
    detail = response.json()["detail"]
    assert "not a readable image file" in detail and "send a PNG, JPEG" in detail
    assert "BytesIO" not in detail and " at 0x" not in detail


def test_five_megabytes_go_by_reference_not_on_the_broker(
        system: System, http: httpx.Client) -> None:
    data = os.urandom(5 * 2**20)
    job = submit(http, "/v1/services/parked/size/jobs", {"data": base64.b64encode(data).decode()})
    messages = system.redis().lrange("parked", 0, -1)
    assert len(messages) == 1
    assert len(messages[0]) < 4096, f"broker message is {len(messages[0])} bytes"
    name = system.start_worker("parked")
    try:
        assert wait(http, job)["result"] == len(data)
    finally:
        system.stop(name)


def test_pickle_and_unregistered_messages_are_refused_and_the_worker_keeps_serving(
        system: System, http: httpx.Client) -> None:
    # Given a real job record whose message we take off its (unserved) queue
    job = submit(http, "/v1/services/parked/mark/jobs", {"key": "pickled"})
    popped = system.redis().lpop("parked")
    assert isinstance(popped, bytes)
    envelope = json.loads(popped)
    args, kwargs, embed = json.loads(envelope["body"])  # Braid's bodies are plain JSON
    headers = envelope["headers"]
    # When it is pushed into the echo queue pickled, and under an unregistered name
    with Connection(system.redis_url) as conn:
        producer = conn.Producer()
        echo = Exchange("echo", type="direct")
        producer.publish((args, kwargs, embed), exchange=echo, routing_key="echo",
                         serializer="pickle", headers={**headers, "task": "echo.mark",
                                                       "id": uuid.uuid4().hex})
        producer.publish((args, kwargs, embed), exchange=echo, routing_key="echo",
                         serializer="json", headers={**headers, "task": "os.system",
                                                     "id": uuid.uuid4().hex})
    # Then neither runs, the worker says why, and it keeps serving
    wait_for(lambda: "os.system" in system.log("worker-echo"), 20, "the unregistered message")
    assert run(http, "/v1/services/echo/echo/jobs", {"value": 7})["result"] == 7
    log = system.log("worker-echo")
    assert "ContentDisallowed" in log or "Refusing to deserialize" in log
    assert marks(system.redis(), "pickled") == 0
    assert http.get(f"/v1/jobs/{job}").json()["state"] == "queued"


def test_gpu_service_without_gpu_runs_on_cpu_with_one_warning(
        system: System, http: httpx.Client) -> None:
    assert run(http, "/v1/services/gpu-model/where/jobs", {})["result"] == "cpu"
    assert run(http, "/v1/services/gpu-model/where/jobs", {})["result"] == "cpu"
    warnings = [line for line in system.log("worker-gpu-model").splitlines()
                if "asks for gpu=1 but this machine has no CUDA device" in line]
    assert len(warnings) == 1


def test_services_list_queues_resources_and_schemas(http: httpx.Client) -> None:
    services = {s["name"]: s for s in http.get("/v1/services").json()["services"]}
    gpu = services["gpu-model"]
    assert gpu["queue"] == "gpu-model"
    assert gpu["resources"] == {"cpu": 1, "gpu": 1, "memory": "1Gi"}
    sleep = next(a for a in services["slow"]["apis"] if a["name"] == "sleep")
    assert sleep["input_schema"]["required"] == ["seconds"]
    assert sleep["output_schema"]["type"] == "number"
    openapi = http.get("/openapi.json").json()
    body = openapi["paths"]["/v1/services/slow/sleep/jobs"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["required"] == ["seconds"]
    assert list(body["content"]) == ["application/json"], "multipart is for files"


def test_api_keys_guard_every_v1_route(system: System) -> None:
    url = system.start_api("api-auth", port=None or _port(), BRAID_API_KEYS="k1,k2")
    try:
        assert httpx.get(f"{url}/v1/services").status_code == 401
        wrong = httpx.get(f"{url}/v1/services", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
        ok = httpx.get(f"{url}/v1/services", headers={"Authorization": "Bearer k2"})
        assert ok.status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        system.stop("api-auth")


def _port() -> int:
    from tests.harness import free_port

    return free_port()


def test_a_dict_with_the_wire_formats_own_key_round_trips(http: httpx.Client) -> None:
    # given a JSON value whose objects use the key the wire format tags its envelopes with
    value = {"__braid__": "ndarray", "inner": [{"__braid__": "ref", "b64": "AAAA"}]}
    # when it is echoed through a step, then it comes back as it was sent
    assert run(http, "/v1/services/echo/echo/jobs", {"value": value})["result"] == value


def test_values_the_wire_cannot_carry_are_422_or_a_failed_job_never_a_500(
        http: httpx.Client) -> None:
    nan = http.post("/v1/services/echo/echo/jobs", content=b'{"value": NaN}',
                    headers={"content-type": "application/json"})
    assert nan.status_code == 422 and "not JSON compliant" in nan.json()["detail"]
    returned = run(http, "/v1/services/echo/not_a_number/jobs", {})
    assert returned["state"] == "failed" and returned["error"]["type"] == "ValueError"
    assert "not JSON compliant" in returned["error"]["message"]


def test_an_output_over_the_limit_fails_its_step_naming_the_setting(http: httpx.Client) -> None:
    view = run(http, "/v1/services/echo/big/jobs", {"n": 60_000_000}, timeout=60)
    assert view["state"] == "failed"
    assert view["error"]["type"] == "OutputTooLarge"
    assert "BRAID_MAX_OUTPUT_BYTES" in view["error"]["message"]
    assert run(http, "/v1/services/echo/echo/jobs", {"value": 3})["result"] == 3
