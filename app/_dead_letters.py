"""Dead letters: broker messages a worker refused, kept aside instead of lost or fatal.

A worker refuses a message that is not a kombu message (not JSON, or JSON of another shape),
one whose body does not decode, and one for a task it does not run (another service's, or
one of Celery's built-in tasks). It takes the message off its queue, so that it is neither
redelivered forever nor the end of the worker, and keeps it in :data:`DEAD_LETTERS` with
why; ``/metrics`` counts them (``braid_dead_letters``). The list keeps the newest
:data:`KEPT`, each message cut at :data:`MESSAGE_CHARS` characters.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from app._protocol import DEAD_LETTERS

__all__ = ["KEPT", "MESSAGE_CHARS", "DeadLetter", "keep_aside", "keep_message_aside"]

KEPT = 1000
"""How many dead letters the list keeps (the newest)."""
MESSAGE_CHARS = 65536
"""How much of a refused message a dead letter keeps."""


@dataclass(frozen=True)
class DeadLetter:
    """A refused message: the queue it came from, why it was refused, and the message."""

    queue: str
    why: str
    message: str
    at: float = field(default_factory=time.time)

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def decode(cls, raw: bytes | str) -> DeadLetter:
        return cls(**json.loads(raw))


def keep_aside(client: redis.Redis, queue: str, why: str, message: bytes | str) -> None:
    """Keep ``message``, refused from ``queue`` for the reason ``why``, in the list."""
    text = message.decode(errors="replace") if isinstance(message, bytes) else message
    letter = DeadLetter(queue, why, text[:MESSAGE_CHARS])
    with client.pipeline(transaction=False) as pipe:
        pipe.lpush(DEAD_LETTERS, json.dumps(letter.asdict()))
        pipe.ltrim(DEAD_LETTERS, 0, KEPT - 1)
        pipe.execute()


def keep_message_aside(client: redis.Redis, queue: str, message: Any, why: str) -> None:
    """Keep a kombu ``message`` from ``queue`` that a worker refused after decoding it."""
    raw = getattr(message, "_raw", None)
    keep_aside(client, queue, why, json.dumps(raw, default=str) if raw is not None else
               repr(message.body))
