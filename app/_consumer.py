"""A worker's consumer: Celery's, but it runs only the tasks its worker serves, and keeps
what it refuses as dead letters (:mod:`app._dead_letters`).

Every Celery app registers Celery's built-in tasks (``celery.accumulate``, ``celery.chord``,
...), and Celery's consumer runs any registered task that a message names, from any queue
it consumes. A Braid worker runs only the names :func:`app._runtime.register` gave it (its
service's APIs, the inline APIs it may run, and on the core queue what Braid's own canvas
needs); a message for anything else is refused like an unregistered task.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

import redis
from celery.worker.consumer import Consumer as CeleryConsumer

from app._dead_letters import keep_message_aside

__all__ = ["Consumer"]

log = logging.getLogger("braid.worker")


class Consumer(CeleryConsumer):  # type: ignore[misc]
    def update_strategies(self) -> None:
        super().update_strategies()
        runs = getattr(self.app, "braid_runs", None)
        if runs is not None:
            for name in [n for n in self.strategies if n not in runs]:
                del self.strategies[name]

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        handle = super().create_task_handler(*args, **kwargs)
        connection_errors = tuple(self.connection_errors)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except connection_errors:
                raise  # the consumer reconnects
            except Exception as exc:
                # a message that breaks Celery's own handling of it (an empty body raises a
                # TypeError in its strategy) would otherwise stop the worker
                log.error("refused a message that Celery could not handle: %r", exc,
                          exc_info=True)
                if not message.acknowledged:
                    message.reject_log_error(log, connection_errors)
                self._keep_aside(message, f"Celery could not handle it: {exc!r}")
                return None

        return on_task_received

    @cached_property
    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(self.app.conf.broker_url, socket_connect_timeout=3)

    def _keep_aside(self, message: Any, why: str) -> None:
        # the queue this worker consumes (a message's own delivery info is what its sender
        # wrote)
        queue = ",".join(sorted(q.name for q in self.task_consumer.queues))
        try:
            keep_message_aside(self._client, queue, message, why)
        except redis.RedisError as exc:  # refused all the same; only the record is lost
            log.warning("could not keep a refused message aside: %s", exc)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        super().on_unknown_task(body, message, exc)
        headers = message.headers or {}
        self._keep_aside(message, f"task {headers.get('task')!r} is not one this worker runs "
                                  f"(it runs {sorted(self.strategies)})")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        super().on_unknown_message(body, message)
        self._keep_aside(message, "not a task message: its headers name no task")

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        super().on_invalid_task(body, message, exc)
        self._keep_aside(message, f"invalid task message: {exc}")

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        super().on_decode_error(message, exc)
        self._keep_aside(message, f"its body does not decode: {exc}")
