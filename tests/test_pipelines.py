"""Pipelines over REST: chains, groups, joins, maps and graphs across several queues."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.harness import System
from tests.jobs_helpers import drained, marks, run


def test_chain_across_three_queues_returns_the_right_value(http: httpx.Client) -> None:
    view = run(http, "/v1/pipelines/chain-3/jobs", {"x": 20})
    assert view["state"] == "succeeded" and view["result"] == 41
    assert {s["service"] for s in view["steps"].values()} == {"calc", "echo", "slow"}
    assert view["progress"] == {"done": 3, "total": 3}


def test_200_parallel_steps_with_random_delays_return_in_declaration_order(
        http: httpx.Client) -> None:
    view = run(http, "/v1/pipelines/parallel-200/jobs", {"max_ms": 10}, timeout=120)
    assert view["result"] == list(range(200))
    assert view["progress"] == {"done": 200, "total": 200}


def test_join_aggregates_200_parallel_results(http: httpx.Client) -> None:
    assert run(http, "/v1/pipelines/join-200/jobs", {"max_ms": 5}, timeout=120)["result"] == \
        sum(range(200))


@pytest.mark.parametrize("n", [0, 1, 500])
def test_map_produces_one_result_per_element_in_order_and_collects_once(
        system: System, http: httpx.Client, n: int) -> None:
    key = f"map-{n}"
    before = marks(system.redis(), key)
    view = run(http, "/v1/pipelines/mapped/jobs", {"n": n, "key": key}, timeout=120)
    assert view["result"] == [2 * i for i in range(n)]
    assert marks(system.redis(), key) == before + 1
    assert (view["steps"]["calc.double"]["size"], view["steps"]["calc.double"]["done"]) == (n, n)
    assert view["progress"] == {"done": 3, "total": 3}


def test_progress_total_stays_fixed_while_a_map_fans_out(http: httpx.Client) -> None:
    # given a job whose map fans out over 300 elements
    job = http.post("/v1/pipelines/mapped/jobs", json={"n": 300, "key": "progress"}).json()["id"]
    # when its progress is read until it ends
    seen: list[tuple[int, int, str]] = []
    deadline = time.monotonic() + 120
    while (not seen or seen[-1][2] not in ("succeeded", "failed")) and time.monotonic() < deadline:
        view = http.get(f"/v1/jobs/{job}").json()
        seen.append((view["progress"]["done"], view["progress"]["total"], view["state"]))
    # then the total was the pipeline's three steps throughout, and done never went back
    assert {total for _, total, _ in seen} == {3}
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)
    assert seen[-1] == (3, 3, "succeeded")


@pytest.mark.parametrize("xs", [[], [4], [1, 2, 3]])
def test_map_over_a_pipeline_input(http: httpx.Client, xs: list[int]) -> None:
    view = run(http, "/v1/pipelines/map-input/jobs", {"xs": xs})
    assert view["state"] == "succeeded" and view["result"] == [2 * x for x in xs]
    assert view["steps"]["calc.double"]["state"] == "succeeded"


@pytest.mark.parametrize("n", [0, 3])
def test_map_that_ends_the_pipeline_is_its_result(http: httpx.Client, n: int) -> None:
    view = run(http, "/v1/pipelines/map-last/jobs", {"n": n})
    assert view["state"] == "succeeded" and view["result"] == [2 * i for i in range(n)]
    assert view["steps"]["calc.double"]["size"] == n


@pytest.mark.parametrize("n", [0, 2])
def test_the_list_and_the_map_over_it_both_in_the_result(http: httpx.Client, n: int) -> None:
    view = run(http, "/v1/pipelines/map-and-list/jobs", {"n": n})
    assert view["result"] == {"items": list(range(n)), "doubled": [2 * i for i in range(n)]}


def test_glue_step_joins_parallel_outputs(http: httpx.Client) -> None:
    view = run(http, "/v1/pipelines/glue-raises/jobs", {"x": 1, "y": 2, "key": "glue-ok"})
    assert view["result"] == [2, 4]


def test_glue_step_that_raises_fails_the_job_and_nothing_after_it_runs(
        system: System, http: httpx.Client) -> None:
    before = marks(system.redis(), "glue-raises")
    view = run(http, "/v1/pipelines/glue-raises/jobs", {"x": 3, "y": 3, "key": "glue-raises"})
    assert view["state"] == "failed"
    assert {k: view["error"][k] for k in ("step", "type", "message")} == {
        "step": "calc.pair", "type": "ValueError", "message": "cannot pair 6 with itself"}
    assert view["steps"]["calc.collect"]["state"] == "skipped"
    drained(http, "calc")
    assert marks(system.redis(), "glue-raises") == before


def test_graph_of_parallel_then_map_then_collect(system: System, http: httpx.Client) -> None:
    view = run(http, "/v1/pipelines/graph/jobs", {"x": 3, "y": 5, "key": "graph"})
    assert view["result"] == [sum(range(3)), sum(range(5))]


def test_pipelines_list_their_input_schema_and_step_graph(http: httpx.Client) -> None:
    pipelines = {p["name"]: p for p in http.get("/v1/pipelines").json()["pipelines"]}
    graph = pipelines["graph"]
    assert graph["input_schema"]["required"] == ["x", "y", "key"]
    nodes = {n["name"]: n for n in graph["graph"]["nodes"]}
    assert nodes["calc.total"] == {"name": "calc.total", "service": "calc", "api": "total",
                                   "queue": "calc", "kind": "map", "streams": False}
    assert ["calc.span", "calc.collect"] in graph["graph"]["edges"]
    assert graph["graph"]["streams"] == []
    streaming = pipelines["stream-upper"]["graph"]
    assert streaming["streams"] == [["source.count", "sink.upper"]]
    assert {n["name"]: n["streams"] for n in streaming["nodes"]} == {
        "source.count": True, "sink.upper": True}


def test_invalid_pipeline_input_is_422_and_unknown_pipeline_404(http: httpx.Client) -> None:
    bad = http.post("/v1/pipelines/mapped/jobs", json={"n": "lots", "key": "k"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "n"
    missing = http.post("/v1/pipelines/nope/jobs", json={})
    assert missing.status_code == 404 and missing.json()["code"] == "pipeline_not_found"
