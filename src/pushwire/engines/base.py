"""The storage engine protocol: what must outlive a process goes through here.

The hub keeps live state in memory and is the source of truth while running; an engine is
a write-behind journal of that state plus a loader for start-up. Writes are non-blocking
calls applied in call order; `sync()` resolves once every write issued before it is durable.
Engines batch writes (group commit), so many `sync()` callers in one event-loop tick share
one transaction. Pushwire acknowledges a QoS 1/2 publish only after `sync()` when the
message went into a persistent session (write before you acknowledge).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pushwire.core.histogram import Histogram
from pushwire.core.message import Message
from pushwire.core.subscription import SubscriptionOptions


class WriteError(RuntimeError):
    """`sync()` could not make a write durable that belongs to no message or session (a
    log trim, a consumer cursor, ...). Writes of messages report through `write_failed`."""


# queued: waiting to be sent; sent: PUBLISH sent, waiting for PUBACK/PUBREC;
# released: PUBREL sent (QoS 2), waiting for PUBCOMP
QueueState = Literal["queued", "sent", "released"]


@dataclass(slots=True)
class StoredSubscription:
    filter: str
    options: SubscriptionOptions
    subscription_id: int | None = None


@dataclass(slots=True)
class StoredQueueEntry:
    seq: int  # delivery order within the session, increasing
    message: Message  # shared by every session it was queued for (same uid)
    qos: int  # effective QoS of this delivery
    retain: bool  # retain flag on this delivery
    packet_id: int | None = None
    state: QueueState = "queued"


@dataclass(slots=True)
class StoredSession:
    client_id: str
    protocol_level: int
    # seconds the session lives after disconnect; None = until the client cleans it
    expiry_interval: int | None
    disconnected_at: float | None
    subscriptions: list[StoredSubscription] = field(default_factory=list)
    queue: list[StoredQueueEntry] = field(default_factory=list)  # sorted by seq
    # QoS 2 packet ids received from this client (PUBREC sent, PUBREL not yet seen)
    inbound_qos2: list[int] = field(default_factory=list)
    # the identity (username) that owns the session; None: not recorded (no check)
    owner: str | None = None
    # queued entries left in the store beyond the loaded window (`load_sessions(window)`):
    # how many, their approximate bytes (core.message.approx_size), and their seq range
    stored_count: int = 0
    stored_bytes: int = 0
    stored_first_seq: int = 0
    stored_last_seq: int = 0


@dataclass(slots=True)
class StoredConsumer:
    """Server-side cursor of a named at-least-once reader (see core/consumers.py)."""

    owner: str  # the identity it belongs to; "" for rows from before consumers had owners
    name: str
    filter: str
    acked: int
    last_used: float  # Unix seconds: idle consumers expire


@dataclass(frozen=True, slots=True)
class StoredLogEntry:
    """A stored log entry as loaded at start-up: no payload (it stays on disk until a reader
    asks for it, `Engine.log_read`). `size` as `core.message.approx_size` counts it."""

    id: int
    topic: str
    created_at: float
    size: int


@dataclass(slots=True)
class StoredLog:
    """The message log as an engine hands it back at start-up (see core/log.py).

    `epoch` None means the store has no log yet: the caller starts one with `log_reset`."""

    epoch: str | None = None
    entries: list[StoredLogEntry] = field(default_factory=list)  # in id order
    # topic -> (highest evicted id, its created_at), so gaps survive a restart
    evicted: dict[str, tuple[int, float]] = field(default_factory=dict)
    # highest id ever issued (evicted ones included): ids never go backwards in an epoch
    last_id: int = 0
    consumers: list[StoredConsumer] = field(default_factory=list)
    # topic -> ids that were issued but could not be stored: a reader crossing one has a gap
    holes: dict[str, list[int]] = field(default_factory=dict)
    max_uid: int = 0  # highest message uid among the entries


@dataclass(slots=True, frozen=True)
class WriteFailure:
    """One write the engine could not store (the other writes of its batch were stored).

    `op` names the engine method (`log_append`, `queue_put`, ...); `message` is the message
    it carried, `client_id` the session it belonged to (None when it has none)."""

    op: str
    message: Message | None
    client_id: str | None
    error: str


FailureListener = Callable[[WriteFailure], None]


class Engine(Protocol):
    name: str
    # True when sync() actually waits for stable storage
    durable: bool
    # True when queued entries can be read back (`queue_load`): a persistent session's queue
    # may then keep only a window in memory and leave the rest in the store
    keeps_queue: bool
    # True when logged messages can be read back (`log_read`): the log may then keep only
    # the newest entries in memory without losing the older ones
    keeps_log: bool
    # seconds per commit to stable storage, for /metrics (stays empty without one)
    commit_seconds: Histogram

    async def open(self) -> None: ...
    async def close(self) -> None:
        """Commit everything pending, then release resources."""

    async def load_sessions(self, queue_window: int = 0) -> list[StoredSession]:
        """Every stored session. With `queue_window` > 0, only the first `queue_window`
        queued entries of each session (plus every inflight one) are loaded; the rest is
        summed up in `stored_*` and read later with `queue_load`."""

    async def load_retained(self) -> list[Message]: ...

    def session_put(
        self,
        client_id: str,
        protocol_level: int,
        expiry_interval: int | None,
        disconnected_at: float | None,
        owner: str | None = None,
    ) -> None:
        """Create or update a session row (keeps its subscriptions and queue)."""

    def session_delete(self, client_id: str) -> None:
        """Delete the session with its subscriptions, queue and inbound QoS 2 ids."""

    def subscription_put(self, client_id: str, sub: StoredSubscription) -> None: ...
    def subscription_delete(self, client_id: str, flt: str) -> None: ...

    def queue_put(self, client_id: str, entry: StoredQueueEntry) -> None:
        """Append an entry; the message body is stored once per uid however many sessions
        reference it, and dropped with its last reference."""

    def queue_update(
        self, client_id: str, seq: int, packet_id: int | None, state: QueueState
    ) -> None: ...
    def queue_delete(self, client_id: str, seq: int) -> None: ...
    def queue_load(
        self, client_id: str, from_seq: int, limit: int
    ) -> asyncio.Future[list[StoredQueueEntry]]:
        """Up to `limit` entries of the session with seq >= from_seq, in seq order, read
        after every write issued before the call (queued synchronously: the call's place in
        the write order is the moment of the call). Engines with keeps_queue False: []."""

    def inbound_qos2_put(self, client_id: str, packet_id: int) -> None: ...
    def inbound_qos2_delete(self, client_id: str, packet_id: int) -> None: ...

    def retained_put(self, message: Message) -> None:
        """Set the retained message of message.topic (replacing any)."""

    def retained_delete(self, topic: str) -> None: ...

    async def sync(self) -> None:
        """Return once every write issued before this call is durable, or refused.

        One write that cannot be stored fails alone: the others commit. Whether a given
        message's writes were stored is `write_failed(message)`, known when sync returns."""

    def write_failed(self, message: Message) -> bool:
        """True when a write of `message` could not be stored (ask after `sync()`)."""

    def failure_mark(self) -> int:
        """A mark to pass to `session_failed_since` later: take it before the sync."""

    def session_failed_since(self, client_id: str, mark: int) -> bool:
        """True when a write of session `client_id` could not be stored since `mark`."""

    def add_failure_listener(self, listener: FailureListener) -> None:
        """Call `listener` on the event loop for every write that could not be stored."""

    @property
    def pending_bytes(self) -> int:
        """Payload bytes queued for writing and not written yet (write-behind backlog)."""

    @property
    def backlogged(self) -> bool:
        """True while more payload bytes wait to be written than the engine's bound: the
        hub then holds publishers (a publisher faster than the disk must not grow memory)."""

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the running event loop once the backlog is half drained."""

    # -- message log (core/log.py) ---------------------------------------------------
    # Appends and trims are write-behind like everything else; `sync()` covers them.

    async def load_log(self) -> StoredLog:
        """The stored log: epoch, entries, per-topic eviction marks and consumers."""

    def log_reset(self, epoch: str) -> None:
        """Drop every log entry, eviction mark and consumer; start `epoch`."""

    def log_append(self, message: Message) -> None:
        """Store a logged message (`message.log_id` is set)."""

    def log_trim(self, topic: str, upto_id: int, upto_time: float) -> None:
        """Delete `topic`'s entries with id <= upto_id and remember that they were evicted
        (upto_time: created_at of the newest one evicted)."""

    def log_consumer_put(
        self, owner: str, name: str, flt: str, acked: int, last_used: float
    ) -> None:
        """Create or move a consumer cursor."""

    def log_consumer_delete(self, owner: str, name: str, flt: str) -> None:
        """Forget a consumer cursor."""

    async def log_read(self, ranges: list[tuple[str, int, int]]) -> list[Message]:
        """The stored log entries of each (topic, first_id, last_id) range, ids inclusive
        (`log_id` set), after every write issued before the call. Entries trimmed meanwhile
        are missing from the answer; engines with keeps_log False answer []."""
