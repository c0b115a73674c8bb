"""Cross-node fan-out: every node reads the fan-out stream in position order.

The publish script appends every batch to one stream (`keys.FANOUT`: one entry per batch,
entry id = its last position, the batch's messages as records inside). Each node keeps
one blocking XREAD on it from the last entry it handled and hands every message to the
hub (`deliver`): the hub routes it to this node's MQTT sessions and, through the message
log, to its SSE/long-poll/poll/WebSocket readers. The publishing node reads its own
messages back the same way, so every node sees one order and every node's log gets the
same positions. Its own Message objects are reused (not decoded again) when still at hand.

While Redis is unreachable the reader retries with backoff and continues after the last
entry it handled: with AOF (appendfsync always) nothing acknowledged is missing after a
restart. A node that fell further behind than the stream keeps (redis_fanout_max) sees a
jump in positions: it logs it and counts it (`missed`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import redis.asyncio as aioredis

from pushwire.core.message import next_uid
from pushwire.engines.redis import keys
from pushwire.engines.redis.batch import fanout_messages
from pushwire.engines.redis.client import UNAVAILABLE, Backoff
from pushwire.engines.redis.codec import (
    _TOPICS,
    COMPACT,
    FIELDS,
    decode,
    from_fields,
    split,
    topic_of,
)
from pushwire.engines.serialize import load_properties
from pushwire.model import Message

if TYPE_CHECKING:
    from pushwire.core.routes import Route

log = logging.getLogger(__name__)

# bytes a log entry is counted for besides its payload and topic (core.message's
# MESSAGE_OVERHEAD): the size of a cold entry handed to `pass_by`
OVERHEAD = 256
READ_COUNT = 16  # fan-out entries (publish batches, up to 2048 messages each) per XREAD
BLOCK_MS = 1000  # an idle XREAD returns after this long (and is issued again)

# a message's flags field (qos * 2 + retain) -> (qos, retain)
_MODES: dict[bytes, tuple[int, bool]] = {b"%d" % m: (m >> 1, bool(m & 1)) for m in range(6)}


class RoutingDeliver(Protocol):
    """A `deliver` that takes the topic's route at hand (core/pacing.py PacedDelivery): the
    reader looks a route up once for both the pass-by test and the routing."""

    def __call__(self, message: Message) -> None: ...

    route_of: Callable[[str], Route]
    hold_observers: Callable[[bool], bool]
    release_observers: Callable[[], None]

    def pass_along(
        self, topic: str, route: Route, position: int, created_at: float, size: int
    ) -> bool: ...
    def along(self, message: Message, route: Route) -> None: ...


def _mode(flags: bytes) -> tuple[int, bool]:
    mode = int(flags)
    return mode >> 1, bool(mode & 1)


class FanoutReader:
    def __init__(self, client: aioredis.Redis, node_id: str, reconnect_max: float) -> None:
        self._client = client
        self.node_id = node_id
        self._backoff = Backoff(reconnect_max)
        self.last_position = 0
        self.missed = 0  # positions skipped because the stream no longer had them
        self.reachable = True
        # this node's publish batcher's chunks by batch key (PublishBatcher.sent): an
        # entry of ours hands out those objects, nothing decoded
        self.own_batches: dict[int, list[Message]] = {}
        # Hub.pass_by (bound at start): (topic, position, created_at, size) -> True when
        # nothing on this node routes the message and the log took it as a cold entry, so
        # it is not decoded; None: every message is decoded and delivered
        self.pass_by: Callable[[str, int, float, int], bool] | None = None
        self._node = node_id.encode()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # (position, future): resolved once this node routed every message up to position
        self._reach: list[tuple[int, asyncio.Future[None]]] = []
        self.epoch = ""  # the history's epoch this node works in (set at open)
        # called once when Redis came back without the data this node has seen
        self.on_lost: Callable[[str], None] = lambda reason: None
        # a paced `deliver` (core/pacing.py) routes a big read over several loop turns:
        # this waits until it has routed all it was handed
        self._drained: Callable[[], Awaitable[None]] | None = None
        # the paced deliver's first waiting position (core/pacing.py): `routed_position`
        self.first_waiting: Callable[[], int | None] | None = None

    async def position(self) -> int:
        """The last position in the fan-out stream now (0: empty)."""
        newest: Any = await self._client.xrevrange(keys.FANOUT, "+", "-", count=1)
        return keys.position_of(newest[0][0]) if newest else 0

    async def _data_lost(self) -> str:
        """After a reconnection: did Redis come back without the data this node has seen
        (restarted without its AOF, flushed, another server)? Then positions start over
        and this node's history and positions no longer match Redis: '' when all is well,
        else why not."""
        try:
            newest = await self.position()
            epoch: Any = await self._client.get(keys.EPOCH)
        except UNAVAILABLE:
            return ""  # unreachable again: the next reconnection checks again
        if epoch is None or epoch.decode() != self.epoch:
            return f"the history's epoch is gone or changed (this node has {self.epoch})"
        if newest < self.last_position:
            return f"the fan-out stream ends at {newest}, this node had read {self.last_position}"
        return ""

    def start(self, after: int, deliver: Callable[[Message], None]) -> None:
        self.last_position = after
        self._drained = getattr(deliver, "drained", None)
        self.first_waiting = getattr(deliver, "first_waiting", None)
        self._task = asyncio.get_running_loop().create_task(self._run(deliver))

    def routed_position(self) -> int:
        """Up to here every message read was routed (queued for this node's sessions), not
        only read: past a turn's fan-out budget the paced deliver holds later ones back.
        What a session write records as this node's mark, and where a take's replay ends
        (mqtt/handover.py): a mark past a waiting message would lose it for a session taken
        from here."""
        first = self.first_waiting() if self.first_waiting is not None else None
        return self.last_position if first is None else first - 1

    async def reached(self, position: int) -> None:
        """Once this node has routed every message up to `position` (its sessions queued
        them): an ack that must cover those queue writes waits for this first. Cancelled
        when the reader stops (the ack is then withheld, never given on a guess)."""
        if position <= self.last_position:
            if self._drained is not None:
                await self._drained()  # read, and routed too
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reach.append((position, future))
        await future

    def _wake_reached(self) -> None:
        done = self.last_position
        keep = []
        for target, future in self._reach:
            if target > done:
                keep.append((target, future))
            elif not future.done():
                future.set_result(None)
        self._reach = keep

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, future in self._reach:
            future.cancel()
        self._reach = []

    async def _run(self, deliver: Callable[[Message], None]) -> None:
        # `_stopping` too, not only the cancellation: redis-py may swallow a cancellation
        # that lands between its calls, and the read would then go on forever
        while not self._stopping:
            try:
                answer: Any = await self._client.xread(
                    {keys.FANOUT: keys.stream_id(self.last_position)},
                    count=READ_COUNT,
                    block=BLOCK_MS,
                )
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as exc:
                # redis-py may turn a cancellation in the middle of a read into a
                # ConnectionError: the loop's `_stopping` test ends a stopping reader
                if self.reachable:
                    log.error("redis: fan-out reader lost Redis (%s); retrying", exc)
                    self.reachable = False
                await self._backoff.wait()
                continue
            if not self.reachable:
                log.warning("redis: fan-out reader reconnected at position %d", self.last_position)
                self.reachable = True
                lost = await self._data_lost()
                if lost:
                    self.on_lost(lost)
                    return
            self._backoff.reset()
            self.handle_entries(answer, deliver)
            if self._drained is not None:
                # routed over turns: read on once done, so what waits stays one read
                await self._drained()
            if self._reach:
                self._wake_reached()

    def handle_entries(self, answer: Any, deliver: Callable[[Message], None]) -> None:
        """Route the messages of an XREAD answer (a list of (stream, entries))."""
        pass_by = self.pass_by
        # the server's deliver (core/pacing.py PacedDelivery) also takes a route at hand
        paced: RoutingDeliver | None = deliver if hasattr(deliver, "along") else None  # type: ignore[assignment]
        for _stream, entries in answer or []:
            for entry_id, fields in entries:
                try:
                    self._handle_entry(fields, deliver, paced, pass_by)
                except Exception:
                    # an entry this node cannot read (a bad frame, a foreign writer) is
                    # logged and skipped, not the end of the reader: every ack here waits
                    # on it (`reached`); its positions show as a gap at the next entry
                    log.exception("redis: unreadable fan-out entry %r", entry_id)

    def _handle_entry(
        self,
        fields: dict[bytes, bytes],
        deliver: Callable[[Message], None],
        paced: RoutingDeliver | None,
        pass_by: Callable[[str, int, float, int], bool] | None,
    ) -> None:
        """One fan-out entry: this node's own batch, another node's batch, or the
        one-message-at-a-time form (entries without a batch field)."""
        own = None
        if fields.get(b"n") == self._node:
            own = self.own_batches.pop(int(fields[b"k"]), None)
        if own is not None:
            if paced is not None:
                self._handle_own_batch(int(fields[b"f"]), own, paced, pass_by is not None)
            else:
                self._handle_own(int(fields[b"f"]), own, deliver)
            return
        first = fields.get(b"f")
        if paced is not None and first is not None:
            self._handle_batch(int(first), fields[b"b"], paced, pass_by is not None)
            return
        for position, blob in fanout_messages(fields):
            last = self.last_position
            if position == last + 1:
                self.last_position = position  # `_advance`'s usual case, inlined
            elif position <= last:
                continue  # handled already (a re-read after a reconnection)
            else:
                self._advance(position)
            try:
                parts = split(blob)
                if parts is None:
                    message = decode(blob)
                else:
                    topic = topic_of(parts)
                    # nobody here routes it: its id, time and size to the log, the
                    # rest stays in Redis (a retained one updates this node's tree)
                    if (
                        pass_by is not None
                        and not int(parts[2]) & 1
                        and pass_by(topic, position, float(parts[3]), len(blob) + OVERHEAD)
                    ):
                        continue
                    message = from_fields(parts, topic)
                message.log_id = position
                deliver(message)
            except Exception:
                log.exception("redis: could not deliver fan-out entry %d", position)

    def _handle_batch(self, first: int, data: bytes, paced: RoutingDeliver, cold: bool) -> None:
        """`handle_entries` for another node's publish batch (messages at positions
        first, first+1, ...): the server's path, the fan-in's cost per message. Framing,
        field split and the Message built inline; the topic's route looked up once for
        both the pass-by test and the routing (`PacedDelivery.route_of`/`pass_along`/
        `along`). `cold`: messages nobody here routes go to the log as cold entries."""
        route_of = paced.route_of
        pass_along = paced.pass_along
        along = paced.along
        topics = _TOPICS
        new_uid = next_uid
        index = data.index
        at = 0
        end = len(data)
        position = first - 1
        # routed messages go to the log as a run (Hub.hold_observers): held from the first
        # one routed, released before a pass-by logs one (positions reach the log in
        # order) and at the end of the batch
        hold = paced.hold_observers
        release = paced.release_observers
        held = False
        may_hold = True  # False once refused (held already by a caller up the stack)
        try:
            while at < end:
                space = index(b" ", at)
                start = space + 1
                at = start + int(data[at:space])  # the old `at`: the length's start
                position += 1
                last = self.last_position
                if position == last + 1:
                    self.last_position = position
                elif position <= last:
                    continue  # handled already (a re-read after a reconnection)
                else:
                    self._advance(position)
                blob = data[start:at]
                try:
                    if blob[:1] != COMPACT:
                        message = decode(blob)  # the JSON form
                        message.log_id = position
                        if may_hold and not held:
                            held = may_hold = hold(True)
                        along(message, route_of(message.topic))
                        continue
                    parts = blob.split(b"\0", FIELDS + 1)
                    if len(parts) != FIELDS + 2:
                        raise ValueError("not a pushwire message")
                    _, raw, flags, created, expires, origin, props, payload = parts
                    topic = topics.get(raw)
                    if topic is None:
                        topic = topic_of(parts)
                    route = route_of(topic)
                    mode = _MODES.get(flags)
                    if mode is None:
                        mode = _mode(flags)
                    qos, retain = mode
                    created_at = float(created)
                    # nobody here routes it: its id, time and size to the log, the rest stays
                    # in Redis (a retained one updates this node's tree, so it is routed)
                    if cold and not retain and not (route.targets or route.groups):
                        if held:
                            release()
                            held = False
                        if pass_along(topic, route, position, created_at, len(blob) + OVERHEAD):
                            continue
                    if may_hold and not held:
                        held = may_hold = hold(True)
                    along(
                        Message(
                            topic,
                            payload,
                            qos,
                            retain,
                            load_properties(json.loads(props)) if props else {},
                            float(expires) if expires else None,
                            created_at,
                            new_uid(),
                            position,
                            origin[1:].decode() if origin else None,
                        ),
                        route,
                    )
                except Exception:
                    log.exception("redis: could not deliver fan-out entry %d", position)
        finally:
            if held:
                try:
                    release()
                except Exception:
                    # as one message's failure above: the reader goes on
                    log.exception("redis: could not log fan-out entries up to %d", position)

    def _handle_own_batch(
        self, first: int, chunk: list[Message], paced: RoutingDeliver, cold: bool
    ) -> None:
        """`_handle_own` for the server's `deliver`: as `_handle_batch`, with this node's
        own Message objects (nothing decoded)."""
        route_of = paced.route_of
        pass_along = paced.pass_along
        along = paced.along
        hold = paced.hold_observers
        release = paced.release_observers
        held = False
        may_hold = True
        position = first - 1
        try:
            for message in chunk:
                position += 1
                last = self.last_position
                if position == last + 1:
                    self.last_position = position
                elif position <= last:
                    continue
                else:
                    self._advance(position)
                message.log_id = position
                try:
                    topic = message.topic
                    route = route_of(topic)
                    if cold and not message.retain and not (route.targets or route.groups):
                        if held:
                            release()
                            held = False
                        if pass_along(
                            topic,
                            route,
                            position,
                            message.created_at,
                            len(message.payload) + len(topic) + OVERHEAD,
                        ):
                            continue
                    if may_hold and not held:
                        held = may_hold = hold(True)
                    along(message, route)
                except Exception:
                    log.exception("redis: could not deliver fan-out entry %d", position)
        finally:
            if held:
                try:
                    release()
                except Exception:
                    log.exception("redis: could not log fan-out entries up to %d", position)

    def _handle_own(
        self, first: int, chunk: list[Message], deliver: Callable[[Message], None]
    ) -> None:
        pass_by = self.pass_by
        for position, message in enumerate(chunk, first):
            if self._advance(position):
                message.log_id = position
                try:
                    if (
                        pass_by is not None
                        and not message.retain
                        and pass_by(
                            message.topic,
                            position,
                            message.created_at,
                            len(message.payload) + len(message.topic) + OVERHEAD,
                        )
                    ):
                        continue
                    deliver(message)
                except Exception:
                    log.exception("redis: could not deliver fan-out entry %d", position)

    def _advance(self, position: int) -> bool:
        """Move past `position`; False when it was handled already. A jump is a gap."""
        last = self.last_position
        if position <= last:
            return False
        if position != last + 1 and last:
            self.missed += position - last - 1
            log.error(
                "redis: fan-out positions %d..%d are gone from the stream (this node fell "
                "behind more than redis_fanout_max); their subscribers here missed them",
                last + 1,
                position - 1,
            )
        self.last_position = position
        return True
