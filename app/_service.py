"""Declaring model services: ``@service`` on a class, ``@api`` on its typed methods."""

from __future__ import annotations

import collections.abc
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from app._async import is_async, synchronous
from app._errors import DeclarationError
from app._types import rest_annotation

__all__ = [
    "ApiSpec",
    "Batch",
    "Resources",
    "Retry",
    "ServiceSpec",
    "api",
    "api_spec",
    "iterated",
    "kebab",
    "service",
    "services",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S")
In = TypeVar("In")
Out = TypeVar("Out")
P = ParamSpec("P")

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_UNITS = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def kebab(name: str) -> str:
    """``TextModel`` -> ``text-model``, ``GPT2`` -> ``gpt2``, ``BertBaseUncased`` -> ``bert-base-uncased``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name)
    return spaced.replace("_", "-").lower()


@dataclass(frozen=True)
class Resources:
    """What one worker of a service needs.

    ``cpu`` sets the pool size (processes) unless the service sets ``concurrency``;
    ``gpu`` > 0 places the model on ``cuda:N`` (CPU with a warning where there is none);
    ``memory`` (``"512Mi"``, ``"2Gi"``) is the per-process memory guard.
    """

    cpu: int = 1
    gpu: int = 0
    memory: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.cpu, int) or self.cpu < 1:
            raise DeclarationError(f"Resources(cpu={self.cpu!r}): cpu must be an int >= 1")
        if not isinstance(self.gpu, int) or self.gpu < 0:
            raise DeclarationError(f"Resources(gpu={self.gpu!r}): gpu must be an int >= 0")
        if self.memory is not None and not _MEMORY.match(self.memory):
            raise DeclarationError(
                f"Resources(memory={self.memory!r}): write memory like '512Mi' or '2Gi'"
            )

    @property
    def memory_bytes(self) -> int | None:
        if self.memory is None:
            return None
        match = _MEMORY.match(self.memory)
        assert match is not None
        return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class Retry:
    """Retry an API call that raised one of ``on``, up to ``max_attempts`` attempts in all,
    waiting ``backoff_s * 2 ** (attempt - 1)`` seconds between attempts."""

    on: tuple[type[BaseException], ...]
    max_attempts: int = 3
    backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.on or not all(isinstance(e, type) and issubclass(e, BaseException)
                                  for e in self.on):
            raise DeclarationError("Retry(on=...) needs a tuple of exception classes")
        if self.max_attempts < 1:
            raise DeclarationError("Retry(max_attempts=...) must be >= 1")

    def delay(self, attempt: int) -> float:
        return float(self.backoff_s * 2 ** (attempt - 1))


@dataclass(frozen=True)
class Batch:
    """Run up to ``max_size`` queued calls of an API in one call of its method.

    The method is written for lists: its first parameter takes one entry per call and it
    returns one output per entry, in order (``def generate(self, sentences: list[str]) ->
    list[str]``). Callers, pipelines and the REST API see the single-item API
    (``sentences: str -> str``). Its other parameters are shared: only calls with equal
    values of them run together. A worker waits at most ``max_latency_ms`` after a batch's
    first call for more, none at all when its model is idle and nothing else is queued,
    and, when it is busy, no longer than one more batch would take to run (the fixed part
    of its recent batches' run time)."""

    max_size: int = 16
    max_latency_ms: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_size, int) or self.max_size < 1:
            raise DeclarationError(f"Batch(max_size={self.max_size!r}) must be an int >= 1")
        if self.max_latency_ms < 0:
            raise DeclarationError(f"Batch(max_latency_ms={self.max_latency_ms!r}) must be >= 0")


@dataclass(frozen=True)
class Param:
    name: str
    annotation: Any
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True)
class ApiSpec:
    """One typed API of a service; runs as the Celery task ``<service>.<name>``."""

    service: str
    name: str
    func: Callable[..., Any]
    params: tuple[Param, ...]
    output: Any
    input_model: type[BaseModel]
    call_model: type[BaseModel]
    output_adapter: TypeAdapter[Any]
    rest_output: TypeAdapter[Any]
    retry: Retry | None
    batch: Batch | None = None
    """How calls of it are batched; ``params`` and ``output`` are then the single call's."""
    inline: bool = False
    """Whether a step of it runs in the worker that hands off to it (see :func:`api`)."""
    chunk_adapter: TypeAdapter[Any] | None = None
    """For a streaming API (one that yields): what validates each chunk; its ``output`` is
    then the list of every chunk."""
    stream_params: tuple[str, ...] = ()
    """Its parameters typed ``Iterator[...]``: a pipeline can feed them another step's
    stream as it is written (see :func:`app.stream`); a direct call sends a list."""

    @property
    def streams(self) -> bool:
        """Whether its steps write their chunks to a stream as they run."""
        return self.chunk_adapter is not None

    @property
    def task_name(self) -> str:
        return f"{self.service}.{self.name}"

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Map positional and keyword arguments onto parameter names, as a call would."""
        if len(args) > len(self.params):
            raise TypeError(f"{self.task_name} takes {len(self.params)} arguments, got {len(args)}")
        bound = {p.name: a for p, a in zip(self.params, args, strict=False)}
        names = {p.name for p in self.params}
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{self.task_name} has no parameter {key!r}; it takes {sorted(names)}")
            if key in bound:
                raise TypeError(f"{self.task_name} got two values for {key!r}")
            bound[key] = value
        return bound

    def output_schema(self) -> dict[str, Any]:
        return self.rest_output.json_schema(mode="serialization")


@dataclass(frozen=True)
class ServiceSpec:
    """A declared service: its class, queue, resources, timeout, concurrency and APIs."""

    name: str
    cls: type
    queue: str
    resources: Resources
    timeout: float
    concurrency: int
    apis: Mapping[str, ApiSpec] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    max_queued: int | None = None
    """How many messages may wait in its queue before submissions that need it get 429
    (None: ``BRAID_MAX_QUEUED``)."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "queue": self.queue,
            "resources": {"cpu": self.resources.cpu, "gpu": self.resources.gpu,
                          "memory": self.resources.memory},
            "timeout": self.timeout,
            "concurrency": self.concurrency,
            "models": list(self.models),
            "max_queued": self.max_queued,
        }


_SERVICES: dict[str, ServiceSpec] = {}
_API_MARK = "__braid_api__"


def services() -> Mapping[str, ServiceSpec]:
    """Every service declared in the modules imported so far, by name."""
    return MappingProxyType(_SERVICES)


@overload
def api(func: F, /) -> F: ...
@overload
def api(*, retry: Retry | None = None, batch: None = None, inline: bool = False) -> Callable[
    [F], F]: ...
@overload
def api(*, retry: Retry | None = None, batch: Batch) -> Callable[
    [Callable[Concatenate[S, list[In], P], list[Out]]], Callable[Concatenate[S, In, P], Out]]: ...
def api(func: Any = None, /, *, retry: Retry | None = None, batch: Batch | None = None,
        inline: bool = False) -> Any:
    """Mark a method of a ``@service`` class as a typed API (a Celery task on its queue);
    ``batch`` runs many queued calls of it in one call (see :class:`Batch`): the method
    takes a list and returns one, and is typed for its callers (``step()``) as the single
    call it is to them.

    ``inline=True`` is for light glue (joining, pairing, averaging: no model, a few
    milliseconds at most): a pipeline step of it runs at once in the worker process that
    finished its last input, instead of a hop through its queue to its own service's
    workers. It is still its own step (recorded, timed, failing alone) and its message is
    still delivered: held for that worker, so that a worker that dies with it hands it back
    to the service's own queue. Its service's workers run direct calls of it. Its service
    loads no models and needs no GPU (its instance is built in other services' workers).

    A method that yields (``-> Iterator[str]``) is a streaming API: its chunks reach
    readers (``GET /v1/jobs/{id}/stream``, and steps that take them) as they come, and its
    output is the list of them all. A parameter typed ``Iterator[T]`` takes another step's
    stream (``stream(...)`` in a pipeline), read as it is written; callers send a list.

    An ``async def`` API (a coroutine, or an async generator for a streaming one) runs to
    its end on an event loop of its call's own; its parameters typed ``AsyncIterator[T]``
    take streams, as async iterators."""

    if inline and batch is not None:
        raise DeclarationError("@api(inline=True, batch=...): an inline API runs one step at "
                               "once where its input is; drop inline or batch")

    def mark(f: Any) -> Any:
        if not callable(f):
            raise DeclarationError("@api decorates methods")
        setattr(f, _API_MARK, (retry, batch, inline))
        return f

    return mark(func) if func is not None else mark


def api_spec(func: Callable[..., Any]) -> ApiSpec | None:
    """The ApiSpec of a method of a declared service, else None."""
    spec = getattr(func, "__braid_spec__", None)
    return spec if isinstance(spec, ApiSpec) else None


def _list_of(annotation: Any) -> Any:
    """``T`` of ``list[T]`` (also inside ``Annotated``), else None."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is list and len(typing.get_args(annotation)) == 1:
        return typing.get_args(annotation)[0]
    return None


_ITERATORS = (collections.abc.Iterator, collections.abc.Iterable, collections.abc.Generator)
_ASYNC_ITERATORS = (collections.abc.AsyncIterator, collections.abc.AsyncIterable,
                    collections.abc.AsyncGenerator)


def iterated(annotation: Any) -> Any:
    """``T`` of ``Iterator[T]``, ``Iterable[T]`` or ``Generator[T, ...]`` (or of their async
    kinds), else None."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in _ITERATORS + _ASYNC_ITERATORS and \
            typing.get_args(annotation):
        return typing.get_args(annotation)[0]
    return None


def _async_iterated(annotation: Any) -> bool:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return typing.get_origin(annotation) in _ASYNC_ITERATORS


def _single(where: str, params: list[Param], output: Any) -> tuple[list[Param], Any]:
    """A batched method's single-call parameters and output."""
    first = params[0] if params else None
    item = _list_of(first.annotation) if first else None
    if first is None or item is None or not first.required:
        raise DeclarationError(
            f"{where}: a batched API takes its calls' inputs as a list in its first parameter, "
            "without a default (def f(self, texts: list[str], ...) -> list[...])")
    out = _list_of(output)
    if out is None:
        raise DeclarationError(f"{where}: a batched API returns a list, one output per input, "
                               "in order (-> list[...])")
    return [Param(first.name, item), *params[1:]], out


def _api_spec(service_name: str, cls: type, name: str, func: Callable[..., Any],
              retry: Retry | None, batch: Batch | None = None, inline: bool = False) -> ApiSpec:
    where = f"{cls.__qualname__}.{name}"
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # any unresolvable annotation makes the contract unknowable
        raise DeclarationError(f"{where}: cannot resolve its type hints ({exc})") from exc
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    if not params or params[0].name != "self":
        raise DeclarationError(f"{where}: an @api must be a plain method taking self first")
    out: list[Param] = []
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise DeclarationError(f"{where}: *args/**kwargs are not allowed; name each parameter")
        if p.name not in hints:
            raise DeclarationError(f"{where}: parameter {p.name!r} needs a type hint")
        out.append(Param(p.name, hints[p.name], p.default))
    if "return" not in hints:
        raise DeclarationError(f"{where}: add a return type hint (-> ...)")
    output = hints["return"]
    chunk = iterated(output)
    streamed = tuple(p.name for p in out if iterated(p.annotation) is not None)
    if (chunk is not None or streamed) and (batch is not None or inline):
        raise DeclarationError(f"{where}: a streaming API (one that yields, or takes an "
                               "Iterator) runs one call at a time, where its stream is: drop "
                               f"{'batch' if batch is not None else 'inline'}=")
    if chunk is not None and not (inspect.isgeneratorfunction(func) or
                                  inspect.isasyncgenfunction(func)):
        raise DeclarationError(f"{where}: it is typed to return an iterator, so Braid streams "
                               "it: write it as a generator (yield each chunk)")
    async_streams = tuple(p.name for p in out if _async_iterated(p.annotation))
    if async_streams and not is_async(func):
        raise DeclarationError(f"{where}: {async_streams[0]} is typed AsyncIterator, which "
                               "only an async def can read: make it async def, or type it "
                               "Iterator[...]")
    if batch is not None:
        out, output = _single(where, out, output)
    if chunk is not None:
        output = list[chunk]  # type: ignore[valid-type]

    def value_type(p: Param) -> Any:  # what a stream parameter holds once it was all read
        item = iterated(p.annotation)
        return p.annotation if item is None else list[item]  # type: ignore[valid-type]

    fields: dict[str, Any] = {
        p.name: (rest_annotation(value_type(p)), ... if p.required else p.default) for p in out
    }
    try:
        input_model = create_model(
            f"{cls.__name__}_{name}_input",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            **fields,
        )
        call_model = create_model(  # type: ignore[call-overload]
            f"{cls.__name__}_{name}_call",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            **{p.name: (value_type(p), ... if p.required else p.default) for p in out},
        )
        chunks = None if chunk is None else TypeAdapter(
            chunk, config=ConfigDict(arbitrary_types_allowed=True))
        output_adapter: TypeAdapter[Any] = TypeAdapter(
            output, config=ConfigDict(arbitrary_types_allowed=True)
        )
        rest_output: TypeAdapter[Any] = TypeAdapter(rest_annotation(output))
        input_model.model_json_schema()
        rest_output.json_schema(mode="serialization")
    except Exception as exc:
        raise DeclarationError(
            f"{where}: its types cannot be validated or described as JSON ({exc}); use JSON "
            "types, pydantic models, numpy.ndarray, PIL.Image.Image or bytes"
        ) from exc
    return ApiSpec(service_name, name, synchronous(func, async_streams), tuple(out), output,
                   input_model,
                   call_model, output_adapter, rest_output, retry, batch, inline, chunks,
                   streamed)


def service(
    *,
    name: str | None = None,
    queue: str | None = None,
    resources: Resources | None = None,
    timeout: float = 60.0,
    concurrency: int | None = None,
    models: tuple[str, ...] | list[str] = (),
    max_queued: int | None = None,
) -> Callable[[type[T]], type[T]]:
    """Declare a model service.

    The class's ``__init__`` loads the model; it runs once per worker process, never in the
    API. Each ``@api`` method becomes the Celery task ``<name>.<method>`` on ``queue``
    (default: the class name in kebab-case). ``timeout`` (seconds) is each call's soft time
    limit; ``concurrency`` (default: ``resources.cpu``) is the worker's pool size.
    ``models`` are the model-store tags it loads: a worker will not start without them, and
    ``braid up`` bootstraps the demo ones that are missing. While ``max_queued`` messages
    (default ``BRAID_MAX_QUEUED``) wait in its queue, submissions that need it get 429 with
    ``Retry-After`` instead of piling up past their deadlines.
    """
    res = resources or Resources()

    def declare(cls: type[T]) -> type[T]:
        if not isinstance(cls, type):
            raise DeclarationError("@service(...) decorates a class")
        svc = name or kebab(cls.__name__)
        q = queue or svc
        for label, value in (("name", svc), ("queue", q)):
            if not _NAME.match(value):
                raise DeclarationError(
                    f"@service on {cls.__qualname__}: {label} {value!r} must be lowercase "
                    "letters, digits and '-'"
                )
        if timeout <= 0:
            raise DeclarationError(f"@service on {cls.__qualname__}: timeout must be > 0")
        if concurrency is not None and concurrency < 1:
            raise DeclarationError(f"@service on {cls.__qualname__}: concurrency must be >= 1")
        if max_queued is not None and max_queued < 1:
            raise DeclarationError(f"@service on {cls.__qualname__}: max_queued must be >= 1 "
                                   "(or None for BRAID_MAX_QUEUED)")
        apis: dict[str, ApiSpec] = {}
        for attr, member in vars(cls).items():
            if callable(member) and hasattr(member, _API_MARK):
                spec = _api_spec(svc, cls, attr, member, *getattr(member, _API_MARK))
                member.__braid_spec__ = spec
                apis[attr] = spec
        if not apis:
            raise DeclarationError(f"@service on {cls.__qualname__}: mark at least one method @api")
        inline = [a.name for a in apis.values() if a.inline]
        if inline and (models or res.gpu):
            raise DeclarationError(
                f"@service on {cls.__qualname__}: its inline API(s) {', '.join(inline)} run in "
                "other services' workers, so the service may load no models and need no GPU; "
                "drop inline=True, or move the model to a service of its own")
        existing = _SERVICES.get(svc)
        if existing is not None and existing.cls.__qualname__ != cls.__qualname__:
            raise DeclarationError(
                f"service name {svc!r} is taken by {existing.cls.__module__}."
                f"{existing.cls.__qualname__}; pass @service(name=...) to rename one"
            )
        for other in _SERVICES.values():
            if other.queue == q and other.name != svc:
                raise DeclarationError(
                    f"queue {q!r} of {svc!r} is already {other.name!r}'s; each service "
                    "needs its own queue"
                )
        _SERVICES[svc] = ServiceSpec(svc, cls, q, res, float(timeout),
                                     concurrency or res.cpu, MappingProxyType(apis),
                                     tuple(models), max_queued)
        cls.__braid_service__ = _SERVICES[svc]  # type: ignore[attr-defined]
        return cls

    return declare
