"""The BentoML peers: BentoML in a venv of its own under the state dir (never in Braid's
dependencies), and one ``bentoml serve`` per graph service of a module of
``bench/bentoml_peer/``: ``service`` (the stock peer) or ``batched`` (adaptive batching)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from bench.procs import Group
from bench.systems import System, free_port, models_dir, ok_json
from bench.workloads import Workload

BENTOML = "bentoml==1.4.40"
PEER_DIR = Path(__file__).resolve().parent / "bentoml_peer"
# the model folders the peer loads, by the tags Braid's services declare
MODELS = {"BENCH_GPT2_MODEL": "gpt2:latest", "BENCH_DISTILGPT2_MODEL": "distilgpt2:latest",
          "BENCH_BERT_MODEL": "bert-sentiment:latest"}


def _pins() -> list[str]:
    # the model stack exactly as Braid's venv has it, torch's build included (2.13.0+cpu here):
    # an unpinned torch would pull the multi-GB CUDA build, and other versions would not compare
    pins = []
    for name, fallback in (("torch", "2.13.0"), ("transformers", "5.24.0"),
                           ("tokenizers", "0.23.3")):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = fallback
        pins.append(f"{name}=={version}")
    return pins


def _pip(venv: Path, args: list[str], log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                               "--disable-pip-version-check", *args],
                              stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise SystemExit(f"installing {' '.join(args)} failed; {log}:\n{tail}")


def ensure_venv(root: Path, logs: Path) -> Path:
    """The BentoML venv under ``root``, made (about a minute) unless its stamp says it holds
    exactly these pins already."""
    venv = root / "bentoml-venv"
    stamp = venv / ".bench-installed"
    pins = [*_pins(), BENTOML]
    if stamp.exists() and stamp.read_text().split() == pins:
        return venv
    print(f"installing {' '.join(pins)} into {venv} (about a minute) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    log = logs / "bentoml-install.log"
    log.write_bytes(b"")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _pip(venv, [pins[0]], log)  # torch first, alone, so nothing else picks its build
    _pip(venv, pins, log)
    stamp.write_text("\n".join(pins) + "\n")
    return venv


class BentoML(System):
    """A single request per job to the graph service's API."""

    def __init__(self, name: str, urls: dict[str, str], groups: list[Group],
                 workloads: tuple[Workload, ...]) -> None:
        super().__init__(name, groups, workloads)
        self.urls = urls

    async def call(self, http: httpx.AsyncClient, workload: Workload,
                   body: dict[str, Any] | None = None) -> Any:
        assert workload.peer is not None, f"{workload.name} has no BentoML peer"
        service, route = workload.peer
        return ok_json(await http.post(f"{self.urls[service]}{route}",
                                       json=workload.body if body is None else body))


def _env(venv: Path, root: Path) -> dict[str, str]:
    from app import _models

    store = _models.ModelStore(models_dir())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BRAID_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update({k: str(store.get(tag).path) for k, tag in MODELS.items()})
    env.update({"PATH": f"{venv / 'bin'}:{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv),
                "BENTOML_HOME": str(root / "bentoml-home"), "BENTOML_DO_NOT_TRACK": "True",
                "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                # one torch thread per process, as Braid's workers (BRAID_TORCH_THREADS=1)
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return env


def start_bentoml(venv: Path, root: Path, logs: Path, workloads: tuple[Workload, ...],
                  name: str = "BentoML", module: str = "service") -> BentoML:
    """``bentoml serve`` of each workload's graph service in ``module`` (it starts the services
    that one depends on, a process each), on free ports."""
    env = _env(venv, root)
    urls: dict[str, str] = {}
    groups = []
    for service in sorted({w.peer[0] for w in workloads if w.peer is not None}):
        port = free_port()
        command = [str(venv / "bin" / "bentoml"), "serve", f"{module}:{service}",
                   "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(PEER_DIR)]
        groups.append(Group(f"bentoml serve {module}:{service}", command, env, PEER_DIR,
                            logs / f"bentoml-{module}-{service}.log"))
        urls[service] = f"http://127.0.0.1:{port}"
    return BentoML(name, urls, groups, workloads)
