"""A worker process: it builds the service's model (once, in the process that runs the
steps, never before a fork), says it is alive, hands back a dead worker's messages, listens
for cancels, and registers the service's tasks, whose bodies are :mod:`app._step`.

Pools: a service that runs one process at a time runs its steps in the worker's own process
(Celery's solo pool: no pipe hop to a child); one that runs several uses prefork. Celery
enforces time limits only in prefork, so solo workers enforce them with :class:`TimeLimit`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Reject
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from celery.worker.request import Request
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from app._batch import strategy
from app._dead_letters import keep_aside
from app._hooks import (
    Hooks,
    Interrupts,
    LogContext,
    MemoryGuard,
    StepRun,
    TimeLimit,
    install_interrupt,
)
from app._jobs import StepRecorder
from app._protocol import (
    CANCELS,
    PROCESSES_PREFIX,
    alive_key,
    decode_step,
    processes_key,
)
from app._registry import CORE
from app._service import ApiSpec, ServiceSpec
from app._settings import Settings
from app._step import StepTask, Worker, run_map, run_step
from app._transport import NODE_OPTION, Node, reclaim

__all__ = ["NODE_ENV", "device", "live_processes", "register", "select_device"]

log = logging.getLogger("braid.worker")

NODE_ENV = "BRAID_NODE"
"""The worker's node name, set by ``braid worker`` for its pool processes."""

def _node(service: str) -> str:
    return os.environ.get(NODE_ENV) or f"{service}@{socket.gethostname()}"


_WORKER: Worker | None = None


def device() -> str:
    """The torch device this worker process should put its model on: ``cuda:N`` for a gpu
    service where a GPU is present, else ``cpu``. Call it in a service's ``__init__``."""
    return _WORKER.device if _WORKER is not None else "cpu"


def select_device(gpu: int, process_index: int, cuda_devices: int) -> str:
    """``cuda:N`` for the ``process_index``-th process of a gpu service (spreading processes
    over the devices), ``cpu`` when the service needs no GPU or none is present."""
    if gpu <= 0 or cuda_devices <= 0:
        return "cpu"
    return f"cuda:{process_index % cuda_devices}"


def _cuda_devices() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def _client(settings: Settings) -> redis.Redis:
    # a step's records and hand-offs are sent again on a broken connection for about 15 s
    # (0.1, 0.2, 0.4, 0.8, then 1 s apart), riding out a Redis restart: a step that ran must
    # not fail for want of its store (the scripts are safe to send twice: start_step counts
    # one more attempt, finish_step says 'done')
    return redis.Redis.from_url(settings.broker_url, socket_connect_timeout=3,
                                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 15))


def _worker(settings: Settings, svc: ServiceSpec, solo: bool, inflight_ttl_s: int) -> Worker:
    global _WORKER
    if _WORKER is None:
        node = _node(svc.name)
        recorder = StepRecorder(_client(settings), settings.job_ttl_s, settings.blob_threshold,
                                node, inflight_ttl_s)
        interrupts = Interrupts()
        hooks: list[Any] = [LogContext(logging.INFO if settings.log_steps else logging.DEBUG),
                            interrupts]
        if svc.resources.memory_bytes:
            hooks.append(MemoryGuard(svc.resources.memory_bytes))
        if solo:
            hooks.append(TimeLimit(svc.timeout, svc.timeout + settings.time_limit_grace_s,
                                   functools.partial(_hard_limit, settings)))
        _WORKER = Worker(settings, recorder, node, Hooks(hooks), interrupts)
    return _WORKER


def _killed(settings: Settings, job: str, step: str, limit: float, attempt: int | None = None,
            **timing: Any) -> None:
    """Record that ``step`` was killed at its hard time limit: from the solo worker itself
    (its ``attempt``: fenced off if a later one started), or from a prefork worker's main
    process (which holds no worker state of its own)."""
    recorder = _WORKER.recorder if _WORKER is not None else StepRecorder(
        _client(settings), settings.job_ttl_s, settings.blob_threshold)
    recorder.fail(job, step, {"type": "StepTimeout", "message": f"step {step!r} was killed at "
                              f"its hard time limit of {limit:g} s"}, attempt=attempt, **timing)


def _hard_limit(settings: Settings, run: StepRun, limit: float) -> None:
    _killed(settings, run.job, run.step, limit, run.attempts, **run.timing())


def _die_with_parent() -> None:
    """An orphaned pool process would finish a step whose message is redelivered anyway
    (its worker never acked it): make pool processes die with their worker."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _load_model(svc: ServiceSpec, settings: Settings, process_index: int, solo: bool,
                inflight_ttl_s: int) -> None:
    """Build the service instance in the process that runs its steps; only then is its
    worker live (the heartbeat of the worker's main process refreshes what this adds)."""
    if not solo:
        _die_with_parent()
    w = _worker(settings, svc, solo, inflight_ttl_s)
    if svc.resources.gpu > 0:
        w.device = select_device(svc.resources.gpu, process_index, _cuda_devices())
        if w.device == "cpu" and process_index == 0:
            log.warning("service %r asks for gpu=%d but this machine has no CUDA device; "
                        "running on CPU", svc.name, svc.resources.gpu)
    if svc is not CORE:
        _build(w, svc, settings, solo)
    install_interrupt()
    threading.Thread(target=_listen_cancels, args=(settings, w.interrupts),
                     name="braid-cancels", daemon=True).start()
    w.hooks.on_load(svc)
    log.info("service %r loaded on %s", svc.name, w.device)
    w.client.zadd(alive_key(svc.name), {w.node: time.time()})


def _build(w: Worker, svc: ServiceSpec, settings: Settings, solo: bool) -> None:
    """Load the model; a failure stops the whole worker, saying why."""
    try:
        w.instance = svc.cls()
    except Exception:
        log.critical("service %r could not load its model; the worker stops. Fix the error "
                     "below and start it again.", svc.name, exc_info=True)
        sys.stderr.flush()
        if not solo:  # a pool child: stop its worker too, or it would respawn it forever
            os.kill(os.getppid(), signal.SIGTERM)
        os._exit(3)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(settings.torch_threads)
    _announce(w, svc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    return True


def _announce(w: Worker, svc: ServiceSpec) -> None:
    """Record which device this process uses and which model versions it loaded, and forget
    the records of this node's processes on this host that have exited (replaced pool
    children, a restarted worker's predecessors)."""
    from app import _models

    store = _models.store()
    loaded = [m.tag for m in (store.find(t) for t in svc.models) if m is not None]
    host = socket.gethostname()
    key = f"{host}:{os.getpid()}"
    record = {"process": key, "node": w.node, "device": w.device, "models": loaded,
              "since": time.time()}
    gone = []
    for other in w.client.hkeys(processes_key(svc.name)):
        name = other.decode() if isinstance(other, bytes) else str(other)
        old_host, _, pid = name.rpartition(":")
        if old_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            gone.append(name)
    with w.client.pipeline(transaction=False) as pipe:
        if gone:
            pipe.hdel(processes_key(svc.name), *gone)
        pipe.hset(processes_key(svc.name), key, json.dumps(record))
        pipe.expire(processes_key(svc.name), 24 * 3600)
        pipe.execute()


def live_processes(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Per service, the processes of its live workers (nodes that sent a heartbeat within
    the last three beats), each with its device and the model versions it loaded."""
    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2)
    since = time.time() - settings.alive_window_s
    out: dict[str, list[dict[str, Any]]] = {}
    for key in client.scan_iter(f"{PROCESSES_PREFIX}*"):
        name = key.decode().removeprefix(PROCESSES_PREFIX)
        alive = {n.decode() if isinstance(n, bytes) else str(n)
                 for n in client.zrangebyscore(alive_key(name), since, "+inf")}
        records = [json.loads(v) for v in client.hvals(key)]
        out[name] = [r for r in records if r.get("node") in alive]
    return out


def _listen_cancels(settings: Settings, interrupts: Interrupts) -> None:
    """Interrupt the running step when its job is cancelled (the API publishes the task ids
    of a cancelled job's running steps)."""
    backoff = 0.1
    while True:
        try:
            pubsub = _client(settings).pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            pubsub.subscribe(CANCELS)
            backoff = 0.1
            for message in pubsub.listen():
                interrupts.cancel(json.loads(message["data"]))
        except Exception as exc:
            log.debug("cancel listener reconnecting: %s", exc)
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


def _heartbeat(settings: Settings, svc: ServiceSpec, node: str, stop: threading.Event) -> None:
    """Say every few seconds that ``node`` still serves ``svc``; /readyz and the metrics
    count live workers from this, without asking Celery. Only refreshes: a node becomes live
    when a process has loaded its model (``_load_model``), not when Celery is up. A peer
    that missed three beats is dead: its running messages are handed back at once."""
    client = _client(settings)
    key = alive_key(svc.name)
    live = False
    while True:
        try:
            now = time.time()
            if client.zadd(key, {node: now}, xx=True, ch=True):
                live = True
            elif live:
                # counted dead by a peer (it missed beats: stalled, or cut off from Redis),
                # which handed back what it ran; it serves on, so it is live again
                client.zadd(key, {node: now})
                log.warning("worker %s was counted dead (it missed heartbeats); its running "
                            "steps were handed back and will not be finished by it", node)
            for dead in client.zrangebyscore(key, "-inf", now - settings.alive_window_s):
                name = dead.decode() if isinstance(dead, bytes) else str(dead)
                if client.zrem(key, name) and (n := reclaim(client, name, svc.queue)):
                    log.warning("worker %s stopped beating; handed back its %d running "
                                "step(s)", name, n)
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", exc)
        if stop.wait(settings.heartbeat_s):
            with contextlib.suppress(redis.RedisError):
                client.zrem(key, node)
            return


class StepRequest(Request):  # type: ignore[misc]
    """Records a step as failed when its pool process is killed at the hard time limit
    (the task's own code cannot: its process is gone)."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if not soft and len(self.args) >= 2:
            _killed(self.task.app.braid_settings, self.args[0], self.args[1], timeout)


def _current() -> Worker:
    assert _WORKER is not None, "a step ran before its worker process loaded the service"
    return _WORKER


def _inline_worker(svc: ServiceSpec) -> Worker:
    """This process's worker for the inline APIs of ``svc``, another service: the same
    recorder, hooks and node, with ``svc``'s own instance (built on first use)."""
    w = _INLINE.get(svc.name)
    if w is None:
        w = _INLINE[svc.name] = dataclasses.replace(_current(), instance=svc.cls(), device="cpu",
                                                    batched={})
    return w


_INLINE: dict[str, Worker] = {}


StepBody = Callable[[Task, str, str, dict[str, Any]], None]
"""What a step task does with its message's job, step and call (wire form)."""


def _step_task(body: StepBody, queue: str) -> Callable[..., None]:
    """A Celery task function that runs ``body`` on a step message's arguments, and refuses
    (as a dead letter) a message from ``queue`` whose arguments are not a step message's."""

    def run(task: Task, *args: Any, **kwargs: Any) -> None:
        try:
            job, step, _ = decode_step(args, kwargs)
        except ValueError as exc:
            message = {"task": task.name, "id": task.request.id, "args": args, "kwargs": kwargs}
            keep_aside(_current().client, queue, str(exc), json.dumps(message, default=repr))
            raise Reject(str(exc), requeue=False) from exc
        try:
            body(task, job, step, args[2])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # the job store stayed out of reach (a step's own errors are recorded, not
            # raised): the step is not failed, and its message goes back to its queue
            # (acked, as Celery acks a failed task, it would be lost)
            log.warning("step %s of job %s handed back: Redis is out of reach (%s)", step, job,
                        exc)
            raise Reject(str(exc), requeue=True) from exc

    return run


def _own(svc: ServiceSpec, spec: ApiSpec) -> StepBody:
    def body(task: Task, job: str, step: str, call: dict[str, Any]) -> None:
        run_step(_current(), task, svc, spec, job, step, call)

    return body


def _inline(svc: ServiceSpec, spec: ApiSpec) -> StepBody:
    """A step of another service's inline API, run in this worker."""
    def body(task: Task, job: str, step: str, call: dict[str, Any]) -> None:
        run_step(_inline_worker(svc), task, svc, spec, job, step, call)

    return body


def _map(task: Task, job: str, step: str, call: dict[str, Any]) -> None:
    run_map(_current(), task, job, step, call)


def register(celery: Celery, svc: ServiceSpec, settings: Settings, solo: bool,
             inflight_ttl_s: int, services: Sequence[ServiceSpec] = ()) -> None:
    """Register ``svc``'s tasks and the inline APIs of the other ``services`` (only those:
    other names are refused) and build its model in the process that runs them."""
    celery.braid_settings = settings
    # the transport notes what this worker takes and runs under its node name (reclaim)
    celery.conf.broker_transport_options = {
        **celery.conf.broker_transport_options,
        NODE_OPTION: dataclasses.asdict(Node(_node(svc.name), inflight_ttl_s, svc.queue))}
    # what this worker runs (app._consumer refuses any other task a message names)
    celery.braid_runs = runs = {a.task_name for a in svc.apis.values()}
    limits = {"soft_time_limit": svc.timeout,
              "time_limit": svc.timeout + settings.time_limit_grace_s}
    common = {"bind": True, "base": StepTask, "ignore_result": True, "typing": False,
              "Request": StepRequest, **limits}
    for other in services:
        for spec in other.apis.values():
            if other.name == svc.name or not spec.inline:
                continue
            celery.task(name=spec.task_name, **common)(_step_task(_inline(other, spec), svc.queue))
            runs.add(spec.task_name)
    for spec in svc.apis.values():
        batching = {"Strategy": staticmethod(strategy(_current, svc, spec, svc.queue))} if (
            spec.batch and settings.batching and solo) else {}
        celery.task(name=spec.task_name, **common, **batching)(_step_task(_own(svc, spec), svc.queue))
    if svc is CORE:
        celery.task(name="braid.map", **common)(_step_task(_map, svc.queue))
        # a map that ends its pipeline replaces itself with a group, which Celery follows
        # with its own celery.accumulate (see run_map)
        runs |= {"braid.map", "celery.accumulate"}

    def init(**_: Any) -> None:
        from billiard.process import current_process

        _load_model(svc, settings, getattr(current_process(), "index", 0) or 0, solo,
                    inflight_ttl_s)

    stop = threading.Event()
    beat: list[threading.Thread] = []

    def ready(sender: Any = None, **_: Any) -> None:
        node = getattr(sender, "hostname", None) or _node(svc.name)
        thread = threading.Thread(target=_heartbeat, args=(settings, svc, node, stop),
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
