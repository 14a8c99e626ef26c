"""Inline steps: a step of a light API (``@api(inline=True)``) runs in the worker process
that finished its last input, instead of a hop through its queue to its service's workers.

Its message is built by Celery's canvas like any other (the next task of a chain, a chord's
body); where it would be published, it is captured as a ``HOLD`` command
(:func:`app._transport.capture`), and the finish script of the step that hands off to it
(``finish_step.lua``) delivers it to that step's worker instead of pushing it: the message
goes into kombu's unacked bookkeeping and the worker's inflight hash, exactly as a message
the worker had fetched. Here it runs through Celery's own tracer, as a fetched message
would. A worker that dies before it finished has it handed back to the inline API's queue
(at once, by the heartbeat's reclaim; at worst by kombu's restore after the visibility
timeout), where its own service's workers run it.

What it saves, per inline step: a queue round trip, a delivery, a start in another process
and the wait for that process to be free (the seed graph at 8 clients, in one profile: a
job's mean latency 132 -> 105 ms with its two glue steps inline).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery
from celery.app.trace import trace_task
from kombu.serialization import loads

from app._transport import UNACKED, UNACKED_INDEX, settled

__all__ = ["run_held"]

log = logging.getLogger("braid.worker")


def _request(message: dict[str, Any], node: str) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """Celery's request of a message, as its worker builds one (``celery.worker.request``
    and ``fast_trace_task``): the headers, the delivery, and the body's embedded canvas."""
    properties = message.get("properties") or {}
    body = message["body"]
    if properties.get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, kwargs, embed = loads(body, message["content-type"], message["content-encoding"],
                                accept=["application/json"])
    info = properties.get("delivery_info") or {}
    request = {
        **(message.get("headers") or {}),
        "properties": properties,
        "reply_to": properties.get("reply_to"),
        "correlation_id": properties.get("correlation_id"),
        "delivery_info": {"exchange": info.get("exchange"), "routing_key": info.get("routing_key"),
                          "priority": properties.get("priority"), "redelivered": False},
        "args": args, "kwargs": kwargs, "hostname": node, "is_eager": False,
        **(embed or {}),
    }
    return request, args, kwargs


def run_held(app: Celery, node: str, client: redis.Redis, inflight: str,
             messages: Sequence[bytes]) -> None:
    """Run the inline steps' messages that a finish held for this worker (``node``), each
    through Celery's tracer, and settle each: its own finish did if it succeeded; else (it
    failed, was skipped or retried) it is removed from kombu's unacked bookkeeping here, as
    kombu's ack would."""
    for raw in messages:
        message = json.loads(raw)
        tag = str(message["properties"]["delivery_tag"])
        try:
            request, args, kwargs = _request(message, node)
            task = app.tasks[request["task"]]
        except Exception:
            # not a message this worker can run: hand it back to its queue at kombu's next
            # restore
            log.exception("held message %s cannot run here; handing it back", tag)
            with client.pipeline(transaction=False) as pipe:
                pipe.zadd(UNACKED_INDEX, {tag: 0}, xx=True)
                pipe.hdel(inflight, tag)
                pipe.execute()
            continue
        trace_task(task, request["id"], args, kwargs, request, app=app, hostname=node,
                   eager=False)
        if not settled(tag):
            with client.pipeline(transaction=False) as pipe:
                pipe.hdel(UNACKED, tag)
                pipe.zrem(UNACKED_INDEX, tag)
                pipe.hdel(inflight, tag)
                pipe.execute()
