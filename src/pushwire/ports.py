"""The ports: what the core needs from the outside world, as Protocols, in one place.

Centrifugo's split is the model: a **Broker** carries messages between processes, a
**History** assigns positions and serves ranges and gaps, and the rest keep state that must
be shared or outlive a process (**SessionStore**, **RetainedStore**, **Presence**,
**AuthStore**). An engine (engines/memory.py, engines/sqlite/, engines/redis/) implements
them; `Engine` is the composition the hub and the message log are built on.

Every write port is write-behind: calls are non-blocking, applied in call order, and
`Journal.sync()` resolves once every write issued before it is durable (or refused:
`write_failed`). Pushwire acknowledges a QoS 1/2 publish or answers an HTTP publish only
after that (write before you acknowledge).

Only value types from pushwire.model (a leaf) are used here, so core and engines both
import this module without importing each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from pushwire.core.histogram import Histogram
from pushwire.model import (
    AclRule,
    AuthSnapshot,
    ClusterFigures,
    FailureListener,
    LogScan,
    Message,
    QueueState,
    StoredLog,
    StoredQueueEntry,
    StoredSession,
    StoredSubscription,
    StoredToken,
    StoredUser,
)


class Journal(Protocol):
    """Durability of the write-behind ports: group commit, per-message failures, and the
    write backlog that holds publishers."""

    # True when sync() actually waits for stable storage
    durable: bool
    # seconds per commit to stable storage, for /metrics (stays empty without one)
    commit_seconds: Histogram

    async def open(self) -> None: ...
    async def close(self) -> None:
        """Commit everything pending, then release resources."""

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


class SessionStore(Protocol):
    """Persistent MQTT sessions: rows, subscriptions, queues and inbound QoS 2 ids."""

    # True when queued entries can be read back (`queue_load`): a persistent session's queue
    # may then keep only a window in memory and leave the rest in the store
    keeps_queue: bool

    async def load_sessions(self, queue_window: int = 0) -> list[StoredSession]:
        """Every stored session. With `queue_window` > 0, only the first `queue_window`
        queued entries of each session (plus every inflight one) are loaded; the rest is
        summed up in `stored_*` and read later with `queue_load`."""

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
        self, client_id: str, seq: int, wire_id: int | None, state: QueueState
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


class RetainedStore(Protocol):
    """The retained message of every topic."""

    async def load_retained(self) -> list[Message]: ...

    def retained_put(self, message: Message) -> None:
        """Set the retained message of message.topic (replacing any)."""

    def retained_delete(self, topic: str) -> None: ...


class History(Protocol):
    """The message log's storage: entries by position, eviction marks, consumer cursors.

    An engine whose `assigns_positions` is True (Redis) gives every message its position
    (`Message.log_id`) and epoch itself, ordered across every node; the log then takes
    positions from the messages it is handed instead of counting them."""

    # True when logged messages can be read back (`log_read`): the log may then keep only
    # the newest entries in memory without losing the older ones
    keeps_log: bool

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


@runtime_checkable
class LazyHistory(Protocol):
    """An engine that starts without loading the log (`StoredLog.unloaded_upto`): a read
    that reaches below that position asks the engine instead of the log's index."""

    async def log_scan(self, flt: str, after: int, upto: int, limit: int) -> LogScan:
        """Up to `limit` messages of the topics matching `flt` with positions in
        (after, upto], oldest first, and those topics' eviction marks."""


# called for every message the broker delivers to this node, in position order
Deliver = Callable[[Message], None]


@runtime_checkable
class Broker(Protocol):
    """Fan-out between processes: a message published on any node reaches `deliver` on
    every node (the publishing one too), in one order shared by all nodes. Engines without
    a broker (memory, SQLite: one process) route in the hub directly."""

    def start_fanout(self, deliver: Deliver, lost: Callable[[str], None]) -> Awaitable[None]:
        """Start reading the cluster's messages and hand each to `deliver`; resolves once
        the reader is positioned (messages published after that are delivered). `lost(why)`
        is called when the broker came back without what this node has seen (its data was
        lost): positions no longer match, and the node must start over."""

    def broker_publish(self, message: Message) -> None:
        """Send a message to every node (write-behind: `Journal.sync()` covers it; the
        position is set on `message.log_id` once the store answered)."""


class Presence(Protocol):
    """Who is connected where: per-node and cluster figures ($SYS, /metrics), and which node
    holds a client id's connection. A presence belongs to one node: the node id of
    `client_online`/`client_offline` is its own (engines/redis/presence.py)."""

    async def client_online(self, client_id: str) -> None: ...

    async def client_offline(self, client_id: str) -> None:
        """Forget the client's place unless another node has it by now (takeover)."""

    async def where(self, client_id: str) -> str | None:
        """The live node that holds `client_id`'s connection, or None."""

    async def cluster_figures(self) -> ClusterFigures:
        """Every live node's figures and the cluster totals."""


class Engine(Journal, SessionStore, RetainedStore, History, Protocol):
    """What the hub and the message log are built on: the write-behind ports together."""

    name: str


class AuthStore(Protocol):
    """Users, tokens and ACL rules; `generation()` moves on every change (change
    notification: a server reloads `snapshot()` when it moved)."""

    # True when calls may block (disk I/O): async callers run them in a thread
    blocking: bool

    def open(self) -> None: ...

    def close(self) -> None: ...

    def generation(self) -> int: ...

    def snapshot(self) -> AuthSnapshot: ...

    # users
    def get_user(self, username: str) -> StoredUser | None: ...

    def list_users(self) -> list[StoredUser]: ...

    def add_user(self, user: StoredUser) -> None: ...

    def update_user(
        self,
        username: str,
        *,
        password_hash: str | None = None,
        roles: tuple[str, ...] | None = None,
        scram: str | None = None,
    ) -> StoredUser:
        """A new `password_hash` always replaces the SCRAM verifier too, with `scram` (None
        removes it): a verifier of the old password must never outlive it."""
        ...

    def remove_user(self, username: str) -> list[str]:
        """Remove a user and its tokens; returns the ids of the tokens removed."""
        ...

    # tokens
    def get_token(self, token_id: str) -> StoredToken | None: ...

    def list_tokens(self, username: str | None = None) -> list[StoredToken]: ...

    def add_token(self, token: StoredToken) -> None: ...

    def revoke_token(self, token_id: str, when: float) -> StoredToken:
        """Mark revoked (idempotent: an already revoked token is returned unchanged)."""
        ...

    def touch_token(self, token_id: str, when: float) -> None: ...

    # ACL rules
    def list_rules(self) -> list[AclRule]: ...

    def add_rule(self, rule: AclRule) -> AclRule:
        """Store a rule; returns it with its id. Conflict when an equal rule exists."""
        ...

    def remove_rule(self, rule_id: int) -> AclRule: ...
