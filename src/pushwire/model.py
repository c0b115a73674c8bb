"""The value types every layer shares: core, engines and transports import them from here.

A leaf: it imports only other leaf modules (the message, subscription options and ACL rule
types, which import nothing from engines/ or transports), so `core -> engines` and
`engines -> core` no longer form import cycles through these types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pushwire.core.acl import AclRule
from pushwire.core.message import Message
from pushwire.core.subscription import SubscriptionOptions

__all__ = [
    "AclRule",
    "AuthSnapshot",
    "AuthStoreError",
    "ClusterFigures",
    "Conflict",
    "FailureListener",
    "LogScan",
    "Message",
    "NotFound",
    "QueueState",
    "StoredConsumer",
    "StoredLog",
    "StoredLogEntry",
    "StoredQueueEntry",
    "StoredSession",
    "StoredSubscription",
    "StoredToken",
    "StoredUser",
    "SubscriptionOptions",
    "WriteError",
    "WriteFailure",
]


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
    # the id the transport gave the delivery when it was sent (MQTT: its packet id, the
    # same after a restart, MQTT-4.4.0-1); None while queued
    wire_id: int | None = None
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
    # positions up to this were not loaded (an engine that starts lazily, engine=redis):
    # the log indexes nothing of them and reads them with `log_scan` when asked (0: none)
    unloaded_upto: int = 0


@dataclass(slots=True)
class LogScan:
    """What `log_scan` found: the messages of the matching topics in a position range
    (oldest first, `log_id` set), and the eviction marks of those topics (topic -> highest
    evicted id and its created_at), so a read below the start still reports its gaps."""

    messages: list[Message] = field(default_factory=list)
    evicted: dict[str, tuple[int, float]] = field(default_factory=dict)


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


# -- users, tokens, ACL rules (ports.AuthStore) ----------------------------------------


class AuthStoreError(Exception):
    """Base of the errors the store reports to its callers."""


class NotFound(AuthStoreError, LookupError):
    """No such user, token or rule."""


class Conflict(AuthStoreError):
    """The user, token or rule exists already."""


@dataclass(frozen=True, slots=True)
class StoredUser:
    username: str
    password_hash: str
    roles: tuple[str, ...] = ()
    created: float = 0.0
    # SCRAM-SHA-256 verifier (core/scram.py ScramCredentials.encode); None: the password
    # was set before pushwire stored them, or SCRAM credentials are not kept
    scram: str | None = None


@dataclass(frozen=True, slots=True)
class StoredToken:
    id: str
    username: str
    secret_hash: str  # sha256 hex of the whole token string
    created: float
    expires: float | None = None  # unix time; None: never
    scope: tuple[str, ...] = ()  # empty: the user's full rights
    name: str | None = None  # a label for humans
    last_used: float | None = None
    revoked: float | None = None  # unix time of revocation; None: not revoked

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now

    def active(self, now: float) -> bool:
        return self.revoked is None and not self.expired(now)


@dataclass(frozen=True, slots=True)
class AuthSnapshot:
    """Everything the auth service keeps in memory, as of one generation."""

    generation: int
    users: dict[str, StoredUser] = field(default_factory=dict)
    tokens: dict[str, StoredToken] = field(default_factory=dict)
    rules: tuple[AclRule, ...] = ()


@dataclass(slots=True)
class ClusterFigures:
    """Per-node figures (node id -> figure -> value, as of each node's last heartbeat) and
    the cluster totals of the summable ones (plus "nodes", the count of live nodes)."""

    nodes: dict[str, dict[str, float]] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
