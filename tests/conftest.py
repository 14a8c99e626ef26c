"""Session fixtures: one real Braid system (Redis, a worker per test service, the API)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import System

SERVICES = ["braid", "echo", "slow", "gpu-model", "calc", "text-model"]


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Redis, one worker per service of tests.apps (and the demo TextModel), the API."""
    sys_ = System(tmp_path_factory.mktemp("system"), "tests.apps,workers")
    try:
        sys_.start_redis()
        for svc in SERVICES:
            sys_.start_worker(svc)
        sys_.start_api()
        sys_.wait_workers(SERVICES)
        yield sys_
    finally:
        sys_.close()


@pytest.fixture
def http(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.url, timeout=30) as client:
        yield client


def pytest_configure(config: pytest.Config) -> None:
    Path(__file__).resolve().parent.parent.joinpath(".braid").mkdir(exist_ok=True)
