"""Declaring pipelines: a typed function whose body wires service APIs together.

    @pipeline(name="inference-graph")
    def graph(original_sentence: str = "I have an idea!") -> Value[list[dict[str, Any]]]:
        a = step(GPT2.generate, original_sentence)          # a and b share one input,
        b = step(DistilGPT2.generate, original_sentence)    # so they run in parallel
        texts = step(Glue.concat, a, b)                     # a join
        scores = each(Bert.classify, texts)                 # a map, sized at run time
        return step(Glue.pair, texts, scores)

``stream(Drafter.generate, prompt)`` passes a streaming step's chunks to a step that takes
an ``Iterator`` as they are written: both run at once.

The function runs once, at import, on symbolic values: it records a graph, checks that
every connection's types can match, and decomposes the graph into sequences and parallel
groups (what Celery canvas can express). A graph that is not series-parallel is refused.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
import typing
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from types import MappingProxyType, UnionType
from typing import Annotated, Any, Generic, TypeVar, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from app import _codec
from app._errors import DeclarationError
from app._protocol import (
    ITEM,
    const_spec,
    dict_spec,
    input_ref,
    is_const,
    list_spec,
    output_ref,
    ref_spec,
    refs_in,
    stream_spec,
)
from app._service import ApiSpec, ServiceSpec, api_spec, iterated, kebab
from app._types import rest_annotation

__all__ = [
    "Node",
    "Parallel",
    "Pipeline",
    "Series",
    "Value",
    "compatible",
    "each",
    "pipeline",
    "pipelines",
    "single_api_pipeline",
    "step",
    "stream",
]

R = TypeVar("R")
T = TypeVar("T")


class Value(Generic[T]):
    """A value that exists only when the pipeline runs: a pipeline input or a step's output."""

    __slots__ = ("_origin", "_stream", "_type")

    def __init__(self, origin: Node | str, type_: Any, stream: bool = False) -> None:
        self._origin = origin
        self._type = type_
        self._stream = stream

    def named(self, name: str) -> Value[T]:
        """Name the step that produces this value (names show in job records)."""
        if not isinstance(self._origin, Node):
            raise DeclarationError("only step outputs can be named")
        _current().rename(self._origin, name)
        return self

    @property
    def ref(self) -> str:
        return output_ref(self._origin.id) if isinstance(self._origin, Node) else input_ref(self._origin)

    @property
    def label(self) -> str:
        if isinstance(self._origin, Node):
            return f"step {self._origin.id!r}"
        return f"pipeline input {self._origin!r}"

    def __repr__(self) -> str:
        return f"<Value of {self.label}: {_type_name(self._type)}>"

    def __bool__(self) -> bool:
        raise DeclarationError(
            f"{self.label} has no value while the pipeline is declared; branch inside a "
            "service API instead of in the pipeline function"
        )


@dataclass
class Node:
    """One step of a pipeline: a call of a service API, or a map of one over a list."""

    id: str
    api: ApiSpec
    service: ServiceSpec
    args: dict[str, Any]
    over: Value[Any] | None = None
    deps: set[str] = field(default_factory=set)
    streams: set[str] = field(default_factory=set)
    """The steps whose streams it reads as they are written (it runs beside them, so they
    are not among its ``deps``: theirs are)."""

    @property
    def is_map(self) -> bool:
        return self.over is not None


@dataclass(frozen=True)
class Series:
    parts: tuple[Tree, ...]


@dataclass(frozen=True)
class Parallel:
    parts: tuple[Tree, ...]


Tree = str | Series | Parallel


class _Trace:
    def __init__(self, pipeline_name: str) -> None:
        self.pipeline = pipeline_name
        self.nodes: dict[str, Node] = {}

    def add(self, node: Node) -> None:
        base, n = node.id, 2
        while node.id in self.nodes:
            node.id = f"{base}-{n}"
            n += 1
        self.nodes[node.id] = node

    def rename(self, node: Node, name: str) -> None:
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            raise DeclarationError(f"step name {name!r}: use letters, digits, '.', '_' and '-'")
        if name in self.nodes and self.nodes[name] is not node:
            raise DeclarationError(f"pipeline {self.pipeline!r} has two steps named {name!r}")
        del self.nodes[node.id]
        node.id = name
        self.nodes[name] = node


_TRACE: contextvars.ContextVar[_Trace | None] = contextvars.ContextVar("braid_trace", default=None)


def _current() -> _Trace:
    trace = _TRACE.get()
    if trace is None:
        raise DeclarationError("step() and each() are only used inside a @pipeline function")
    return trace


def _type_name(t: Any) -> str:
    if t is Any:
        return "Any"
    if isinstance(t, type) and not typing.get_args(t):
        return t.__qualname__
    return str(t).replace("typing.", "")


def _strip(t: Any) -> Any:
    while typing.get_origin(t) is Annotated:
        t = typing.get_args(t)[0]
    return t


def compatible(src: Any, dst: Any) -> bool:
    """Whether a value declared as ``src`` can be passed where ``dst`` is declared."""
    src, dst = _strip(src), _strip(dst)
    if src is Any or dst is Any or dst is object or src == dst:
        return True
    if isinstance(dst, TypeVar) or isinstance(src, TypeVar):
        return True
    if typing.get_origin(dst) in (typing.Union, UnionType):
        return any(compatible(src, d) for d in typing.get_args(dst))
    if typing.get_origin(src) in (typing.Union, UnionType):
        return all(compatible(s, dst) for s in typing.get_args(src))
    if src is type(None) or dst is type(None):
        return False
    src_o, dst_o = typing.get_origin(src) or src, typing.get_origin(dst) or dst
    if not (isinstance(src_o, type) and isinstance(dst_o, type)):
        return True
    models = (dict, BaseModel)
    if issubclass(src_o, models) and issubclass(dst_o, models):
        return True
    if src_o is int and dst_o is float:
        return True
    if (src_o is tuple and dst_o is list) or (src_o is list and dst_o is tuple):
        src_o = dst_o
    if not issubclass(src_o, dst_o):
        return False
    src_args, dst_args = typing.get_args(src), typing.get_args(dst)
    if src_args and dst_args and Ellipsis not in src_args + dst_args:
        if len(src_args) == len(dst_args):
            return all(compatible(s, d) for s, d in zip(src_args, dst_args, strict=True))
        if len(dst_args) == 1:
            return all(compatible(s, dst_args[0]) for s in src_args)
    return True


def _element_type(t: Any) -> Any:
    t = _strip(t)
    if t is Any:
        return Any
    origin = typing.get_origin(t) or t
    if isinstance(origin, type) and issubclass(origin, list | tuple | Sequence) and not issubclass(
        origin, str | bytes
    ):
        args = [a for a in typing.get_args(t) if a is not Ellipsis]
        return args[0] if len(args) == 1 or (args and origin is tuple) else Any
    raise TypeError(_type_name(t))


def _type_of(arg: Any) -> Any:
    """The declared type of an argument that may hold Values inside lists and dicts."""
    if isinstance(arg, Value):
        return arg._type
    if isinstance(arg, list | tuple):
        types_ = {repr(_type_of(a)): _type_of(a) for a in arg}
        inner = next(iter(types_.values())) if len(types_) == 1 else Any
        return list[inner]  # type: ignore[valid-type]
    return Any


def _values_in(arg: Any) -> list[Value[Any]]:
    if isinstance(arg, Value):
        return [arg]
    if isinstance(arg, list | tuple):
        return [v for a in arg for v in _values_in(a)]
    if isinstance(arg, dict):
        return [v for a in arg.values() for v in _values_in(a)]
    return []


def _spec(arg: Any, streams: bool = True) -> Any:
    """The JSON form of an argument: references to stored values, streams (``streams``;
    else a streaming step's whole output, as a pipeline's result takes it), or constants."""
    if isinstance(arg, Value):
        if arg._stream and streams:
            assert isinstance(arg._origin, Node)
            return stream_spec(arg._origin.id)
        return ref_spec(arg.ref)
    if isinstance(arg, list | tuple) and _values_in(arg):
        return list_spec([_spec(a, streams) for a in arg])
    if isinstance(arg, dict) and _values_in(arg):
        return dict_spec({k: _spec(v, streams) for k, v in arg.items()})
    return const_spec(_codec.encode(arg))


def _check_args(trace: _Trace, node_label: str, api: ApiSpec, bound: dict[str, Any],
                skip: str | None = None) -> None:
    params = {p.name: p for p in api.params}
    for p in api.params:
        if p.required and p.name not in bound and p.name != skip:
            raise DeclarationError(
                f"pipeline {trace.pipeline!r}, step {node_label!r}: {api.task_name} needs "
                f"{p.name!r} ({_type_name(p.annotation)}); pass it to step()"
            )
    for name, arg in bound.items():
        target = params[name].annotation
        streams = [v for v in _values_in(arg) if v._stream]
        if streams and not (arg is streams[0] and name in api.stream_params):
            raise DeclarationError(
                f"pipeline {trace.pipeline!r}: {streams[0].label}'s stream goes to {name} of "
                f"step {node_label!r} ({api.task_name}), which does not read a stream: pass "
                "stream(...) itself to a parameter typed Iterator[...], or pass step(...) "
                "for the whole list once it is done")
        if name in api.stream_params and _values_in(arg):
            item = iterated(target)
            src = _type_of(arg)
            given = iterated(src) if isinstance(arg, Value) and arg._stream else _element(src)
            if given is None or not compatible(given, item):
                raise DeclarationError(
                    f"pipeline {trace.pipeline!r}: {_values_in(arg)[0].label} gives "
                    f"{_type_name(src)}, but step {node_label!r} ({api.task_name}) reads "
                    f"{name}: {_type_name(target)}. Pass stream(...) of an API that yields "
                    f"{_type_name(item)}, or a list of them.")
            continue
        if _values_in(arg):
            src = _type_of(arg)
            if not compatible(src, target):
                sources = ", ".join(v.label for v in _values_in(arg))
                raise DeclarationError(
                    f"pipeline {trace.pipeline!r}: {sources} gives {_type_name(src)}, but step "
                    f"{node_label!r} ({api.task_name}) takes {name}: {_type_name(target)}. "
                    "Change one side's type hint or add a step that converts it."
                )
        else:
            try:
                TypeAdapter(target, config=ConfigDict(arbitrary_types_allowed=True)) \
                    .validate_python(arg)
            except ValidationError as exc:
                raise DeclarationError(
                    f"pipeline {trace.pipeline!r}, step {node_label!r}: constant for "
                    f"{name}: {_type_name(target)} is invalid ({exc.errors()[0]['msg']})"
                ) from exc


def _element(t: Any) -> Any:
    try:
        return _element_type(t)
    except TypeError:
        return None


def _resolve_api(api: Callable[..., Any]) -> tuple[ApiSpec, ServiceSpec]:
    from app._service import services

    spec = api_spec(api)
    if spec is None:
        raise DeclarationError(
            f"{getattr(api, '__qualname__', api)!r} is not a Braid service API: decorate its "
            "class with @service(...) and the method with @api"
        )
    return spec, services()[spec.service]


@overload
def step(api: Callable[..., Iterator[R]], /, *args: Any,
         **kwargs: Any) -> Value[list[R]]: ...
@overload
def step(api: Callable[..., AsyncIterator[R]], /, *args: Any,
         **kwargs: Any) -> Value[list[R]]: ...
@overload
def step(api: Callable[..., Coroutine[Any, Any, R]], /, *args: Any,
         **kwargs: Any) -> Value[R]: ...
@overload
def step(api: Callable[..., R], /, *args: Any, **kwargs: Any) -> Value[R]: ...
def step(api: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Value[Any]:
    """Call a service API in a pipeline: ``step(TextModel.analyze_text, text, top_k=2)``.

    Arguments may be pipeline inputs, earlier steps' outputs (also inside lists and dicts)
    or constants. Steps that do not depend on each other run in parallel. A streaming API's
    step gives the list of its chunks, once it is done (see :func:`stream`).
    """
    trace = _current()
    spec, svc = _resolve_api(api)
    try:
        bound = spec.bind(args, kwargs)
    except TypeError as exc:
        raise DeclarationError(f"pipeline {trace.pipeline!r}: {exc}") from exc
    node = Node(f"{svc.name}.{spec.name}", spec, svc, {k: _spec(v) for k, v in bound.items()})
    trace.add(node)
    _check_args(trace, node.id, spec, bound)
    producers = [v._origin for v in _values_in(bound) if v._stream and isinstance(v._origin, Node)]
    for producer in producers:
        _check_stream(trace, producer, node)
    node.streams = {p.id for p in producers}
    node.deps = {v._origin.id for v in _values_in(bound)
                 if isinstance(v._origin, Node) and not v._stream}
    node.deps |= {d for p in producers for d in p.deps}
    return Value(node, spec.output)


def stream(api: Callable[..., Iterable[R] | AsyncIterable[R]], /, *args: Any,
           **kwargs: Any) -> Value[Iterator[R]]:
    """Call a streaming API (one that yields) in a pipeline and pass its chunks, as they are
    written, to steps that take an ``Iterator``:
    ``step(Scorer.score, stream(Drafter.generate, prompt))``. The reading steps start with
    it; it never runs more than ``BRAID_STREAM_WINDOW`` chunks ahead of the slowest."""
    trace = _current()
    spec, _ = _resolve_api(api)
    if not spec.streams:
        raise DeclarationError(
            f"pipeline {trace.pipeline!r}: stream({spec.task_name}, ...) needs an API that "
            "yields (typed -> Iterator[...]); use step() for this one")
    value = step(api, *args, **kwargs)
    chunk = typing.get_args(spec.output)[0]  # a streaming API's output is list[chunk]
    return Value(value._origin, Iterator[chunk], stream=True)  # type: ignore[valid-type]


def _check_stream(trace: _Trace, producer: Node, consumer: Node) -> None:
    """Refuse a streaming edge that can deadlock: a reading step holds a worker slot while
    it waits for chunks, so when both ends run on one queue, a worker that runs one step at
    a time could hold the reader with the producer queued behind it."""
    if producer.service.queue == consumer.service.queue and consumer.service.concurrency < 2:
        raise DeclarationError(
            f"pipeline {trace.pipeline!r}: step {consumer.id!r} reads the stream of "
            f"{producer.id!r} while it is written, and both run on queue "
            f"{consumer.service.queue!r}, whose workers run "
            f"{consumer.service.concurrency} step at a time: the reader would hold the only "
            "slot while the producer waits behind it in the queue (a deadlock). Give the "
            "service concurrency >= 2, or put the two APIs on services of their own.")


def each(api: Callable[..., R], items: Value[Any] | Sequence[Any], /, *args: Any,
         **kwargs: Any) -> Value[list[R]]:
    """Map a service API over a list produced at run time: one call per element, results in
    order. The element is the API's first argument; ``args``/``kwargs`` are the rest."""
    trace = _current()
    spec, svc = _resolve_api(api)
    if not isinstance(items, Value):
        raise DeclarationError(
            f"pipeline {trace.pipeline!r}: each({spec.task_name}, ...) maps over a step's "
            "output or a pipeline input; for a fixed list, call step() once per element"
        )
    if items._stream or any(v._stream for v in _values_in([args, kwargs])):
        raise DeclarationError(
            f"pipeline {trace.pipeline!r}: each({spec.task_name}, ...) maps over a list that "
            "is done; pass step(...) instead of stream(...)")
    try:
        bound = spec.bind((None, *args), kwargs)
    except TypeError as exc:
        raise DeclarationError(f"pipeline {trace.pipeline!r}: {exc}") from exc
    first = spec.params[0]
    del bound[first.name]
    node = Node(f"{svc.name}.{spec.name}", spec, svc,
                {first.name: ITEM, **{k: _spec(v) for k, v in bound.items()}}, over=items)
    trace.add(node)
    try:
        element = _element_type(items._type)
    except TypeError as exc:
        raise DeclarationError(
            f"pipeline {trace.pipeline!r}: each() maps over a list, but {items.label} gives {exc}"
        ) from exc
    if not compatible(element, first.annotation):
        raise DeclarationError(
            f"pipeline {trace.pipeline!r}: {items.label} gives elements of type "
            f"{_type_name(element)}, but map step {node.id!r} ({spec.task_name}) takes "
            f"{first.name}: {_type_name(first.annotation)}. Change one side's type hint."
        )
    _check_args(trace, node.id, spec, bound, skip=first.name)
    node.deps = {v._origin.id for v in [items, *_values_in(bound)] if isinstance(v._origin, Node)}
    return Value(node, list[spec.output])  # type: ignore[name-defined]


def _closure(nodes: Mapping[str, Node]) -> dict[str, set[str]]:
    """Every node's ancestors."""
    memo: dict[str, set[str]] = {}

    def ancestors(n: str) -> set[str]:
        if n not in memo:
            found: set[str] = set()
            for d in nodes[n].deps:
                found |= {d} | ancestors(d)
            memo[n] = found
        return memo[n]

    for n in nodes:
        ancestors(n)
    return memo


def _components(members: list[str], linked: Callable[[str, str], bool]) -> list[list[str]]:
    seen: set[str] = set()
    groups = []
    for start in members:
        if start in seen:
            continue
        group, frontier = [], [start]
        seen.add(start)
        while frontier:
            current = frontier.pop()
            group.append(current)
            for other in members:
                if other not in seen and linked(current, other):
                    seen.add(other)
                    frontier.append(other)
        groups.append(sorted(group, key=members.index))
    return groups


def decompose(pipeline_name: str, nodes: Mapping[str, Node]) -> Tree:
    """Split the step graph into nested sequences and parallel groups, or say why not."""
    anc = _closure(nodes)

    def comparable(a: str, b: str) -> bool:
        return a in anc[b] or b in anc[a]

    def split(members: list[str]) -> Tree:
        if len(members) == 1:
            return members[0]
        parts = _components(members, comparable)
        if len(parts) > 1:
            return Parallel(tuple(split(p) for p in parts))
        layers = _components(members, lambda a, b: not comparable(a, b))
        if len(layers) > 1:
            def before(x: list[str], y: list[str]) -> int:
                return -1 if any(a in anc[b] for a in x for b in y) else 1

            layers.sort(key=functools.cmp_to_key(before))
            return Series(tuple(split(layer) for layer in layers))
        for c in members:
            for d in members:
                for a in anc[c] & anc[d] & set(members):
                    for b in (anc[d] & set(members)) - anc[c] - {c, a}:
                        if a not in anc[b] and b not in anc[a] and c not in anc[b]:
                            raise DeclarationError(
                                f"pipeline {pipeline_name!r} is not series-parallel: {d!r} "
                                f"waits for {a!r} and {b!r}, while {c!r} waits for {a!r} "
                                f"only. Celery canvas cannot express this; make {c!r} also "
                                f"wait for {b!r} (pass its output) or {d!r} not wait for it."
                            )
        raise DeclarationError(f"pipeline {pipeline_name!r} is not series-parallel")

    return split(list(nodes))


@dataclass(frozen=True)
class Pipeline:
    """A declared pipeline: its inputs, steps, their series-parallel shape and its output."""

    name: str
    func: Callable[..., Any]
    input_model: type[BaseModel]
    nodes: Mapping[str, Node]
    tree: Tree
    output: Any
    deadline_s: float | None

    @property
    def sinks(self) -> list[str]:
        used = {d for n in self.nodes.values() for d in n.deps}
        return [n for n in self.nodes if n not in used]

    def derived_deadline(self, grace_s: float, slack_s: float) -> float:
        if self.deadline_s is not None:
            return self.deadline_s

        def cost(tree: Tree) -> float:
            if isinstance(tree, str):
                node = self.nodes[tree]
                per_call = node.service.timeout + grace_s
                return per_call * 3 if node.is_map else per_call
            costs = [cost(p) for p in tree.parts]
            return sum(costs) if isinstance(tree, Series) else max(costs)

        return cost(self.tree) + slack_s

    @functools.cached_property
    def output_schema(self) -> dict[str, Any]:
        """The JSON schema of the job's result, as the REST answer renders it (arrays, images
        and bytes carry ``x-braid-type``)."""
        hints = typing.get_type_hints(self.func, include_extras=True)
        types = {input_ref(name): rest_annotation(hints[name]) for name in self.input_model.model_fields}
        for node in self.nodes.values():
            out = rest_annotation(node.api.output)
            types[output_ref(node.id)] = list[out] if node.is_map else out  # type: ignore[valid-type]
        keyed, defs = TypeAdapter.json_schemas(
            [(ref, "serialization", TypeAdapter(types[ref])) for ref in sorted(refs_in(self.output, set()))])

        def shape(spec: Any) -> dict[str, Any]:
            if "$l" in spec:
                parts = [shape(s) for s in spec["$l"]]
                return {"type": "array", "prefixItems": parts, "minItems": len(parts),
                        "maxItems": len(parts)}
            if "$d" in spec:
                return {"type": "object", "properties": {k: shape(s) for k, s in spec["$d"].items()},
                        "required": list(spec["$d"])}
            if is_const(spec):
                return {}
            return dict(keyed[(spec["$r"], "serialization")])

        return {**shape(self.output), **defs}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_schema": self.input_model.model_json_schema(),
            "output_schema": self.output_schema,
            "graph": {
                "nodes": [
                    {"name": n.id, "service": n.service.name, "api": n.api.name,
                     "queue": n.service.queue, "kind": "map" if n.is_map else "step",
                     "streams": n.api.streams}
                    for n in self.nodes.values()
                ],
                "edges": [[d, n.id] for n in self.nodes.values() for d in sorted(n.deps)],
                "streams": [[p, n.id] for n in self.nodes.values() for p in sorted(n.streams)],
            },
        }


_PIPELINES: dict[str, Pipeline] = {}


def pipelines() -> Mapping[str, Pipeline]:
    """Every pipeline declared in the modules imported so far, by name."""
    return MappingProxyType(_PIPELINES)


def _build(name: str, func: Callable[..., Any], deadline: float | None) -> Pipeline:
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise DeclarationError(f"pipeline {name!r}: cannot resolve its type hints ({exc})") from exc
    fields: dict[str, Any] = {}
    inputs: dict[str, Value[Any]] = {}
    for p in inspect.signature(func).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name not in hints:
            raise DeclarationError(
                f"pipeline {name!r}: parameter {p.name!r} needs a name and a type hint"
            )
        required = p.default is inspect.Parameter.empty
        fields[p.name] = (rest_annotation(hints[p.name]), ... if required else p.default)
        inputs[p.name] = Value(p.name, hints[p.name])
    trace = _Trace(name)
    token = _TRACE.set(trace)
    try:
        result = func(**inputs)
    finally:
        _TRACE.reset(token)
    if not trace.nodes:
        raise DeclarationError(f"pipeline {name!r} calls no step; use step(Service.api, ...)")
    output = _spec(result, streams=False)
    if is_const(output):
        raise DeclarationError(f"pipeline {name!r} must return a step's output (a Value)")
    model = create_model(
        f"{name}_input", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )
    return Pipeline(name, func, model, MappingProxyType(dict(trace.nodes)),
                    decompose(name, trace.nodes), output, deadline)


def pipeline(
    name: str | None = None, *, deadline: float | None = None
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Declare a pipeline; its typed parameters are its REST request body.

    ``deadline`` (seconds) fails a job that has not finished by then; by default it is
    derived from the steps' timeouts.
    """

    def declare(func: Callable[..., R]) -> Callable[..., R]:
        label = name or kebab(func.__name__)
        if not re.match(r"^[a-z][a-z0-9-]*$", label):
            raise DeclarationError(f"pipeline name {label!r}: use lowercase letters, digits, '-'")
        _PIPELINES[label] = _build(label, func, deadline)
        func.__braid_pipeline__ = _PIPELINES[label]  # type: ignore[attr-defined]
        return func

    return declare


def single_api_pipeline(spec: ApiSpec, svc: ServiceSpec) -> Pipeline:
    """The one-step pipeline behind ``POST /v1/services/{service}/{api}/jobs``."""
    node = Node(spec.name, spec, svc, {p.name: ref_spec(input_ref(p.name)) for p in spec.params})
    return Pipeline(f"{svc.name}.{spec.name}", spec.func, spec.input_model,
                    MappingProxyType({node.id: node}), node.id, ref_spec(output_ref(node.id)), None)
