"""One step in a worker process: decode, call, encode, hand off.

A step's message carries ``(job id, step name, call)`` (:class:`app._protocol.StepCall`).
The step reads and records in one round trip (``start_step.lua``), validates, calls the
model, validates, and stores its output and hands off in one more (``finish_step.lua``).
What runs next is Celery's canvas: the chain's next task, a chord's body, or, for a map, a
chord over the list built here at run time by the step that produced the list.
"""

from __future__ import annotations

import inspect
import json
import logging
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import redis
from celery import Celery, Task, chord, group
from celery.canvas import Signature, signature
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from pydantic import ValidationError

from app import _codec
from app._canvas import Template, shape
from app._hooks import Hooks, Interrupt, Interrupts, MemoryLimitExceeded, StepRun
from app._inline import run_held
from app._jobs import Expansion, FinishCall, Finished, HandOff, Start, StepRecorder, StepStart
from app._protocol import (
    StepCall,
    StepField,
    element_step,
    message_repr,
    refs_in,
    resolve,
    step_field,
    streamed_from,
)
from app._service import ApiSpec, ServiceSpec
from app._settings import Settings
from app._stream import Reader, StreamError, Writer, call_streams
from app._transport import Command, capture, captured, holding, send, settle

__all__ = [
    "Begun", "Delivered", "Outcome", "StepFailed", "StepTask", "Worker", "begin", "begin_all",
    "call_batch", "ending_together", "run_map", "run_step",
]

log = logging.getLogger("braid.worker")

_MESSAGE_LIMIT = 2000
_TRACEBACK_LIMIT = 8000


class StepFailed(Exception):
    """Raised to Celery after a step's failure is recorded, so the canvas stops there."""


class StepTask(Task):  # type: ignore[misc]
    """The Celery task class of every step."""

    # expected: Braid logged the failure with the service's own traceback already, so
    # Celery logs no second one (its failure event still carries the chain, for Flower)
    throws = (StepFailed,)

    def on_replace(self, sig: Signature) -> None:
        """Publish the replacement and return: the replacement now carries what followed
        this task (its chain, its chord). Celery raises ``Ignore`` here instead, and builds
        two formatted tracebacks for it, which cost more than the rest of a step."""
        sig.delay()
        request = self.request
        request.chain = request.chord = request.callbacks = None


@dataclass
class Worker:
    """What one worker process holds while it runs steps."""

    settings: Settings
    recorder: StepRecorder
    node: str
    hooks: Hooks
    interrupts: Interrupts
    instance: Any = None
    device: str = "cpu"
    batched: dict[str, Any] = field(default_factory=dict)
    """Steps of a batch, begun and called, by task id: what ``run_step`` ends for them."""

    @property
    def client(self) -> redis.Redis:
        return self.recorder.client


def _error(exc: BaseException, kind: str | None = None) -> dict[str, str]:
    message = str(exc) or repr(exc)
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "..."
    return {"type": kind or type(exc).__name__, "message": message}


def _traceback(exc: BaseException, func: Callable[..., Any]) -> str:
    """The traceback from the service's ``func`` down (Braid's frames above it dropped),
    its last ``_TRACEBACK_LIMIT`` characters."""
    tb = exc.__traceback__
    code = inspect.unwrap(func).__code__  # (an async def's, under what runs it)
    while tb is not None and tb.tb_frame.f_code is not code:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
    return text if len(text) <= _TRACEBACK_LIMIT else "...\n" + text[-_TRACEBACK_LIMIT:]


class _Invalid(Exception):
    def __init__(self, error: dict[str, str]) -> None:
        super().__init__(error["message"])
        self.error = error


def _roomy_call() -> Callable[[Callable[[], Any]], Any]:
    """``call(fn)`` runs ``fn()`` at the start of a fresh, roomy Python data stack chunk.

    Why: CPython 3.11 keeps frames in 16 KB chunks, mmapped when a call crosses into a new
    one and unmapped when it returns. A step runs some 40 frames deep in Celery's worker; at
    that depth a model's forward pass crossed a chunk boundary over a hundred times per call
    (474 page faults, +40% CPU per stand-in GPT-2 generation, measured in a worker's main
    thread against the same call in a shallow stack). This frame's 4,096 unused locals make
    the interpreter give it a 64 KB chunk of its own, leaving the model half of it: one map
    and unmap per step instead.
    """
    names = " = ".join(f"_{i}" for i in range(4096))
    namespace: dict[str, Any] = {}
    exec(f"def call(fn):\n    if False:\n        {names} = None\n    return fn()\n", namespace)
    call: Callable[[Callable[[], Any]], Any] = namespace["call"]
    return call


_call_roomy = _roomy_call()


def _tag(task: Task) -> str:
    """The broker's delivery tag of the running message ('' if the broker gives none)."""
    return str((task.request.properties or {}).get("delivery_tag") or "")


def _store_blob(w: Worker, blob: tuple[str, str] | None) -> None:
    if blob is not None:
        w.client.set(blob[0], blob[1], ex=w.settings.job_ttl_s)


def _assemble(w: Worker, job: str, output_spec: str) -> None:
    """Build the job's result from its sinks' outputs (when it is not one step's output)."""
    spec = _codec.loads(output_spec)
    fields = sorted(refs_in(spec, set()))
    wire = dict(zip(fields, w.recorder.values(job, fields), strict=True))
    text = _codec.dumps(resolve(spec, lambda ref: _load(wire, ref, w.client), None))
    packed, blob = _codec.pack_text(text, w.settings.blob_threshold)
    _store_blob(w, blob)
    w.recorder.succeed(job, packed)


def _load(wire: Mapping[str, bytes | None], ref: str, blobs: redis.Redis) -> Any:
    raw = wire.get(ref)
    if raw is None:
        raise LookupError(f"the value {ref!r} is missing: its job expired or was deleted")
    return _codec.load_wire(raw, blobs)


def _elements(task: Task, job: str, map_step: str, map_call: StepCall, n: int) -> list[Signature]:
    ready = (step_field(map_step, StepField.started_at),)
    return [
        task.app.signature(map_call.task, args=(job, element_step(map_step, i), StepCall(
            args=map_call.args, map_step=map_step, index=i, ready_after=ready,
            sink=map_call.sink, whole=map_call.whole).to_wire()),
            queue=map_call.queue, immutable=True, ignore_result=True,
            **message_repr(job, element_step(map_step, i)))
        for i in range(n)
    ]


_FAN_OUTS: dict[str, Template] = {}
_FAN_OUTS_KEPT = 256


def _fan_out(task: Task, job: str, map_step: str, map_call: StepCall, n: int) -> None:
    """Continue the canvas with the map's elements: a chord whose body is what follows in
    the chain (so no collecting task is needed: the last element to finish records the
    map's output), or a group when nothing follows. Its messages are published into the
    current capture (held as it holds).

    Celery's canvas builds them the first time; a map of the same shape (same pipeline
    node, size and what follows) copies them (:class:`app._canvas.Template`) with this
    job's and this request's ids: building a chord cost a step that expands a map more than
    the rest of its finish."""
    request = task.request
    hold = holding()
    key, known = shape(json.dumps([map_step, map_call.to_wire(), n, request.chain, request.id,
                                   request.root_id, request.group, sorted(hold)], default=str),
                       job)
    commands = captured()
    assert commands is not None, "a fan-out publishes into its step's capture"
    template = _FAN_OUTS.get(key)
    if template is not None:
        request.chain = request.chord = request.callbacks = None
        commands.extend(template.commands(job, known))
        return
    with capture(hold=hold) as built:
        header = _elements(task, job, map_step, map_call, n)
        rest = task.request.chain
        if rest:
            replacement: Signature = chord(header, signature(rest.pop(), app=task.app))
        else:
            replacement = group(header)
        task.replace(replacement)
    commands.extend(built)
    if len(_FAN_OUTS) >= _FAN_OUTS_KEPT:
        del _FAN_OUTS[next(iter(_FAN_OUTS))]
    _FAN_OUTS[key] = Template.copying(built, job, known)


def _hand_off(task: Task, job: str, call: StepCall, expansion: Expansion | None,
              blob: Command | None) -> HandOff:
    """The messages that follow this step, built by Celery's canvas but captured, so that
    the step's finish publishes them in its own round trip (after ``blob``, an output too
    large for the job's hash). Celery then has nothing left to publish for this task (its
    request's chain and chord are cleared)."""
    request = task.request
    with capture(hold=task.app.braid_inline) as commands:
        if blob is not None:
            commands.append(blob)
        if expansion is not None and expansion.items:
            assert call.expands is not None
            _fan_out(task, job, call.expands[0], call.expands[1], len(expansion.items))
        elif request.chain:
            # what Celery's tracer does after a task returns
            following = signature(request.chain[-1], app=task.app)
            following.apply_async(chain=request.chain[:-1], parent_id=request.id,
                                  root_id=request.root_id or request.id)
            request.chain = None
    if not (request.chord and request.group):
        return HandOff(commands)
    part = HandOff(commands, request.group, request.id, task.backend.chord_ttl())
    request.chord = None
    return part


def _expansion(call: StepCall, output: Any) -> Expansion | None:
    if call.expands is None:
        return None
    items = _codec.encode(output)
    if not isinstance(items, list):
        raise _Invalid({"type": "TypeError", "message": f"map step {call.expands[0]!r} needs "
                        f"a list, got {type(output).__name__}"})
    name, map_call = call.expands
    return Expansion(name, [_codec.dumps(i) for i in items], map_call.sink, map_call.whole)


@dataclass
class Begun:
    """A step its START let run: its run, its call and inputs (validated), or why not."""

    run: StepRun
    call: StepCall
    tag: str
    limit: int
    args: dict[str, Any] = field(default_factory=dict)
    failure: BaseException | None = None


@dataclass
class Outcome:
    """What calling a step's model came to: its output, encoded, or the exception."""

    packed: str = ""
    blob: tuple[str, str] | None = None
    expansion: Expansion | None = None
    error: BaseException | None = None
    record: tuple[Command, ...] = ()
    """Commands its finish runs too (the record of the batch it ran in)."""


class _TooManyAttempts(Exception):
    pass


Delivered = tuple[str, str, Mapping[str, Any], str, str]
"""A step's message as a worker got it: job, step, call (wire form), task id, delivery tag."""


def begin(w: Worker, svc: ServiceSpec, spec: ApiSpec, job: str, step: str,
          wire_call: Mapping[str, Any], task_id: str, tag: str) -> Begun | str:
    """Start a step (``start_step.lua``) and decode and validate its inputs; the START's
    action instead when it is not to run (``done``, or the state of a job that ended)."""
    return begin_all(w, svc, spec, [(job, step, wire_call, task_id, tag)])[0]


def begin_all(w: Worker, svc: ServiceSpec, spec: ApiSpec,
              steps: Sequence[Delivered]) -> list[Begun | str]:
    """:func:`begin` of each of ``steps`` (a batch's), their STARTs in one round trip."""
    calls = [StepCall.from_wire(wire) for _, _, wire, _, _ in steps]
    starts = [Start(job, step, task_id, tag, call.reads(), call.ready_after)
              for (job, step, _, task_id, tag), call in zip(steps, calls, strict=True)]
    return [_begun(w, svc, spec, s, call, started) for s, call, started in
            zip(starts, calls, w.recorder.start_all(starts, w.node), strict=True)]


def _begun(w: Worker, svc: ServiceSpec, spec: ApiSpec, s: Start, call: StepCall,
           start: StepStart) -> Begun | str:
    if start.action != "run":
        return start.action
    run = StepRun(svc, spec, s.job, s.step, call, s.task_id, start.attempts, start.ready_at,
                  start.started_at)
    limit = spec.retry.max_attempts if spec.retry else w.settings.max_deliveries
    begun = Begun(run, call, s.tag, limit)
    if start.attempts > limit:
        begun.failure = _TooManyAttempts()
        return begun
    wire = dict(zip(s.fields, start.values, strict=True))
    streams = {k: streamed_from(v) for k, v in call.args.items()}
    try:
        # a stream is read as the step runs: what is validated now is the other arguments
        kwargs = {k: [] if streams[k] else
                  _codec.decode(resolve(v, lambda ref: _load(wire, ref, w.client), call.item))
                  for k, v in call.args.items()}
        begun.args = dict(spec.call_model.model_validate(kwargs))
        begun.args.update({k: Reader(w.client, s.job, writer, s.step)
                           for k, writer in streams.items() if writer is not None})
    except ValidationError as exc:
        begun.failure = _Invalid(_error(exc, "InvalidInput"))
    except Exception as exc:  # a value gone missing with its expired job
        begun.failure = exc
    return begun


def _outcome(w: Worker, spec: ApiSpec, call: StepCall, result: Any) -> Outcome:
    """A model's return value for one step, validated and encoded."""
    try:
        output = spec.output_adapter.validate_python(result)
    except ValidationError as exc:
        return Outcome(error=_Invalid(_error(exc, "InvalidOutput")))
    try:
        packed, blob = _codec.pack(output, w.settings.blob_threshold)
    except _Invalid as exc:
        return Outcome(error=exc)
    size = len(packed if blob is None else blob[1])
    if size > w.settings.max_output_bytes:
        return Outcome(error=_Invalid({
            "type": "OutputTooLarge", "message": f"the output of {spec.task_name} is {size} "
            f"bytes encoded, over BRAID_MAX_OUTPUT_BYTES ({w.settings.max_output_bytes}): "
            "ask for less (fewer or shorter items), or raise the setting"}))
    return Outcome(packed, blob, _expansion(call, output))


def call_batch(w: Worker, spec: ApiSpec, items: list[Begun]) -> list[Outcome]:
    """Call the model once for ``items`` (one for an unbatched API), under the hooks (time
    limit, interrupts). A batch whose call raises is split in halves until the calls that
    fail are found: only those fail."""
    assert items and all(b.failure is None for b in items)
    first = items[0]
    run = first.run if len(items) == 1 else replace(first.run, task_id=f"batch:{first.run.task_id}")
    w.hooks.before(run)
    try:
        if spec.batch is None:
            results = [_call_roomy(lambda: _call_one(w, spec, first))]
        else:
            name = spec.params[0].name
            shared = {k: v for k, v in first.args.items() if k != name}
            values = [b.args[name] for b in items]
            results = _call_roomy(lambda: spec.func(w.instance, values, **shared))
            if not isinstance(results, list) or len(results) != len(items):
                got = len(results) if isinstance(results, list) else type(results).__name__
                raise ValueError(f"{spec.task_name} returned {got} outputs for {len(items)} "
                                 "inputs; a batched API returns a list, one output per input")
        outcomes = [_outcome(w, spec, b.call, r) for b, r in zip(items, results, strict=True)]
        # the steps' own code is done: from here on nothing may interrupt them
        w.hooks.after(run)
        return outcomes
    except (Interrupt, SoftTimeLimitExceeded) as exc:
        w.hooks.on_error(run, exc)
        return [Outcome(error=exc) for _ in items]
    except Exception as exc:
        w.hooks.on_error(run, exc)
        if len(items) == 1:
            return [Outcome(error=exc)]
    half = len(items) // 2
    return call_batch(w, spec, items[:half]) + call_batch(w, spec, items[half:])


def _call_one(w: Worker, spec: ApiSpec, begun: Begun) -> Any:
    """Call the model for one step: a streaming API's chunks written as it yields them, a
    stream it reads given as an iterator (and the call made again if that stream starts
    over)."""
    if not spec.stream_params and not spec.streams:
        return spec.func(w.instance, **begun.args)
    readers = {k: v for k, v in begun.args.items() if isinstance(v, Reader)}

    def call(streams: dict[str, Reader]) -> Any:
        args = {k: iter(v) if k in spec.stream_params else v for k, v in begun.args.items()}
        args.update(streams)
        if spec.chunk_adapter is None:
            return spec.func(w.instance, **args)
        writer = Writer(w.client, w.settings, begun.run.job, begun.run.step, begun.call.consumers)
        return writer.produce(spec.func(w.instance, **args), partial(_chunk, spec))

    return call_streams(call, readers)


def _chunk(spec: ApiSpec, value: Any) -> Any:
    assert spec.chunk_adapter is not None
    try:
        return spec.chunk_adapter.validate_python(value)
    except ValidationError as exc:
        raise _Invalid(_error(exc, "InvalidOutput")) from None


def _skip(task: Task, action: str) -> None:
    """A step that is not to run: ``done`` (a duplicate of one that finished and handed off
    already) returns; one of a job that ended is ignored."""
    if action == "done":
        request = task.request
        request.chain = request.chord = request.callbacks = None
        return
    raise Ignore()


def _fenced(job: str, step: str, attempt: int) -> None:
    log.warning("step %s of job %s: attempt %d ended after a later attempt started (this "
                "worker was counted dead); it changes nothing", step, job, attempt)


def _end(w: Worker, task: Task, svc: ServiceSpec, spec: ApiSpec, begun: Begun,
        outcome: Outcome) -> None:
    """Record how a step ended: store its output and hand off, retry, or fail (raising to
    Celery what stops the canvas there)."""
    run, call, tag = begun.run, begun.call, begun.tag
    job, step = run.job, run.step
    exc = begun.failure or outcome.error

    def fail(error: Mapping[str, Any], state: str = "failed", **timing: Any) -> None:
        if not w.recorder.fail(job, step, error, state, tag=tag, attempt=run.attempts,
                               **timing):
            _fenced(job, step, run.attempts)
            raise Ignore()

    if isinstance(exc, _TooManyAttempts):
        fail({"type": "TooManyAttempts", "message": f"step {step!r} was attempted "
              f"{run.attempts - 1} times (its worker died or it kept failing); giving up"})
        raise StepFailed(f"{step}: too many attempts")
    if isinstance(exc, MemoryLimitExceeded):
        # what the step holds is referenced from its traceback's frames (and the exception
        # lives on in Celery's records): free it now, or the next step starts past the guard
        traceback.clear_frames(exc.__traceback__)
        begun.failure = outcome.error = None
        fail({"type": "MemoryLimit", "message": f"step {step!r} grew its worker past the "
              f"memory guard of {svc.name!r}, {svc.resources.memory} (Resources(memory=...)); "
              "give the service more memory or the step less work"}, **run.timing())
        log.warning("step %s of job %s failed: past its memory guard", step, job)
        raise StepFailed(f"{step}: past its memory guard") from None
    if isinstance(exc, Interrupt | SoftTimeLimitExceeded | StreamError) and \
            w.recorder.cancelled(job):
        fail({"type": "Cancelled", "message": "job cancelled"}, "cancelled")
        raise Ignore() from None
    if isinstance(exc, Interrupt | SoftTimeLimitExceeded):
        fail({"type": "StepTimeout", "message":
              f"step {step!r} ran past its timeout of {svc.timeout:g} s"}, **run.timing())
        log.warning("step %s of job %s timed out", step, job)
        raise StepFailed(f"{step}: timed out") from None
    if isinstance(exc, StreamError):  # the stream's own words, no traceback of Braid's
        exc = _Invalid({"type": exc.kind, "message": str(exc)})
    if isinstance(exc, _Invalid):
        fail(exc.error, **run.timing())
        log.warning("step %s of job %s failed: %s", step, job, exc.error["message"])
        raise StepFailed(f"{step}: {exc.error['type']}: {exc.error['message']}") from None
    if exc is not None:
        error = {**_error(exc), "traceback": _traceback(exc, spec.func)}
        if spec.retry and isinstance(exc, spec.retry.on) and run.attempts < begun.limit:
            delay = spec.retry.delay(run.attempts)
            w.recorder.retrying(job, step, error, delay)
            raise task.retry(countdown=delay, max_retries=None) from None
        fail(error, **run.timing())
        log.warning("step %s of job %s failed:\n%s", step, job, error["traceback"].rstrip())
        raise StepFailed(f"{step}: {error['type']}: {error['message']}") from exc
    blob = outcome.blob
    stored = None if blob is None else ("SET", blob[0], blob[1], "EX", w.settings.job_ttl_s)
    element_of = (call.map_step, call.sink, call.whole) if call.map_step is not None else None
    finishing = w.recorder.finish_call(
        job, step, outcome.packed, sink=call.sink and element_of is None,
        whole=call.whole and element_of is None, counts=element_of is None, tag=tag,
        element_of=element_of, expansion=outcome.expansion,
        handoff=_hand_off(task, job, call, outcome.expansion, stored), record=outcome.record,
        attempt=run.attempts, **run.timing())
    then = partial(_finished, w, task.app, job, step, run.attempts)
    ends = _ENDS.get()
    if ends is None:
        return then(w.recorder.finish_all([finishing])[0][0])
    if tag:  # its finish settles it, later: Celery's ack, next, must leave Redis alone
        settle(tag)
    ends.append((finishing, then))
    return None


def _finished(w: Worker, app: Celery, job: str, step: str, attempt: int,
              finished: Finished) -> None:
    """What follows a step's finish: its job's result assembled if it was the last, and the
    inline steps it held for this worker run."""
    if finished.status == "fenced":
        return _fenced(job, step, attempt)
    if finished.status == "done":  # this finish was sent again (a reply lost): it was done
        return None
    if finished.status == "complete":
        _assemble(w, job, finished.output_spec)
    if finished.held:
        run_held(app, w.node, w.client, w.recorder.inflight, finished.held)
    return None


_Ends = list[tuple[FinishCall, Callable[[Finished], None]]]
_ENDS: ContextVar[_Ends | None] = ContextVar("braid_ends", default=None)


@contextmanager
def ending_together(recorder: StepRecorder, also: Sequence[Command] = ()) -> Iterator[list[Any]]:
    """Within, the steps that succeed (a batch's, whose tracers run one after another) send
    their finishes at the end, in one round trip, followed by the commands ``also`` (whose
    replies fill the list it yields); then what follows each finish runs, and the finishes
    of the inline steps those held go together again. Until then no step of them is acked
    in Redis (a worker that dies first has every one redelivered), and none waits for the
    others' finishes or their jobs' inline steps."""
    ends: _Ends = []
    replies: list[Any] = []
    token = _ENDS.set(ends)
    try:
        yield replies
    finally:
        try:
            _end_all(recorder, ends, also, replies)
        finally:
            _ENDS.reset(token)


def _end_all(recorder: StepRecorder, ends: _Ends, also: Sequence[Command],
             replies: list[Any]) -> None:
    extra = also  # sent with the first round only
    while ends or extra:
        due = ends[:]
        ends.clear()
        try:
            finished, more = recorder.finish_all([c for c, _ in due], extra, settled=True)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # their messages are still noted in flight under this worker: its channel's
            # reclaim hands them back when it reconnects (or kombu's restore, after the
            # visibility timeout), and their redelivery runs them again
            log.warning("%d finished steps not recorded, to be redelivered: Redis is out of "
                        "reach (%s)", len(due), exc)
            return
        replies.extend(more)
        extra = ()
        for (_, then), done in zip(due, finished, strict=True):
            try:
                then(done)
            except Exception:
                log.exception("after a step's finish")


def run_step(w: Worker, task: Task, svc: ServiceSpec, spec: ApiSpec, job: str, step: str,
             wire_call: Mapping[str, Any]) -> None:
    """Run one step of ``job`` (the body of every service API's Celery task). A step of a
    batch was begun and its model called with the batch's (:mod:`app._batch`); here it ends."""
    prepared = w.batched.pop(task.request.id, None)
    if prepared is None:
        begun = begin(w, svc, spec, job, step, wire_call, task.request.id, _tag(task))
        if isinstance(begun, str):
            log.debug("step %s of job %s not run: %s", step, job, begun)
            return _skip(task, begun)
        outcome = Outcome() if begun.failure else call_batch(w, spec, [begun])[0]
    elif isinstance(prepared, str):
        return _skip(task, prepared)
    else:
        begun, outcome = prepared
    _end(w, task, svc, spec, begun, outcome)


def run_map(w: Worker, task: Task, job: str, step: str, wire_call: Mapping[str, Any]) -> None:
    """A map whose list no step before it in its chain produced (a pipeline input, say):
    read the list, expand, fan out."""
    call = StepCall.from_wire(wire_call)
    assert call.over is not None
    tag = _tag(task)
    start = w.recorder.start(job, step, task.request.id, w.node, tag, [call.over],
                             call.ready_after)
    if start.action != "run":
        raise Ignore()
    raw = start.values[0]
    if raw is None:
        w.recorder.fail(job, step, {"type": "LookupError", "message":
                        f"the list {call.over!r} is missing: its job expired"}, tag=tag)
        raise StepFailed(f"{step}: no list")
    items = _codec.load_wire(raw, w.client)
    if not isinstance(items, list):
        w.recorder.fail(job, step, {"type": "TypeError", "message":
                        f"map step {step!r} needs a list, got {type(items).__name__}"}, tag=tag)
        raise StepFailed(f"{step}: not a list")
    if not w.recorder.expand(job, step, [_codec.dumps(i) for i in items]):
        raise Ignore()
    if not items:
        finished = w.recorder.finish(job, step, "[]", sink=call.sink, whole=call.whole,
                                     tag=tag, attempt=start.attempts)
        if finished.status == "complete":
            _assemble(w, job, finished.output_spec)
        return
    with capture() as commands:
        _fan_out(task, job, step, call, len(items))
    if tag:  # with the elements, the map's own message is no longer running anything
        commands.append(("HDEL", w.recorder.inflight, tag))
    send(w.client, commands)

