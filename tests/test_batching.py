"""Batched APIs: queued calls run in one model call, each still its own step of its own job."""

from __future__ import annotations

from typing import Any

import httpx

from app._batch import RunCost
from tests.apps.batching import BATCH, POISON
from tests.harness import System, wait_for
from tests.jobs_helpers import drained, marks, run, submit, wait

HOLD = "/v1/services/batcher/hold/jobs"
RUSH = "/v1/services/batcher/rush/jobs"
DOUBLE = "/v1/services/batcher/double/jobs"


def _busy(http: httpx.Client, seconds: float, route: str = HOLD) -> str:
    """A job that keeps the batcher's model busy, so that what is submitted next queues."""
    job = submit(http, route, {"seconds": seconds} | ({"key": "busy"} if route == HOLD else {}))
    wait_for(lambda: http.get(f"/v1/jobs/{job}").json()["state"] == "running" or None, 10,
             "the busy call to start")
    return job


def _step(http: httpx.Client, job: str, name: str) -> dict[str, Any]:
    step: dict[str, Any] = http.get(f"/v1/jobs/{job}").json()["steps"][name]
    return step


def test_a_burst_of_calls_forms_batches_larger_than_one(http: httpx.Client) -> None:
    # given a busy model, and six calls queued behind it
    busy = _busy(http, 1.0)
    jobs = [submit(http, HOLD, {"seconds": 0.01, "key": "burst"}) for _ in range(6)]
    # when they run
    views = [wait(http, job) for job in [busy, *jobs]]
    # then each succeeded as its own job, and they ran in batches larger than one
    assert [v["state"] for v in views] == ["succeeded"] * 7
    sizes = [v["steps"]["hold"]["batch"]["size"] for v in views[1:]]
    assert max(sizes) > 1, sizes


def test_the_calls_of_a_batch_are_stored_and_handed_off_together(http: httpx.Client) -> None:
    # given a busy model, and calls queued behind it
    busy = _busy(http, 1.0)
    jobs = [submit(http, HOLD, {"seconds": 0.01, "key": "together"}) for _ in range(6)]
    # when they run in batches
    views = [wait(http, job) for job in jobs]
    # then the calls of each batch were stored in one round trip (one time, not one each)
    assert wait(http, busy)["state"] == "succeeded"
    by_batch: dict[str, set[str]] = {}
    for view in views:
        step = view["steps"]["hold"]
        by_batch.setdefault(step["batch"]["id"], set()).add(step["finished_at"])
    assert any(v["steps"]["hold"]["batch"]["size"] > 1 for v in views)
    assert all(len(times) == 1 for times in by_batch.values()), by_batch


def test_batches_run_after_redis_forgot_the_scripts(system: System, http: httpx.Client) -> None:
    # given a worker that stored batches already, and Redis then emptied of its scripts (as
    # a Redis restarted without them is)
    busy = _busy(http, 0.5)
    first = [submit(http, HOLD, {"seconds": 0.01, "key": "before-flush"}) for _ in range(4)]
    assert [wait(http, job)["state"] for job in [busy, *first]] == ["succeeded"] * 5
    system.redis().script_flush()
    # when calls queue behind a busy model again
    busy = _busy(http, 0.5)
    jobs = [submit(http, HOLD, {"seconds": 0.01, "key": "after-flush"}) for _ in range(4)]
    views = [wait(http, job) for job in jobs]
    # then their batches started and finished: each job succeeded, in a batch of several
    assert wait(http, busy)["state"] == "succeeded"
    assert [v["state"] for v in views] == ["succeeded"] * 4
    assert max(v["steps"]["hold"]["batch"]["size"] for v in views) > 1


def test_calls_queued_behind_a_busy_model_run_when_its_batches_may_not_wait(
        http: httpx.Client) -> None:
    # given an API with max_latency_ms=0 whose model is busy, and calls queued behind it
    busy = _busy(http, 1.0, RUSH)
    jobs = [submit(http, RUSH, {"seconds": 0.01}) for _ in range(3)]
    # when the busy call ends
    views = [wait(http, job) for job in [busy, *jobs]]
    # then every call ran: none waited for a call after it that never came
    assert [v["state"] for v in views] == ["succeeded"] * 4


def test_the_fixed_cost_of_a_batch_is_fitted_from_run_times() -> None:
    # given batches whose run time is 10 ms plus 1 ms per call
    cost = RunCost()
    assert cost.fixed_s() is None
    for size in [1, 4, 2, 8, 3, 6] * 3:
        cost.observe(size, 0.010 + 0.001 * size)
    # then the fixed part is 10 ms
    assert abs((cost.fixed_s() or 0) - 0.010) < 1e-6


def test_the_fitted_cost_follows_the_latest_batches() -> None:
    # given a model whose batches cost 50 ms fixed, then 5 ms fixed once its load fell
    cost = RunCost()
    for size in [1, 2, 4] * 5:
        cost.observe(size, 0.050 + 0.001 * size)
    for size in [1, 2, 4] * 40:
        cost.observe(size, 0.005 + 0.001 * size)
    # then the estimate is the recent one
    assert abs((cost.fixed_s() or 0) - 0.005) < 0.001


def test_batches_of_one_size_bound_the_fixed_cost_by_their_run_time() -> None:
    # given batches that were all of one call, 7 ms each
    cost = RunCost()
    for _ in range(5):
        cost.observe(1, 0.007)
    # then the fixed part cannot be told apart: it is their whole run time
    assert abs((cost.fixed_s() or 0) - 0.007) < 1e-9


def test_an_idle_worker_runs_a_lone_call_at_once(http: httpx.Client) -> None:
    # given an idle batched API (no other test calls it)
    drained(http, "batcher")
    # when one call comes
    view = run(http, "/v1/services/batcher/lone/jobs", {"xs": 21})
    # then it ran alone, without waiting for the batch to fill (the latency is 2 s)
    step = view["steps"]["lone"]
    assert view["result"] == 21 and step["batch"]["size"] == 1
    waited = _seconds(step["started_at"]) - _seconds(step["queued_at"])
    assert waited < BATCH.max_latency_ms / 1000, waited


def _seconds(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_poisoned_call_in_a_batch_fails_only_its_own_job(http: httpx.Client) -> None:
    # given three calls queued behind a busy model, one of which makes the model raise
    busy = _busy(http, 1.0)
    jobs = [submit(http, DOUBLE, {"xs": x}) for x in (1, POISON, 3)]
    # when they run in one batch
    views = [wait(http, job) for job in jobs]
    wait(http, busy)
    # then only the poisoned call's job failed, with the model's error; the others succeeded
    assert [v["state"] for v in views] == ["succeeded", "failed", "succeeded"]
    assert (views[0]["result"], views[2]["result"]) == (2, 6)
    assert views[1]["error"]["message"] == f"{POISON} poisons the batch"
    assert {v["steps"]["double"]["batch"]["size"] for v in views} == {3}
    assert len({v["steps"]["double"]["batch"]["id"] for v in views}) == 1


def test_an_invalid_input_fails_only_its_own_job(http: httpx.Client) -> None:
    # given calls queued behind a busy model, one of whose inputs fails validation in the
    # worker (the pipeline passes it a value the API's type refuses)
    busy = _busy(http, 1.0)
    good = submit(http, DOUBLE, {"xs": 5})
    bad = submit(http, "/v1/pipelines/batched-bad-input/jobs", {})
    # then the bad one failed as invalid input, the good one succeeded
    assert wait(http, good)["result"] == 10
    failed = wait(http, bad)
    assert failed["state"] == "failed" and failed["error"]["type"] == "InvalidInput"
    wait(http, busy)


def test_batched_steps_hand_off_in_a_chain_a_chord_and_a_map(http: httpx.Client) -> None:
    # given pipelines whose batched steps are a chain's links, a chord's parts, a map's elements
    chain = run(http, "/v1/pipelines/batched-chain/jobs", {"x": 3})
    chord = run(http, "/v1/pipelines/batched-chord/jobs", {"x": 1, "y": 2})
    mapped = run(http, "/v1/pipelines/batched-map/jobs", {"n": 8})
    # then each hands off to the next step of its own job
    assert (chain["result"], chord["result"]) == (12, [2, 4])
    assert mapped["result"] == [2 * i for i in range(8)]
    # and the map's eight elements, queued together, shared batches
    sizes = [mapped["steps"][f"batcher.double[{i}]"]["batch"]["size"] for i in range(8)]
    assert max(sizes) > 1, sizes


def test_a_cancelled_jobs_call_is_dropped_from_its_batch(system: System,
                                                          http: httpx.Client) -> None:
    # given a call queued behind a busy model
    busy = _busy(http, 1.5)
    before = marks(system.redis(), "cancelled-call")
    job = submit(http, HOLD, {"seconds": 0.01, "key": "cancelled-call"})
    # when its job is cancelled before its batch runs
    assert http.delete(f"/v1/jobs/{job}").status_code == 200
    wait(http, busy)
    drained(http, "batcher")
    # then its call never ran
    assert marks(system.redis(), "cancelled-call") == before
    assert _step(http, job, "hold")["state"] == "cancelled"


def test_a_worker_killed_mid_batch_has_every_call_of_it_redelivered(
        system: System, http: httpx.Client) -> None:
    # given a batch of three calls running
    busy = _busy(http, 0.5)
    jobs = [submit(http, HOLD, {"seconds": 3.0, "key": "killed"}) for _ in range(3)]

    def batch_running() -> bool | None:
        # all three running at once: one batch (a batching worker runs one at a time)
        return all(_step(http, job, "hold")["state"] == "running" for job in jobs) or None

    wait_for(batch_running, 20, "the batch of three to run")
    # when its worker is killed and comes back
    system.kill_group("worker-batcher")
    system.start_worker("batcher")
    # then every call of the batch runs again, and every job succeeds
    views = [wait(http, job, 60) for job in jobs]
    assert [v["state"] for v in views] == ["succeeded"] * 3
    assert [v["steps"]["hold"]["attempts"] for v in views] == [2, 2, 2]
    assert {v["steps"]["hold"]["batch"]["size"] for v in views} == {3}
    wait(http, busy)


def test_services_show_each_apis_batch_settings_and_metrics_count_batches(
        http: httpx.Client) -> None:
    run(http, DOUBLE, {"xs": 4})
    services = {s["name"]: s for s in http.get("/v1/services").json()["services"]}
    apis = {a["name"]: a for a in services["batcher"]["apis"]}
    assert apis["double"]["batch"] == {"max_size": 8, "max_latency_ms": 2000}
    assert services["echo"]["apis"][0]["batch"] is None
    calc = {a["name"]: a for a in services["calc"]["apis"]}
    assert (calc["join"]["inline"], calc["add"]["inline"], apis["double"]["inline"]) == (
        True, False, False)
    metrics = http.get("/metrics").text
    assert 'braid_batch_size_count{api="double",service="batcher"}' in metrics
    assert 'braid_batch_run_seconds_count{api="double",service="batcher"}' in metrics


def _node(view: dict[str, Any], name: str) -> str:
    return str(view["steps"][name]["worker"]).partition("@")[0]


def test_an_inline_step_runs_in_the_worker_that_finished_its_inputs(
        http: httpx.Client) -> None:
    # when a chord of two batched steps hands off to an inline API (Calc.join)
    view = run(http, "/v1/pipelines/inline-join/jobs", {"x": 1, "y": 2})
    # then the batcher's worker ran it, as its own step, not a calc worker
    assert view["state"] == "succeeded" and view["result"] == [2, 4]
    assert view["steps"]["calc.join"]["state"] == "succeeded"
    assert _node(view, "calc.join") == "batcher"


def test_an_inline_api_called_directly_runs_on_its_own_services_worker(
        http: httpx.Client) -> None:
    view = run(http, "/v1/services/calc/join/jobs", {"a": 1, "b": 2})
    assert view["result"] == [1, 2] and _node(view, "join") == "calc"


def test_a_failing_inline_step_fails_only_its_own_job(http: httpx.Client) -> None:
    # when an inline step raises in the batcher's worker
    failed = run(http, "/v1/pipelines/inline-join/jobs", {"x": 3, "y": 3})
    # then its job failed at that step, with the service's error
    assert failed["state"] == "failed" and failed["error"]["step"] == "calc.join"
    assert "cannot join 6 with itself" in failed["error"]["message"]
    # and the worker that ran it runs the next job
    assert run(http, "/v1/pipelines/inline-join/jobs", {"x": 3, "y": 4})["result"] == [6, 8]


def test_a_worker_killed_mid_inline_step_hands_it_back_to_its_own_queue(
        system: System, http: httpx.Client) -> None:
    # given an inline step held running in the batcher's worker
    client = system.redis()
    client.set("test:hold:inline-killed", 1)
    before = marks(client, "inline-killed")
    job = submit(http, "/v1/pipelines/inline-held/jobs", {"x": 5, "key": "inline-killed"})
    wait_for(lambda: marks(client, "inline-killed") > before or None, 20,
             "the inline step to start")
    assert _node(http.get(f"/v1/jobs/{job}").json(), "calc.held") == "batcher"
    # when that worker is killed (and comes back), and the hold is lifted
    system.kill_group("worker-batcher")
    client.delete("test:hold:inline-killed")
    system.start_worker("batcher")
    # then the calc service's own worker ran the step again, and the job succeeded
    view = wait(http, job, 60)
    assert view["state"] == "succeeded" and view["result"] == 10
    assert view["steps"]["calc.held"]["attempts"] == 2 and _node(view, "calc.held") == "calc"


def test_maps_of_the_same_shape_in_many_jobs_each_run_their_own_elements(
        http: httpx.Client) -> None:
    # when jobs expand maps of the same shape (the first builds its chord with Celery's
    # canvas, the others copy it)
    jobs = [submit(http, "/v1/pipelines/batched-map/jobs", {"n": 3}) for _ in range(4)]
    views = [wait(http, job) for job in jobs]
    # then each ran its own elements, with ids of its own, and got its own result
    assert [v["result"] for v in views] == [[0, 2, 4]] * 4
    ids = [v["steps"][f"batcher.double[{i}]"]["task_id"] for v in views for i in range(3)]
    assert len(set(ids)) == 12
