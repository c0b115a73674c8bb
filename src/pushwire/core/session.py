"""A client session: subscriptions, the inflight window, and the offline queue.

Transport-agnostic: a live connection attaches as a `Link` and is told what to send; the
session decides what is inflight, what waits, and what gets dropped. Persistent sessions
journal every change to the engine so that they survive a restart; transient ones never
touch the engine.

What a transport's protocol adds (MQTT: packet ids, the PUBREC/PUBREL/PUBCOMP states, the
inbound QoS 2 ids) lives in a subclass of `Session` in that transport's package
(pushwire/mqtt/session.py), made by the `SessionFactory` the transport gives the hub. The
subclass gives each delivery entering the inflight window its wire id (`_track`,
`_track_all`), which keys the window: one index, which the transport looks its
acknowledgements up in (the QoS 1 path pays no second map, bench/README.md "MQTT session
state out of core"); it says what to resend on a reconnect (`_resend`) and ends deliveries
with `settle` / `settle_run`. The base class keys the window by seq.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, cast

from pushwire.core.logthrottle import ThrottledLog
from pushwire.core.message import MESSAGE_OVERHEAD, Message, approx_size
from pushwire.core.pressure import PROGRESS_WINDOW, Backpressure
from pushwire.core.stats import Stats
from pushwire.core.subscription import SubscriptionOptions
from pushwire.model import QueueState, StoredQueueEntry, StoredSession, StoredSubscription
from pushwire.ports import Engine

log = logging.getLogger(__name__)
# a full queue refuses every message while it stays full: one line per client per 10 s
_overflow_log = ThrottledLog(log, 10.0)

# what `Session.offer` did with a message (bits, so a fan-out ORs them together)
JOURNALED = 1  # written to the engine: sync before acknowledging the publisher
TAKEN = 2  # sent, queued or inflight for this session
REFUSED = 4  # the session's queue was full (counted and logged)


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
    # the id the transport gave it when it entered the inflight window (MQTT: its packet
    # id), unique among the session's inflight deliveries: their key in `inflight`, kept
    # across reconnects and journaled with it (see `Session._track`)
    wire_id: int | None = None
    # queued / sent; a transport may journal further states of its own (MQTT: released)
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

    def send_window(self, deliveries: list[Delivery]) -> None:
        """Send the deliveries `Session.pump` moved into the inflight window, in order
        (first sends, wire ids set, no wire cache): `send_message` for each, in one go
        (the MQTT link encodes them in one join and writes them at once)."""

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
    # a queue held in memory: clean sessions, and every session of the memory engine
    max_queued_messages: int = 1000
    # bytes of QoS 1/2 messages queued plus inflight (approx_size); 0: no byte limit
    max_queued_bytes: int = 16 * 1024 * 1024
    # a subscriber that acknowledged within this many seconds is "keeping up" (pressure.py)
    progress_window: float = PROGRESS_WINDOW
    # a persistent session's queue on an engine that keeps queues (SQLite): bounds of the
    # whole queue (memory and store), and how many queued messages stay in memory
    max_persistent_queued_messages: int = 50_000
    max_persistent_queued_bytes: int = 64 * 1024 * 1024
    queue_memory_window: int = 500
    # queued messages at which a subscriber that keeps up holds publishers back (and lets
    # them go at half); far below max_queued_messages, since every queued message is delay
    # for the ones behind it. 0: hold only when the queue is full
    pressure_queue_messages: int = 0


# The empty containers every session starts with, shared: a session builds its own when it
# first puts something in one (`_own_*` below), so a connect storm's clean sessions, which
# mostly only publish, build none (the queue's deque alone is ~760 bytes; bench/README.md
# "Lazy session containers"). Immutable on purpose: a writer that forgot to build its own
# container fails loudly instead of writing into every session's.
_NO_QUEUE = cast("deque[Delivery]", ())
_NO_INFLIGHT = cast("dict[int, Delivery]", MappingProxyType({}))
_NO_SUBSCRIPTIONS = cast("dict[str, Subscription]", MappingProxyType({}))


class Session:
    """State of one client id; identity-hashed so it can key the subscription trie.

    `queue`, `inflight` and `subscriptions` may be the shared empty ones above: read them
    freely, but write only through this class's methods, which build the session's own
    first. `inflight` is keyed by the deliveries' `wire_id`, in the order they were sent."""

    __slots__ = (
        "_engine",
        "_keeps_queue",
        "_limits",
        "_loading",
        "_next_seq",
        "_pressure",
        "_stats",
        "_stored_from",
        "client_id",
        "discarded",
        "disconnected_at",
        "drain_waiter",
        "events",
        "expiry_handle",
        "expiry_interval",
        "has_row",
        "inflight",
        "last_progress",
        "link",
        "overflowed",
        "owner",
        "permissions",
        "protocol_level",
        "queue",
        "queued_bytes",
        "stored_bytes",
        "stored_count",
        "subscriptions",
        "transport_state",
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
        # shared empty containers until first written (see _NO_QUEUE)
        self.subscriptions: dict[str, Subscription] = _NO_SUBSCRIPTIONS
        self.queue: deque[Delivery] = _NO_QUEUE
        self.inflight: dict[int, Delivery] = _NO_INFLIGHT
        # approx_size of every delivery in `queue` and `inflight`
        self.queued_bytes = 0
        # what a transport's subclass keeps of its own (MqttSession: packet ids, the
        # inbound QoS 2 ids), made when it first needs some: None for every session of a
        # connect storm that only publishes, and no __init__ of the subclass to run
        self.transport_state: Any = None
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
        self._keeps_queue = engine.keeps_queue  # every Engine says (ports.py); a getattr cost 3x
        self._limits = limits
        self._stats = stats
        self._next_seq = 1
        # the tail of the queue that waits in the store only (seq >= _stored_from): a
        # persistent session keeps `queue_memory_window` queued messages in memory and reads
        # the rest back as the queue drains (`_load_stored`)
        self.stored_count = 0
        self.stored_bytes = 0
        self._stored_from = 0
        self._loading = False
        self.overflowed = 0  # QoS 1/2 messages refused because this queue was full
        self.discarded = False  # the hub dropped the session (a pending load is ignored)
        # a session row was written: the store must be told when the session ends, even if
        # it is no longer persistent by then (expiry set to 0 at DISCONNECT)
        self.has_row = False

    def __repr__(self) -> str:
        return f"Session({self.client_id!r}, online={self.link is not None})"

    @property
    def persistent(self) -> bool:
        return self.expiry_interval != 0

    @property
    def journaled(self) -> bool:
        """Its changes go to the engine: persistent, or still holding queued messages in
        the store (a session made transient keeps them until they are delivered or it
        ends)."""
        return self.expiry_interval != 0 or self.stored_count > 0

    @property
    def waiting(self) -> int:
        """Messages queued (not inflight), in memory and in the store."""
        return len(self.queue) + self.stored_count

    def _store_backed(self) -> bool:
        return self._keeps_queue and self.journaled

    # -- the session's own containers, built at the first write -------------------------

    def _own_queue(self) -> deque[Delivery]:
        queue = self.queue
        if queue is _NO_QUEUE:
            queue = self.queue = deque()
        return queue

    def _own_inflight(self) -> dict[int, Delivery]:
        inflight = self.inflight
        if inflight is _NO_INFLIGHT:
            inflight = self.inflight = {}
        return inflight

    def _own_subscriptions(self) -> dict[str, Subscription]:
        subscriptions = self.subscriptions
        if subscriptions is _NO_SUBSCRIPTIONS:
            subscriptions = self.subscriptions = {}
        return subscriptions

    # -- journal ---------------------------------------------------------------------

    def journal_session(self) -> None:
        if self.journaled:
            self.has_row = True
            self._engine.session_put(
                self.client_id,
                self.protocol_level,
                self.expiry_interval,
                self.disconnected_at,
                self.owner,
            )

    def journal_everything(self) -> None:
        """The session just became persistent: write what it holds so far (subscriptions,
        inflight and queued messages; a transport's subclass adds its own state), which
        nothing journaled while it was transient."""
        self.journal_session()
        engine = self._engine
        for sub in self.subscriptions.values():
            engine.subscription_put(
                self.client_id, StoredSubscription(sub.filter, sub.options, sub.subscription_id)
            )
        for d in sorted([*self.inflight.values(), *self.queue], key=lambda d: d.seq):
            self._journal_put(d)

    def add_subscription(self, sub: Subscription) -> bool:
        """Insert or replace; True when the filter is new for this session."""
        subscriptions = self._own_subscriptions()
        new = sub.filter not in subscriptions
        subscriptions[sub.filter] = sub
        if self.journaled:
            self._engine.subscription_put(
                self.client_id, StoredSubscription(sub.filter, sub.options, sub.subscription_id)
            )
        return new

    def restore_subscription(self, sub: Subscription) -> None:
        """At start-up: a journaled subscription (nothing is written back)."""
        self._own_subscriptions()[sub.filter] = sub

    def remove_subscription(self, flt: str) -> bool:
        subscriptions = self.subscriptions
        if flt not in subscriptions:  # also when they are the shared empty ones
            return False
        del subscriptions[flt]
        if self.journaled:
            self._engine.subscription_delete(self.client_id, flt)
        return True

    def _journal_put(self, d: Delivery) -> None:
        self._engine.queue_put(
            self.client_id,
            StoredQueueEntry(d.seq, d.message, d.qos, d.retain, d.wire_id, d.state),
        )

    # -- outgoing flow -----------------------------------------------------------------

    def offer(
        self,
        message: Message,
        qos: int,
        retain: bool,
        subscription_ids: list[int],
        wire_cache: dict[Any, Any] | None,
    ) -> int:
        """Take a message for this session. Returns bits: JOURNALED (the caller must sync
        before acknowledging the publisher), TAKEN (sent, queued or inflight), REFUSED (the
        queue was full: counted and logged); 0 when the ACL refused it or a QoS 0 message
        was dropped."""
        permissions = self.permissions
        if permissions is not None and not permissions.can_receive(message.topic):
            self._stats.delivery_denied += 1
            return 0
        link = self.link
        if qos == 0:
            if link is not None and link.writable():
                link.send_message(
                    Delivery(0, message, 0, retain, subscription_ids), False, wire_cache
                )
                return TAKEN
            # QoS 0 is never queued: it is "at most once" by contract
            self._stats.publish_dropped += 1
            return 0
        limits = self._limits
        stored_count = self.stored_count
        journaled = self.expiry_interval != 0 or stored_count > 0
        store_backed = journaled and self._keeps_queue
        if store_backed:
            limit = limits.max_persistent_queued_messages
            byte_limit = limits.max_persistent_queued_bytes
        else:
            limit = limits.max_queued_messages
            byte_limit = limits.max_queued_bytes
        # approx_size, inlined for the common message without properties
        size = (
            approx_size(message)
            if message.properties
            else len(message.payload) + len(message.topic) + MESSAGE_OVERHEAD
        )
        queue = self.queue
        waiting = len(queue) + stored_count
        # the inflight window has room (never without a link); only asked when it
        # matters: an empty queue (send now?) or a full one (hold rather than refuse?),
        # not for the steady state of a busy subscriber, where messages wait their turn
        room = False
        if link is not None and (not waiting or waiting >= limit):
            window = limits.max_inflight
            receive_maximum = link.receive_maximum
            if receive_maximum < window:
                window = receive_maximum
            room = len(self.inflight) < window
        count_full = waiting >= limit and not room
        # bytes count queue and inflight together; an empty session takes one message of
        # any size, else a message larger than the bound could never be delivered
        held = self.queued_bytes + self.stored_bytes
        bytes_full = byte_limit > 0 and held > 0 and held + size > byte_limit
        if count_full or bytes_full:
            if (
                not self._keeping_up(link)
                or waiting >= 2 * limit
                or (bytes_full and held + size > 2 * byte_limit)
            ):
                self._overflow(message, bytes_full, waiting, held)
                return REFUSED
            # a subscriber that keeps up: hold the publishers back instead of dropping;
            # what they already sent may overfill the queue by up to one more bound
            assert self._pressure is not None
            self._pressure.mark(self, at_bound=True)
        elif (
            0 < limits.pressure_queue_messages <= waiting
            and self._pressure is not None
            and not self._pressure.holds(self)  # marked already: nothing to do
            and self._keeping_up(link)
        ):
            self._pressure.mark(self)
        seq = self._next_seq
        self._next_seq = seq + 1
        if room and not waiting and link is not None and link.writable():
            self.queued_bytes += size
            self._stats.queued_bytes += size
            # positional: a dataclass __init__ with keywords costs twice as much
            d = Delivery(seq, message, qos, retain, subscription_ids, None, "sent", size)
            if self.inflight is _NO_INFLIGHT:  # the session's first delivery
                self.inflight = {}
            self._track(d)
            if journaled:
                self._journal_put(d)
            link.send_message(d, False, wire_cache)
            return JOURNALED | TAKEN if journaled else TAKEN
        d = Delivery(seq, message, qos, retain, subscription_ids, None, "queued", size)
        if store_backed and (stored_count or len(queue) >= limits.queue_memory_window):
            # beyond the memory window: in the store only, read back as the queue drains
            if not stored_count:
                self._stored_from = d.seq
            self.stored_count += 1
            self.stored_bytes += size
            self._journal_put(d)
        else:
            self.queued_bytes += size
            self._stats.queued_bytes += size
            if queue is _NO_QUEUE:  # the session's first queued message
                queue = self.queue = deque()
            queue.append(d)
            if journaled:
                self._journal_put(d)
        return JOURNALED | TAKEN if journaled else TAKEN

    def stream_room(self, qos: int, message: Message) -> bool:
        """Can a retained stream (core/retained_stream.py) hand over `message` now so that it
        is sent at once, never queued or refused? QoS 0: the link is writable. QoS 1/2: also
        nothing waits in the queue, the inflight window has room, and the message fits the
        byte bound beside what is inflight (an empty session takes one of any size). When
        not, the stream waits for the next `pump` (an acknowledgement, or the send buffer
        drained): the retained set is paced by the subscriber and bounded by nothing else."""
        link = self.link
        if link is None or not link.writable():
            return False
        if qos == 0:
            return True
        if self.queue or self.stored_count or not self._window_open(link):
            return False
        held = self.queued_bytes
        if held == 0:
            return True
        limits = self._limits
        bound = (
            limits.max_persistent_queued_bytes if self._store_backed() else limits.max_queued_bytes
        )
        return not bound or held + approx_size(message) <= bound

    def _overflow(self, message: Message, bytes_full: bool, waiting: int, held: int) -> None:
        """A QoS 1/2 message refused for a full queue: never silent (docs/queues.md)."""
        self._stats.queue_overflow += 1
        if bytes_full:
            self._stats.queue_bytes_overflow += 1
        self.overflowed += 1
        _overflow_log.log(
            logging.WARNING,
            self.client_id,
            "queue of %r is full (%d messages, %d bytes waiting): refused a message on %r;"
            " %d refused for this client so far",
            self.client_id,
            waiting,
            held,
            message.topic,
            self.overflowed,
        )

    def _hold(self, d: Delivery) -> None:
        self.queued_bytes += d.size
        self._stats.queued_bytes += d.size

    def _release(self, d: Delivery) -> None:
        self.queued_bytes -= d.size
        self._stats.queued_bytes -= d.size

    def release_all(self) -> None:
        """The session is discarded: take its bytes off the server-wide gauge."""
        self.discarded = True
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

    # -- what a transport's subclass adds (pushwire/mqtt/session.py) --------------------

    def _track(self, d: Delivery) -> None:
        """`d` enters the inflight window (`inflight` is the session's own dict; `d` is
        not yet journaled or sent): give it its wire id, unique among the inflight ones,
        and put it in `inflight` under that id. The base uses its seq."""
        d.wire_id = d.seq
        self.inflight[d.seq] = d

    def _track_all(self, deliveries: list[Delivery]) -> None:
        """`_track` for the deliveries one pump moves into the window, in order."""
        inflight = self.inflight
        for d in deliveries:
            d.wire_id = d.seq
            inflight[d.seq] = d

    def _resend(self, link: Link) -> None:
        """A connection took the session over with deliveries still inflight: send them
        again, in the order they were first sent (the transport's subclass may send
        something else for a delivery past its first acknowledgement)."""
        for d in list(self.inflight.values()):
            link.send_message(d, True, None)

    def restore_transport_state(self, stored: StoredSession) -> None:
        """At start-up (or a handover): what the transport journaled of its own beside
        the queue (MQTT: the inbound QoS 2 ids). The base keeps nothing."""

    def pump(self) -> None:
        """Move queued messages into the inflight window while the link can take them."""
        link = self.link
        if link is None:
            return
        queue = self.queue
        inflight = self.inflight
        window = self._limits.max_inflight
        receive_maximum = link.receive_maximum  # a property of the MQTT link: read once
        if receive_maximum < window:
            window = receive_maximum
        room = window - len(inflight)
        if queue and room > 0 and link.writable():
            if inflight is _NO_INFLIGHT:  # queued while offline, never sent before
                self.inflight = {}
            # runs once per acknowledgement: what the loop needs is looked up once
            now = time.time()
            journaled = self.expiry_interval != 0 or self.stored_count > 0
            moved: list[Delivery] = []  # sent together once the window is full
            while True:
                d = queue.popleft()
                expires_at = d.message.expires_at
                if expires_at is not None and now >= expires_at:
                    self._stats.expired += 1
                    self._release(d)
                    if journaled:
                        self._engine.queue_delete(self.client_id, d.seq)
                else:
                    d.state = "sent"
                    moved.append(d)
                    room -= 1
                # nothing is written inside the loop, so the link stays writable: the
                # window (at most max_inflight deliveries) bounds what one pump sends
                if not queue or not room:
                    break
            if moved:
                self._track_all(moved)  # into `inflight`, under their wire ids
                if journaled:
                    update = self._engine.queue_update
                    client_id = self.client_id
                    for d in moved:
                        update(client_id, d.seq, d.wire_id, "sent")
                link.send_window(moved)
        limits = self._limits
        if (
            self.stored_count
            and not self._loading
            and len(self.queue) <= limits.queue_memory_window // 2
        ):
            self._load_stored()
        pressure = self._pressure
        if pressure is not None and pressure.holds(self):
            if self._store_backed():
                limit = limits.max_persistent_queued_messages
                byte_limit = limits.max_persistent_queued_bytes
            else:
                limit = limits.max_queued_messages
                byte_limit = limits.max_queued_bytes
            low = limit // 2
            if limits.pressure_queue_messages:
                low = min(low, limits.pressure_queue_messages // 2)
            if self.waiting <= low and (
                not byte_limit or self.queued_bytes + self.stored_bytes <= byte_limit // 2
            ):
                pressure.relieve(self)
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            waiter()

    def _load_stored(self) -> None:
        """Read the next stretch of the queue back from the store (it drained to half the
        memory window). One read at a time; messages offered meanwhile go on to the store,
        behind the ones being read, so the order holds."""
        want = max(1, self._limits.queue_memory_window - len(self.queue))
        try:
            future = self._engine.queue_load(self.client_id, self._stored_from, want)
        except RuntimeError:
            return  # the store is closing (shutdown): the queue stays stored for next time
        self._loading = True
        future.add_done_callback(self._stored_loaded)

    def _stored_loaded(self, future: asyncio.Future[list[StoredQueueEntry]]) -> None:
        self._loading = False
        if self.discarded:
            return
        if future.cancelled() or future.exception() is not None:
            # the next pump (an ack, a reconnect) tries again
            log.error(
                "could not read the stored queue of %r: %r",
                self.client_id,
                None if future.cancelled() else future.exception(),
            )
            return
        entries = future.result()
        for e in entries:
            if e.seq < self._stored_from:
                continue  # already in memory (cannot happen: reads follow the writes)
            d = Delivery(e.seq, e.message, e.qos, e.retain, [], None, "queued")
            d.size = approx_size(e.message)
            self._hold(d)
            self._own_queue().append(d)
            self.stored_count -= 1
            self.stored_bytes -= d.size
            self._stored_from = e.seq + 1
        if not entries or self.stored_count <= 0:
            if self.stored_count > 0:
                # the store has fewer than counted (a write it refused, reported then)
                log.warning(
                    "stored queue of %r: %d messages counted but not in the store",
                    self.client_id,
                    self.stored_count,
                )
            self.stored_count = 0
            self.stored_bytes = 0  # sizes of rows read at start-up were estimated
        self.pump()

    def _finished(self, d: Delivery) -> None:
        """`d` left the inflight window, acknowledged: room for the next one."""
        size = d.size
        self.queued_bytes -= size
        self._stats.queued_bytes -= size
        if self.expiry_interval != 0 or self.stored_count > 0:
            self._engine.queue_delete(self.client_id, d.seq)
        self.last_progress = time.monotonic()
        if self.events is not None:
            self.events.acknowledged(self, d)
        self.pump()

    def settle(self, d: Delivery) -> bool:
        """The client acknowledged `d` for good (MQTT: PUBACK, PUBCOMP): it leaves the
        inflight window and the window is refilled. False when `d` was not inflight."""
        inflight = self.inflight
        key = d.wire_id
        if key is None or inflight.get(key) is not d:
            return False
        del inflight[key]
        self._finished(d)
        return True

    def settle_run(self, wire_ids: list[int], qos: int) -> None:
        """A run of acknowledgements by wire id, in order, each ending the inflight
        delivery under that id if it has QoS `qos` (a kind of acknowledgement ends one
        QoS: MQTT's PUBACK, QoS 1); one that matches nothing is ignored, as by `settle`.
        The window is refilled once, after the last (the QoS 1 hot path: one lookup per
        ack, in the one index the window is)."""
        inflight = self.inflight
        journaled = self.expiry_interval != 0 or self.stored_count > 0
        events = self.events
        done = False
        freed = 0  # bytes: taken off the session's and the server's counts once
        for key in wire_ids:
            d = inflight.get(key)
            if d is None or d.qos != qos:
                continue
            del inflight[key]
            done = True
            freed += d.size
            if journaled:
                self._engine.queue_delete(self.client_id, d.seq)
            if events is not None:
                events.acknowledged(self, d)
        if done:
            self.queued_bytes -= freed
            self._stats.queued_bytes -= freed
            self.last_progress = time.monotonic()
            self.pump()

    def restate(self, d: Delivery, state: QueueState) -> None:
        """The client acknowledged a step of `d` that keeps it inflight (MQTT: PUBREC, and
        `state` "released"): counts as progress, and the new state is journaled."""
        self.last_progress = time.monotonic()
        if d.state != state:
            d.state = state
            if self.journaled:
                self._engine.queue_update(self.client_id, d.seq, d.wire_id, state)

    # -- connection lifecycle --------------------------------------------------------------

    def attach(self, link: Link) -> None:
        """A connection takes this session: resend what is unacknowledged, then the queue."""
        self.link = link
        self.disconnected_at = None
        if self.inflight:
            self._resend(link)
        if self.queue or self.stored_count or self.drain_waiter is not None:
            self.pump()  # a new session has nothing to pump (connect storms)
        if self.events is not None:
            self.events.attached(self)

    def detach(self) -> None:
        self.link = None
        pressure = self._pressure
        if pressure is not None and pressure.active:
            pressure.relieve(self)
        self.disconnected_at = time.time()
        if self.events is not None:
            self.events.detached(self)

    def restore_delivery(self, d: Delivery) -> None:
        """Put back a journaled delivery at start-up."""
        d.size = approx_size(d.message)
        self._hold(d)
        if d.wire_id is not None and d.state != "queued":
            self._own_inflight()[d.wire_id] = d
        else:
            d.state = "queued"
            d.wire_id = None
            self._own_queue().append(d)
        self._next_seq = max(self._next_seq, d.seq + 1)

    def restore_stored(self, count: int, size: int, first_seq: int, last_seq: int) -> None:
        """At start-up: `count` queued messages (about `size` bytes) wait in the store from
        `first_seq` on, behind the ones restored into memory."""
        if count <= 0:
            return
        self.stored_count = count
        self.stored_bytes = size
        self._stored_from = first_seq
        self._next_seq = max(self._next_seq, last_seq + 1)


# What makes the hub's sessions: `Session` itself, or a transport's subclass of it (the
# MQTT listener gives the hub pushwire.mqtt.session.MqttSession), same constructor.
SessionFactory = type[Session]
