"""`pip install braid[models]` installs everything Braid's own code imports."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib

from packaging.requirements import Requirement

from tests.harness import ROOT

OURS = {"app", "api", "workers", "bench", "tests"}


def _name(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _imported(package: str) -> set[str]:
    """Top-level modules that the package's source imports (also inside functions)."""
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - OURS - set(sys.stdlib_module_names) - {"__future__"}


def _installed_by(declared: list[str]) -> set[str]:
    """The distributions that installing ``declared`` brings, dependencies included."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in declared]
    while todo:
        requirement = todo.pop()
        name = _name(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate()):
            continue
        seen.add(name)
        todo.extend(Requirement(r) for r in metadata.requires(name) or [])
    return seen


def test_every_module_braid_imports_comes_with_the_package_and_its_models_extra() -> None:
    # given the package's declared dependencies, and its models extra
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = _installed_by([*project["dependencies"], *project["optional-dependencies"]["models"]])
    providers = metadata.packages_distributions()
    # when the modules that app/, api/ and workers/ import are traced to their distributions
    missing = {module: providers.get(module) for package in ("app", "api", "workers")
               for module in _imported(package)
               if not {_name(d) for d in providers.get(module, [])} & installed}
    # then each is installed by `pip install braid[models]` (not only by the Makefile)
    assert missing == {}
