"""Session fixtures: one real Braid system (Redis, a worker per test service, the API)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import MODELS, ROOT, System

SERVICES = ["braid", "echo", "slow", "gpu-model", "calc", "batcher", "source", "sink"]
WINDOW = 8
"""The stream window of the session's system (BRAID_STREAM_WINDOW): small, so that a slow
reader holds its writer back within a few chunks."""


@pytest.fixture(scope="session")
def model_store() -> Path:
    """The demo models, built once into .braid/models by `braid models bootstrap`."""
    subprocess.run([sys.executable, "-m", "app.cli", "models", "bootstrap"], cwd=ROOT, check=True,
                   env={**os.environ, "BRAID_MODELS_DIR": str(MODELS), "HF_HUB_OFFLINE": "1"},
                   capture_output=True, timeout=300)
    return MODELS


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Redis, one worker per service of tests.apps, the API."""
    sys_ = System(tmp_path_factory.mktemp("system"), "tests.apps",
                  BRAID_STREAM_WINDOW=str(WINDOW))
    try:
        yield sys_.up(SERVICES)
    finally:
        sys_.close()


@pytest.fixture
def http(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.url, timeout=30) as client:
        yield client


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    MODELS.mkdir(parents=True, exist_ok=True)
