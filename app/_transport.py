"""Braid's broker transport: kombu's Redis transport with its hot path trimmed.

Celery configures it as ``broker_transport`` (the URL stays ``redis://``). Eight changes:

* **Bindings read once.** kombu reads an exchange's bindings from Redis on every publish
  (one more round trip per hand-off). A Braid service's queue has a direct exchange of its
  own name, bound once, so a channel keeps such a binding once read. Other exchanges (the
  replies of control commands bind a new queue per client) are read every time.
* **One client per channel** for acks and the unacked bookkeeping (kombu builds a new
  client object for each).
* **Settled acks.** A step's ``finish_step.lua`` removes its own message from kombu's unacked
  bookkeeping in the same script that hands off (:func:`settle`); kombu's ack of that message
  then costs no round trip.
* **Queue length on delivery.** kombu's bookkeeping of a delivered message also reads its
  queue's length, in the same round trip (:func:`queued_behind`): a batch forming in the
  worker asks it whether more calls wait.
* **Taken, not popped.** A worker's channel takes a message with ``BLMOVE`` into its
  reserved list; its delivery's bookkeeping moves it to the worker's inflight hash, and
  kombu's ack, reject and restore take it out of that hash (a worker that dies holding it
  hands it back: :func:`reclaim`, and so does a worker's channel, for its own node, before
  it first takes: at start and after a reconnection).
* **Garbage refused.** A popped message that is not JSON, or not a kombu message, is kept
  aside as a dead letter (:mod:`app._dead_letters`); kombu would raise out of the worker's
  event loop, killing the worker and stranding what it held.
* **Plain bodies.** A message's body is its JSON text, not kombu's base64 of it.
* **Captured publishes.** Inside :func:`capture`, what publishing writes to Redis (the
  messages, and a chord's size, see :mod:`app._backend`) is collected instead of sent, so
  that the caller can write it in a round trip of its own: the API writes a new job's first
  messages in the same ``MULTI`` as the job (nothing half published), and a map's elements
  go out in one pipeline. A capture that a finish script will run may hold the messages
  of inline APIs for the worker running it instead (:mod:`app._inline`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from kombu.exceptions import DecodeError
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from app._dead_letters import keep_aside
from app._protocol import inflight_key, reserved_key
from app._scripts import lua

__all__ = ["HOLD", "NODE_OPTION", "UNACKED", "UNACKED_INDEX", "Node", "Transport", "capture",
           "captured", "holding", "queued_behind", "reclaim", "send", "settle", "settled"]

log = logging.getLogger("braid.worker")

UNACKED: str = kombu_redis.Channel.unacked_key
"""kombu's hash of delivered, unacked messages (delivery tag -> message)."""
UNACKED_INDEX: str = kombu_redis.Channel.unacked_index_key
"""kombu's sorted set of delivered, unacked messages (delivery tag -> delivery time)."""

_SETTLED: set[str] = set()


def settle(tag: str) -> None:
    """Say that the message ``tag`` leaves kombu's unacked bookkeeping in Redis by a Braid
    script (done already, or in a finish still to be sent): kombu's ack of it must not."""
    _SETTLED.add(tag)


def settled(tag: str) -> bool:
    """Whether ``tag`` was settled (and forget it: a held message has no kombu ack to)."""
    if tag in _SETTLED:
        _SETTLED.discard(tag)
        return True
    return False

Command = tuple[str | int, ...]
"""A captured Redis command, e.g. ``("LPUSH", queue, payload)``."""

HOLD = "HOLD"
"""The captured pseudo-command ``(HOLD, queue, payload, delivery tag, unacked entry)``: a
message of an inline API, for the worker whose finish script runs it (finish_step.lua
delivers it to that worker; chord_part.lua pushes it to ``queue`` as usual)."""

_CAPTURED: contextvars.ContextVar[tuple[list[Command], frozenset[str]] | None] = (
    contextvars.ContextVar("braid_captured_publishes", default=None))


@contextlib.contextmanager
def capture(hold: frozenset[str] = frozenset()) -> Iterator[list[Command]]:
    """Collect, instead of sending, what this thread (or task) publishes; a message of a
    task named in ``hold`` becomes a :data:`HOLD` command."""
    commands: list[Command] = []
    token = _CAPTURED.set((commands, hold))
    try:
        yield commands
    finally:
        _CAPTURED.reset(token)


def captured() -> list[Command] | None:
    """The commands being captured here, or None when publishing goes straight to Redis."""
    current = _CAPTURED.get()
    return None if current is None else current[0]


def holding() -> frozenset[str]:
    """The tasks whose messages the capture here holds (none outside a capture)."""
    current = _CAPTURED.get()
    return frozenset() if current is None else current[1]


def send(client: redis.Redis, commands: list[Command]) -> None:
    """Send captured commands in one round trip."""
    if not commands:
        return
    with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        pipe.execute()


def queued_behind(queue: str) -> int | None:
    """How many messages waited in ``queue`` when this process's last message from it was
    delivered (once: ``None`` until the next delivery)."""
    return _BEHIND.pop(queue, None)


_BEHIND: dict[str, int] = {}


def reclaim(client: redis.Redis, node: str, queue: str) -> int:
    """Hand back at once the messages the worker ``node`` of ``queue`` held (it is dead, or
    it is ``node`` itself, (re)connecting; see reclaim.lua); returns how many."""
    inflight, reserved = inflight_key(node), reserved_key(node)
    tags = [t.decode() if isinstance(t, bytes) else str(t) for t in client.hkeys(inflight)]
    unacked, queues = [], []
    for tag, entry in zip(tags, client.hmget(UNACKED, tags) if tags else [], strict=True):
        if entry is None:
            continue
        message, _, routing_key = loads(entry)
        # as kombu's restore marks it (its queue: a Braid message's routing key)
        message.setdefault("headers", {})["redelivered"] = True
        message["properties"].setdefault("delivery_info", {})["redelivered"] = True
        queues.append(routing_key)
        unacked += [tag, dumps(message)]
    script = client.register_script(lua("reclaim"))
    return int(script(keys=[inflight, UNACKED, UNACKED_INDEX, reserved, queue, *queues],
                      args=[len(queues), *unacked, *client.lrange(reserved, 0, -1)]))


class QoS(kombu_redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        # kombu's bookkeeping of a delivered message, and with it: in a worker, the message
        # moves from the node's reserved list to its inflight hash (a worker that dies with
        # it hands it back, see reclaim.lua); and the length of the queue it came from (a
        # Braid queue has a direct exchange of its own name), for a batch forming in this
        # worker to know whether more calls wait, without a round trip of its own
        info = message.delivery_info
        exchange, queue = info["exchange"], info["routing_key"]
        channel: Channel = self.channel
        node, popped = channel.node, channel.popped
        channel.popped = None
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(UNACKED_INDEX, {delivery_tag: time.time()})
            pipe.hset(UNACKED, delivery_tag, dumps([message._raw, exchange, queue]))
            if node is not None:
                pipe.hset(inflight_key(node.name), delivery_tag, "reserved")
                pipe.expire(inflight_key(node.name), node.inflight_ttl_s)
                if popped is not None:
                    pipe.lrem(reserved_key(node.name), 1, popped)
            if exchange == queue:
                pipe.llen(queue)
            replies = pipe.execute()
        if exchange == queue:
            _BEHIND[queue] = int(replies[-1])
        virtual.QoS.append(self, message, delivery_tag)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        # kombu's ack, reject and restore of a message; in a worker, it leaves the inflight
        # hash with it
        pipe = super()._remove_from_indices(delivery_tag, pipe)  # type: ignore[no-untyped-call]
        node = self.channel.node
        return pipe if node is None else pipe.hdel(inflight_key(node.name), delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        if delivery_tag in _SETTLED:
            _SETTLED.discard(delivery_tag)
            virtual.QoS.ack(self, delivery_tag)  # the in-memory part only
            return
        super().ack(delivery_tag)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Node:
    """The worker a channel consumes for: its node name, and how long its inflight hash
    outlives its last write."""

    name: str
    inflight_ttl_s: int
    queue: str
    """The queue it consumes."""


NODE_OPTION = "braid_node"
"""The broker transport option that names the consuming worker: a :class:`Node` as a dict
(the options are shown to Flower's inspections, as JSON)."""


class Channel(kombu_redis.Channel):
    QoS = QoS
    # bodies as they are (JSON text, escaped in the message's JSON), not base64: a quarter
    # smaller, no encoding on either side, and the ids in them are plain text
    # (app._canvas.Template copies messages by their ids)
    body_encoding = None  # type: ignore[assignment]  # kombu: no encoding

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._tables: dict[str, list[tuple[str, ...]]] = {}
        self._sync_client: redis.Redis | None = None
        self.popped: bytes | None = None
        """The message just taken off the queue, until QoS.append notes its delivery."""
        self._moving: str | None = None
        """The queue a BLMOVE in flight takes from (None: a BRPOP, or nothing)."""
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        node = self.connection.client.transport_options.get(NODE_OPTION)
        self.node: Node | None = Node(**node) if isinstance(node, dict) else None
        self._reclaimed = False

    def _reclaim_own(self, node: Node) -> None:
        """Hand back what this worker's node still holds, before its consuming channel takes
        anything: a channel is new when the worker starts, where what a node of its name
        holds was left by a predecessor that died, and after a reconnection, where the
        messages of the lost connection can no longer be acked (Celery terminated their
        running steps and dropped the ones waiting in its pool), and kombu's restore of them
        failed if Redis was down; so is a message taken as the last connection broke,
        between its BLMOVE and its delivery's bookkeeping. (A step of the lost connection
        that still ran is fenced off, or its redelivery finds it done.)"""
        if n := reclaim(self._create_client(), node.name, node.queue):
            log.warning("handed back the %d message(s) that %s held before it (re)connected",
                        n, node.name)
        self._reclaimed = True

    def get_table(self, exchange: str) -> list[tuple[str, ...]]:
        table = self._tables.get(exchange)
        if table is None:
            table = super().get_table(exchange)  # type: ignore[no-untyped-call]
            if [tuple(t) for t in table] == [(exchange, "", exchange)]:
                self._tables[exchange] = table
        return table

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        if self._sync_client is None:
            self._sync_client = super()._create_client()  # type: ignore[no-untyped-call]
        return self._sync_client

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        current = _CAPTURED.get()
        if current is None:
            super()._put(queue, message, **kwargs)  # type: ignore[no-untyped-call]
            return
        captured, hold = current
        priority = self._get_message_priority(message, reverse=False)  # type: ignore[no-untyped-call]
        key = self._q_for_pri(queue, priority)  # type: ignore[no-untyped-call]
        payload = dumps(message)
        if message.get("headers", {}).get("task") in hold:
            # kombu's unacked entry, as QoS.append writes it on delivery
            info = message["properties"]["delivery_info"]
            entry = dumps([message, info["exchange"], info["routing_key"]])
            captured.append((HOLD, key, payload, message["properties"]["delivery_tag"], entry))
            return
        captured.append(("LPUSH", key, payload))


    def _brpop_start(self, timeout: float | None = None) -> None:
        # a worker takes a message by moving it to its reserved list (BLMOVE), not popping
        # it (BRPOP): a message Redis hands to a connection whose process just died (the
        # kernel closed it, Redis has not noticed yet) is then not lost with it
        queues = self._queue_cycle.consume(len(self.active_queues))
        if self.node is None or len(queues) != 1:
            self._moving = None
            super()._brpop_start(timeout)  # type: ignore[no-untyped-call]
            return
        if not self._reclaimed:
            self._reclaim_own(self.node)
        self._moving = queues[0]
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]  # kombu: None until sent
        self.client.connection.send_command(
            "BLMOVE", queues[0], reserved_key(self.node.name), "RIGHT", "LEFT",
            self.brpop_timeout if timeout is None else timeout or 0)

    def _brpop_read(self, **options: Any) -> bool:
        # kombu 5.7's own (and BLMOVE's reply), but a message that does not decode is kept
        # aside, not raised
        try:
            command = "BRPOP" if self._moving is None else "BLMOVE"
            try:
                reply = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next poll reconnects
                raise
            if not reply:
                raise virtual.Empty()
            if self._moving is not None:
                queue, item = self._moving, reply
            else:
                dest, item = reply
                queue = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            message, why = self._decoded(item)
            if message is None:
                with self.conn_or_acquire() as client:
                    keep_aside(client, queue, why, item)
                    if self._moving is not None and self.node is not None:
                        client.lrem(reserved_key(self.node.name), 1, item)
                return True
            self.popped = None if self._moving is None else item
            self.connection._deliver(message, queue)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu: no poll in flight
            self._flush_brpop_reauth()  # type: ignore[no-untyped-call]

    def _decoded(self, item: bytes) -> tuple[dict[str, Any] | None, str]:
        """The message in ``item``, or None and what is wrong with it."""
        try:
            message = loads(bytes_to_str(item))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return None, f"not JSON: {exc!r}"
        if not isinstance(message, dict):
            return None, f"not a message: JSON {type(message).__name__}, not an object"
        properties = message.get("properties")
        if not isinstance(properties, dict):
            properties = {}
        info = properties.get("delivery_info")
        if not (isinstance(info, dict) and isinstance(properties.get("delivery_tag"), str)
                and isinstance(info.get("exchange"), str)
                and isinstance(info.get("routing_key"), str)):
            return None, ("not a message: no properties.delivery_tag, "
                          "properties.delivery_info.exchange and routing_key")
        if not isinstance(message.get("headers", {}), dict):
            return None, "not a message: its headers are not an object"
        body = message.get("body")
        if body is not None and not isinstance(body, str):
            return None, "not a message: its body is not a string"
        try:
            if body:
                self.decode_body(body, properties.get("body_encoding"))  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, AttributeError, DecodeError) as exc:
            return None, f"its body does not decode: {exc}"
        return message, ""


class Transport(kombu_redis.Transport):
    Channel = Channel
