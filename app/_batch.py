"""Adaptive batching: many queued calls of a batched API (``@api(batch=Batch(...))``) in one
call of its model, each call still its own step.

Where: the worker's own process (batched services run Celery's solo pool, one process per
worker), in Celery's event loop. A batched task's strategy is Celery's default one, except
that a request it would execute at once is collected here instead. A batch is dispatched
when it is full, or ``max_latency_ms`` after its first call arrived, or, when the model is
idle, as soon as nothing else waits in the queue (an idle model never waits). While a batch
runs, calls keep queueing in Redis and the next batch forms from them; if some did, the
model is busy, and its next batch also waits for calls still to come, for as long as one
more batch would cost it to run (the fixed part of its run time, estimated from its recent
batches: :class:`RunCost`), and never past ``max_latency_ms``.

How: every call of the batch is begun (``start_step.lua``: recorded running, inputs read,
and validated), the model is called once for the calls that may run (a call whose input is
invalid, or whose job was cancelled meanwhile, is left out), and then each request goes
through Celery's own tracer as usual, where :func:`app._step.run_step` ends it with its
precomputed outcome: its output stored and handed off to its own job's next step, acked only
then. A worker that dies mid-batch has acked none of them: every call is redelivered.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from celery import Task
from celery.worker.request import Request
from celery.worker.strategy import default

from app._dead_letters import keep_message_aside
from app._jobs import event
from app._protocol import EVENTS, StepField, decode_step, step_field, steps_key
from app._service import ApiSpec, ServiceSpec
from app._step import Begun, Delivered, Outcome, Worker, begin_all, call_batch, ending_together
from app._transport import Command, queued_behind, send

__all__ = ["RunCost", "strategy"]

log = logging.getLogger("braid.worker")


class _Collecting:
    """The consumer, as the default strategy sees it, with its ``on_task_request``
    (execute this request now) replaced by collecting it."""

    def __init__(self, consumer: Any, collect: Callable[[Request], None]) -> None:
        self._consumer = consumer
        self.on_task_request = collect

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


class Collector:
    """The requests of one batched API waiting in this worker process for their batch."""

    def __init__(self, w: Callable[[], Worker], svc: ServiceSpec, spec: ApiSpec, consumer: Any,
                 queue: str) -> None:
        assert spec.batch is not None
        self.worker = w
        self.svc, self.spec, self.batch = svc, spec, spec.batch
        self.consumer = consumer
        self.execute: Callable[[Request], None] = consumer.on_task_request
        self.queue = queue
        self.pending: list[Request] = []
        self.timer: Any = None
        self.linger: Any = None
        self.lingering = False
        """Whether the pending batch waits for calls not yet queued (its model is busy)."""
        self.cost = RunCost()
        self.scheduled = False
        self.waited = False
        """Whether calls were waiting when the last batch ended."""
        self.shared = False
        """Whether the last batch served more than one job (callers were concurrent)."""
        self.ended = 0.0
        """When it ended (monotonic seconds)."""

    def add(self, request: Request) -> None:
        try:
            decode_step(request.args, request.kwargs)
        except ValueError as exc:  # refused alone: the batch it would join runs on
            request.reject(requeue=False)
            keep_message_aside(self.worker().client, self.queue, request.message, str(exc))
            return
        self.pending.append(request)
        if len(self.pending) >= self.batch.max_size:
            return self._flush_soon()
        if len(self.pending) == 1:
            latency = self.batch.max_latency_ms / 1000
            # at 0 ms too: a timer, not the next message, ends every wait
            self.timer = self.consumer.timer.call_after(latency, self.flush)
            # a busy model waits for calls still to come: under load a fuller batch costs
            # less per call, but waiting longer than one more batch would run costs more
            # than the merge saves
            self.lingering = self._busy()
            linger = self.cost.fixed_s()
            if self.lingering and linger is not None and linger < latency:
                self.linger = self.consumer.timer.call_after(linger, self._lingered)
        if not self.lingering and not self._more_queued():
            self._flush_soon()

    def _lingered(self) -> None:
        # the calls already queued still join the batch; the next of them flushes it
        self.linger = None
        self.lingering = False
        if self.pending and not self._more_queued(delivered=False):
            self.flush()

    def _busy(self) -> bool:
        """Calls queued up while the last batch ran, or it served several jobs and ended
        within the latency. (A lone caller's calls come one job at a time: its next one
        never waits, however soon it comes.)"""
        return self.waited or (self.shared and
                               time.monotonic() - self.ended < self.batch.max_latency_ms / 1000)

    def _more_queued(self, delivered: bool = True) -> bool:
        """Whether more calls wait in the queue: as the delivery of the call just added
        found it (``delivered``), or else by LLEN (one cheap round trip)."""
        behind = queued_behind(self.queue)
        if behind is None or not delivered:
            return bool(self.worker().client.llen(self.queue))
        return bool(behind)

    def _flush_soon(self) -> None:
        # after the message being handled now is done with, in the event loop's next turn
        if not self.scheduled:
            self.scheduled = True
            self.consumer.hub.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        for timer in (self.timer, self.linger):
            if timer is not None:
                timer.cancel()
        self.timer = self.linger = None
        self.lingering = False
        while self.pending:
            requests = self.pending[: self.batch.max_size]
            del self.pending[: self.batch.max_size]
            self.waited = self._run(requests)
        self.ended = time.monotonic()

    def _run(self, requests: list[Request]) -> bool:
        """Run one batch; whether calls were waiting in the queue when its steps ended."""
        w = self.worker()
        prepared: dict[str, Any] = {}
        ready: list[tuple[str, Begun]] = []
        steps: list[Delivered] = [(*r.args, r.id, str(r.message.delivery_tag or "")) for r in requests]
        for request, begun in zip(requests, begin_all(w, self.svc, self.spec, steps), strict=True):
            if isinstance(begun, str):
                prepared[request.id] = begun  # a cancelled job's call: dropped, not run
            elif begun.failure is not None:
                prepared[request.id] = (begun, Outcome())
            else:
                ready.append((request.id, begun))
        self.shared = len({b.run.job for _, b in ready}) > 1
        for group in _groups(self.spec, ready):
            started = time.monotonic()
            outcomes = call_batch(w, self.spec, [b for _, b in group])
            outcomes = self._record(w, group, outcomes, time.monotonic() - started)
            prepared.update({task_id: (b, o) for (task_id, b), o in
                             zip(group, outcomes, strict=True)})
        w.batched.update(prepared)
        try:
            with ending_together(w.recorder, [("LLEN", self.queue)]) as queued:
                for request in requests:
                    self.execute(request)  # Celery's tracer: run_step ends it with its outcome
        finally:
            # an outcome its request did not take (the pool refused it) must not meet the
            # same task id redelivered later
            for request in requests:
                w.batched.pop(request.id, None)
        return bool(ready) and bool(queued and queued[0])

    def _record(self, w: Worker, group: list[tuple[str, Begun]], outcomes: list[Outcome],
                seconds: float) -> list[Outcome]:
        """The batch's record: each step's batch id and size, and the batch's size and run
        time for the metrics. A step that succeeded writes its own with its finish (in
        finish_step.lua, no round trip before the batch hands off); the first of them also
        publishes the batch's event. The rest is written here."""
        self.cost.observe(len(group), seconds)
        batch_id = uuid.uuid4().hex[:12]
        metrics: list[Command] = [("PUBLISH", EVENTS, event(
            "", "batch", service=self.svc.name, api=self.spec.name, size=len(group),
            batch_run=seconds))]
        now: list[Command] = []
        out: list[Outcome] = []
        for (_, b), outcome in zip(group, outcomes, strict=True):
            record: list[Command] = [("HSET", steps_key(b.run.job),
                                      step_field(b.run.step, StepField.batch), batch_id,
                                      step_field(b.run.step, StepField.batch_size), len(group))]
            if outcome.error is None:
                out.append(replace(outcome, record=(*record, *metrics)))
                metrics = []
            else:
                now += record
                out.append(outcome)
        send(w.client, [*now, *metrics])
        return out


class RunCost:
    """A model's batch run time as ``fixed + per_call * size``, fitted by least squares to
    its recent batches (each weighs ``DECAY`` times the one after it), so that it follows
    the model's load. Only ``fixed`` is used: it is what a batch saves by merging into
    another."""

    DECAY = 0.95

    def __init__(self) -> None:
        # decayed sums of 1, size, seconds, size**2 and size * seconds over the batches
        self._w = self._n = self._y = self._nn = self._ny = 0.0

    def observe(self, size: int, seconds: float) -> None:
        d = self.DECAY
        self._w = self._w * d + 1
        self._n = self._n * d + size
        self._y = self._y * d + seconds
        self._nn = self._nn * d + size * size
        self._ny = self._ny * d + size * seconds

    def fixed_s(self) -> float | None:
        """The fixed part of a batch's run time in seconds (between 0 and the mean run
        time); ``None`` before any batch ran. Batches all of one size cannot tell it from
        the part per call: then it is their whole run time (an upper bound)."""
        if not self._w:
            return None
        n, y = self._n / self._w, self._y / self._w
        spread = self._nn / self._w - n * n
        if spread < 1e-6:
            return y
        per_call = (self._ny / self._w - n * y) / spread
        return min(y, max(0.0, y - per_call * n))


def _groups(spec: ApiSpec, ready: list[tuple[str, Begun]]) -> list[list[tuple[str, Begun]]]:
    """The calls that may share a model call: those with equal shared arguments (all but
    the first, batched one), in arrival order."""
    batched = spec.params[0].name
    groups: dict[str, list[tuple[str, Begun]]] = {}
    for item in ready:
        key = repr(sorted((k, v) for k, v in item[1].args.items() if k != batched))
        groups.setdefault(key, []).append(item)
    return list(groups.values())


def strategy(worker: Callable[[], Worker], svc: ServiceSpec, spec: ApiSpec,
             queue: str) -> Callable[..., Any]:
    """A ``Task.Strategy`` for ``spec``: Celery's default one, collecting into batches (in
    Celery's event loop; without one, it runs each call at once, as a batch of one)."""

    def start(task: Task, app: Any, consumer: Any, **kwargs: Any) -> Any:
        if getattr(consumer, "hub", None) is None:
            return default(task, app, consumer, **kwargs)
        collector = Collector(worker, svc, spec, consumer, queue)
        return default(task, app, _Collecting(consumer, collector.add), **kwargs)

    return start
