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

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from app import _codec
from app._protocol import (
    STREAM_ATTEMPT,
    ChunkEntry,
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
_QUEUED = 4
_PUT = lua("stream_put")


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
    """Writes one attempt of a streaming step's stream, from a thread of its own: the model
    goes on making chunks while a write is on its way (each waits for Redis, and for the
    window when a reader lags), and the step waits for the writes only at its end. At most
    ``_QUEUED`` writes wait in memory for the thread: past them, the model waits too."""

    def __init__(self, client: redis.Redis, settings: Settings, job: str, step: str,
                 readers: Sequence[str]) -> None:
        self._put = client.register_script(_PUT)
        self._keys = [stream_key(job, step), stream_state_key(job, step), job_key(job)]
        self._window = settings.stream_window
        self._coalesce_s = settings.stream_coalesce_ms / 1000
        self._keep = max(settings.stream_retention, self._window + 1)
        self._ttl = settings.job_ttl_s
        self._cursors = [cursor_field(r) for r in readers]
        self._step = step
        self._attempt = 0
        self._written = 0
        self._lowest = -1
        self._queue: queue.Queue[_Write | None] = queue.Queue(maxsize=_QUEUED)
        self._failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send_all, name="braid-stream", daemon=True)

    def produce(self, chunks: Iterator[Any], validate: Callable[[Any], Any]) -> list[Any]:
        """Write every chunk ``chunks`` yields (validated), then the end; the chunks."""
        out: list[Any] = []
        pending: list[Any] = []
        flushed = last = float("-inf")
        self._thread.start()
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
                    self._enqueue(_Write(pending))
                    pending, flushed = [], now
                    # hand the GIL to the writer now: the model's next forward pass would
                    # hold it until the interpreter's switch interval (5 ms) had passed
                    time.sleep(0)
                elif self._failure is not None:
                    raise self._failure
            self._enqueue(_Write(pending, "ok"))
        except (Restarted, StreamError):
            self._finish(abandon=True)
            raise
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                self._enqueue(_Write(pending, "failed", f"{type(exc).__name__}: {exc}"[:500]))
            self._finish(abandon=True)
            raise
        self._finish()
        return out

    def _enqueue(self, write: _Write) -> None:
        while True:
            if self._failure is not None:
                raise self._failure
            with contextlib.suppress(queue.Full):
                return self._queue.put(write, timeout=_WAIT_S * 10)

    def _finish(self, abandon: bool = False) -> None:
        """Wait until every write was sent (``abandon``: without waiting for the window)."""
        if abandon:
            self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1.0)
        self._thread.join(None if not abandon else 5.0)
        if not abandon and self._failure is not None:
            raise self._failure

    def _send_all(self) -> None:
        try:
            while (write := self._queue.get()) is not None:
                self._send(write)
        except BaseException as exc:  # the step raises it, at its next chunk or its end
            self._failure = exc

    def _send(self, write: _Write) -> None:
        n = len(write.items)
        while self._lowest >= 0 and self._written + n - self._lowest > self._window and \
                not self._stop.is_set():
            time.sleep(_WAIT_S)
            self._call(_Write([]))  # the readers' cursors alone
        self._call(write)

    def _call(self, write: _Write) -> None:
        text = _codec.dumps(write.items) if write.items else ""
        status, attempt, lowest = self._put(self._keys, [
            self._attempt, self._keep, self._ttl, self._written, text, write.end, write.message,
            *self._cursors])
        status = status.decode() if isinstance(status, bytes) else str(status)
        if status == "fenced":
            raise StreamEnded(f"a later attempt of step {self._step!r} writes its stream now")
        if status != "ok":
            raise StreamEnded(f"the job ended ({status}) while step {self._step!r} streamed")
        self._attempt = int(attempt)
        self._lowest = int(lowest)
        self._written += len(write.items)


@dataclass(frozen=True)
class _Write:
    items: list[Any]
    end: str = ""
    message: str = ""


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
            entry = ChunkEntry.of(fields)
            if self._attempt is None:
                self._attempt = entry.attempt
            if entry.attempt < self._attempt:  # an earlier attempt's, left before it restarted
                self._last = entry_id.decode()
                continue
            if entry.attempt > self._attempt:
                self._restart = (self._last, entry.attempt)
                raise Restarted(f"the stream of {self._writer!r} started over (attempt "
                                f"{entry.attempt})")
            self._last = entry_id.decode()
            self._buffer.extend(_codec.decode(i) for i in entry.items)
            if entry.end is not None:
                self._done = True
                if entry.end != "ok":
                    raise StreamFailed(f"step {self._writer!r}, whose stream step "
                                       f"{self._reader!r} reads, failed: {entry.message}")
                return


def call_streams(call: Callable[[dict[str, Any]], Any], readers: dict[str, Reader]) -> Any:
    """``call(readers)``, again with fresh readers each time a stream it reads starts over."""
    while True:
        try:
            return call(dict(readers))
        except Restarted:
            readers = {name: r.again() for name, r in readers.items()}
