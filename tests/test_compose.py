"""compose.yaml and the Dockerfile match the service declarations."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from typing import Any

import yaml

from app._registry import load
from tests.harness import ROOT


def _generated() -> str:
    return subprocess.run([sys.executable, "-m", "app.cli", "compose"], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("BRAID_")}).stdout


def test_committed_compose_file_is_what_braid_compose_prints() -> None:
    assert (ROOT / "compose.yaml").read_text() == _generated(), \
        "compose.yaml is stale: run `braid compose > compose.yaml`"


def test_compose_file_validates_with_docker_compose() -> None:
    env = {**os.environ, "BRAID_REDIS_PASSWORD": "test", "BRAID_FLOWER_PASSWORD": "test"}
    out = subprocess.run(["docker-compose", "-f", "compose.yaml", "config", "-q"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_every_model_service_has_its_own_compose_service_with_its_resources() -> None:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = document["services"]
    registry = load(["workers"])
    for spec in registry.all_services:
        entry = services[spec.name]
        assert entry["command"] == ["braid", "worker", spec.name]
        resources = entry["deploy"]["resources"]
        assert resources["limits"]["cpus"] == str(spec.resources.cpu)
        devices = resources.get("reservations", {}).get("devices", [])
        assert [d["count"] for d in devices] == ([spec.resources.gpu] if spec.resources.gpu else [])
        assert entry["healthcheck"]["test"] == ["CMD", "braid", "ping", spec.name]
        assert entry["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["image-model"]["deploy"]["resources"]["limits"]["memory"] == "4g"
    for name in ("redis", "api", "flower"):
        assert "healthcheck" in services[name]


def test_no_secret_is_written_in_the_compose_file() -> None:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    secrets = 0
    for service in document["services"].values():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key or "KEYS" in key:
                assert re.fullmatch(r"\$\{[A-Z_]+(:[-?][^}]*)?\}", value), (key, value)
                secrets += 1
            if key == "BRAID_REDIS_URL":
                assert value.startswith("redis://:${BRAID_REDIS_PASSWORD"), value
    assert secrets >= 3


def test_api_image_installs_no_model_stack() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    api_stage = dockerfile.split("FROM base AS api", 1)[1].split("\nFROM ", 1)[0]
    installs = [line for line in api_stage.splitlines() if "pip install" in line]
    assert installs == ["RUN pip install ."]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert "torch" not in base and "transformers" not in base
    assert any(d.startswith("torch") for d in project["optional-dependencies"]["models"])
