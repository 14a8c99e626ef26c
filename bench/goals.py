"""Issue 10's goals for adaptive batching, checked on a run's figures: each is Braid's figure
divided by another system's (or Braid's own figure) against a bound."""

from __future__ import annotations

from dataclasses import dataclass

from bench import report
from bench.burst import LABEL as BURST
from bench.workloads import BURST_SIZE, SEED_GRAPH

SHOWN = {"rate": "jobs/s", "p50_ms": "p50", "p99_ms": "p99", "errors": "errors",
         "seconds": "time"}


@dataclass(frozen=True)
class Goal:
    workload: str
    """A workload's name, or ``BURST``."""
    clients: int
    figure: str
    """A :class:`report.Summary` field; for the burst, ``seconds`` or ``errors``."""
    against: str | None
    """The system Braid's figure is divided by; None: Braid's own figure."""
    at_most: float | None = None
    at_least: float | None = None

    def label(self, ours: str) -> str:
        where = f"burst {BURST}" if self.workload == BURST else f"{self.workload} c={self.clients}"
        of = f"{ours}/{self.against}" if self.against else ours
        return f"{where} {SHOWN[self.figure]} {of}"

    def bound(self) -> str:
        return f"<= {self.at_most:g}" if self.at_most is not None else f">= {self.at_least:g}"

    def met(self, value: float) -> bool:
        return ((self.at_most is None or value <= self.at_most)
                and (self.at_least is None or value >= self.at_least))


GOALS = (
    Goal(SEED_GRAPH.name, 8, "rate", "BentoML", at_least=2.0),
    Goal(SEED_GRAPH.name, 8, "rate", "BentoML-batched", at_least=1.0),
    Goal(SEED_GRAPH.name, 8, "errors", None, at_most=0),
    Goal(SEED_GRAPH.name, 8, "p99_ms", "BentoML-batched", at_most=1.0),
    Goal(SEED_GRAPH.name, 1, "p50_ms", "Braid-unbatched", at_most=1.05),
    Goal(BURST, BURST_SIZE, "seconds", "Braid-unbatched", at_most=0.5),
    Goal(BURST, BURST_SIZE, "errors", None, at_most=0),
)


def _figure(goal: Goal, system: str, cells: report.Cells, bursts: report.Bursts) -> float | None:
    if goal.workload == BURST:
        if system not in bursts:
            return None
        found = bursts[system]
        return report.burst_seconds(found) if goal.figure == "seconds" else sum(b.errors for b in found)
    windows = cells.get((goal.workload, goal.clients, system))
    return float(getattr(report.summarize(windows), goal.figure)) if windows else None


def lines(ours: str, cells: report.Cells, bursts: report.Bursts) -> list[str]:
    """One line per goal: its figure, its bound, and met or not (``-``: not measured)."""
    found = []
    for goal in GOALS:
        value = _figure(goal, ours, cells, bursts)
        if goal.against is not None:
            value = report.ratio(value, _figure(goal, goal.against, cells, bursts))
        verdict = "-" if value is None else "met" if goal.met(value) else "NOT MET"
        found.append(f"goal: {goal.label(ours):<52} {report.num(value):>6}  {goal.bound():<7}"
                     f"  {verdict}")
    return found
