"""What runs inside a worker: the decode -> call -> encode path of every step.

A step's message carries only ``(job id, step name, call)``, where ``call`` says where each
argument comes from (a stored input or step output, a constant, a map element). The task
reads and records in one round trip, validates, calls the model, validates and stores the
output. The model is built once per pool process, in that process (never before a fork).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, Task, chord
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from celery.worker.request import Request
from pydantic import ValidationError

from app import _codec
from app._jobs import StepRecorder
from app._registry import CORE
from app._service import ApiSpec, ServiceSpec
from app._settings import Settings

__all__ = ["ALIVE", "NODE_ENV", "StepContext", "StepFailed", "device", "live_processes", "register",
           "select_device"]

_LIVE = "braid:processes"

log = logging.getLogger("braid.worker")

_LOG_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "braid_log_context", default=None)


class StepContext(logging.Filter):
    """Adds the running step's job, step, service and task_id to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_LOG_CONTEXT.get() or {}).items():
            setattr(record, key, value)
        return True


ALIVE = "braid:alive"


NODE_ENV = "BRAID_NODE"
"""The worker's node name, set by ``braid worker`` for its pool processes."""


def _node(service: str) -> str:
    return os.environ.get(NODE_ENV) or f"{service}@{socket.gethostname()}"


def _heartbeat(settings: Settings, service: str, node: str, stop: threading.Event) -> None:
    """Say every few seconds that ``node`` still serves ``service``; /readyz and the metrics
    count live workers from this, without asking Celery. Only refreshes: a node becomes live
    when a pool process has loaded its model (``_load_model``), not when Celery is up."""
    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=3)
    key = f"{ALIVE}:{service}"
    while True:
        try:
            client.zadd(key, {node: time.time()}, xx=True)
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", exc)
        if stop.wait(settings.heartbeat_s):
            with contextlib.suppress(redis.RedisError):
                client.zrem(key, node)
            return


_MESSAGE_LIMIT = 2000


class StepFailed(Exception):
    """Raised to Celery after a step's failure is recorded, so the canvas stops there."""


@dataclass
class _Process:
    settings: Settings
    recorder: StepRecorder
    instance: Any = None
    device: str = "cpu"


_PROCESS: _Process | None = None


def device() -> str:
    """The torch device this worker process should put its model on: ``cuda:N`` for a gpu
    service where a GPU is present, else ``cpu``. Call it in a service's ``__init__``."""
    return _PROCESS.device if _PROCESS is not None else "cpu"


def select_device(gpu: int, process_index: int, cuda_devices: int) -> str:
    """``cuda:N`` for the ``process_index``-th process of a gpu service (spreading processes
    over the devices), ``cpu`` when the service needs no GPU or none is present."""
    if gpu <= 0 or cuda_devices <= 0:
        return "cpu"
    return f"cuda:{process_index % cuda_devices}"


def _cuda_devices() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def _process(settings: Settings) -> _Process:
    global _PROCESS
    if _PROCESS is None:
        client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=3)
        _PROCESS = _Process(settings, StepRecorder(client, settings.job_ttl_s,
                                                   settings.blob_threshold))
    return _PROCESS


def _die_with_parent() -> None:
    """An orphaned pool process would finish a step whose message is redelivered anyway
    (its worker never acked it): make pool processes die with their worker."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _load_model(svc: ServiceSpec, settings: Settings, process_index: int) -> None:
    """Build the service instance in this pool process; only then is its worker live (the
    heartbeat of the worker's main process refreshes what this adds)."""
    _die_with_parent()
    ctx = _process(settings)
    if svc.resources.gpu > 0:
        ctx.device = select_device(svc.resources.gpu, process_index, _cuda_devices())
        if ctx.device == "cpu" and process_index == 0:
            log.warning("service %r asks for gpu=%d but this machine has no CUDA device; "
                        "running on CPU", svc.name, svc.resources.gpu)
    if svc is not CORE:
        _build(ctx, svc, settings)
    ctx.recorder.client.zadd(f"{ALIVE}:{svc.name}", {_node(svc.name): time.time()})
    log.info("service %r loaded on %s", svc.name, ctx.device)


def _build(ctx: _Process, svc: ServiceSpec, settings: Settings) -> None:
    """Load the model; a failure stops the whole worker, saying why."""
    try:
        ctx.instance = svc.cls()
    except Exception:
        log.critical("service %r could not load its model; the worker stops. Fix the error "
                     "below and start it again.", svc.name, exc_info=True)
        sys.stderr.flush()
        os.kill(os.getppid(), signal.SIGTERM)
        os._exit(3)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(settings.torch_threads)
    _announce(ctx, svc)


def _announce(ctx: _Process, svc: ServiceSpec) -> None:
    """Record which device this process uses and which model versions it loaded."""
    from app import _models

    store = _models.store()
    loaded = [m.tag for m in (store.find(t) for t in svc.models) if m is not None]
    key = f"{socket.gethostname()}:{os.getpid()}"
    record = {"process": key, "device": ctx.device, "models": loaded, "since": time.time()}
    with ctx.recorder.client.pipeline(transaction=False) as pipe:
        pipe.hset(f"{_LIVE}:{svc.name}", key, json.dumps(record))
        pipe.expire(f"{_LIVE}:{svc.name}", 24 * 3600)
        pipe.execute()


def live_processes(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Per service, the worker processes that announced themselves, still alive or recently."""
    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2)
    out: dict[str, list[dict[str, Any]]] = {}
    for key in client.scan_iter(f"{_LIVE}:*"):
        name = key.decode().rsplit(":", 1)[1]
        out[name] = [json.loads(v) for v in client.hvals(key)]
    return out


def _error(exc: BaseException, kind: str | None = None) -> dict[str, str]:
    message = str(exc) or repr(exc)
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "..."
    return {"type": kind or type(exc).__name__, "message": message}


def _fields(spec: Any, out: set[str]) -> set[str]:
    if isinstance(spec, dict):
        if "$r" in spec:
            out.add(spec["$r"])
        for key in ("$l", "$d"):
            if key in spec:
                inner = spec[key]
                for part in inner.values() if isinstance(inner, dict) else inner:
                    _fields(part, out)
    return out


def _resolve(spec: Any, wire: Mapping[str, bytes | None], item: str | None,
             blobs: redis.Redis) -> Any:
    if "$c" in spec:
        return spec["$c"]
    if "$l" in spec:
        return [_resolve(s, wire, item, blobs) for s in spec["$l"]]
    if "$d" in spec:
        return {k: _resolve(s, wire, item, blobs) for k, s in spec["$d"].items()}
    field = item if "$item" in spec else spec["$r"]
    assert field is not None
    raw = wire.get(field)
    if raw is None:
        raise LookupError(f"the value {field!r} is missing: its job expired or was deleted")
    return _codec.load_wire(raw, blobs)


def _assemble(ctx: _Process, job: str, output_spec: str) -> None:
    spec = _codec.loads(output_spec)
    fields = sorted(_fields(spec, set()))
    wire = dict(zip(fields, ctx.recorder.values(job, fields), strict=True))
    text = _codec.dumps(_resolve(spec, wire, None, ctx.recorder.client))
    _store_and_succeed(ctx, job, text)


def _store_and_succeed(ctx: _Process, job: str, text: str) -> None:
    packed, blob = _codec.pack_text(text, ctx.settings.blob_threshold)
    if blob is not None:
        ctx.recorder.client.set(blob[0], blob[1], ex=ctx.settings.job_ttl_s)
    ctx.recorder.succeed(job, packed)


def _finish(ctx: _Process, job: str, step: str, packed: str, call: Mapping[str, Any],
            counts: bool = True, **timing: Any) -> None:
    status, output = ctx.recorder.finish(job, step, f"o:{step}", packed, sink=bool(call.get("s")),
                                         whole=bool(call.get("w")), counts=counts, **timing)
    if status == "complete":
        _assemble(ctx, job, output.decode())


def _run_api(task: Task, svc: ServiceSpec, spec: ApiSpec, job: str, step: str,
             call: Mapping[str, Any]) -> None:
    ctx = _process(task.app.braid_settings)
    token = _LOG_CONTEXT.set({"job": job, "step": step, "service": svc.name,
                              "task_id": task.request.id})
    try:
        _run_step(task, ctx, svc, spec, job, step, call)
    finally:
        _LOG_CONTEXT.reset(token)


def _run_step(task: Task, ctx: _Process, svc: ServiceSpec, spec: ApiSpec, job: str, step: str,
              call: Mapping[str, Any]) -> None:
    item = f"m:{call['m']}:{call['i']}" if "m" in call else None
    found: set[str] = {item} if item else set()
    for arg in call["a"].values():
        _fields(arg, found)
    fields = sorted(found)
    start = ctx.recorder.start(job, step, task.request.id, task.request.hostname or "", fields,
                               call.get("q", ()))
    if start.action == "done":
        return
    if start.action != "run":
        log.info("step %s of job %s skipped: the job is %s", step, job, start.action)
        raise Ignore()
    log.info("step %s of job %s started (attempt %d)", step, job, start.attempts)

    def timing() -> dict[str, Any]:
        return {"service": svc.name, "api": spec.name, "wait": start.started_at - start.ready_at,
                "run": time.time() - start.started_at}

    limit = spec.retry.max_attempts if spec.retry else ctx.settings.max_deliveries
    if start.attempts > limit:
        ctx.recorder.fail(job, step, {"type": "TooManyAttempts", "message":
                          f"step {step!r} was attempted {start.attempts - 1} times "
                          "(its worker died or it kept failing); giving up"})
        raise StepFailed(f"{step}: too many attempts")
    wire = dict(zip(fields, start.values, strict=True))
    try:
        try:
            kwargs = {k: _codec.decode(_resolve(s, wire, item, ctx.recorder.client))
                      for k, s in call["a"].items()}
            args = spec.call_model.model_validate(kwargs)
        except ValidationError as exc:
            raise _Invalid(_error(exc, "InvalidInput")) from exc
        result = spec.func(ctx.instance, **dict(args))
        try:
            output = spec.output_adapter.validate_python(result)
        except ValidationError as exc:
            raise _Invalid(_error(exc, "InvalidOutput")) from exc
        packed, blob = _codec.pack(output, ctx.settings.blob_threshold)
    except SoftTimeLimitExceeded:
        if ctx.recorder.cancelled(job):
            ctx.recorder.fail(job, step, {"type": "Cancelled", "message": "job cancelled"},
                              state="cancelled")
            raise Ignore() from None
        ctx.recorder.fail(job, step, {"type": "StepTimeout", "message":
                          f"step {step!r} ran past its timeout of {svc.timeout:g} s"}, **timing())
        log.warning("step %s of job %s timed out", step, job)
        raise StepFailed(f"{step}: timed out") from None
    except _Invalid as exc:
        ctx.recorder.fail(job, step, exc.error, **timing())
        log.warning("step %s of job %s failed: %s", step, job, exc.error["message"])
        raise StepFailed(f"{step}: {exc.error['type']}: {exc.error['message']}") from None
    except Exception as exc:
        error = _error(exc)
        if spec.retry and isinstance(exc, spec.retry.on) and start.attempts < limit:
            delay = spec.retry.delay(start.attempts)
            ctx.recorder.retrying(job, step, error, delay)
            raise task.retry(countdown=delay, max_retries=None) from None
        ctx.recorder.fail(job, step, error, **timing())
        log.warning("step %s of job %s failed: %s: %s", step, job, error["type"], error["message"])
        raise StepFailed(f"{step}: {error['type']}: {error['message']}") from None
    if blob is not None:
        ctx.recorder.client.set(blob[0], blob[1], ex=ctx.settings.job_ttl_s)
    _finish(ctx, job, step, packed, call, **timing())
    log.info("step %s of job %s succeeded", step, job)


class _Invalid(Exception):
    def __init__(self, error: dict[str, str]) -> None:
        super().__init__(error["message"])
        self.error = error


def _run_map(task: Task, job: str, step: str, call: Mapping[str, Any]) -> None:
    ctx = _process(task.app.braid_settings)
    field = call["over"]["$r"]
    raw = ctx.recorder.values(job, [field])[0]
    if raw is None:
        raise Ignore()
    items = _codec.load_wire(raw, ctx.recorder.client)
    if not isinstance(items, list):
        ctx.recorder.fail(job, step, {"type": "TypeError", "message":
                          f"map step {step!r} needs a list, got {type(items).__name__}"})
        raise StepFailed(f"{step}: not a list")
    if not ctx.recorder.expand(job, step, [_codec.dumps(i) for i in items]):
        raise Ignore()
    if not items:
        _finish(ctx, job, step, "[]", call, counts=False)
        return
    header = [
        task.app.signature(call["task"], args=(job, f"{step}[{i}]", {
            "a": call["a"], "m": step, "i": i, "q": [f"{step}|started_at"]}),
                           queue=call["queue"], immutable=True)
        for i in range(len(items))
    ]
    body = task.app.signature(
        "braid.collect", args=(job, step, {"n": len(items), "s": call.get("s"),
                                           "w": call.get("w")}),
        queue=CORE.queue, immutable=True,
    )
    raise task.replace(chord(header, body))


def _run_collect(task: Task, job: str, step: str, call: Mapping[str, Any]) -> None:
    ctx = _process(task.app.braid_settings)
    values = ctx.recorder.values(job, [f"o:{step}[{i}]" for i in range(call["n"])])
    if any(v is None for v in values):
        raise Ignore()
    parts = [_codec.dumps(_codec.load_wire(v, ctx.recorder.client)) if _codec.is_ref_text(v)
             else v.decode() for v in values if v is not None]
    packed, blob = _codec.pack_text("[" + ",".join(parts) + "]", ctx.settings.blob_threshold)
    if blob is not None:
        ctx.recorder.client.set(blob[0], blob[1], ex=ctx.settings.job_ttl_s)
    _finish(ctx, job, step, packed, call, counts=False)


class StepRequest(Request):  # type: ignore[misc]
    """Records a step as failed when its process is killed at the hard time limit (the
    task's own code cannot: its process is gone)."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if not soft and len(self.args) >= 2:
            ctx = _process(self.task.app.braid_settings)
            ctx.recorder.fail(self.args[0], self.args[1], {"type": "StepTimeout", "message":
                              f"step {self.args[1]!r} was killed at its hard time limit of "
                              f"{timeout:g} s"})


def register(celery: Celery, svc: ServiceSpec, settings: Settings) -> None:
    """Register ``svc``'s tasks (only those: other names are refused) and build its model
    in each pool process."""
    celery.braid_settings = settings
    limits = {"soft_time_limit": svc.timeout,
              "time_limit": svc.timeout + settings.time_limit_grace_s}
    common = {"bind": True, "ignore_result": True, "typing": False, "Request": StepRequest,
              **limits}
    for spec in svc.apis.values():
        def run(task: Task, job: str, step: str, call: dict[str, Any], _spec: ApiSpec = spec) -> None:
            _run_api(task, svc, _spec, job, step, call)

        celery.task(name=spec.task_name, **common)(run)
    if svc is CORE:
        celery.task(name="braid.map", **common)(_run_map)
        celery.task(name="braid.collect", **common)(_run_collect)

    def init(**_: Any) -> None:
        from billiard.process import current_process

        _load_model(svc, settings, getattr(current_process(), "index", 0) or 0)

    stop = threading.Event()
    beat: list[threading.Thread] = []

    def ready(sender: Any = None, **_: Any) -> None:
        node = getattr(sender, "hostname", None) or _node(svc.name)
        thread = threading.Thread(target=_heartbeat, args=(settings, svc.name, node, stop),
                                  name="braid-heartbeat", daemon=True)
        thread.start()
        beat.append(thread)

    def shutdown(**_: Any) -> None:
        stop.set()
        for thread in beat:
            thread.join(5)

    worker_process_init.connect(init, weak=False)
    worker_ready.connect(ready, weak=False)
    worker_shutdown.connect(shutdown, weak=False)
