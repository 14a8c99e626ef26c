"""The results table: one row per (workload, clients), the median of each figure over the
rounds, as aligned text for the terminal and as Markdown for the README."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

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


def _num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or not theirs or math.isnan(ours) or math.isnan(theirs):
        return "-"
    return f"{ours / theirs:.2f}"


def _per_hop(s: Summary, hops: int) -> float | None:
    return None if s.cpu_ms_per_job is None else s.cpu_ms_per_job / hops


Cells = dict[tuple[str, int, str], list[Window]]


def rows(cells: Cells, workloads: Sequence[Workload], clients: Sequence[int],
         systems: Sequence[str]) -> list[list[str]]:
    """The header and one row per (workload, clients); with two systems, the first one's
    figures divided by the second's (latency under 1 and throughput over 1 favour the first)."""
    header = ["workload", "clients"]
    for name in systems:
        header += [f"{name} p50 ms", f"{name} p99 ms", f"{name} jobs/s"]
    if len(systems) == 2:
        ratio = "/".join(systems)
        header += [f"p50 {ratio}", f"p99 {ratio}", f"jobs/s {ratio}"]
    for name in systems:
        header += [f"{name} CPU ms/job", f"{name} CPU ms/hop"]
    header.append("errors")
    table = [header]
    for w in workloads:
        for c in clients:
            keys = [(w.name, c, s) for s in systems]
            if not all(key in cells for key in keys):
                continue
            found = [summarize(cells[key]) for key in keys]
            row = [w.name, str(c)]
            for s in found:
                row += [_num(s.p50_ms), _num(s.p99_ms), _num(s.rate)]
            if len(found) == 2:
                ours, theirs = found
                row += [_ratio(ours.p50_ms, theirs.p50_ms), _ratio(ours.p99_ms, theirs.p99_ms),
                        _ratio(ours.rate, theirs.rate)]
            for s in found:
                row += [_num(s.cpu_ms_per_job), _num(_per_hop(s, w.hops))]
            row.append("/".join(str(s.errors) for s in found))
            table.append(row)
    return table


def aligned(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.rjust(w) if i > 1 else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(row) + " |" for row in table]
    lines.insert(1, "|" + "|".join("---" if i < 2 else "---:" for i in range(len(table[0]))) + "|")
    return "\n".join(lines)
