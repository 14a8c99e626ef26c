"""A user's first hour: the landing page, /docs without internet, an OpenAPI document that
shows example bodies, file pickers and every error's shape, one pipeline or service by
name, and a 405 that says which methods a path answers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from api.examples import example
from app import Settings
from app._registry import load
from tests.harness import System, free_port
from tests.jobs_helpers import run

_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


@pytest.fixture(scope="module")
def locked(system: System) -> Iterator[str]:
    """A second API process with BRAID_API_KEYS set and Flower off."""
    url = system.start_api("api-locked", port=free_port(), BRAID_API_KEYS="k1",
                           BRAID_FLOWER="0")
    try:
        yield url
    finally:
        system.stop("api-locked")


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_docs_page_loads_swagger_ui_from_this_api(http: httpx.Client) -> None:
    """Given the API, when /docs is fetched, then it references no other host (no CDN), and
    each script, style and icon it loads answers 200 from the API with its media type."""
    page = http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert re.findall(r"https?://", page.text) == []
    assets = _assets(page.text)
    assert len(assets) == 3
    kinds = set()
    for asset in assets:
        assert asset.startswith("/docs/static/"), asset
        answer = http.get(asset)
        assert answer.status_code == 200 and len(answer.content) > 0, asset
        kinds.add(answer.headers["content-type"].split(";")[0])
    assert kinds == {"text/javascript", "text/css", "image/png"}
    assert "url: '/openapi.json'" in page.text and http.get("/openapi.json").status_code == 200


def test_an_unknown_docs_asset_is_a_404_problem(http: httpx.Client) -> None:
    """Given the docs assets, when a file that is not one of them is asked for (the
    package's own modules included), then the answer is a 404 problem naming the assets."""
    answer = http.get("/docs/static/__init__.py")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert "swagger-ui-bundle.js" in answer.json()["detail"]


KEY = {"Authorization": "Bearer k1"}


def test_docs_schema_and_landing_page_need_the_key_where_v1_does(locked: str) -> None:
    """Given an API with BRAID_API_KEYS, when /, /docs and /openapi.json are fetched without
    a key, then each is a 401 problem; with the key they answer 200, and Swagger UI's own
    static files are public (they name nothing of this API)."""
    for path in ["/", "/docs", "/openapi.json"]:
        anonymous = httpx.get(f"{locked}{path}")
        assert anonymous.status_code == 401, path
        assert anonymous.json()["code"] == "unauthorized"
        assert httpx.get(f"{locked}{path}", headers=KEY).status_code == 200, path
    page = httpx.get(f"{locked}/docs", headers=KEY)
    for asset in _assets(page.text):
        assert httpx.get(f"{locked}{asset}").status_code == 200, asset


def test_a_setting_publishes_the_docs_where_v1_needs_a_key(system: System) -> None:
    """Given an API with BRAID_API_KEYS and BRAID_PUBLIC_DOCS, when /, /docs and
    /openapi.json are fetched without a key, then they answer 200, and /v1 still needs it."""
    url = system.start_api("api-public-docs", port=free_port(), BRAID_API_KEYS="k1",
                           BRAID_PUBLIC_DOCS="1")
    try:
        for path in ["/", "/docs", "/openapi.json"]:
            assert httpx.get(f"{url}{path}").status_code == 200, path
        assert httpx.get(f"{url}/v1/pipelines").status_code == 401
    finally:
        system.stop("api-public-docs")


def test_readiness_without_the_key_is_the_status_alone(locked: str) -> None:
    """Given an API with BRAID_API_KEYS, when /readyz is asked without a key, then the body
    is its status only (no service or pipeline names); with the key, the whole report."""
    anonymous = httpx.get(f"{locked}/readyz")
    assert set(anonymous.json()) == {"status"}
    full = httpx.get(f"{locked}/readyz", headers=KEY)
    assert full.status_code == anonymous.status_code
    assert {"status", "services_without_workers", "pipelines_blocked"} <= set(full.json())


def test_landing_page_links_to_the_docs_resources_health_and_flower(http: httpx.Client) -> None:
    """Given the API (Flower on, the default), when a browser asks for /, then it gets an
    HTML page linking to the docs, every resource, health, metrics and Flower; each link on
    this API answers (/readyz with 200 or 503)."""
    page = http.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    links = re.findall(r'href="([^"]+)"', page.text)
    settings = Settings()
    flower = settings.flower_url
    assert {"/docs", "/openapi.json", "/v1/pipelines", "/v1/services", "/v1/jobs", "/healthz",
            "/readyz", "/metrics", flower} <= set(links)
    assert "/v1/pipelines/chain-3" in links and "/v1/services/echo" in links
    for link in links:
        if not urlsplit(link).netloc:
            expected = (200, 503) if link == "/readyz" else (200,)
            assert http.get(link).status_code in expected, link


def test_landing_page_is_json_for_clients_that_do_not_ask_for_html(http: httpx.Client) -> None:
    """Given the API, when / is fetched as curl does (Accept: */*), then it answers the same
    links as JSON, and each pipeline and service by its URL."""
    home = http.get("/", headers={"Accept": "*/*"})
    assert home.headers["content-type"] == "application/json"
    body = home.json()
    assert {"/docs", "/v1/jobs", "/metrics"} <= {link["href"] for link in body["links"]}
    assert {"href": "/v1/pipelines/mapped", "title": "mapped"} in body["pipelines"]
    assert body["services"][0] == {"href": "/v1/services/braid", "title": "braid"}


def test_landing_page_leaves_flower_out_when_it_is_off(locked: str) -> None:
    """Given an API with BRAID_FLOWER=0, when / is fetched, then no link leaves the API."""
    body = httpx.get(f"{locked}/", headers=KEY).json()
    assert [link["href"] for link in body["links"]
            if link["href"].startswith("http")] == []


def test_multipart_body_has_file_pickers_for_images_arrays_and_bytes(http: httpx.Client) -> None:
    """Given services taking images, arrays and bytes, when /openapi.json is fetched, then
    their multipart/form-data bodies declare those inputs as binary files of the media types
    they are read as, while the JSON bodies keep the base64 and nested-list forms; an API
    without files documents JSON alone."""
    paths = http.get("/openapi.json").json()["paths"]

    def content(path: str) -> dict[str, Any]:
        found: dict[str, Any] = paths[path]["post"]["requestBody"]["content"]
        return found

    for path, fields in [("/v1/services/echo/images/jobs", ["rgb", "gray"]),
                         ("/v1/services/echo/arrays/jobs", ["a", "b"]),
                         ("/v1/services/echo/nbytes/jobs", ["data"])]:
        form = content(path)["multipart/form-data"]
        for field in fields:
            assert form["schema"]["properties"][field]["type"] == "string", (path, field)
            assert form["schema"]["properties"][field]["format"] == "binary", (path, field)
            assert form["encoding"][field]["contentType"], (path, field)
            assert "binary" not in json.dumps(
                content(path)["application/json"]["schema"]["properties"][field])
        assert form["schema"]["required"] == fields
    images = content("/v1/services/echo/images/jobs")
    assert '"format": "base64-image"' in json.dumps(
        images["application/json"]["schema"]["properties"]["rgb"])
    assert "image/png" in images["multipart/form-data"]["encoding"]["rgb"]["contentType"]
    arrays = content("/v1/services/echo/arrays/jobs")["multipart/form-data"]["encoding"]
    assert arrays["a"]["contentType"].startswith("application/x-npy")
    assert list(content("/v1/services/calc/add/jobs")) == ["application/json"]


def test_submit_routes_show_an_example_body_that_is_accepted(system: System,
                                                             http: httpx.Client) -> None:
    """Given the JSON example /openapi.json shows for an image API and for a pipeline with a
    default, when each is posted as it is, then it is accepted and its job succeeds."""
    paths = http.get("/openapi.json").json()["paths"]

    def shown(path: str) -> dict[str, Any]:
        body: dict[str, Any] = paths[path]["post"]["requestBody"]["content"][
            "application/json"]["example"]
        return body

    images = shown("/v1/services/echo/images/jobs")
    assert set(images) == {"rgb", "gray"}
    view = run(http, "/v1/services/echo/images/jobs", images)
    assert view["state"] == "succeeded"
    assert [image["size"] for image in view["result"]] == [[1, 1], [1, 1]]
    assert shown("/v1/services/calc/delayed/jobs") == {"i": 0, "max_ms": 20}
    assert run(http, "/v1/pipelines/chain-3/jobs", shown("/v1/pipelines/chain-3/jobs"))[
        "result"] == 1


@pytest.mark.parametrize("apps", [["tests.apps"], ["workers"]])
def test_every_example_body_validates_against_its_inputs(apps: list[str]) -> None:
    """Given every pipeline and service API of the test apps and of the demos (arrays with
    a declared dtype and shape, images, dicts, defaults), when the example body of each is
    validated as a request would be, then each is accepted."""
    registry = load(apps)
    pipelines = [*registry.pipelines.values(), *(
        registry.api_pipeline(s.name, a) for s in registry.services.values() for a in s.apis)]
    assert len(pipelines) > 10
    for pipeline in pipelines:
        body = example(pipeline)
        assert set(body) == set(pipeline.input_model.model_fields), pipeline.name
        pipeline.input_model.model_validate(body)


def test_every_error_answer_is_documented_as_a_problem(http: httpx.Client) -> None:
    """Given /openapi.json, when every operation's 4xx and 5xx answers are read, then each
    is application/problem+json of Problem (FastAPI's own HTTPValidationError is gone),
    except /readyz's 503, which is the Readiness body its 200 has too."""
    openapi = http.get("/openapi.json").json()
    seen = 0
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status[0] not in "45":
                    continue
                seen += 1
                if (path, status) == ("/readyz", "503"):
                    assert answer["content"]["application/json"]["schema"]["$ref"].endswith(
                        "/Readiness")
                else:
                    assert answer["content"] == _PROBLEM, (method, path, status)
    assert seen > 100
    assert "HTTPValidationError" not in openapi["components"]["schemas"]
    v1 = [op for path, ops in openapi["paths"].items() if path.startswith("/v1")
          for op in ops.values()]
    assert all("401" in op["responses"] for op in v1)


def test_one_pipeline_by_name_is_what_the_list_gives(http: httpx.Client) -> None:
    """Given the pipelines list, when one pipeline is fetched by name, then it is the list's
    item, with its submit URL; /openapi.json names its model."""
    listed = {p["name"]: p for p in http.get("/v1/pipelines").json()["pipelines"]}
    one = http.get("/v1/pipelines/mapped")
    assert one.status_code == 200 and one.json() == listed["mapped"]
    assert one.json()["submit_url"] == "/v1/pipelines/mapped/jobs"
    answers = http.get("/openapi.json").json()["paths"]["/v1/pipelines/{name}"]["get"]["responses"]
    assert answers["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/PipelineInfo")


def test_one_service_by_name_is_what_the_list_gives(http: httpx.Client) -> None:
    """Given the services list, when one service is fetched by name, then it is the list's
    item (its declaration, its APIs with their submit URLs and schemas, its queue's
    numbers), and the built-in `braid` service is found too."""
    listed = {s["name"]: s for s in http.get("/v1/services").json()["services"]}
    one = http.get("/v1/services/echo").json()
    assert one == listed["echo"]
    assert one["class"] == "tests.apps.basic.Echo" and one["live_workers"] >= 1
    images = next(a for a in one["apis"] if a["name"] == "images")
    assert images["submit_url"] == "/v1/services/echo/images/jobs"
    assert http.get("/v1/services/braid").json()["queue"] == "braid"


@pytest.mark.parametrize(("path", "code", "known"), [
    ("/v1/pipelines/nope", "pipeline_not_found", "chain-3"),
    ("/v1/services/nope", "service_not_found", "echo"),
])
def test_an_unknown_name_is_a_404_naming_the_known_ones(http: httpx.Client, path: str,
                                                        code: str, known: str) -> None:
    """Given no pipeline or service named `nope`, when it is fetched, then the answer is a
    not-found problem that lists the names there are."""
    answer = http.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code
    assert known in answer.json()["detail"]


def test_a_wrong_method_is_a_405_problem_with_allow(http: httpx.Client) -> None:
    """Given /v1/jobs (GET) and /v1/jobs/{job} (GET and DELETE), when each is sent a PUT,
    then the answer is a 405 method_not_allowed problem whose Allow header and detail name
    every method of the path."""
    for path, allowed in [("/v1/jobs", "GET"), ("/v1/jobs/some-job", "DELETE, GET")]:
        answer = http.put(path)
        assert answer.status_code == 405
        assert answer.headers["allow"] == allowed
        assert answer.headers["content-type"] == "application/problem+json"
        body = answer.json()
        assert body["code"] == "method_not_allowed" and body["status"] == 405
        assert f"PUT is not allowed on {path}; it answers {allowed}" in body["detail"]
