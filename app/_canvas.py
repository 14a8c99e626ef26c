"""From a declared pipeline to the Celery canvas of one job.

Sequences become chains, parallel groups become groups (a group followed by a step is a
chord), maps become the built-in ``braid.map`` task that replaces itself at run time with a
chord over the list. Every signature is immutable: values travel through the job's data
hash in Redis, never through Celery results, so the broker only carries references.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, chain, group
from celery.canvas import Signature

from app._jobs import NewJob
from app._pipeline import Node, Parallel, Pipeline, Series, Tree
from app._registry import CORE

__all__ = ["build", "new_job"]


def _call(pipeline: Pipeline, node: Node) -> dict[str, Any]:
    sink = node.id in pipeline.sinks
    return {"a": node.args, "s": sink, "w": sink and pipeline.output == {"$r": f"o:{node.id}"},
            "q": [f"{d}|finished_at" for d in sorted(node.deps)]}


def _leaf(celery: Celery, pipeline: Pipeline, job: str, node: Node) -> Signature:
    call = _call(pipeline, node)
    if node.over is not None:
        call.update(over={"$r": node.over.ref}, task=node.api.task_name, queue=node.service.queue)
        return celery.signature("braid.map", args=(job, node.id, call), queue=CORE.queue,
                                immutable=True, ignore_result=True)
    return celery.signature(node.api.task_name, args=(job, node.id, call),
                            queue=node.service.queue, immutable=True, ignore_result=True)


def build(celery: Celery, pipeline: Pipeline, job: str) -> Signature:
    """The canvas that runs ``pipeline`` as job ``job``."""

    def walk(tree: Tree) -> Signature:
        if isinstance(tree, str):
            return _leaf(celery, pipeline, job, pipeline.nodes[tree])
        parts = [walk(p) for p in tree.parts]
        if isinstance(tree, Series):
            return chain(*parts)
        assert isinstance(tree, Parallel)
        return group(*parts)

    return walk(pipeline.tree)


def new_job(pipeline: Pipeline, inputs: dict[str, str], deadline_s: float) -> NewJob:
    """The records the API writes for a new job of ``pipeline``."""
    steps = {
        n.id: {"service": n.service.name, "api": n.api.name, "kind": "map" if n.is_map else "step"}
        for n in pipeline.nodes.values()
    }
    return NewJob(
        pipeline=pipeline.name,
        inputs={f"i:{k}": v for k, v in inputs.items()},
        steps=steps,
        total=sum(1 for n in pipeline.nodes.values() if not n.is_map),
        sinks=len(pipeline.sinks),
        output=pipeline.output,
        deadline_s=deadline_s,
    )
