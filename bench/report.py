"""The results tables: one row per (workload, clients, system) with the median of each figure
over the rounds, the first system's ratios to each other one measured on the same cell, and the
bursts; as aligned text for the terminal and as Markdown for the README."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.burst import Burst
from bench.load import Window
from bench.workloads import Workload


@dataclass(frozen=True)
class Summary:
    p50_ms: float
    p99_ms: float
    rate: float
    cpu_ms_per_job: float | None
    jobs: int
    errors: int


def summarize(windows: Sequence[Window]) -> Summary:
    """Each figure's median over the rounds; jobs and errors are totals."""
    cpu = [w.cpu_ms_per_job for w in windows if w.cpu_ms_per_job is not None]
    return Summary(statistics.median(w.p50_ms for w in windows),
                   statistics.median(w.p99_ms for w in windows),
                   statistics.median(w.rate for w in windows),
                   statistics.median(cpu) if cpu else None,
                   sum(len(w.latencies) for w in windows), sum(w.errors for w in windows))


def num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or not theirs or math.isnan(ours) or math.isnan(theirs):
        return None
    return ours / theirs


Cells = dict[tuple[str, int, str], list[Window]]
Bursts = dict[str, list[Burst]]


def figures(cells: Cells, workloads: Sequence[Workload], clients: Sequence[int],
            systems: Sequence[str]) -> list[list[str]]:
    """The header and one row per measured (workload, clients, system)."""
    table = [["workload", "clients", "system", "p50 ms", "p99 ms", "jobs/s", "CPU ms/job",
              "CPU ms/hop", "errors"]]
    for w in workloads:
        for c in clients:
            for s in systems:
                if (w.name, c, s) not in cells:
                    continue
                found = summarize(cells[w.name, c, s])
                cpu = found.cpu_ms_per_job
                table.append([w.name, str(c), s, num(found.p50_ms), num(found.p99_ms),
                              num(found.rate), num(cpu), num(None if cpu is None else cpu / w.hops),
                              str(found.errors)])
    return table


def ratios(cells: Cells, workloads: Sequence[Workload], clients: Sequence[int],
           systems: Sequence[str]) -> list[list[str]]:
    """The header and, per (workload, clients), a row for each other system measured there:
    the first system's figures divided by its (latency under 1 and throughput over 1 favour
    the first)."""
    ours = systems[0]
    table = [["workload", "clients", f"{ours} / system", "p50", "p99", "jobs/s"]]
    for w in workloads:
        for c in clients:
            if (w.name, c, ours) not in cells:
                continue
            mine = summarize(cells[w.name, c, ours])
            for other in systems[1:]:
                if (w.name, c, other) in cells:
                    theirs = summarize(cells[w.name, c, other])
                    table.append([w.name, str(c), other, num(ratio(mine.p50_ms, theirs.p50_ms)),
                                  num(ratio(mine.p99_ms, theirs.p99_ms)),
                                  num(ratio(mine.rate, theirs.rate))])
    return table


def burst_seconds(bursts: Sequence[Burst]) -> float:
    """The median over the rounds."""
    return statistics.median(b.seconds for b in bursts)


def burst_rows(bursts: Bursts, label: str) -> list[list[str]]:
    """The header and a row per system that took the burst: the median wall time over the
    rounds, the first system's divided by it, and the errors."""
    names = list(bursts)
    table = [["burst", "system", "s until all answered", f"{names[0]} / system", "errors"]]
    for name in names:
        seconds = burst_seconds(bursts[name])
        share = "" if name == names[0] else num(ratio(burst_seconds(bursts[names[0]]), seconds))
        table.append([label, name, num(seconds), share, str(sum(b.errors for b in bursts[name]))])
    return table


def aligned(table: list[list[str]], text_columns: int = 3) -> str:
    """Left-aligned label columns (the first ``text_columns``), right-aligned figures."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.rjust(w) if i >= text_columns else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown(table: list[list[str]], text_columns: int = 3) -> str:
    lines = ["| " + " | ".join(row) + " |" for row in table]
    lines.insert(1, "|" + "|".join("---" if i < text_columns else "---:"
                                   for i in range(len(table[0]))) + "|")
    return "\n".join(lines)
