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
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.connection import Connection

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
_CLOSE_WAIT_S = 1.0
"""How long a writer that stops early waits for each reply it has not read."""
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
    """Writes one attempt of a streaming step's stream, from the step's own thread, without
    waiting on Redis: the first write goes at once and tells the attempt; each later one is
    sent on a connection of the writer's own and its reply read when the next is sent
    (pipelined), so the model goes on making chunks while a write is on its way. The step
    waits for Redis only when it is past the window (a reader lags) and at its end. A thread
    of its own would cost more: each write would hand the GIL to it and back."""

    def __init__(self, client: redis.Redis, settings: Settings, job: str, step: str,
                 readers: Sequence[str]) -> None:
        self._client = client
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
        """Items sent so far (the index of the next write's first item)."""
        self._lowest = -1
        self._connection: Connection | None = None
        """The writer's own, after its first write."""
        self._unread: deque[list[Any]] = deque()
        """The arguments of the writes sent on it whose replies were not read yet."""

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
                    self._write(_Write(pending))
                    pending, flushed = [], now
            self._write(_Write(pending, "ok"))
            self._close(drain=True)
        except (Restarted, StreamError):
            self._close()
            raise
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                self._write(_Write(pending, "failed", f"{type(exc).__name__}: {exc}"[:500]))
            self._close()
            raise
        return out

    def _write(self, write: _Write) -> None:
        if self._connection is None:
            self._reply(self._put(self._keys, self._args(write)))
            self._written += len(write.items)
            self._connection = self._client.connection_pool.get_connection()
            return
        self._read(block=False)
        # a failed end goes at once: the step is over, whether or not its readers caught up
        while write.end != "failed" and self._past_window(len(write.items)):
            self._read(block=True)
            if self._past_window(len(write.items)):
                time.sleep(_WAIT_S)
                self._send(_Write([]))  # the readers' cursors alone
                self._read(block=True)
        self._send(write)

    def _past_window(self, items: int) -> bool:
        """Whether ``items`` more would put the stream more than the window ahead of its
        slowest reader (as far as the replies read so far tell)."""
        return self._lowest >= 0 and self._written + items - self._lowest > self._window

    def _send(self, write: _Write) -> None:
        assert self._connection is not None
        args = self._args(write)
        self._unread.append(args)
        self._written += len(write.items)
        try:
            # no health check: a PING would read a reply that belongs to a write
            self._connection.send_command(  # type: ignore[no-untyped-call]
                "EVAL", _PUT, len(self._keys), *self._keys, *args, check_health=False)
        except (redis.ConnectionError, redis.TimeoutError):
            self._resend()

    def _args(self, write: _Write) -> list[Any]:
        text = _codec.dumps(write.items) if write.items else ""
        return [self._attempt, self._keep, self._ttl, self._written, text, write.end,
                write.message, *self._cursors]

    def _read(self, block: bool, wait_s: float = 0) -> None:
        """Read the replies that came, or that come within ``wait_s`` (``block``: all of
        them, however long Redis takes)."""
        assert self._connection is not None
        while self._unread:
            try:
                if not block and not self._connection.can_read(wait_s):
                    return
                reply = self._connection.read_response()
            except (redis.ConnectionError, redis.TimeoutError):
                return self._resend()
            self._unread.popleft()
            self._reply(reply)

    def _resend(self) -> None:
        """The connection broke: send the writes whose replies it did not bring again, one
        by one through the client, which sends again while Redis is away, as every write of
        a step does (one that had reached Redis adds nothing the second time); later writes
        go on a fresh connection."""
        assert self._connection is not None
        self._connection.disconnect()  # type: ignore[no-untyped-call]
        while self._unread:
            self._reply(self._put(self._keys, self._unread.popleft()))

    def _reply(self, reply: Any) -> None:
        status, attempt, lowest = reply
        status = status.decode() if isinstance(status, bytes) else str(status)
        if status == "fenced":
            raise StreamEnded(f"a later attempt of step {self._step!r} writes its stream now")
        if status != "ok":
            raise StreamEnded(f"the job ended ({status}) while step {self._step!r} streamed")
        self._attempt = int(attempt)
        self._lowest = int(lowest)

    def _close(self, drain: bool = False) -> None:
        """Give the connection back; ``drain``: once every reply was read (raising what they
        tell), else once what could be read was (the last write must reach Redis before the
        connection closes)."""
        connection = self._connection
        if connection is None:
            return
        try:
            if drain:
                self._read(block=True)
            else:
                with contextlib.suppress(StreamError, redis.RedisError, OSError):
                    self._read(block=False, wait_s=_CLOSE_WAIT_S)
        finally:
            self._connection = None
            if self._unread:  # replies left unread: the connection cannot serve anyone else
                connection.disconnect()  # type: ignore[no-untyped-call]
                self._unread.clear()
            self._client.connection_pool.release(connection)


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
