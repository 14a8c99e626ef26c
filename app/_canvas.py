"""From a declared pipeline to the Celery canvas of one job.

Sequences become chains, parallel groups become groups (a group followed by a step is a
chord), maps become chords built at run time over the list: by the step that produced the
list, as it finishes (so a map costs no task of its own), or else by the built-in
``braid.map`` task. Every signature is immutable: values travel through the job's data hash
in Redis, never through Celery results, so the broker only carries references.

So a pipeline's first messages are the same for every job but for its ids: the API builds
them with Celery's canvas once per pipeline (:class:`Template`) and each job gets a copy
with its own job id and fresh task, group and delivery ids (Celery's canvas cost the API a
quarter of its CPU per job).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from celery import Celery, chain, group
from celery.canvas import Signature

from app._jobs import NewJob, new_job_id
from app._pipeline import Node, Parallel, Pipeline, Series, Tree
from app._protocol import (
    StepCall,
    StepField,
    input_ref,
    message_repr,
    output_ref,
    ref_spec,
    step_field,
)
from app._registry import CORE
from app._transport import Command, capture

__all__ = ["Template", "build", "new_job", "shape"]


def _call(pipeline: Pipeline, node: Node) -> StepCall:
    sink = node.id in pipeline.sinks
    call = StepCall(args=node.args, sink=sink,
                    whole=sink and pipeline.output == ref_spec(output_ref(node.id)),
                    ready_after=tuple(step_field(d, StepField.finished_at)
                                      for d in sorted(node.deps)),
                    consumers=tuple(n.id for n in pipeline.nodes.values() if node.id in n.streams))
    if node.over is None:
        return call
    return StepCall(args=call.args, sink=call.sink, whole=call.whole,
                    ready_after=call.ready_after, over=node.over.ref,
                    task=node.api.task_name, queue=node.service.queue)


def _signature(celery: Celery, name: str, queue: str, job: str, step: str,
               call: StepCall) -> Signature:
    return celery.signature(name, args=(job, step, call.to_wire()), queue=queue,
                            immutable=True, ignore_result=True, **message_repr(job, step))


def _leaf(celery: Celery, pipeline: Pipeline, job: str, node: Node,
          expands: Node | None = None) -> Signature:
    call = _call(pipeline, node)
    if node.over is not None:
        return _signature(celery, "braid.map", CORE.queue, job, node.id, call)
    if expands is not None:
        call = replace(call, expands=(expands.id, _call(pipeline, expands)))
    return _signature(celery, node.api.task_name, node.service.queue, job, node.id, call)


def _expanded_by(pipeline: Pipeline, producer: Tree, following: Tree | None) -> Node | None:
    """The map that comes right after ``producer`` in a chain and maps over its output."""
    if not isinstance(producer, str) or not isinstance(following, str):
        return None
    node = pipeline.nodes[following]
    if node.over is not None and node.over.ref == output_ref(producer):
        return node
    return None


def build(celery: Celery, pipeline: Pipeline, job: str) -> Signature:
    """The canvas that runs ``pipeline`` as job ``job``."""

    def walk(tree: Tree) -> Signature:
        if isinstance(tree, str):
            return _leaf(celery, pipeline, job, pipeline.nodes[tree])
        if isinstance(tree, Parallel):
            return group(*(walk(p) for p in tree.parts))
        assert isinstance(tree, Series)
        parts: list[Signature] = []
        skip = False
        for i, part in enumerate(tree.parts):
            if skip:
                skip = False
                continue
            following = tree.parts[i + 1] if i + 1 < len(tree.parts) else None
            mapped = _expanded_by(pipeline, part, following)
            if mapped is not None:
                assert isinstance(part, str)
                parts.append(_leaf(celery, pipeline, job, pipeline.nodes[part], mapped))
                skip = True
            else:
                parts.append(walk(part))
        return parts[0] if len(parts) == 1 else chain(*parts)

    return walk(pipeline.tree)


def new_job(pipeline: Pipeline, inputs: dict[str, str], deadline_s: float) -> NewJob:
    """The records the API writes for a new job of ``pipeline``."""
    steps = {
        n.id: {StepField.service.value: n.service.name, StepField.api.value: n.api.name,
               StepField.kind.value: "map" if n.is_map else "step"}
        for n in pipeline.nodes.values()
    }
    return NewJob(
        pipeline=pipeline.name,
        inputs={input_ref(k): v for k, v in inputs.items()},
        steps=steps,
        total=len(pipeline.nodes),
        sinks=len(pipeline.sinks),
        output=pipeline.output,
        deadline_s=deadline_s,
    )


# the ids Celery gives a canvas's tasks, groups and deliveries (uuid4, in plain text: the
# transport leaves message bodies unencoded)
_ID = re.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_Piece = str | int
"""Literal text; or -1: the job id; -2 - i: the i-th known id; i >= 0: the i-th fresh id."""


def shape(text: str, job: str) -> tuple[str, list[str]]:
    """``text`` with job ``job``'s id and Celery's ids taken out (a key for canvases that
    differ only in them), and those ids in the order they first appear."""
    known: dict[str, int] = {}

    def mark(match: re.Match[str]) -> str:
        return f"#{known.setdefault(match.group(0), len(known))}"

    return _ID.sub(mark, text.replace(job, "#job")), list(known)


@dataclass(frozen=True)
class Template:
    """Redis commands that publish a canvas's messages (captured as Celery's canvas built
    them), and how to copy them for another job: each job's copy has its own job id, the
    ids it is given (``known``) and fresh ids for the others (tasks, groups, deliveries)."""

    parts: tuple[tuple[str | int | tuple[_Piece, ...], ...], ...]
    """Per command, its arguments; a text argument as its pieces."""
    fresh: int

    @classmethod
    def of(cls, celery: Celery, pipeline: Pipeline) -> Template:
        """A pipeline's first messages, built for a stand-in job."""
        job = new_job_id()
        with capture() as commands:
            build(celery, pipeline, job).apply_async()
        template = cls.copying(commands, job)
        if not any(-1 in p for c in template.parts for p in c if isinstance(p, tuple)):
            raise RuntimeError(f"pipeline {pipeline.name!r}: its messages do not name their job "
                               "in plain text; a template cannot copy them")
        return template

    @classmethod
    def copying(cls, commands: Sequence[Command], job: str, known: Sequence[str] = ()) -> Template:
        """The template of ``commands``, built for job ``job`` with the ``known`` ids."""
        token = re.compile(f"({re.escape(job)}|{_ID.pattern})")
        given = {k: -2 - i for i, k in enumerate(known)}
        fresh: dict[str, int] = {}

        def pieces(text: str) -> tuple[_Piece, ...]:
            out: list[_Piece] = []
            for i, piece in enumerate(token.split(text)):
                if i % 2 == 0:
                    out.append(piece)
                elif piece == job:
                    out.append(-1)
                else:
                    out.append(given[piece] if piece in given else fresh.setdefault(piece, len(fresh)))
            return tuple(out)

        return cls(tuple(tuple(pieces(a) if isinstance(a, str) else a for a in c)
                         for c in commands), len(fresh))

    def commands(self, job: str, known: Sequence[str] = ()) -> list[Command]:
        """The commands for job ``job``, with the ``known`` ids in the known ids' places."""
        ids = [str(uuid.uuid4()) for _ in range(self.fresh)]

        def text(pieces: tuple[_Piece, ...]) -> str:
            return "".join(p if isinstance(p, str) else job if p == -1 else
                           known[-2 - p] if p < -1 else ids[p] for p in pieces)

        return [tuple(text(a) if isinstance(a, tuple) else a for a in c) for c in self.parts]
