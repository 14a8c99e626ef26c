"""The `braid` commands a user meets first, without a running system: the model store's
import and list, the settings, and what the commands about a running system say when none
runs. Each runs the real command line, in a state dir of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from app._settings import settings_table
from tests.harness import ROOT, free_port

APP = '''
from app import api, service


@service(models=["toy:latest"])
class FollowsLatest:
    def __init__(self) -> None:
        pass

    @api
    def ping(self) -> str:
        return "pong"


@service(models=["toy"])
class AlsoLatest:
    def __init__(self) -> None:
        pass

    @api
    def ping(self) -> str:
        return "pong"


@service(models=["toy:v1"])
class Pinned:
    def __init__(self) -> None:
        pass

    @api
    def ping(self) -> str:
        return "pong"
'''


Braid = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def braid(tmp_path: Path) -> Braid:
    """Run `braid ARGS` with a fresh state dir and model store, serving the toy app."""
    (tmp_path / "toy_app.py").write_text(textwrap.dedent(APP))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAID_")}
    env.update({"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "BRAID_APPS": "toy_app",
                "BRAID_STATE_DIR": str(tmp_path / "state"),
                "BRAID_MODELS_DIR": str(tmp_path / "models"),
                "BRAID_EMBEDDED_REDIS_PORT": str(free_port())})

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=tmp_path,
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)

    return run


def _weights(folder: Path, name: str = "model.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"weight": np.zeros((2, 2), dtype=np.float32)}, str(folder / name))
    return folder


def test_import_refuses_a_transformers_folder_without_config_json_and_stores_nothing(
        braid: Braid, tmp_path: Path) -> None:
    """Given a folder with weights but no config.json, importing it as transformers fails
    with one line naming what is missing and how to fix it, and the store stays empty."""
    result = braid("models", "import", "toy", str(_weights(tmp_path / "checkpoint")))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "cannot be loaded as a transformers model: it has no config.json" in result.stderr
    assert "save_pretrained" in result.stderr and "--framework torch" in result.stderr
    assert not (tmp_path / "models" / "toy").exists()


def test_import_refuses_a_folder_without_weights(braid: Braid, tmp_path: Path) -> None:
    folder = tmp_path / "empty-ish"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    result = braid("models", "import", "toy", str(folder), "--framework", "torch")
    assert result.returncode == 1
    assert "it has no weights (*.safetensors or *.pt or *.pth)" in result.stderr
    assert not (tmp_path / "models" / "toy").exists()


def test_import_names_the_services_to_restart_to_serve_the_new_latest(braid: Braid, tmp_path: Path) -> None:
    """Given services that ask for toy:latest, toy and toy:v1, importing toy says to restart
    the two that follow latest, not the pinned one."""
    result = braid("models", "import", "toy", str(_weights(tmp_path / "head")),
                   "--framework", "torch")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith("toy:v1 (latest)  ")
    assert second == "restart its services to serve it: braid restart follows-latest also-latest"


def test_import_of_a_model_no_service_asks_for_says_how_to_declare_it(braid: Braid, tmp_path: Path) -> None:
    result = braid("models", "import", "other", str(_weights(tmp_path / "head", "w.pt")),
                   "--framework", "torch")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        'no service of toy_app serves other:latest; declare it with '
        '@service(models=["other:latest"])')


def test_list_marks_the_latest_version_of_each_model(braid: Braid, tmp_path: Path) -> None:
    folder = _weights(tmp_path / "head")
    for _ in range(2):
        assert braid("models", "import", "toy", str(folder), "--framework", "torch").returncode == 0
    tags = [line.split("  ")[0].strip() for line in braid("models", "list").stdout.splitlines()]
    assert tags == ["toy:v1", "toy:v2 (latest)"]


def test_list_of_an_empty_store_says_how_to_fill_it(braid: Braid) -> None:
    out = braid("models", "list").stdout
    assert "is empty: `braid models bootstrap` builds the demo models" in out


def test_the_readme_settings_table_is_what_braid_settings_markdown_prints(braid: Braid) -> None:
    """The README documents every BRAID_* variable, its default and what it does, as
    generated from the Settings object."""
    printed = braid("settings", "--markdown").stdout
    assert printed == settings_table()
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    table = "".join(line + "\n" for line in section.splitlines() if line.startswith("|"))
    assert table == printed, "the README's settings table is stale: paste `braid settings --markdown`"


def test_settings_shows_what_is_in_effect_hiding_secrets(braid: Braid) -> None:
    lines = braid("settings", BRAID_API_KEYS="k1,k2", BRAID_API_PORT="9001").stdout.splitlines()
    assert "BRAID_API_KEYS=***,***   # from the environment" in lines
    assert "BRAID_API_PORT=9001   # from the environment" in lines
    assert "BRAID_FLOWER_PORT=5555" in lines
    assert "BRAID_REDIS_URL=(unset)" in lines


@pytest.mark.parametrize(("args", "says"), [
    (("down",), "braid: no Braid runs from the state dir "),
    (("restart", "follows-latest"), "braid: no Braid runs from the state dir "),
    (("logs", "follows-latest"), "braid: no log of 'follows-latest' in "),
    (("status",), "braid: Redis at redis://127.0.0.1:"),
])
def test_commands_about_a_running_system_say_in_one_line_that_none_runs(
        braid: Braid, args: tuple[str, ...], says: str) -> None:
    result = braid(*args)
    assert result.returncode == 1
    assert result.stderr.startswith(says) and result.stderr.count("\n") == 1, result.stderr
    assert "braid up -d" in result.stderr or "BRAID_STATE_DIR" in result.stderr


def test_up_refuses_a_port_another_program_listens_on_naming_the_setting(braid: Braid) -> None:
    """Given a program listening on the API's port, `braid up` starts nothing and says which
    setting to change (else another program's /readyz could answer for it)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = braid("up", BRAID_API_PORT=str(port), BRAID_FLOWER="0")
    assert result.returncode == 1
    assert result.stderr == (f"braid: cannot listen on 127.0.0.1:{port} (Address already in use): "
                             "another program uses it; stop it, or set BRAID_API_PORT to a free "
                             "port\n")
