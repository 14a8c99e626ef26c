"""Braid's Celery result backend: Redis, with chord joins that cost no round trip of their own.

Braid never reads Celery results (values travel through each job's data hash, and every
signature is immutable), so a chord only has to know when its last header task finished:
each part adds its task id to the chord's set and compares the set's size with the chord's;
the part that completes it publishes the body, whose messages were built and stored with the
chord's size when the chord was published. A step does this inside its own finish
(``finish_step.lua``); other tasks (Celery's own, in a chord) here, in one script
(``chord_part.lua``). A redelivered part is counted once (a set, not a counter). A part that
failed has already failed its job, so the body never runs. Celery's own chord bookkeeping on
Redis takes up to six round trips for the last part (results, claim, cleanup) and two to set
the chord's size.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from celery import states
from celery.backends.redis import RedisBackend

from app._protocol import chord_body_key, chord_parts_key, chord_size_key
from app._scripts import lua
from app._transport import capture, captured

__all__ = ["Backend"]


class Backend(RedisBackend):  # type: ignore[misc]
    def add_pending_result(self, result: Any, weak: bool = False,
                           start_drainer: bool = True) -> Any:
        """Nothing to track: Braid never waits on a Celery result. (Celery's Redis backend
        subscribes to a result channel for every task of every group it publishes, and
        unsubscribes when the result object goes, two Redis commands per task.)"""
        return result

    def remove_pending_result(self, result: Any) -> Any:
        return result

    def apply_chord(self, header_result_args: Any, body: Any, **kwargs: Any) -> None:
        """Store the body's messages, built now (the body is frozen already), for the part
        that completes the chord to publish from Redis: the parts need not build it.
        (Celery's own bookkeeping here keeps the header's result structure, for results
        that Braid never reads.)"""
        with capture(hold=self.app.braid_inline) as messages:
            body.delay()
        self._write(chord_body_key(header_result_args[0]), json.dumps(messages))

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        self._write(chord_size_key(group_id), chord_size)

    def _write(self, key: str, value: str | int) -> None:
        ttl = self.chord_ttl()
        commands = captured()
        if commands is not None:  # written with the chord's messages, in the same round trip
            commands.append(("SET", key, value, "EX", ttl))
            return
        self.client.set(key, value, ex=ttl)

    @cached_property
    def _chord_part(self) -> Any:
        return self.client.register_script(lua("chord_part"))

    def chord_ttl(self) -> int:
        """How long a chord's bookkeeping lives in Redis."""
        return int(self.chord_expires or 86400)

    def on_chord_part_return(self, request: Any, state: str, result: Any,
                             propagate: Any = None, **kwargs: Any) -> None:
        group, task = request.group, request.id
        if state != states.SUCCESS or not group or not task or not request.chord:
            return
        self._chord_part(
            keys=[chord_parts_key(group), chord_size_key(group), chord_body_key(group)],
            args=[task, self.chord_ttl()])
