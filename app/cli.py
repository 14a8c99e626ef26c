"""The ``braid`` command."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app._errors import BraidError
from app._settings import Settings

if TYPE_CHECKING:
    from app._client import Client

__all__ = ["main"]


def _settings(apps: tuple[str, ...]) -> Settings:
    """Settings from the environment; ``--app`` overrides BRAID_APPS here and in children.
    Like ``celery -A``, app modules are also looked up in the current directory."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if apps:
        os.environ["BRAID_APPS"] = ",".join(apps)
    return Settings()


def _worker_env(settings: Settings) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
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

    from app._celery import create_celery, visibility_timeout
    from app._logging import setup_logging
    from app._registry import load
    from app._runtime import register

    settings = _settings(apps)
    _worker_env(settings)
    registry = load(settings.apps)
    svc = registry.service(service)
    _check_models(svc.models)
    import socket

    from app._runtime import NODE_ENV

    number = os.getpid() if index is None else index
    name = f"{svc.name}@{socket.gethostname()}-{number}"
    os.environ[NODE_ENV] = name
    setup_logging(f"worker:{svc.name}-{number}", settings.log_level, settings.log_json)
    if autoscale and (svc.resources.gpu or not all(p.isdigit() for p in autoscale.split(","))):
        raise click.BadParameter("write MAX,MIN (numbers), for CPU services only",
                                 param_hint="--autoscale")
    size = concurrency or (max(1, svc.resources.gpu) if svc.resources.gpu else svc.concurrency)
    if settings.max_concurrency:
        size = min(size, settings.max_concurrency)
    # one process at a time: run steps in the worker itself, without prefork's pipe hop
    solo = size == 1 and not autoscale
    celery = create_celery(settings, registry.all_services)
    register(celery, svc, settings, solo, int(visibility_timeout(settings, registry.all_services)))
    from celery.signals import setup_logging as celery_logging

    celery_logging.connect(lambda **_: None, weak=False)
    if settings.log_level.upper() != "DEBUG":
        # Celery's "Task ... received/succeeded" lines: two per step, each relayed by the
        # supervisor; steps are logged (at DEBUG) by Braid's own hooks instead
        for logger in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(logger).setLevel(logging.WARNING)
    argv = ["worker", "-Q", svc.queue, "-n", name, "-P", "solo" if solo else "prefork",
            "-l", settings.log_level, "--without-mingle", "--without-gossip"]
    if not solo:
        argv += [f"--autoscale={autoscale}"] if autoscale else ["-c", str(size)]
    if settings.task_events:
        argv.append("-E")
    if svc.resources.memory_bytes and not solo:
        argv += ["--max-memory-per-child", str(svc.resources.memory_bytes // 1024)]
    celery.worker_main(argv)


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
    since = time.time() - 3 * settings.heartbeat_s
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
    """Run Flower, behind basic auth, bound to BRAID_FLOWER_HOST (localhost by default)."""
    from app._celery import create_celery
    from app._logging import setup_logging
    from app._registry import load

    settings = _settings(apps)
    if settings.flower_password is None:
        raise click.UsageError("set BRAID_FLOWER_PASSWORD: Flower never runs without auth")
    setup_logging("flower", settings.log_level, settings.log_json)
    registry = load(settings.apps)
    celery = create_celery(settings, registry.all_services)
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
        info["apis"] = [a.task_name for a in svc.apis.values()]
        info["processes"] = live.get(svc.name, [])
        click.echo(json.dumps(info))


@main.group()
def models() -> None:
    """The model store: list, import, get, rm, bootstrap."""


@models.command("list")
def models_list() -> None:
    """Every stored model version: tag, task, size, sha256."""
    from app import _models

    for model in _models.store().list():
        click.echo(f"{model.tag:<32} {model.task or '-':<22} {model.framework:<12} "
                   f"{model.size / 1e6:8.1f} MB  sha256:{model.sha256}  {model.created}")


@models.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--task", default=None, help="e.g. text-generation")
@click.option("--framework", default="transformers")
def models_import(name: str, path: Path, task: str | None, framework: str) -> None:
    """Copy the model folder PATH into the store as the next version of NAME."""
    from app import _models

    model = _models.store().add(name, path, task, framework)
    click.echo(f"{model.tag}  {model.size / 1e6:.1f} MB  sha256:{model.sha256}")


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

    from app._redis_server import redis_command

    settings = Settings()
    command = redis_command(settings.embedded_redis_port, settings.state_dir / "redis")
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: server.send_signal(number))
    prefix = f"{'redis':<22}| ".encode()
    assert server.stdout is not None
    for line in server.stdout:
        sys.stdout.buffer.write(prefix + line)
        sys.stdout.buffer.flush()
    raise SystemExit(server.wait())


URL = click.option("--url", default=None, help="The API (default http://BRAID_API_HOST:PORT).")


def _client(url: str | None) -> Client:
    from app._client import Client

    settings = Settings()
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return Client(url or f"http://{settings.api_host}:{settings.api_port}", api_key=key)


@main.command()
@URL
@click.argument("pipeline")
@click.option("--input", "inputs", default="{}", help="The request body, a JSON object.")
@click.option("--wait", "wait_", is_flag=True, help="Show progress and print the result.")
def submit(url: str | None, pipeline: str, inputs: str, wait_: bool) -> None:
    """Submit a job of PIPELINE (or SERVICE.API); print its id, or with --wait its result."""
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
        click.echo(json.dumps(job.result(timeout=0), indent=2))


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


def _flower_password(settings: Settings) -> str:
    if settings.flower_password is not None:
        return settings.flower_password.get_secret_value()
    path = settings.state_dir / "flower-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
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


def _program(name: str, command: list[str], **extra: Any) -> str:
    options = {
        "command": shlex.join(command), "autostart": "true", "autorestart": "true",
        "startsecs": "2", "startretries": "10", "stopasgroup": "true", "killasgroup": "true",
        "stopsignal": "TERM", "stopwaitsecs": "20", "redirect_stderr": "true",
        "stdout_logfile": "/dev/stdout", "stdout_logfile_maxbytes": "0", **extra,
    }
    return f"[program:{name}]\n" + "".join(f"{k}={v}\n" for k, v in options.items())


@main.command()
@APP
@click.option("--scale", multiple=True, metavar="SERVICE=N", help="Run N workers for SERVICE.")
@click.option("--bench", is_flag=True, help="Also serve the no-op bench services.")
def up(apps: tuple[str, ...], scale: tuple[str, ...], bench: bool) -> None:
    """Start everything: Redis (embedded unless BRAID_REDIS_URL), one worker per service,
    the API and Flower. Ctrl-C stops it all."""
    from app._registry import load

    if bench:
        apps = (*(apps or tuple(Settings().apps)), "bench.services")
    settings = _settings(apps)
    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    os.environ["BRAID_STATE_DIR"] = str(state)
    os.environ["BRAID_FLOWER_PASSWORD"] = _flower_password(settings)
    registry = load(settings.apps)
    _bootstrap_missing(registry.all_services)
    counts = {svc.name: 1 for svc in registry.all_services}
    for item in scale:
        name, _, n = item.partition("=")
        registry.service(name)
        if not n.isdigit() or int(n) < 1:
            raise click.BadParameter(f"{item!r}: write SERVICE=N with N >= 1", param_hint="--scale")
        counts[name] = int(n)
    braid = [sys.executable, "-m", "app.cli"]
    programs = []
    if settings.redis_url is None:
        programs.append(_program("redis", [*braid, "redis"], priority="1", startsecs="1"))
    for svc in registry.all_services:
        for i in range(counts[svc.name]):
            label = f"worker-{svc.name}" + (f"-{i}" if counts[svc.name] > 1 else "")
            programs.append(_program(label, [*braid, "worker", svc.name, "--index", str(i)],
                                     priority="10"))
    programs.append(_program("api", [*braid, "api"], priority="20"))
    if settings.flower:
        programs.append(_program("flower", [*braid, "flower"], priority="30"))
    conf = state / "supervisord.conf"
    conf.write_text(
        "[supervisord]\nnodaemon=true\nlogfile=/dev/null\nlogfile_maxbytes=0\n"
        f"pidfile={state / 'supervisord.pid'}\nloglevel=warn\n\n" + "\n".join(programs)
    )
    click.echo(f"Braid: {len(registry.services)} services, {len(registry.pipelines)} pipelines")
    click.echo(f"  API     http://{settings.api_host}:{settings.api_port}  (docs: /docs)")
    click.echo(f"  Flower  http://{settings.flower_host}:{settings.flower_port}  "
               f"(user {settings.flower_user}, password in {state / 'flower-password'} "
               "unless BRAID_FLOWER_PASSWORD is set)")
    click.echo(f"  Redis   {settings.broker_url}")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)])


def run() -> None:
    """The console script: Braid's errors become one line and exit status 1."""
    try:
        main()
    except BraidError as exc:
        raise SystemExit(f"braid: {exc.message}") from None


if __name__ == "__main__":
    run()
