"""Streams between steps, in a worker: what a streaming step writes as it yields, and the
iterator a step that reads a stream gets.

A streaming step's chunks go to its Redis stream (:func:`app._protocol.stream_key`) as they
come: the first at once, then those that follow less than ``BRAID_STREAM_COALESCE_MS`` after
the one before together, in one write. Each write says which attempt wrote it; a writer
that starts (a redelivered step, or one whose input stream started over) takes the next
attempt, so readers start over rather than mix two, and an earlier writer still running is
fenced off. Steps that read the stream publish how far they read (their cursor); the writer
never runs more than ``BRAID_STREAM_WINDOW`` items ahead of the slowest, and waits instead.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis

from app import _codec
from app._protocol import (
    STREAM_ATTEMPT,
    ChunkField,
    JobField,
    cursor_field,
    job_key,
    stream_key,
    stream_state_key,
)
from app._scripts import lua
from app._settings import Settings

__all__ = ["Reader", "Restarted", "StreamEnded", "StreamError", "StreamFailed", "Writer",
           "call_streams"]

_BLOCK_MS = 1000
"""How long a reader's read blocks before it looks whether its job ended."""
_WAIT_S = 0.005
"""How often a writer past its window looks whether its readers caught up."""
_READ_COUNT = 64


class StreamError(Exception):
    """A stream cannot go on: its step fails with this ``kind`` and message."""

    kind = "StreamError"


class StreamEnded(StreamError):
    """The job ended (failed elsewhere, cancelled, past its deadline) while the step streamed."""

    kind = "JobEnded"


class StreamFailed(StreamError):
    """The step that writes the stream a step reads failed."""

    kind = "StreamFailed"


class Restarted(Exception):
    """The stream a step reads started over (its writer's step was redelivered): the step is
    called again, from the new attempt's first chunk."""


class Writer:
    """Writes one attempt of a streaming step's stream."""

    def __init__(self, client: redis.Redis, settings: Settings, job: str, step: str,
                 readers: Sequence[str]) -> None:
        self._put = client.register_script(lua("stream_put"))
        self._keys = [stream_key(job, step), stream_state_key(job, step), job_key(job)]
        self._window = settings.stream_window
        self._coalesce_s = settings.stream_coalesce_ms / 1000
        self._keep = max(settings.stream_retention, self._window + 1)
        self._ttl = settings.job_ttl_s
        self._cursors = [cursor_field(r) for r in readers]
        self._step = step
        self.attempt = 0
        self.written = 0
        self.lead: list[int] = []
        """How far ahead of its slowest reader the writer was, at each write (for tests and
        the bench: it stays within the window)."""
        self._lowest = -1

    def produce(self, chunks: Iterator[Any], validate: Callable[[Any], Any]) -> list[Any]:
        """Write every chunk ``chunks`` yields (validated), then the end; the chunks."""
        out: list[Any] = []
        pending: list[Any] = []
        flushed = last = float("-inf")
        try:
            for chunk in chunks:
                value = validate(chunk)
                out.append(value)
                pending.append(_codec.encode(value))
                now = time.monotonic()
                gap, last = now - last, now
                # the first chunk goes at once; then a chunk that came after a pause, or
                # the ones that came quickly, every coalescing interval
                if now - flushed >= self._coalesce_s or gap >= self._coalesce_s or \
                        len(pending) >= self._window:
                    self._write(pending)
                    pending, flushed = [], now
        except (Restarted, StreamError):
            raise
        except Exception as exc:
            self._write(pending, "failed", f"{type(exc).__name__}: {exc}"[:500])
            raise
        self._write(pending, "ok")
        return out

    def _write(self, items: list[Any], end: str = "", message: str = "") -> None:
        while self._lowest >= 0 and self.written + len(items) - self._lowest > self._window:
            time.sleep(_WAIT_S)
            self._call([], "", "")  # the readers' cursors alone
        self._call(items, end, message)
        if self._lowest >= 0:
            self.lead.append(self.written - self._lowest)

    def _call(self, items: list[Any], end: str, message: str) -> None:
        text = _codec.dumps(items) if items else ""
        status, attempt, lowest = self._put(self._keys, [
            self.attempt, self._keep, self._ttl, self.written, text, end, message,
            *self._cursors])
        status = status.decode() if isinstance(status, bytes) else str(status)
        if status == "fenced":
            raise StreamEnded(f"a later attempt of step {self._step!r} writes its stream now")
        if status != "ok":
            raise StreamEnded(f"the job ended ({status}) while step {self._step!r} streamed")
        self.attempt = int(attempt)
        self._lowest = int(lowest)
        self.written += len(items)


class Reader(Iterator[Any]):
    """The chunks of one step's stream, as a step that reads it gets them: each as soon as
    it was written, blocking until the next comes; it ends where its attempt ends."""

    def __init__(self, client: redis.Redis, job: str, writer: str, reader: str,
                 after: str = "0-0", attempt: int | None = None) -> None:
        self._client = client
        self._job = job
        self._writer = writer
        self._reader = reader
        self._key = stream_key(job, writer)
        self._state = stream_state_key(job, writer)
        self._last = after
        self._attempt = attempt
        self._buffer: deque[Any] = deque()
        self._handed = 0
        self._done = False
        self._restart: tuple[str, int] | None = None

    def __iter__(self) -> Reader:
        return self

    def __next__(self) -> Any:
        while not self._buffer:
            if self._done:
                raise StopIteration
            self._fetch()
        self._handed += 1
        return self._buffer.popleft()

    def again(self) -> Reader:
        """A reader of the same stream for the step's next call: from the new attempt's
        first chunk if the stream started over, else from the start."""
        if self._restart is not None:
            return Reader(self._client, self._job, self._writer, self._reader, *self._restart)
        return Reader(self._client, self._job, self._writer, self._reader, attempt=self._attempt)

    def _fetch(self) -> None:
        pipe = self._client.pipeline(transaction=False)
        if self._attempt is None:
            pipe.hget(self._state, STREAM_ATTEMPT)
        else:
            pipe.hset(self._state, cursor_field(self._reader), f"{self._attempt} {self._handed}")
        pipe.xread({self._key: self._last}, count=_READ_COUNT, block=_BLOCK_MS)
        first, found = pipe.execute()
        if self._attempt is None and first is not None:
            self._attempt = int(first)
        if not found:
            state = self._client.hget(job_key(self._job), JobField.state.value)
            if state in (b"succeeded", b"failed", b"cancelled"):
                raise StreamEnded(f"the job ended ({state.decode()}) while step "
                                  f"{self._reader!r} read the stream of {self._writer!r}")
            return
        for entry_id, fields in found[0][1]:
            attempt = int(fields[ChunkField.attempt.value.encode()])
            if self._attempt is None:
                self._attempt = attempt
            if attempt < self._attempt:  # an earlier attempt's, left before it restarted
                self._last = entry_id.decode()
                continue
            if attempt > self._attempt:
                self._restart = (self._last, attempt)
                raise Restarted(f"the stream of {self._writer!r} started over (attempt "
                                f"{attempt})")
            self._last = entry_id.decode()
            items = fields.get(ChunkField.items.value.encode())
            if items is not None:
                self._buffer.extend(_codec.decode(i) for i in json.loads(items))
            end = fields.get(ChunkField.end.value.encode())
            if end is not None:
                self._done = True
                if end != b"ok":
                    message = fields.get(ChunkField.message.value.encode(), b"").decode()
                    raise StreamFailed(f"step {self._writer!r}, whose stream step "
                                       f"{self._reader!r} reads, failed: {message}")
                return


def call_streams(call: Callable[[dict[str, Any]], Any], readers: dict[str, Reader]) -> Any:
    """``call(readers)``, again with fresh readers each time a stream it reads starts over."""
    while True:
        try:
            return call(dict(readers))
        except Restarted:
            readers = {name: r.again() for name, r in readers.items()}
