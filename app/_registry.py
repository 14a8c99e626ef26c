"""Finding services and pipelines: import the configured modules (and, for packages, every
module inside them) so that their ``@service`` and ``@pipeline`` declarations run."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app._errors import DeclarationError, PipelineNotFound, ServiceNotFound
from app._pipeline import Pipeline, pipelines, single_api_pipeline
from app._service import ApiSpec, Resources, ServiceSpec, services

__all__ = ["CORE", "Registry", "load"]

CORE = ServiceSpec(
    name="braid", cls=object, queue="braid", resources=Resources(cpu=1), timeout=10.0,
    concurrency=1,
)
"""The built-in service: runs map fan-outs and collections, and Celery's own ``celery.*``
tasks. ``braid up`` always starts one worker for it."""


@dataclass(frozen=True)
class Registry:
    """The services and pipelines of the loaded modules."""

    services: Mapping[str, ServiceSpec]
    pipelines: Mapping[str, Pipeline]

    def service(self, name: str) -> ServiceSpec:
        if name == CORE.name:
            return CORE
        try:
            return self.services[name]
        except KeyError:
            raise ServiceNotFound(
                f"no service {name!r}; known services: {', '.join(sorted(self.services)) or 'none'}"
            ) from None

    def api(self, service: str, api: str) -> ApiSpec:
        svc = self.service(service)
        try:
            return svc.apis[api]
        except KeyError:
            raise ServiceNotFound(
                f"service {service!r} has no API {api!r}; its APIs: {', '.join(sorted(svc.apis))}"
            ) from None

    def pipeline(self, name: str) -> Pipeline:
        try:
            return self.pipelines[name]
        except KeyError:
            raise PipelineNotFound(
                f"no pipeline {name!r}; known pipelines: {', '.join(sorted(self.pipelines)) or 'none'}"
            ) from None

    def api_pipeline(self, service: str, api: str) -> Pipeline:
        return single_api_pipeline(self.api(service, api), self.service(service))

    def job_pipeline(self, name: str) -> Pipeline:
        """The pipeline a job's record names (``service.api`` for a direct call of an API)."""
        service, dot, api = name.partition(".")
        return self.api_pipeline(service, api) if dot else self.pipeline(name)

    @property
    def all_services(self) -> list[ServiceSpec]:
        """Every service a deployment runs, the built-in one first."""
        return [CORE, *self.services.values()]


def _import_tree(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise DeclarationError(
                f"cannot import app module {name!r}: put its folder on PYTHONPATH or fix "
                "BRAID_APPS / --app"
            ) from exc
        raise
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if not info.name.startswith("_"):
            _import_tree(f"{name}.{info.name}")


def _within(module: str, names: list[str]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def load(modules: Iterable[str]) -> Registry:
    """Import ``modules`` and return what they declare: their services and pipelines, and
    the services those pipelines use."""
    names = list(modules)
    for name in names:
        _import_tree(name)
    chosen = {n: p for n, p in pipelines().items() if _within(p.func.__module__, names)}
    used = {node.service.name for p in chosen.values() for node in p.nodes.values()}
    return Registry(
        {n: s for n, s in services().items() if _within(s.cls.__module__, names) or n in used},
        chosen,
    )
