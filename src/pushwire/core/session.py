"""A client session: subscriptions, the inflight window, and the offline queue.

Transport-agnostic: a live connection attaches as a `Link` and is told what to send; the
session decides what is inflight, what waits, and what gets dropped. Persistent sessions
journal every change to the engine so that they survive a restart; transient ones never
touch the engine.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pushwire.core.message import Message, approx_size
from pushwire.core.pressure import PROGRESS_WINDOW, Backpressure
from pushwire.core.stats import Stats
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.base import Engine, QueueState, StoredQueueEntry, StoredSubscription

MAX_PACKET_ID = 65535


@dataclass(slots=True)
class Subscription:
    filter: str
    options: SubscriptionOptions
    subscription_id: int | None = None


@dataclass(slots=True)
class Delivery:
    """One message on its way to one session."""

    seq: int
    message: Message
    qos: int
    retain: bool
    subscription_ids: list[int] = field(default_factory=list)
    packet_id: int | None = None
    state: QueueState = "queued"
    size: int = 0  # approx_size of the message, what the session's byte bound counts


class ReceiveFilter(Protocol):
    """Read rights of the identity that owns a session (core.auth.Permissions)."""

    def can_receive(self, topic: str) -> bool: ...
    def can_subscribe(self, flt: str) -> bool: ...


class Link(Protocol):
    """What a session needs from the connection currently attached to it."""

    # MQTT 5 receive maximum of the client (max inflight it accepts); 65535 otherwise
    receive_maximum: int

    def writable(self) -> bool:
        """False while the transport's send buffer is above its high-water mark."""

    def send_message(
        self, delivery: Delivery, dup: bool, wire_cache: dict[Any, Any] | None
    ) -> None:
        """Send a PUBLISH; `wire_cache` lets one route share encoded bytes across links.
        Without one, the link also observes the delivery latency; with one, the caller (the
        hub's fan-out) observes it once for all the links it sent to."""

    def send_release(self, packet_id: int) -> None:
        """Send PUBREL (resuming a QoS 2 flow after reconnect)."""

    def close_taken_over(self) -> None:
        """Another connection took over this session: close this one."""


class SessionEvents(Protocol):
    """Who wants to know when a session goes on/off line, subscribes, or has a QoS 1/2
    delivery acknowledged (the push gateway: presence and delivery receipts)."""

    def attached(self, session: Session) -> None: ...

    def detached(self, session: Session) -> None: ...

    def subscribed(self, session: Session) -> None: ...

    def acknowledged(self, session: Session, delivery: Delivery) -> None: ...


@dataclass(slots=True)
class SessionLimits:
    max_inflight: int = 20
    max_queued_messages: int = 1000
    # bytes of QoS 1/2 messages queued plus inflight (approx_size); 0: no byte limit
    max_queued_bytes: int = 16 * 1024 * 1024
    # a subscriber that acknowledged within this many seconds is "keeping up" (pressure.py)
    progress_window: float = PROGRESS_WINDOW
    # queued messages at which a subscriber that keeps up holds publishers back (and lets
    # them go at half); far below max_queued_messages, since every queued message is delay
    # for the ones behind it. 0: hold only when the queue is full
    pressure_queue_messages: int = 0


class Session:
    """State of one client id; identity-hashed so it can key the subscription trie."""

    __slots__ = (
        "_engine",
        "_limits",
        "_next_packet_id",
        "_next_seq",
        "_pressure",
        "_stats",
        "client_id",
        "disconnected_at",
        "drain_waiter",
        "events",
        "expiry_handle",
        "expiry_interval",
        "inbound_qos2",
        "inflight",
        "last_progress",
        "link",
        "owner",
        "permissions",
        "protocol_level",
        "queue",
        "queued_bytes",
        "subscriptions",
    )

    def __init__(
        self,
        client_id: str,
        protocol_level: int,
        expiry_interval: int | None,
        engine: Engine,
        limits: SessionLimits,
        stats: Stats,
        pressure: Backpressure | None = None,
    ) -> None:
        self.client_id = client_id
        self.protocol_level = protocol_level
        # None: lives until cleaned (3.1.1 clean session 0); 0: ends with the connection
        self.expiry_interval = expiry_interval
        self.subscriptions: dict[str, Subscription] = {}
        self.queue: deque[Delivery] = deque()
        self.inflight: dict[int, Delivery] = {}
        # approx_size of every delivery in `queue` and `inflight`
        self.queued_bytes = 0
        self.inbound_qos2: set[int] = set()
        self.link: Link | None = None
        self.disconnected_at: float | None = None
        self.expiry_handle: Any = None
        # who connected last (username) and what they may read; None: no check
        self.owner: str | None = None
        self.permissions: ReceiveFilter | None = None
        self.last_progress = 0.0  # monotonic time of the last acknowledgement
        # called once at the next pump (room freed): a retained stream waiting for room
        self.drain_waiter: Callable[[], None] | None = None
        self.events: SessionEvents | None = None  # set by the hub
        self._pressure = pressure
        self._engine = engine
        self._limits = limits
        self._stats = stats
        self._next_seq = 1
        self._next_packet_id = 1

    def __repr__(self) -> str:
        return f"Session({self.client_id!r}, online={self.link is not None})"

    @property
    def persistent(self) -> bool:
        return self.expiry_interval != 0

    # -- journal ---------------------------------------------------------------------

    def journal_session(self) -> None:
        if self.persistent:
            self._engine.session_put(
                self.client_id, self.protocol_level, self.expiry_interval, self.disconnected_at
            )

    def add_subscription(self, sub: Subscription) -> bool:
        """Insert or replace; True when the filter is new for this session."""
        new = sub.filter not in self.subscriptions
        self.subscriptions[sub.filter] = sub
        if self.persistent:
            self._engine.subscription_put(
                self.client_id, StoredSubscription(sub.filter, sub.options, sub.subscription_id)
            )
        return new

    def remove_subscription(self, flt: str) -> bool:
        if self.subscriptions.pop(flt, None) is None:
            return False
        if self.persistent:
            self._engine.subscription_delete(self.client_id, flt)
        return True

    def _journal_put(self, d: Delivery) -> None:
        self._engine.queue_put(
            self.client_id,
            StoredQueueEntry(d.seq, d.message, d.qos, d.retain, d.packet_id, d.state),
        )

    # -- outgoing flow -----------------------------------------------------------------

    def offer(
        self,
        message: Message,
        qos: int,
        retain: bool,
        subscription_ids: list[int],
        wire_cache: dict[Any, Any] | None,
    ) -> bool:
        """Take a message for this session; True when it was journaled (caller must sync
        before acknowledging the publisher)."""
        permissions = self.permissions
        if permissions is not None and not permissions.can_receive(message.topic):
            self._stats.delivery_denied += 1
            return False
        link = self.link
        if qos == 0:
            if link is not None and link.writable():
                link.send_message(
                    Delivery(0, message, 0, retain, subscription_ids), False, wire_cache
                )
            else:
                # QoS 0 is never queued: it is "at most once" by contract
                self._stats.publish_dropped += 1
            return False
        limits = self._limits
        limit = limits.max_queued_messages
        byte_limit = limits.max_queued_bytes
        size = approx_size(message)
        count_full = len(self.queue) >= limit and (link is None or not self._window_open(link))
        # bytes count queue and inflight together; an empty session takes one message of
        # any size, else a message larger than the bound could never be delivered
        held = self.queued_bytes
        bytes_full = byte_limit > 0 and held > 0 and held + size > byte_limit
        if count_full or bytes_full:
            if (
                not self._keeping_up(link)
                or len(self.queue) >= 2 * limit
                or (bytes_full and held + size > 2 * byte_limit)
            ):
                self._stats.queue_overflow += 1
                if bytes_full:
                    self._stats.queue_bytes_overflow += 1
                return False
            # a subscriber that keeps up: hold the publishers back instead of dropping;
            # what they already sent may overfill the queue by up to one more bound
            assert self._pressure is not None
            self._pressure.mark(self)
        elif 0 < limits.pressure_queue_messages <= len(self.queue) and self._keeping_up(link):
            assert self._pressure is not None
            self._pressure.mark(self)
        d = Delivery(self._next_seq, message, qos, retain, subscription_ids, size=size)
        self._next_seq += 1
        self._hold(d)
        journaled = self.persistent
        if link is not None and not self.queue and self._window_open(link) and link.writable():
            d.packet_id = self._allocate_packet_id()
            d.state = "sent"
            self.inflight[d.packet_id] = d
            if journaled:
                self._journal_put(d)
            link.send_message(d, False, wire_cache)
        else:
            self.queue.append(d)
            if journaled:
                self._journal_put(d)
        return journaled

    def _hold(self, d: Delivery) -> None:
        self.queued_bytes += d.size
        self._stats.queued_bytes += d.size

    def _release(self, d: Delivery) -> None:
        self.queued_bytes -= d.size
        self._stats.queued_bytes -= d.size

    def release_all(self) -> None:
        """The session is discarded: take its bytes off the server-wide gauge."""
        self._stats.queued_bytes -= self.queued_bytes
        self.queued_bytes = 0

    def _keeping_up(self, link: Link | None) -> bool:
        return (
            self._pressure is not None
            and link is not None
            and link.writable()
            and time.monotonic() - self.last_progress < self._limits.progress_window
        )

    def _window_open(self, link: Link) -> bool:
        return len(self.inflight) < min(self._limits.max_inflight, link.receive_maximum)

    def _allocate_packet_id(self) -> int:
        pid = self._next_packet_id
        # packet ids are 1..65535 and must not collide with one still inflight
        while pid in self.inflight:
            pid = pid % MAX_PACKET_ID + 1
        self._next_packet_id = pid % MAX_PACKET_ID + 1
        return pid

    def pump(self) -> None:
        """Move queued messages into the inflight window while the link can take them."""
        link = self.link
        if link is None:
            return
        now = time.time()
        while self.queue and self._window_open(link) and link.writable():
            d = self.queue.popleft()
            if d.message.expired(now):
                self._stats.expired += 1
                self._release(d)
                if self.persistent:
                    self._engine.queue_delete(self.client_id, d.seq)
                continue
            d.packet_id = self._allocate_packet_id()
            d.state = "sent"
            self.inflight[d.packet_id] = d
            if self.persistent:
                self._engine.queue_update(self.client_id, d.seq, d.packet_id, "sent")
            link.send_message(d, False, None)
        limits = self._limits
        low = limits.max_queued_messages // 2
        if limits.pressure_queue_messages:
            low = min(low, limits.pressure_queue_messages // 2)
        if (
            self._pressure is not None
            and len(self.queue) <= low
            and (not limits.max_queued_bytes or self.queued_bytes <= limits.max_queued_bytes // 2)
        ):
            self._pressure.relieve(self)
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            waiter()

    def _finish(self, packet_id: int) -> bool:
        d = self.inflight.pop(packet_id, None)
        if d is None:
            return False
        self._release(d)
        if self.persistent:
            self._engine.queue_delete(self.client_id, d.seq)
        self.last_progress = time.monotonic()
        if self.events is not None:
            self.events.acknowledged(self, d)
        self.pump()
        return True

    def acknowledge(self, packet_id: int) -> bool:
        """PUBACK for a QoS 1 delivery."""
        d = self.inflight.get(packet_id)
        if d is None or d.qos != 1:
            return False
        return self._finish(packet_id)

    def received(self, packet_id: int) -> bool:
        """PUBREC for a QoS 2 delivery: the message is now the client's; PUBREL follows."""
        d = self.inflight.get(packet_id)
        if d is None or d.qos != 2:
            return False
        self.last_progress = time.monotonic()
        if d.state != "released":
            d.state = "released"
            if self.persistent:
                self._engine.queue_update(self.client_id, d.seq, packet_id, "released")
        return True

    def completed(self, packet_id: int) -> bool:
        """PUBCOMP for a QoS 2 delivery."""
        d = self.inflight.get(packet_id)
        if d is None or d.state != "released":
            return False
        return self._finish(packet_id)

    # -- inbound QoS 2 ---------------------------------------------------------------------

    def inbound_qos2_seen(self, packet_id: int) -> bool:
        return packet_id in self.inbound_qos2

    def inbound_qos2_add(self, packet_id: int) -> None:
        self.inbound_qos2.add(packet_id)
        if self.persistent:
            self._engine.inbound_qos2_put(self.client_id, packet_id)

    def inbound_qos2_release(self, packet_id: int) -> bool:
        if packet_id not in self.inbound_qos2:
            return False
        self.inbound_qos2.discard(packet_id)
        if self.persistent:
            self._engine.inbound_qos2_delete(self.client_id, packet_id)
        return True

    # -- connection lifecycle --------------------------------------------------------------

    def attach(self, link: Link) -> None:
        """A connection takes this session: resend what is unacknowledged, then the queue."""
        self.link = link
        self.disconnected_at = None
        for packet_id, d in list(self.inflight.items()):
            if d.state == "released":
                link.send_release(packet_id)
            else:
                link.send_message(d, True, None)
        self.pump()
        if self.events is not None:
            self.events.attached(self)

    def detach(self) -> None:
        self.link = None
        if self._pressure is not None:
            self._pressure.relieve(self)
        self.disconnected_at = time.time()
        if self.events is not None:
            self.events.detached(self)

    def restore_delivery(self, d: Delivery) -> None:
        """Put back a journaled delivery at start-up."""
        d.size = approx_size(d.message)
        self._hold(d)
        if d.packet_id is not None and d.state != "queued":
            self.inflight[d.packet_id] = d
        else:
            d.state = "queued"
            d.packet_id = None
            self.queue.append(d)
        self._next_seq = max(self._next_seq, d.seq + 1)
