"""`python -m bench` (or `make bench`): start Braid with the no-op services, measure.

For 1-step, 3-step graph (A, then B and C in parallel, joined) and 10-step chain pipelines,
at concurrency 1 and 8 for a fixed duration each: through the REST API as two requests
(`rest`: submit, then a pushed long-poll wait), as one (`rest-1`: submit with `?wait=`), and
through the Python client: p50/p99 latency, jobs/s, and the ratio to calling the same
functions in-process. Then the API's submission rate alone.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from app import AsyncClient
from bench.services import in_process

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = {"text": "hello", "n": 1}
BENTOML = {"noop-graph": (13.0, 100.0)}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(state: Path, lean: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAID_")}
    env.update({"BRAID_STATE_DIR": str(state), "BRAID_API_PORT": str(port),
                "BRAID_FLOWER_PORT": str(_free_port()),
                "BRAID_EMBEDDED_REDIS_PORT": str(_free_port()),
                "BRAID_MODELS_DIR": str(ROOT / ".braid" / "models"),
                "BRAID_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    if lean:
        env.update({"BRAID_TASK_EVENTS": "0", "BRAID_FLOWER": "0"})
    log = open(state / "up.log", "wb")  # noqa: SIM115 - the process owns it
    # only the no-op services: model workers loading in the background would skew the figures
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--app", "bench.services"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


async def _ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        while time.monotonic() < deadline:
            try:
                job = (await http.post("/v1/pipelines/noop-graph/jobs",
                                       json={"payload": PAYLOAD})).json()["id"]
                view = (await http.get(f"/v1/jobs/{job}", params={"wait": 5})).json()
                if view["state"] == "succeeded":
                    return
            except (httpx.HTTPError, KeyError):
                pass
            await asyncio.sleep(0.5)
    raise SystemExit("Braid did not come up; see the state dir's up.log")


async def _load(concurrency: int, seconds: float, one: Callable[[], Awaitable[None]]
                ) -> list[float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies


def _in_process_s(name: str) -> float:
    n = 20000
    started = time.perf_counter()
    for _ in range(n):
        in_process(name, PAYLOAD)
    return (time.perf_counter() - started) / n


def _row(label: str, latencies: list[float], seconds: float, inproc: float,
         pipeline: str, concurrency: int) -> None:
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    rate = len(latencies) / seconds
    line = (f"{label:<8} {pipeline:<14} c={concurrency:<2} n={len(latencies):<5} "
            f"p50={p50:7.2f} ms  p99={p99:7.2f} ms  {rate:7.1f} jobs/s  "
            f"x{p50 / 1000 / inproc:,.0f} in-process")
    if pipeline in BENTOML:
        ref_p50, ref_rate = BENTOML[pipeline]
        line += (f"  | vs BentoML p50 {p50 / ref_p50:.2f}x" if concurrency == 1 else
                 f"  | vs BentoML rate {rate / ref_rate:.2f}x")
    print(line, flush=True)


async def _measure(url: str, seconds: float) -> None:
    pipelines = ["noop-1", "noop-graph", "noop-chain-10"]
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 limits=httpx.Limits(max_connections=32)) as http, \
            AsyncClient(url) as braid:

        async def rest(name: str) -> None:
            response = await http.post(f"/v1/pipelines/{name}/jobs", json={"payload": PAYLOAD})
            job = response.json()["id"]
            view = (await http.get(f"/v1/jobs/{job}", params={"wait": 30})).json()
            assert view["state"] == "succeeded", view

        async def rest_once(name: str) -> None:
            response = await http.post(f"/v1/pipelines/{name}/jobs", params={"wait": 30},
                                       json={"payload": PAYLOAD})
            assert response.json()["state"] == "succeeded", response.text

        async def client(name: str) -> None:
            await (await braid.submit(name, payload=PAYLOAD)).result(timeout=30)

        for name in pipelines:
            inproc = _in_process_s(name)
            for concurrency in (1, 8):
                for label, fn in (("rest", rest), ("rest-1", rest_once), ("client", client)):
                    lat = await _load(concurrency, seconds, functools.partial(fn, name))
                    _row(label, lat, seconds, inproc, name, concurrency)

        async def accept() -> None:
            response = await http.post("/v1/pipelines/noop-1/jobs", json={"payload": PAYLOAD})
            assert response.status_code == 202

        lat = await _load(8, seconds, accept)
        print(f"submit   noop-1         c=8  {len(lat) / seconds:7.1f} jobs accepted/s  "
              f"p50={statistics.median(lat) * 1000:.2f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--url", default=None, help="measure a running Braid instead")
    parser.add_argument("--lean", action="store_true",
                        help="without task events and Flower (BRAID_TASK_EVENTS=0, BRAID_FLOWER=0)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(_measure(args.url, args.seconds))
        return
    with tempfile.TemporaryDirectory(prefix="braid-bench-") as state:
        proc, url = _start(Path(state), args.lean)
        try:
            asyncio.run(_ready(url))
            mode = "lean: no task events, no Flower" if args.lean else "default: events and Flower on"
            print(f"Braid at {url} ({mode}); {args.seconds:g} s per measurement", flush=True)
            asyncio.run(_measure(url, args.seconds))
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
