"""Streaming: a step's chunks reach clients as they are written (SSE, resumable), and flow
into the next model's step while it runs, with backpressure, cancel and redelivery."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from app import Client, DeclarationError, JobFailed, api, pipeline, service, step, stream
from app._protocol import job_key, stream_key, stream_state_key
from app._scripts import lua
from tests.conftest import WINDOW
from tests.harness import System, wait_for
from tests.jobs_helpers import run, submit, wait

COUNT = "/v1/services/source/count/jobs"
UPPER = "/v1/pipelines/stream-upper/jobs"
_READ = httpx.Timeout(30.0, read=60.0)


def _events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The server-sent events of ``response``: id, event, data (parsed), and when the
    client read it."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                yield {**event, "read_at": time.time()}
            event = {}
        elif line.startswith(("id: ", "event: ")):
            key, _, value = line.partition(": ")
            event[key] = value
        elif line.startswith("data: "):
            event["data"] = json.loads(line[6:])


def _chunk_events(http: httpx.Client, job: str, after: str | None = None,
                  stop_after: int | None = None) -> list[dict[str, Any]]:
    """The events of the job's ``/stream`` (resumed ``after`` an id), up to its end or the
    ``stop_after``-th chunk, when the client hangs up."""
    headers = {"Last-Event-ID": after} if after else {}
    out: list[dict[str, Any]] = []
    with http.stream("GET", f"/v1/jobs/{job}/stream", headers=headers, timeout=_READ) as r:
        assert r.status_code == 200, r.read()
        for event in _events(r):
            out.append(event)
            chunks = [e for e in out if e["event"] == "chunk"]
            if event["event"] == "end" or (stop_after and len(chunks) == stop_after):
                break
    return out


def _items(events: list[dict[str, Any]]) -> list[Any]:
    return [i for e in events if e["event"] == "chunk" for i in e["data"]["items"]]


def _entry_time(entry_id: str) -> float:
    """When a stream entry was written (its id's milliseconds)."""
    return int(entry_id.partition("-")[0]) / 1000


def _at(view: dict[str, Any], step_name: str, field: str) -> float:
    text = view["steps"][step_name][field]
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_chunks_reach_an_sse_client_before_the_producer_finishes(http: httpx.Client) -> None:
    # given a streaming API that yields six tokens, 0.3 s apart
    job = submit(http, COUNT, {"n": 6, "pause_s": 0.3})
    # when a client follows its stream
    events = _chunk_events(http, job)
    # then every token came, in order, and the first was written (and read) while the step
    # still had more than a second to run
    view = wait(http, job)
    assert view["state"] == "succeeded" and view["result"] == [f"t{i} " for i in range(6)]
    assert _items(events) == view["result"] and events[-1]["event"] == "end"
    first = next(e for e in events if e["event"] == "chunk")
    finished = _at(view, "count", "finished_at")
    assert _entry_time(first["id"]) < finished - 1.0
    assert first["read_at"] < finished - 1.0


def test_a_reconnect_with_last_event_id_misses_and_repeats_nothing(http: httpx.Client) -> None:
    # given a client that read a stream's first chunks and hung up
    job = submit(http, COUNT, {"n": 20, "pause_s": 0.05})
    before = _chunk_events(http, job, stop_after=3)
    # when it reconnects after the last chunk it saw
    after = _chunk_events(http, job, after=before[-1]["id"])
    # then it gets exactly the chunks it had not seen, then the job's end
    assert _items(before) + _items(after) == [f"t{i} " for i in range(20)]
    assert after[0]["data"]["first"] == len(_items(before))
    assert after[-1]["event"] == "end" and after[-1]["data"]["state"] == "succeeded"
    # and once it saw the end, a reconnect is told there is nothing more (204)
    response = http.get(f"/v1/jobs/{job}/stream", headers={"Last-Event-ID": after[-1]["id"]})
    assert response.status_code == 204


def test_the_reading_step_of_a_two_stage_stream_starts_before_the_producer_ends(
        system: System, http: httpx.Client) -> None:
    # given two streaming stages: tokens 0.2 s apart, upper-cased by a second service
    job = submit(http, UPPER, {"n": 10, "pause_s": 0.2})
    # when the job runs, followed by a client
    events = _chunk_events(http, job)
    view = wait(http, job)
    # then its result is every token through both stages, the second stage started while
    # the first still ran, and its chunks (what the client got) were written while it ran
    assert view["state"] == "succeeded" and view["result"] == [f"T{i} " for i in range(10)]
    assert _items(events) == view["result"]
    produced = _at(view, "source.count", "finished_at")
    assert _at(view, "sink.upper", "started_at") < produced - 1.0
    first = next(e for e in events if e["event"] == "chunk")
    assert first["data"]["step"] == "sink.upper" and _entry_time(first["id"]) < produced - 1.0


def test_a_slow_reader_holds_its_producer_within_the_window(
        system: System, http: httpx.Client) -> None:
    # given a producer that could write 60 tokens at once, read by a step that takes 20 ms
    # a token
    view = run(http, "/v1/pipelines/stream-slow-reader/jobs", {"n": 60, "pause_s": 0.02})
    assert view["state"] == "succeeded"
    taken: list[float] = view["result"]
    assert len(taken) == 60
    # then when each write landed, the producer was never more than the window ahead of
    # what the reader had taken (times to the stream's millisecond, hence 2 ms of slack)
    entries: Any = system.redis().xrange(stream_key(view["id"], "source.count"))
    leads = []
    for entry_id, fields in entries:
        if b"d" not in fields:
            continue
        written = int(fields[b"n"]) + len(json.loads(fields[b"d"]))
        read = len([t for t in taken if t <= _entry_time(entry_id.decode()) + 0.002])
        leads.append(written - read)
    assert max(leads) <= WINDOW, leads
    # and it did wait: the writes spread over most of the reader's time
    assert _entry_time(entries[-1][0].decode()) - _entry_time(entries[0][0].decode()) > 0.5


def test_cancel_stops_the_producer_and_its_reader(system: System, http: httpx.Client) -> None:
    # given a long two-stage stream, both stages running and writing
    job = submit(http, UPPER, {"n": 2000, "pause_s": 0.05})
    client = system.redis()
    keys = [stream_key(job, s) for s in ("source.count", "sink.upper")]
    wait_for(lambda: all(client.xlen(k) >= 3 for k in keys) or None, 20, "both stages to write")
    # when the job is cancelled
    assert http.delete(f"/v1/jobs/{job}").status_code == 200
    at_cancel = [client.xlen(k) for k in keys]

    def both_stopped() -> dict[str, Any] | None:
        steps = http.get(f"/v1/jobs/{job}").json()["steps"]
        states = {steps[s]["state"] for s in ("source.count", "sink.upper")}
        return steps if states == {"cancelled"} else None

    # then both steps stop, within a chunk or two of the cancel
    wait_for(both_stopped, 20, "both stages to stop")
    assert all(client.xlen(k) <= n + 2 for k, n in zip(keys, at_cancel, strict=True))
    # and the stream's reader is told the job's end
    end = _chunk_events(http, job)[-1]
    assert end["event"] == "end" and end["data"]["state"] == "cancelled"


def test_cancel_stops_async_apis_reading_a_stream(system: System, http: httpx.Client) -> None:
    # given a long stream read by an async generator and a coroutine, both running
    job = submit(http, "/v1/pipelines/stream-async/jobs", {"n": 2000, "pause_s": 0.05})
    client = system.redis()
    wait_for(lambda: client.xlen(stream_key(job, "sink.aupper")) >= 3 or None, 20,
             "the async generator to write")
    steps = ("source.count", "sink.aupper", "sink.joined")
    # when the job is cancelled
    assert http.delete(f"/v1/jobs/{job}").status_code == 200

    def all_stopped() -> dict[str, Any] | None:
        found = http.get(f"/v1/jobs/{job}").json()["steps"]
        return found if {found[s]["state"] for s in steps} == {"cancelled"} else None

    # then the source and both async readers stop, and the source's stream ends well short
    # of its 2000 tokens
    wait_for(all_stopped, 20, "every step to stop")
    assert client.xlen(stream_key(job, "source.count")) < 100


def test_a_failing_producer_fails_its_job_and_ends_its_readers(
        system: System, http: httpx.Client) -> None:
    # given a producer that raises at its fourth token
    job = submit(http, COUNT, {"n": 10, "fail_at": 3})
    # when it runs
    view = wait(http, job)
    # then the job failed with the producer's own error, and a client's stream gives the
    # three tokens written, then raises that error
    assert view["state"] == "failed"
    assert "token 3 is poisoned" in view["error"]["message"]
    seen: list[str] = []
    with Client(system.url) as client, pytest.raises(JobFailed, match="token 3 is poisoned"):
        seen.extend(c.value for c in client.job(job).stream())
    assert seen == ["t0 ", "t1 ", "t2 "]


def test_a_failing_reader_fails_its_job_and_stops_its_producer(
        system: System, http: httpx.Client) -> None:
    # given a long stream whose reading step raises at its fifth token
    job = submit(http, UPPER, {"n": 2000, "pause_s": 0.01, "fail_at": 4})
    # when it runs
    view = wait(http, job)
    # then the job failed with the reader's error, and the producer stopped long before its
    # end (at its next write after the job failed)
    assert view["state"] == "failed" and "cannot upper-case token 4" in view["error"]["message"]

    def producer_ended() -> dict[str, Any] | None:
        found: dict[str, Any] = http.get(f"/v1/jobs/{job}").json()["steps"]["source.count"]
        return found if found["state"] != "running" else None

    producer = wait_for(producer_ended, 20, "the producer to stop")
    assert producer["state"] == "failed" and producer["error"]["type"] == "JobEnded"
    written: Any = system.redis().xrange(stream_key(job, "source.count"))
    assert int(written[-1][1][b"n"]) < 1000


def test_the_client_iterates_chunks_as_they_come(system: System) -> None:
    # given a client and a streaming job
    with Client(system.url) as client:
        job = client.call("source", "count", n=5, pause_s=0.1)
        # when it iterates the stream
        chunks = list(job.stream())
    # then it gets every chunk, with its step, attempt and place
    assert [c.value for c in chunks] == [f"t{i} " for i in range(5)]
    assert [c.index for c in chunks] == list(range(5))
    assert {(c.step, c.attempt) for c in chunks} == {("count", 1)}


def test_the_async_client_iterates_chunks_as_they_come(system: System) -> None:
    import asyncio

    from app import AsyncClient

    async def follow() -> list[Any]:
        async with AsyncClient(system.url) as client:
            job = await client.call("source", "count", n=4, pause_s=0.05)
            return [c.value async for c in job.stream()]

    assert asyncio.run(follow()) == ["t0 ", "t1 ", "t2 ", "t3 "]


def test_braid_submit_stream_prints_the_text_as_it_comes(system: System) -> None:
    import subprocess
    import sys

    from tests.harness import ROOT

    out = subprocess.run([sys.executable, "-m", "app.cli", "submit", "source.count", "--url",
                          system.url, "--input", '{"n": 3}', "--stream"], cwd=ROOT,
                         env=system.env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout == "t0 t1 t2 \n"


def test_async_apis_read_a_stream_as_it_is_written(http: httpx.Client) -> None:
    # given a source's tokens, 0.2 s apart, read at once by an async generator (upper-casing
    # them) and a coroutine (joining them), each taking an AsyncIterator
    job = submit(http, "/v1/pipelines/stream-async/jobs", {"n": 8, "pause_s": 0.2})
    # when a client follows the async generator's stream
    with http.stream("GET", f"/v1/jobs/{job}/stream", params={"step": "sink.aupper"},
                     timeout=_READ) as response:
        events = list(_events(response))
    view = wait(http, job)
    # then both gave what they read, and the async generator started, and wrote its first
    # chunk, while the source still had more than a second to run
    tokens = [f"t{i} " for i in range(8)]
    assert view["state"] == "succeeded", view.get("error")
    assert view["result"] == {"upper": [t.upper() for t in tokens], "joined": "".join(tokens)}
    assert _items(events) == view["result"]["upper"]
    produced = _at(view, "source.count", "finished_at")
    assert _at(view, "sink.aupper", "started_at") < produced - 1.0
    first = next(e for e in events if e["event"] == "chunk")
    assert _entry_time(first["id"]) < produced - 1.0


def test_step_picks_which_streaming_step_of_a_job_to_follow(http: httpx.Client) -> None:
    # given a two-stage job, done
    view = run(http, UPPER, {"n": 3})
    # when its stream is asked for by step
    with http.stream("GET", f"/v1/jobs/{view['id']}/stream",
                     params={"step": "source.count"}) as response:
        events = list(_events(response))
    unknown = http.get(f"/v1/jobs/{view['id']}/stream", params={"step": "nope"})
    # then the first stage's chunks come (by default, the result's: upper-cased), and a step
    # that does not stream is not found
    assert _items(events) == ["t0 ", "t1 ", "t2 "]
    assert unknown.status_code == 404 and "source.count, sink.upper" in unknown.json()["detail"]


def test_a_pipeline_without_a_streaming_step_has_no_stream(http: httpx.Client) -> None:
    view = run(http, "/v1/services/echo/echo/jobs", {"value": "hi"})
    response = http.get(f"/v1/jobs/{view['id']}/stream")
    assert response.status_code == 409
    assert "no streaming step" in response.json()["detail"]


def test_a_submission_that_accepts_an_event_stream_is_answered_with_its_chunks(
        http: httpx.Client) -> None:
    # given a two-stage streaming pipeline
    # when a client submits to it asking for an event stream
    with http.stream("POST", UPPER, json={"n": 4, "pause_s": 0.05}, timeout=_READ,
                     headers={"Accept": "text/event-stream"}) as response:
        status, location = response.status_code, response.headers.get("location", "")
        events = list(_events(response))
    # then that one request answers with the result step's chunks as /stream sends them,
    # then the job's end, and the job is where Location says
    assert status == 200 and "/v1/jobs/" in location
    assert _items(events) == [f"T{i} " for i in range(4)]
    assert {e["data"]["step"] for e in events if e["event"] == "chunk"} == {"sink.upper"}
    assert events[-1]["event"] == "end" and events[-1]["data"]["state"] == "succeeded"
    view = http.get(location).json()
    assert view["id"] == events[-1]["data"]["id"] and view["result"] == _items(events)


def test_a_streamed_submission_of_a_pipeline_that_does_not_stream_queues_nothing(
        http: httpx.Client) -> None:
    # given a direct API that does not stream
    echo = "/v1/services/echo/echo/jobs"

    def listed() -> list[str]:
        return [j["id"] for name in ("echo.echo", "stream-upper") for j in
                http.get("/v1/jobs", params={"pipeline": name, "limit": 500}).json()["jobs"]]

    before = listed()
    # when it is submitted asking for an event stream, or for one that also waits
    refused = http.post(echo, json={"value": "hi"}, headers={"Accept": "text/event-stream"})
    waiting = http.post(UPPER, params={"wait": 5}, json={"n": 1},
                        headers={"Accept": "text/event-stream"})
    # then each is refused with what to do instead, and no job was made
    assert refused.status_code == 409 and "no streaming step" in refused.json()["detail"]
    assert waiting.status_code == 422 and "leave out ?wait=" in waiting.json()["detail"]
    assert listed() == before


def test_a_producer_killed_mid_stream_restarts_and_readers_see_the_restart(
        system: System, http: httpx.Client) -> None:
    # given a two-stage stream whose producer wrote a few chunks
    job = submit(http, UPPER, {"n": 30, "pause_s": 0.1})
    client = system.redis()
    key = stream_key(job, "source.count")
    wait_for(lambda: client.xlen(key) >= 3 or None, 20, "the producer to write")
    # when the producer's worker is killed, and comes back
    system.kill_group("worker-source")
    system.start_worker("source")
    # then a reader of the stream sees the restart, and after it every chunk once
    events = _chunk_events(http, job)
    view = wait(http, job, 60)
    assert view["state"] == "succeeded" and view["result"] == [f"T{i} " for i in range(30)]
    assert view["steps"]["source.count"]["attempts"] == 2
    kinds = [e["event"] for e in events]
    assert "restart" in kinds
    restart = kinds.index("restart")
    assert _items(events[restart:]) == view["result"]
    assert {e["data"]["attempt"] for e in events[restart:] if e["event"] == "chunk"} == {
        events[restart]["data"]["attempt"]}
    system.wait_workers(["source"])


def test_a_stream_write_sent_again_adds_nothing(system: System) -> None:
    """Given a write of a stream's items 0-1 that reached Redis, when it is sent again (its
    reply was lost with a broken connection), then the stream still holds them once, and
    the next write is added."""
    client = system.redis()
    put = client.register_script(lua("stream_put"))
    keys = [stream_key("resent", "s"), stream_state_key("resent", "s"), job_key("resent")]

    def write(attempt: int, first: int, items: list[str]) -> int:
        status, taken, _ = put(keys, [attempt, 100, 60, first, json.dumps(items), "", ""])
        assert status == b"ok"
        return int(taken)

    attempt = write(0, 0, ["a", "b"])
    write(attempt, 0, ["a", "b"])
    write(attempt, 2, ["c"])
    entries: Any = client.xrange(keys[0])
    assert [json.loads(f[b"d"]) for _, f in entries] == [["a", "b"], ["c"]]


# --- declarations -------------------------------------------------------------------------


def test_a_streaming_edge_that_could_deadlock_is_refused() -> None:
    @service(name="stream-loner", timeout=5)
    class Loner:
        @api
        def draft(self, prompt: str) -> Iterator[str]:
            yield prompt

        @api
        def read(self, tokens: Iterator[str]) -> str:
            return "".join(tokens)

    # a reader holds its worker's only slot while the producer waits behind it
    with pytest.raises(DeclarationError, match=r"deadlock.*concurrency >= 2"):
        @pipeline(name="stream-deadlock")
        def _deadlock(prompt: str) -> object:
            return step(Loner.read, stream(Loner.draft, prompt))


def test_a_stream_passed_where_no_stream_is_read_is_refused() -> None:
    from tests.apps.basic import Echo
    from tests.apps.streams import Source

    with pytest.raises(DeclarationError, match="does not read a stream"):
        @pipeline(name="stream-misplaced")
        def _misplaced(n: int) -> object:
            return step(Echo.echo, stream(Source.count, n))

    with pytest.raises(DeclarationError, match="needs an API that yields"):
        @pipeline(name="stream-of-nothing")
        def _nothing(text: str) -> object:
            return step(Echo.echo, stream(Echo.echo, text))


def test_a_typed_iterator_api_must_be_a_generator_and_cannot_batch() -> None:
    from app import Batch

    with pytest.raises(DeclarationError, match="write it as a generator"):
        @service(name="stream-not-generator")
        class _NotGenerator:
            @api
            def draft(self, prompt: str) -> Iterator[str]:
                return iter([prompt])

    with pytest.raises(DeclarationError, match="runs one call at a time"):
        @service(name="stream-batched")
        class _Batched:
            @api(batch=Batch())  # type: ignore[arg-type]
            def draft(self, prompts: list[str]) -> Iterator[str]:
                yield from prompts


def test_an_async_iterator_is_read_by_an_async_def_only() -> None:
    with pytest.raises(DeclarationError, match="make it async def, or type it Iterator"):
        @service(name="stream-sync-reads-async")
        class _SyncReader:
            @api
            def joined(self, tokens: AsyncIterator[str]) -> str:
                return ""


def test_a_stream_in_a_pipelines_result_is_its_whole_output() -> None:
    from app._protocol import dict_spec, output_ref, ref_spec
    from tests.apps.streams import Sink, Source

    # given a pipeline that returns a stream (inside its result) beside what reads it
    @pipeline(name="stream-returned")
    def returned(n: int) -> object:
        tokens = stream(Source.count, n)
        return {"tokens": tokens, "upper": step(Sink.upper, tokens)}

    # then its result takes the streaming step's whole output, not its stream
    assert returned.__braid_pipeline__.output == dict_spec({  # type: ignore[attr-defined]
        "tokens": ref_spec(output_ref("source.count")),
        "upper": ref_spec(output_ref("sink.upper"))})
