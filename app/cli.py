"""The ``braid`` command."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app._errors import BraidError
from app._settings import Settings
from app._supervisor import INDEX, Program, config, control, log_dir, socket_path, wait_exit, worker_group

if TYPE_CHECKING:
    from app._client import Client, Job

__all__ = ["main"]


def _settings(apps: tuple[str, ...]) -> Settings:
    """Settings from the environment; ``--app`` overrides BRAID_APPS here and in children.
    Like ``celery -A``, app modules are also looked up in the current directory."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if apps:
        os.environ["BRAID_APPS"] = ",".join(apps)
    return Settings()


UP_RECORD = "up.json"
"""In the state dir: the BRAID_* environment of the latest `braid up`, for the commands that
inspect the system it runs (readable only by its user: it may hold passwords)."""


def _served(apps: tuple[str, ...]) -> Settings:
    """Settings for a command about the system that `braid up` runs from the state dir: its
    environment (where its Redis, API and model store are, what it serves), unless ``--app``
    names other apps; the caller's own environment where none runs."""
    settings = _settings(apps)
    record = settings.state_dir / UP_RECORD
    with control(settings.state_dir.resolve()) as running:
        if running is None or not record.exists():
            return settings
    env = json.loads(record.read_text())
    os.environ.update({k: v for k, v in env.items() if k != "BRAID_STATE_DIR"})
    return _settings(apps)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable only by this user."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _record(path: Path, apps: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith("BRAID_")}
    _write_private(path, json.dumps({**env, "BRAID_APPS": ",".join(apps)}))


def _worker_env(settings: Settings) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers' "Loading weights" bars: one per model load, in every worker's output
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    threads = str(settings.torch_threads)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)


APP = click.option("--app", "apps", multiple=True,
                   help="Module whose services and pipelines to serve (repeatable; default "
                        "BRAID_APPS or 'workers').")


@click.group()
def main() -> None:
    """Braid: composed ML models as Celery workers behind a REST API."""


@main.command()
@APP
@click.argument("service")
@click.option("--index", type=int, default=None,
              help="This worker's number among the service's workers on this host (node name "
                   "SERVICE@HOST-INDEX; default: the process id).")
@click.option("--concurrency", type=int, default=None, help="Pool size (default from the "
              "service's resources).")
@click.option("--autoscale", default=None, metavar="MAX,MIN",
              help="Grow the pool up to MAX processes under load, shrink to MIN (CPU services).")
def worker(apps: tuple[str, ...], service: str, index: int | None, concurrency: int | None,
           autoscale: str | None) -> None:
    """Run a worker that consumes only SERVICE's queue; start more anywhere (same
    BRAID_REDIS_URL) to add throughput."""
    import logging
    import warnings

    from celery.exceptions import SecurityWarning

    from app._celery import create_celery, visibility_timeout
    from app._logging import setup_logging
    from app._registry import load
    from app._runtime import register

    settings = _settings(apps)
    _worker_env(settings)
    os.nice(settings.worker_nice)  # inherited by the pool's processes
    registry = load(settings.apps)
    svc = registry.service(service)
    _check_models(svc.models)
    import socket

    from app._runtime import NODE_ENV

    number = os.getpid() if index is None else index
    name = f"{svc.name}@{socket.gethostname()}-{number}"
    os.environ[NODE_ENV] = name
    setup_logging(f"worker:{svc.name}-{number}", settings.log_level, settings.log_json)
    _wait_for_redis(settings)
    if autoscale and (svc.resources.gpu or not all(p.isdigit() for p in autoscale.split(","))):
        raise click.BadParameter("write MAX,MIN (numbers), for CPU services only",
                                 param_hint="--autoscale")
    size = concurrency or (max(1, svc.resources.gpu) if svc.resources.gpu else svc.concurrency)
    if settings.max_concurrency:
        size = min(size, settings.max_concurrency)
    batch = max((a.batch.max_size for a in svc.apis.values() if a.batch), default=0) if (
        settings.batching) else 0
    # one process at a time: run steps in the worker itself, without prefork's pipe hop; a
    # batching service always does (its batches form in that process)
    solo = (size == 1 and not autoscale) or batch > 0
    celery = create_celery(settings, registry.all_services)
    register(celery, svc, settings, solo, int(visibility_timeout(settings, registry.all_services)),
             registry.all_services)
    from celery.signals import setup_logging as celery_logging

    celery_logging.connect(lambda **_: None, weak=False)
    if settings.log_level.upper() != "DEBUG":
        # Celery's "Task ... received/succeeded" lines: two per step, each relayed by the
        # supervisor; steps are logged (at DEBUG) by Braid's own hooks instead
        for logger in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(logger).setLevel(logging.WARNING)
    # Celery's warning about running as root is about pickle, which Braid's workers refuse
    # (JSON only); `braid up` says once that it runs as root
    warnings.filterwarnings("ignore", category=SecurityWarning)
    # --quiet: no banner (`braid status` shows queues, workers and devices)
    argv = ["--quiet", "worker", "-Q", svc.queue, "-n", name, "-P",
            "solo" if solo else "prefork", "-l", settings.log_level, "--without-mingle",
            "--without-gossip"]
    if not solo:
        argv += [f"--autoscale={autoscale}"] if autoscale else ["-c", str(size)]
    if batch:
        # a batch forms from the messages the worker holds: prefetch 1 would cap it at one
        argv += ["--prefetch-multiplier", str(batch)]
    if settings.task_events:
        argv.append("-E")
    if svc.resources.memory_bytes and not solo:
        argv += ["--max-memory-per-child", str(svc.resources.memory_bytes // 1024)]
    celery.worker_main(argv)


def _wait_for_redis(settings: Settings) -> None:
    """Wait until Redis answers: under `braid up` a worker may start before the embedded
    Redis listens, and a model loaded then could not say that it is live."""
    import logging

    import redis as redis_client

    log = logging.getLogger("braid.worker")
    client = redis_client.Redis.from_url(settings.broker_url, socket_connect_timeout=2)
    options = client.connection_pool.connection_kwargs
    where = options.get("path") or f"{options.get('host')}:{options.get('port')}"
    started = last = time.monotonic()
    while True:
        try:
            client.ping()
        except redis_client.RedisError as exc:
            if time.monotonic() - last > 30:
                log.warning("Redis at %s still does not answer after %.0f s: %s", where,
                            time.monotonic() - started, exc)
                last = time.monotonic()
            time.sleep(0.2)
        else:
            client.close()
            return


@main.command()
@APP
@click.argument("service")
def ping(apps: tuple[str, ...], service: str) -> None:
    """Exit 0 if a worker of SERVICE on this host sent a heartbeat lately (a healthcheck)."""
    import socket
    import time

    import redis as redis_client

    from app._protocol import alive_key

    settings = _settings(apps)
    client = redis_client.Redis.from_url(settings.broker_url, socket_connect_timeout=3)
    since = time.time() - settings.alive_window_s
    nodes = [n.decode() if isinstance(n, bytes) else str(n)
             for n in client.zrangebyscore(alive_key(service), since, "+inf")]
    mine = [n for n in nodes if n.startswith(f"{service}@{socket.gethostname()}-")]
    if not mine:
        raise SystemExit(f"no live worker of {service!r} on this host")
    click.echo(" ".join(mine))


@main.command()
@APP
def compose(apps: tuple[str, ...]) -> None:
    """Print compose.yaml for the declared services (`braid compose > compose.yaml`)."""
    from app._compose import compose as render
    from app._registry import load

    settings = _settings(apps)
    click.echo(render(load(settings.apps).all_services, settings), nl=False)


def _check_models(tags: tuple[str, ...]) -> None:
    from app import _models

    store = _models.store()
    for tag in tags:
        store.get(tag)


@main.command()
@APP
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
def api(apps: tuple[str, ...], host: str | None, port: int | None) -> None:
    """Run the REST API (uvicorn)."""
    import uvicorn

    from app._logging import setup_logging

    settings = _settings(apps)
    setup_logging("api", settings.log_level, settings.log_json)
    uvicorn.run("api.main:create_app", factory=True, host=host or settings.api_host,
                port=port or settings.api_port, log_config=None, access_log=False)


@main.command()
@APP
def flower(apps: tuple[str, ...]) -> None:
    """Run Flower, behind basic auth, bound to BRAID_FLOWER_HOST (localhost by default),
    read-only unless BRAID_FLOWER_CONTROL is set."""
    import logging

    from app._celery import create_celery
    from app._logging import setup_logging
    from app._registry import load

    settings = _settings(apps)
    if settings.flower_password is None:
        raise click.UsageError("set BRAID_FLOWER_PASSWORD: Flower never runs without auth")
    setup_logging("flower", settings.log_level, settings.log_json)
    # at start-up Flower lists Celery's built-in tasks and warns that workers still loading
    # their models did not answer its inspections: noise, not trouble
    logging.getLogger("flower.command").addFilter(
        lambda record: not record.getMessage().startswith("Registered tasks"))
    logging.getLogger("flower.inspector").setLevel(logging.ERROR)
    registry = load(settings.apps)
    celery = create_celery(settings, registry.all_services)
    if not settings.flower_control:
        from flower.urls import handlers

        from app._flower import read_only

        read_only(handlers)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    auth = f"{settings.flower_user}:{settings.flower_password.get_secret_value()}"
    celery.start(["flower", f"--address={settings.flower_host}", f"--port={settings.flower_port}",
                  f"--basic-auth={auth}", "--persistent=True", "--logging=none",
                  # Flower would otherwise switch task events on in every worker, every few
                  # seconds, whatever BRAID_TASK_EVENTS says
                  f"--enable_events={settings.task_events}",
                  f"--db={settings.state_dir.resolve() / 'flower.db'}"])


@main.command()
@APP
def services(apps: tuple[str, ...]) -> None:
    """List services: queue, resources, models, APIs, and per live worker process the device
    it actually uses and the model versions it loaded."""
    from app._registry import load
    from app._runtime import live_processes

    settings = _settings(apps)
    registry = load(settings.apps)
    try:
        live = live_processes(settings)
    except Exception as exc:
        click.echo(f"(Redis unreachable, showing declarations only: {exc})", err=True)
        live = {}
    for svc in registry.all_services:
        info = svc.describe()
        info["apis"] = [{"task": a.task_name, "batch": asdict(a.batch) if a.batch else None,
                         "inline": a.inline, "streams": a.streams} for a in svc.apis.values()]
        info["processes"] = live.get(svc.name, [])
        click.echo(json.dumps(info))


@main.group()
def models() -> None:
    """The model store: list, import, get, rm, bootstrap."""


@models.command("list")
def models_list() -> None:
    """Every stored model version: tag (and which is latest), task, size, sha256."""
    from app import _models

    store = _models.store()
    stored = store.list()
    if not stored:
        click.echo(f"the model store {store.root} is empty: `braid models bootstrap` builds the "
                   "demo models, `braid models import NAME PATH` adds yours")
    latest = {model.name: model.version for model in stored}  # versions come oldest first
    for model in stored:
        tag = model.tag + (" (latest)" if latest[model.name] == model.version else "")
        click.echo(f"{tag:<32} {model.task or '-':<22} {model.framework:<12} "
                   f"{model.size / 1e6:8.1f} MB  sha256:{model.sha256}  {model.created}")


def _serving(name: str, settings: Settings) -> str:
    """Which services serve ``name``'s latest version once restarted, as a sentence."""
    from app._registry import load

    try:
        registry = load(settings.apps)
    except BraidError as exc:
        return f"(which services serve it is unknown: {exc.message})"
    names = [svc.name for svc in registry.services.values()
             if any(t.partition(":")[0] == name and t.partition(":")[2] in ("", "latest")
                    for t in svc.models)]
    if not names:
        return (f"no service of {', '.join(settings.apps)} serves {name}:latest; declare it "
                f"with @service(models=[\"{name}:latest\"])")
    return f"restart its services to serve it: braid restart {' '.join(names)}"


@models.command("import")
@APP
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--task", default=None, help="e.g. text-generation")
@click.option("--framework", type=click.Choice(["transformers", "torch"]), default="transformers",
              show_default=True, help="What loads it: transformers (from_pretrained, a folder "
              "with config.json and weights) or torch (safetensors or torch.save weights).")
def models_import(apps: tuple[str, ...], name: str, path: Path, task: str | None,
                  framework: str) -> None:
    """Copy the model folder PATH into the store as the next version of NAME (its new
    latest), if FRAMEWORK's loader can read it."""
    from app import _models

    settings = _served(apps)
    store = _models.ModelStore(settings.model_root, settings.allow_hub)
    model = store.add(name, path, task, framework)
    click.echo(f"{model.tag} (latest)  {model.size / 1e6:.1f} MB  sha256:{model.sha256}")
    click.echo(_serving(name, settings))


@models.command("get")
@click.argument("tag")
def models_get(tag: str) -> None:
    """Show the model TAG (name:version or name:latest) as JSON."""
    from app import _models

    click.echo(json.dumps(_models.store().get(tag).describe(), indent=2))


@models.command("rm")
@click.argument("tag")
def models_rm(tag: str) -> None:
    """Delete the stored model version TAG."""
    from app import _models

    click.echo(f"removed {_models.store().remove(tag).tag}")


@models.command("bootstrap")
@APP
def models_bootstrap(apps: tuple[str, ...]) -> None:
    """Build the demo stand-in models (and import the real MiniLM) that the store lacks."""
    from app import _models
    from app._registry import load

    _worker_env(_settings(apps))
    load(Settings().apps)
    made = _models.bootstrap(_models.store(), echo=click.echo)
    click.echo(f"{len(made)} models added to {_models.store().root}")


@main.command()
def redis() -> None:
    """Run the embedded Redis in the foreground (what `braid up` starts), its log lines
    prefixed like every other process's."""
    import signal
    import subprocess

    from app._redis_server import redis_command, shown

    settings = Settings()
    command = redis_command(settings.embedded_redis_port, settings.state_dir / "redis",
                            _redis_password(settings), settings.embedded_redis_maxmemory)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: server.send_signal(number))
    prefix = f"{'redis':<22}| ".encode()
    assert server.stdout is not None
    for line in server.stdout:
        if shown(line):
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.buffer.flush()
    raise SystemExit(server.wait())


URL = click.option("--url", default=None, help="The API (default http://BRAID_API_HOST:PORT).")


def _client(url: str | None) -> Client:
    from app._client import Client

    return Client(url)


@main.command()
@URL
@click.argument("pipeline")
@click.option("--input", "inputs", default="{}", help="The request body, a JSON object.")
@click.option("--wait", "wait_", is_flag=True, help="Show progress and print the result.")
@click.option("--stream", "stream_", is_flag=True, help="Print the chunks of its streaming "
              "step as they come (text as it is, other chunks a JSON line each).")
def submit(url: str | None, pipeline: str, inputs: str, wait_: bool, stream_: bool) -> None:
    """Submit a job of PIPELINE (or SERVICE.API); print its id, with --wait its result, or
    with --stream its streamed output as it comes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from app._views import JobView

    try:
        body = json.loads(inputs)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from None
    if not isinstance(body, dict):
        raise click.BadParameter("give a JSON object", param_hint="--input")
    with _client(url) as client:
        if "." in pipeline:
            service_name, _, api_name = pipeline.partition(".")
            job = client.call(service_name, api_name, **body)
        else:
            job = client.submit(pipeline, **body)
        if stream_:
            return _print_stream(job)
        if not wait_:
            click.echo(job.id)
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=None, transient=False) as bar:
            task = bar.add_task(f"{pipeline} {job.id[:8]}", total=None)
            for _, data in job.events():
                view = data if isinstance(data, JobView) else job.status()
                bar.update(task, completed=view.progress.done,
                           total=view.progress.total or None,
                           description=f"{pipeline} {job.id[:8]} {view.state}")
        from app._types import to_rest

        click.echo(json.dumps(to_rest(job.result(timeout=0)), indent=2))


def _print_stream(job: Job) -> None:
    attempt = None
    for chunk in job.stream():
        if attempt is not None and chunk.attempt != attempt:
            click.echo(f"\n[step {chunk.step} started over: attempt {chunk.attempt}]", err=True)
        attempt = chunk.attempt
        if isinstance(chunk.value, str):
            click.echo(chunk.value, nl=False)
        else:
            click.echo(json.dumps(chunk.value))
    click.echo()


@main.command()
@URL
@click.option("--pipeline", default=None)
@click.option("--state", default=None)
@click.option("--limit", default=20)
def jobs(url: str | None, pipeline: str | None, state: str | None, limit: int) -> None:
    """List recent jobs, newest first."""
    with _client(url) as client:
        for job in client.jobs(pipeline, state, limit):
            created = job.created_at.isoformat().replace("+00:00", "Z") if job.created_at else None
            click.echo(f"{job.id}  {job.state:<10} {job.progress.done}/{job.progress.total:<4} "
                       f"{created}  {job.pipeline}")


def _redis_password(settings: Settings) -> str:
    """The embedded Redis's password: the setting, else generated once into the state dir."""
    password = settings.redis_password()
    if password is None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        _write_private(settings.redis_password_file, secrets.token_urlsafe(18))
        password = settings.redis_password()
        assert password is not None
    return password


def _flower_password(settings: Settings) -> str:
    if settings.flower_password is not None:
        return settings.flower_password.get_secret_value()
    path = settings.state_dir / "flower-password"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(12))
    return path.read_text().strip()


def _bootstrap_missing(specs: Any) -> None:
    """Build the stand-ins of the models the services need and the store lacks."""
    from app import _models

    store = _models.store()
    missing = sorted({t.partition(":")[0] for s in specs for t in s.models if store.find(t) is None})
    buildable = [m for m in missing if m in _models.stand_ins()]
    if buildable:
        click.echo(f"model store {store.root}: building {', '.join(buildable)}")
        _worker_env(Settings())
        _models.bootstrap(store, buildable, echo=click.echo)


_REDIS = "redis"
"""The embedded Redis's program: started first, stopped last (the workers' warm shutdown
acks and hands back through it)."""


def _programs(settings: Settings, registry: Any, counts: dict[str, int]) -> list[Program]:
    braid = [sys.executable, "-m", "app.cli"]
    programs = []
    if settings.redis_url is None:
        programs.append(Program(_REDIS, [*braid, "redis"], priority=1, startsecs=1))
    for svc in registry.all_services:
        programs.append(Program(worker_group(svc.name),
                                [*braid, "worker", svc.name, "--index", INDEX], priority=10,
                                processes=counts[svc.name]))
    programs.append(Program("api", [*braid, "api"], priority=20))
    if settings.flower:
        programs.append(Program("flower", [*braid, "flower"], priority=30))
    return programs


def _not_running(state: Path) -> None:
    with control(state) as running:
        if running is not None:
            raise BraidError(f"Braid already runs from the state dir {state} (supervisord pid "
                             f"{running.pid()}): see `braid status`, stop it with `braid down`, "
                             "or give another one its own BRAID_STATE_DIR and ports")


def _ports_free(settings: Settings) -> None:
    """Refuse to start on a port something else listens on: its /readyz would answer for us."""
    import socket

    ports = [("BRAID_API_PORT", settings.api_host, settings.api_port)]
    if settings.flower:
        ports.append(("BRAID_FLOWER_PORT", settings.flower_host, settings.flower_port))
    if settings.redis_url is None:
        ports.append(("BRAID_EMBEDDED_REDIS_PORT", "127.0.0.1", settings.embedded_redis_port))
    for variable, host, port in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise BraidError(f"cannot listen on {host}:{port} ({exc.strerror}): another "
                                 f"program uses it; stop it, or set {variable} to a free port") from None


def _ready_line(seconds: float, url: str) -> str:
    return f"Braid is ready in {seconds:.1f} s: {url} (docs /docs)"


@main.command()
@APP
@click.option("--scale", multiple=True, metavar="SERVICE=N", help="Run N workers for SERVICE.")
@click.option("--bench", is_flag=True, help="Also serve the no-op bench services.")
@click.option("-d", "--detach", is_flag=True, help="Run in the background, logging to files in "
              "the state dir's logs/ (`braid logs`); return once ready. `braid down` stops it.")
def up(apps: tuple[str, ...], scale: tuple[str, ...], bench: bool, detach: bool) -> None:
    """Start everything: Redis (embedded unless BRAID_REDIS_URL), one worker per service,
    the API and Flower; say when it is ready. Ctrl-C stops it all (`braid down` with -d)."""
    from app._readiness import watch
    from app._registry import load

    started = time.monotonic()
    if bench:
        apps = (*(apps or tuple(Settings().apps)), "bench.services")
    settings = _settings(apps)
    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    _not_running(state)
    _ports_free(settings)
    os.environ["BRAID_STATE_DIR"] = str(state)
    os.environ["BRAID_FLOWER_PASSWORD"] = _flower_password(settings)
    if settings.redis_url is None:
        os.environ["BRAID_EMBEDDED_REDIS_PASSWORD"] = _redis_password(settings)
    registry = load(settings.apps)
    _bootstrap_missing(registry.all_services)
    counts = {svc.name: 1 for svc in registry.all_services}
    for item in scale:
        name, _, n = item.partition("=")
        registry.service(name)
        if not n.isdigit() or int(n) < 1:
            raise click.BadParameter(f"{item!r}: write SERVICE=N with N >= 1", param_hint="--scale")
        counts[name] = int(n)
    conf = state / "supervisord.conf"
    _write_private(conf, config(state, _programs(settings, registry, counts), detach))
    _record(state / UP_RECORD, settings.apps)
    url = settings.api_url
    click.echo(f"Braid: {len(registry.services)} services, {len(registry.pipelines)} pipelines")
    click.echo(f"  API     {url}  (docs: /docs)")
    if settings.flower:
        click.echo(f"  Flower  {settings.flower_url}  "
                   f"(user {settings.flower_user}, password in {state / 'flower-password'} "
                   "unless BRAID_FLOWER_PASSWORD is set)")
    click.echo(f"  Redis   {settings.shown_broker_url}" + ("" if settings.redis_url else
               f"  (embedded; password in {settings.redis_password_file})"))
    if detach:
        click.echo(f"  Logs    {log_dir(state)}/<process>.log  (braid logs SERVICE [-f])")
    if os.geteuid() == 0:
        click.echo("note: running as root, so supervisord and every worker run as root too; "
                   "their warnings about it are silenced (workers accept JSON only, never pickle)")
    command = [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)]
    if detach:
        _detached(command, state, url, started, settings.model_load_timeout_s + 30)
        return
    _append_stdout()
    supervisord = subprocess.Popen(command, preexec_fn=_stop_with_parent)

    stopping = False

    def stop(number: int, _: Any) -> None:
        # SIGINT from a terminal's Ctrl-C reached every process already; a SIGTERM (kill,
        # systemd) reached this one only: every program is asked to stop at once, and once
        # (a SIGTERM forwarded to supervisord meanwhile would stop them one by one again)
        nonlocal stopping
        if number == signal.SIGTERM:
            if stopping:
                return
            stopping = True
            if _stopped_at_once(state):
                return
        supervisord.send_signal(number)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    ready = watch(url, started, click.echo, lambda: supervisord.poll() is None)
    if ready.seconds is not None:
        click.echo(_ready_line(ready.seconds, url) + "; Ctrl-C stops it")
    raise SystemExit(supervisord.wait())


def _stopped_at_once(state: Path) -> bool:
    """Whether the supervisord running from ``state`` was told to stop (see
    :meth:`Control.shutdown`); False where it does not answer (yet)."""
    import xmlrpc.client

    with contextlib.suppress(BraidError, OSError, xmlrpc.client.Error), control(state) as running:
        if running is not None:
            running.shutdown(last=(_REDIS,))
            return True
    return False


def _stop_with_parent() -> None:
    """In the foreground supervisord: stop everything when `braid up` dies, however it dies."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _append_stdout() -> None:
    """supervisord appends its programs' output to /dev/stdout through a file description of
    its own: where stdout is a file, this process's lines must append too, or they would
    overwrite that output."""
    import fcntl
    import stat

    sys.stdout.flush()
    if stat.S_ISREG(os.fstat(1).st_mode):
        fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_APPEND)


def _detached(command: list[str], state: Path, url: str, started: float, timeout: float) -> None:
    """Start supervisord in a session of its own, logging to files; return once ready."""
    from app._readiness import watch

    log_dir(state).mkdir(exist_ok=True)
    log = log_dir(state) / "supervisord.log"
    with log.open("ab") as out:
        supervisord = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
    click.echo(f"started in the background (supervisord pid {supervisord.pid})")
    ready = watch(url, started, click.echo, lambda: supervisord.poll() is None, timeout)
    if supervisord.poll() is not None:
        raise BraidError(f"supervisord exited with status {supervisord.returncode}: see {log}")
    if ready.seconds is None:
        raise BraidError(f"not ready after {timeout:.0f} s, still waiting for: {ready.waiting}; "
                         "it keeps running in the background: see `braid status` and "
                         "`braid logs SERVICE`, stop it with `braid down`")
    click.echo(_ready_line(ready.seconds, url))
    click.echo("  braid status | braid logs SERVICE -f | braid restart SERVICE | braid down")


@main.command()
def down() -> None:
    """Stop the Braid that `braid up` (with or without -d) runs from the state dir."""
    state = Settings().state_dir.resolve()
    with control(state) as running:
        if running is None:
            raise BraidError(f"no Braid runs from the state dir {state} (nothing answers on "
                             f"{socket_path(state)}); set BRAID_STATE_DIR to the one it was "
                             "started with")
        pid = running.pid()
        click.echo(f"stopping (supervisord pid {pid}) ...")
        running.shutdown(last=(_REDIS,))
    if not wait_exit(pid, 120):
        raise BraidError(f"supervisord (pid {pid}) still runs after 120 s; `kill {pid}`")
    click.echo("stopped")


@main.command()
@APP
def status(apps: tuple[str, ...]) -> None:
    """Per service: queue depth, live workers, their devices and model versions (from Redis);
    and the state of each program where a `braid up` runs from the state dir."""
    import redis as redis_client

    from app._errors import BrokerUnavailable
    from app._models import ModelStore
    from app._registry import load
    from app._runtime import live_processes
    from app._status import program_lines, queues, service_table

    settings = _served(apps)
    state = settings.state_dir.resolve()
    specs = load(settings.apps).all_services
    programs, header = None, ""
    with control(state) as running:
        if running is not None:
            programs = running.processes()
            where = (f"logs in {log_dir(state)}" if running.detached()
                     else "in the foreground, logging to its terminal")
            header = f"braid up from {state} (supervisord pid {running.pid()}, {where})"
    try:
        stats, live = queues(settings, specs), live_processes(settings)
    except (redis_client.RedisError, OSError) as exc:
        if programs is None:
            raise BrokerUnavailable(
                f"Redis at {settings.shown_broker_url} does not answer ({exc}) and no `braid up` runs "
                f"from {state}: start one with `braid up -d`") from None
        click.echo(f"Redis at {settings.shown_broker_url} does not answer: {exc}")
        stats, live = {}, {}
    store = ModelStore(settings.model_root, settings.allow_hub)
    for line in service_table(specs, stats, live, store, programs):
        click.echo(line)
    click.echo("(DEPTH: steps queued or running; WORKERS: live ones, beating within "
               f"{settings.alive_window_s:g} s)")
    if programs is None:
        click.echo(f"no `braid up` runs from {state}; the workers above are those Redis knows")
        return
    click.echo(header)
    for line in program_lines(programs):
        click.echo(f"  {line}")


def _log_files(state: Path, service: str) -> list[Path]:
    folder = log_dir(state)
    if not folder.is_dir():
        return []
    worker = re.compile(rf"{re.escape(worker_group(service))}-(\d+)\.log")
    numbered = sorted((int(m.group(1)), p) for p in folder.iterdir()
                      if (m := worker.fullmatch(p.name)))
    own = folder / f"{service}.log"
    return [p for _, p in numbered] or ([own] if own.exists() else [])


@main.command()
@click.argument("service")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("-n", "--lines", default=50, show_default=True, help="How many last lines.")
def logs(service: str, follow: bool, lines: int) -> None:
    """Print SERVICE's log lines (all its workers'; also api, flower, redis, supervisord) of
    the Braid that `braid up -d` runs from the state dir."""
    from app._tail import tail

    state = Settings().state_dir.resolve()
    with control(state) as running:
        if running is not None and not running.detached():
            raise BraidError(f"the Braid running from {state} was started in the foreground: "
                             "its logs go to the terminal of its `braid up` (`braid up -d` "
                             f"keeps them in {log_dir(state)})")
    files = _log_files(state, service)
    if not files:
        known = sorted({re.sub(r"^worker-(.*)-\d+$", r"\1", p.stem)
                        for p in log_dir(state).glob("*.log")})
        raise BraidError(f"no log of {service!r} in {log_dir(state)}; "
                         + (f"there are logs of: {', '.join(known)}" if known
                            else "start Braid with `braid up -d` to log there"))
    with contextlib.suppress(KeyboardInterrupt):
        tail(files, lines, follow, click.echo)


@main.command()
@click.argument("services", nargs=-1, required=True)
def restart(services: tuple[str, ...]) -> None:
    """Restart the workers of each SERVICE (so they load the store's latest models, e.g. after
    `braid models import`) in the Braid that `braid up` runs from the state dir; api, flower
    and redis can be restarted too. Returns once each service is live again."""
    from app._errors import ServiceNotFound

    settings = _served(())
    state = settings.state_dir.resolve()
    with control(state) as running:
        if running is None:
            raise BraidError(f"no Braid runs from the state dir {state}, so nothing to restart; "
                             "set BRAID_STATE_DIR to the one `braid up` was started with")
        groups = running.groups()
        targets = []
        for name in services:
            group = worker_group(name) if worker_group(name) in groups else name
            if group not in groups:
                served = sorted(g.removeprefix("worker-") for g in groups)
                raise ServiceNotFound(f"no service {name!r} runs here; it runs: {', '.join(served)}")
            targets.append((name, group))
        for name, group in targets:
            since = time.time()
            click.echo(f"restarting {name} ...")
            running.restart(group)
            if group == worker_group(name):
                _wait_live(settings, name, since)


def _wait_live(settings: Settings, service: str, since: float) -> None:
    """Wait until a process of ``service`` started after ``since`` has loaded its model."""
    import redis as redis_client

    from app._runtime import live_processes

    deadline = time.monotonic() + settings.model_load_timeout_s
    while time.monotonic() < deadline:
        try:
            fresh = [p for p in live_processes(settings).get(service, [])
                     if p.get("since", 0) >= since]
        except redis_client.RedisError:
            fresh = []
        if fresh:
            loaded = sorted({tag for p in fresh for tag in p.get("models", [])})
            click.echo(f"{service} is live again in {time.time() - since:.1f} s"
                       + (f", serving {', '.join(loaded)}" if loaded else ""))
            return
        time.sleep(0.25)
    raise BraidError(f"{service} is not live {settings.model_load_timeout_s:g} s after its "
                     f"restart: see `braid logs {service}`")


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the table of every variable, its default "
              "and what it does (the README's).")
def settings_command(markdown: bool) -> None:
    """Show every BRAID_* setting in effect (secrets hidden), noting those the environment
    sets."""
    from app._settings import settings_lines, settings_table

    if markdown:
        click.echo(settings_table(), nl=False)
        return
    for line in settings_lines(Settings(), os.environ):
        click.echo(line)


def run() -> None:
    """The console script: Braid's errors become one line and exit status 1."""
    try:
        main()
    except BraidError as exc:
        raise SystemExit(f"braid: {exc.message}") from None


if __name__ == "__main__":
    run()
