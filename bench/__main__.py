"""`python -m bench [--against bentoml]` (`make bench` runs the comparison): serve the same
graphs, drive them with the same load client, print tables.

Workloads: the no-op graph (A, then B and C in parallel, joined: what a framework costs per
hop) and the seed inference graph (two tiny generators in parallel, a BERT score per generated
text, the same stand-in models and settings on both sides). For each, at 1 and 8 closed-loop
clients for a fixed time after a short warm-up: p50, p99, jobs/s, and the CPU all of the
system's processes used per job and per hop.

Systems: Braid (`braid up`, batching on) on every workload, and Braid unbatched
(``BRAID_BATCHING=0``) on the seed graph at 1 client. With ``--against bentoml``, BentoML stock
on both graphs and BentoML with its adaptive batching on the seed graph; without it, Braid
also runs a 1-step and a 10-step no-op pipeline. Each cell runs on every system measured there,
interleaved, over ``--rounds`` rounds (figures are medians). After each round's cells, the
burst: 100 calls of GPT2.generate (a batched API) at once, to each Braid and to BentoML
batched. Last, Braid's submission rate alone, issue 10's batching goals checked, issue 12's
streaming figures (:mod:`bench.streaming`: Braid against the same model in-process), and issue
13's listing figure (:mod:`bench.listing`: a page of one pipeline's jobs out of 100,000, in
Redis round trips).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from bench import goals, listing, report, streaming
from bench.burst import LABEL as BURST_LABEL
from bench.burst import agreement, burst
from bench.burst import line as burst_line
from bench.load import Window, closed_loop
from bench.systems import (
    Braid,
    System,
    bootstrap_models,
    ready,
    start_braid,
    state_dir,
    stop_all,
)
from bench.workloads import ALL, GPT2_GENERATE, NOOP_1, PEERED, SEED_GRAPH, Workload


async def _cell(system: System, workload: Workload, clients: int, seconds: float,
                warmup: float) -> Window:
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def one() -> Any:
            return await system.call(http, workload)

        if warmup:
            await closed_loop(clients, warmup, one)
        before = system.cpu_s()
        window = await closed_loop(clients, seconds, one)
        after = system.cpu_s()
    if before is not None and after is not None:
        window.cpu_s = after - before
    return window


def _line(system: System, workload: Workload, clients: int, w: Window) -> str:
    cpu = w.cpu_ms_per_job
    text = (f"{system.name:<15} {workload.name:<16} c={clients:<2} n={len(w.latencies):<5} "
            f"p50={w.p50_ms:7.2f} ms  p99={w.p99_ms:7.2f} ms  {w.rate:7.1f} jobs/s")
    if cpu is not None:
        text += f"  CPU {cpu:6.2f} ms/job {cpu / workload.hops:5.2f} ms/hop"
    if w.errors:
        text += f"  errors={w.errors} (first: {w.first_error})"
    return text


def _same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-5: both systems ran the same models with the same settings."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


async def _compare_outputs(systems: Sequence[System]) -> None:
    serving = [s for s in systems if SEED_GRAPH in s.workloads]
    async with httpx.AsyncClient(timeout=60) as http:
        outputs = [await s.call(http, SEED_GRAPH) for s in serving]
    differ = [f"{s.name}: {o}" for s, o in zip(serving[1:], outputs[1:], strict=True)
              if not _same(outputs[0], o)]
    names = ", ".join(s.name for s in serving)
    print(f"seed graph outputs are the same on {names}: {outputs[0]}" if not differ else
          f"seed graph outputs are DIFFERENT: {serving[0].name}: {outputs[0]}; {'; '.join(differ)}",
          flush=True)


async def _submit_rate(braid: Braid, clients: int, seconds: float) -> str:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=clients + 4)) as http:

        async def accept() -> None:
            await braid.submit(http, NOOP_1)

        w = await closed_loop(clients, seconds, accept)
    return (f"{braid.name} submit rate ({NOOP_1.name}, submit only, c={clients}): {w.rate:.0f} "
            f"jobs accepted/s, p50 {w.p50_ms:.2f} ms, errors {w.errors} (goal >= 1000/s)")


async def _round(systems: Sequence[System], workloads: Sequence[Workload],
                 args: argparse.Namespace, cells: report.Cells, bursts: report.Bursts) -> None:
    for workload in workloads:
        for clients in args.clients:
            for system in systems:  # interleaved: load drifts on a shared machine
                if system.measures(workload, clients):
                    w = await _cell(system, workload, clients, args.seconds, args.warmup)
                    cells.setdefault((workload.name, clients, system.name), []).append(w)
                    print(_line(system, workload, clients, w), flush=True)
    for system in systems:
        if GPT2_GENERATE in system.workloads:
            found = await burst(system)
            bursts.setdefault(system.name, []).append(found)
            print(burst_line(system, found), flush=True)


async def _measure(systems: Sequence[System], workloads: Sequence[Workload],
                   args: argparse.Namespace) -> None:
    started = time.monotonic()
    await asyncio.gather(*(ready(s) for s in systems))
    print(f"{', '.join(s.name for s in systems)} ready after {time.monotonic() - started:.0f} s;"
          f" {args.seconds:g} s per cell after {args.warmup:g} s warm-up, {args.rounds} round(s)",
          flush=True)
    if sum(SEED_GRAPH in s.workloads for s in systems) > 1:
        await _compare_outputs(systems)
    cells: report.Cells = {}
    bursts: report.Bursts = {}
    for round_ in range(args.rounds):
        print(f"-- round {round_ + 1}/{args.rounds}", flush=True)
        await _round(systems, workloads, args, cells, bursts)
        if round_ == 0 and len(bursts) > 1:
            print(agreement(list(bursts), [b[0] for b in bursts.values()]), flush=True)
    braid = next(s for s in systems if isinstance(s, Braid))
    rate = await _submit_rate(braid, args.submit_clients, args.seconds)
    if braid.settings is not None:
        found = await asyncio.to_thread(streaming.measure, braid, braid.settings.broker_url,
                                        braid.settings.stream_retention,
                                        braid.settings.worker_nice)
        rate += "\n\n" + "\n".join(found.lines())
    rate += "\n\n" + "\n".join(await asyncio.to_thread(listing.measure))
    names = [s.name for s in systems]
    tables = [(report.figures(cells, workloads, args.clients, names), 3),
              (report.ratios(cells, workloads, args.clients, names), 3),
              (report.burst_rows(bursts, BURST_LABEL), 2)]
    goal_lines = "\n".join(goals.lines(braid.name, cells, bursts))
    print("\n" + "\n\n".join(report.aligned(t, n) for t, n in tables)
          + f"\n\n{goal_lines}\n\n{rate}\n\nMarkdown:\n\n"
          + "\n\n".join(report.markdown(t, n) for t, n in tables) + f"\n\n{rate}", flush=True)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("give a number >= 1")
    return value


def _clients(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("give client counts >= 1, e.g. 1,8")
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", choices=["bentoml"], default=None,
                        help="also serve the graphs on this peer and print Braid/peer ratios")
    parser.add_argument("--seconds", type=float, default=8.0, help="load window per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured load before each")
    parser.add_argument("--rounds", type=_positive, default=3, help="interleaved rounds; medians")
    parser.add_argument("--clients", type=_clients, default=[1, 8], help="e.g. 1,8")
    parser.add_argument("--submit-clients", type=_positive, default=8, help="for the submit rate")
    parser.add_argument("--lean", action="store_true",
                        help="Braid without task events and Flower (BRAID_TASK_EVENTS=0, "
                             "BRAID_FLOWER=0)")
    parser.add_argument("--url", default=None,
                        help="measure a running Braid instead (alone; no CPU figures)")
    return parser


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C, so every started process is stopped


def _start(state: Path, logs: Path, args: argparse.Namespace,
           workloads: tuple[Workload, ...], systems: list[System]) -> None:
    """Start every system, appending each to ``systems`` as soon as it is started (so that
    stop_all stops it whatever happens next): Braid, its unbatched baseline, then the peers."""
    venv = None
    if args.against:
        from bench.peer import ensure_venv

        venv = ensure_venv(state_dir(), logs)
    braid = start_braid(state / "braid", logs, args.lean, (*workloads, GPT2_GENERATE))
    systems.append(braid)
    mode = "lean: no task events, no Flower" if args.lean else "`braid up` defaults"
    print(f"Braid ({mode}) at {braid.url}; logs in {logs}", flush=True)
    systems.append(start_braid(state / "unbatched", logs, args.lean, (SEED_GRAPH, GPT2_GENERATE),
                               name="Braid-unbatched", apps=("bench.seed",),
                               settings={"BRAID_BATCHING": "0"}, clients=(1,)))
    if venv is not None:
        from bench.peer import start_bentoml

        systems.append(start_bentoml(venv, state_dir(), logs, workloads))
        systems.append(start_bentoml(venv, state_dir(), logs, (SEED_GRAPH, GPT2_GENERATE),
                                     name="BentoML-batched", module="batched"))


def main() -> None:
    args = _parser().parse_args()
    if args.url and args.against:
        raise SystemExit("--url measures a running Braid alone; leave out --against")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    workloads = PEERED if args.against else ALL
    if args.url:
        asyncio.run(_measure([Braid(args.url, [], (*workloads, GPT2_GENERATE))], workloads, args))
        return
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    bootstrap_models()
    systems: list[System] = []
    with contextlib.ExitStack() as stack:
        state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="braid-bench-")))
        stack.callback(stop_all, systems)
        _start(state, logs, args, workloads, systems)
        try:
            asyncio.run(_measure(systems, workloads, args))
        except KeyboardInterrupt:
            print("interrupted; stopping", file=sys.stderr, flush=True)
            raise SystemExit(130) from None


if __name__ == "__main__":
    main()
