"""The model store: model folders under ``<store>/<name>/<version>/``, each with a
``braid-model.json`` (task, framework, created, size, sha256 of its files).

Tags are ``name:version`` and ``name:latest`` (the newest version). A service resolves its
model at load time: ``models.get("gpt2:latest").path``. A name the store lacks is taken as a
Hugging Face hub id when ``BRAID_ALLOW_HUB`` is on, else it is an error that says how to fix it.

A folder is stored only if its framework's loader can read it: ``transformers`` needs a
``config.json`` and weights, ``torch`` weights (see :func:`check_loadable`).

Stand-ins are small generated models for demos and tests; a module registers one with
:func:`stand_in`, and ``braid models bootstrap`` builds every registered one that is missing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from app._errors import InvalidInput, ModelNotFound
from app._settings import get_settings

__all__ = ["FRAMEWORKS", "Model", "ModelStore", "check_loadable", "get", "stand_in", "stand_ins",
           "store"]

META = "braid-model.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Model:
    """One stored model version."""

    name: str
    version: str
    path: Path
    task: str | None
    framework: str
    created: str
    size: int
    sha256: str

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    def describe(self) -> dict[str, object]:
        info = asdict(self)
        info["path"] = str(self.path)
        info["tag"] = self.tag
        return info


def _digest(folder: Path) -> tuple[int, str]:
    total, outer = 0, hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != META):
        inner = hashlib.sha256()
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                inner.update(chunk)
        total += file.stat().st_size
        outer.update(f"{file.relative_to(folder)}\0{inner.hexdigest()}\n".encode())
    return total, outer.hexdigest()


_WEIGHTS = {
    "transformers": ("*.safetensors", "*.bin"),
    "torch": ("*.safetensors", "*.pt", "*.pth"),
}
FRAMEWORKS = tuple(_WEIGHTS)
"""The frameworks whose folders the store checks before storing them."""

_HOW = {
    "transformers": "save it with `model.save_pretrained(folder)` (and the tokenizer's or "
                    "processor's `save_pretrained(folder)`)",
    "torch": "save the weights with `safetensors.torch.save_file(state_dict, "
             "folder / 'model.safetensors')` or `torch.save`",
}


def check_loadable(folder: Path, framework: str) -> None:
    """Refuse a folder that ``framework``'s loader cannot read, naming what is missing and
    how to make it (other frameworks are not checked)."""
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder: give the folder the model was saved in")
    patterns = _WEIGHTS.get(framework)
    if patterns is None:
        return
    what = []
    if framework == "transformers" and not (folder / "config.json").is_file():
        what.append("no config.json")
    if not any(next(folder.glob(pattern), None) for pattern in patterns):
        what.append(f"no weights ({' or '.join(patterns)})")
    if what:
        other = [f for f in FRAMEWORKS if f != framework]
        raise InvalidInput(
            f"{folder} cannot be loaded as a {framework} model: it has {' and '.join(what)}; "
            f"{_HOW[framework]}, or import it with --framework {' or '.join(other)} if that "
            "is what it is"
        )


def _split(tag: str) -> tuple[str, str]:
    name, _, version = tag.partition(":")
    return name, version or "latest"


class ModelStore:
    """Models under ``root``; safe against concurrent readers (versions appear atomically)."""

    def __init__(self, root: Path, allow_hub: bool = False) -> None:
        self.root = root
        self.allow_hub = allow_hub

    def _versions(self, name: str) -> list[Path]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if (p / META).exists() and p.name.startswith("v")]
        return sorted(found, key=lambda p: int(p.name[1:]) if p.name[1:].isdigit() else -1)

    def _load(self, folder: Path) -> Model:
        meta = json.loads((folder / META).read_text())
        return Model(meta["name"], meta["version"], folder, meta.get("task"),
                     meta.get("framework", "transformers"), meta["created"], meta["size"],
                     meta["sha256"])

    def list(self) -> list[Model]:
        """Every stored version, by name then version."""
        if not self.root.is_dir():
            return []
        return [self._load(v) for n in sorted(p.name for p in self.root.iterdir())
                for v in self._versions(n)]

    def find(self, tag: str) -> Model | None:
        name, version = _split(tag)
        versions = self._versions(name)
        if not versions:
            return None
        if version == "latest":
            return self._load(versions[-1])
        folder = self.root / name / version
        return self._load(folder) if folder in versions else None

    def get(self, tag: str) -> Model:
        """The model tagged ``tag`` (``name`` alone means ``name:latest``)."""
        found = self.find(tag)
        if found is not None:
            return found
        name, version = _split(tag)
        if self.allow_hub and version == "latest":
            return Model(name, "hub", Path(name), None, "transformers", "", 0, "")
        raise ModelNotFound(
            f"model {tag!r} is not in the model store ({self.root}); run `braid models "
            f"bootstrap` for the demo models, `braid models import {name} PATH` for your own, "
            "or allow the hub (BRAID_ALLOW_HUB=1) where it is reachable"
        )

    def add(self, name: str, source: Path, task: str | None = None,
            framework: str = "transformers") -> Model:
        """Copy the model folder ``source`` into the store as the next version of ``name``
        (refused, with nothing stored, if ``framework``'s loader cannot read it)."""
        if not _NAME.match(name):
            raise InvalidInput(f"model name {name!r}: use lowercase letters, digits, '.', '_' "
                               "and '-', starting with a letter or digit")
        check_loadable(source, framework)
        (self.root / name).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root / name, prefix=".import-"))
        try:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            size, digest = _digest(tmp)
            while True:
                versions = self._versions(name)
                last = int(versions[-1].name[1:]) if versions else 0
                version = f"v{last + 1}"
                meta = {"name": name, "version": version, "task": task, "framework": framework,
                        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        "size": size, "sha256": digest}
                (tmp / META).write_text(json.dumps(meta, indent=2))
                try:
                    tmp.rename(self.root / name / version)
                    break
                except OSError:
                    if not (self.root / name / version).exists():
                        raise
            return self._load(self.root / name / version)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def remove(self, tag: str) -> Model:
        model = self.find(tag)
        if model is None:
            raise ModelNotFound(f"model {tag!r} is not in the model store ({self.root})")
        shutil.rmtree(model.path)
        return model


def store() -> ModelStore:
    """The store configured by ``BRAID_MODELS_DIR`` (default ``<state dir>/models``)."""
    settings = get_settings()
    return ModelStore(settings.model_root, settings.allow_hub)


def get(tag: str) -> Model:
    """The model tagged ``tag`` in the configured store: ``models.get("gpt2:latest").path``."""
    return store().get(tag)


@dataclass(frozen=True)
class StandIn:
    name: str
    task: str | None
    framework: str
    build: Callable[[Path], None]


_STAND_INS: dict[str, StandIn] = {}


def stand_in(name: str, task: str | None = None,
             framework: str = "transformers") -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    """Register ``build(folder)`` as the way ``braid models bootstrap`` makes model ``name``."""

    def register(build: Callable[[Path], None]) -> Callable[[Path], None]:
        _STAND_INS[name] = StandIn(name, task, framework, build)
        return build

    return register


def stand_ins() -> dict[str, StandIn]:
    return dict(_STAND_INS)


def bootstrap(target: ModelStore, names: list[str] | None = None,
              echo: Callable[[str], None] = print) -> list[Model]:
    """Build and import every registered stand-in (or those in ``names``) the store lacks."""
    made = []
    for item in _STAND_INS.values():
        if (names is not None and item.name not in names) or target.find(item.name):
            continue
        echo(f"building {item.name} ...")
        with tempfile.TemporaryDirectory() as tmp:
            item.build(Path(tmp))
            made.append(target.add(item.name, Path(tmp), item.task, item.framework))
        echo(f"  {made[-1].tag}  {made[-1].size / 1e6:.1f} MB  sha256 {made[-1].sha256[:12]}")
    return made
