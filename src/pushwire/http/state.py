"""What every HTTP route needs: the hub, the message log, the settings, the auth service,
the live readers (for revocation) and the counters."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from pushwire.config import Settings
from pushwire.core.auth import AuthService
from pushwire.core.auth_settings import AuthSettings
from pushwire.core.clients import ClientRegistry
from pushwire.core.histogram import Histogram
from pushwire.core.hub import Hub
from pushwire.core.identity import Identity
from pushwire.core.log import LogEntry, MessageLog
from pushwire.core.ratelimit import KeyedLimiter
from pushwire.engines.auth_store import MemoryAuthStore
from pushwire.http.auth import LiveConnections

TRANSPORTS = ("http", "poll", "longpoll", "sse", "ws")


class WsEvents(Protocol):
    """Subscriptions and acks on the JSON WebSocket; `conn` tells connections apart."""

    def ws_subscribed(self, identity: Identity, flt: str, conn: int) -> None: ...

    def ws_unsubscribed(self, identity: Identity, flt: str, conn: int) -> None: ...

    def ws_acked(self, identity: Identity, flt: str, upto: int) -> None: ...


@dataclass(slots=True)
class HttpStats:
    """Counters and gauges of the HTTP transports (exported by /metrics)."""

    # messages published through a transport ("http" = POST/PUT, "ws" = JSON WebSocket)
    messages_in: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0))
    # messages handed to readers, per transport
    messages_out: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0))
    # live connections per transport (long-poll: requests currently held)
    connections: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0))
    connections_total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0))
    stream_overflows: int = 0
    heartbeat_timeouts: int = 0
    gaps: int = 0
    rejected_busy: int = 0
    # refused requests/connections: 401 (no or bad credentials), 403 (ACL), 429 (rate)
    unauthorized: int = 0
    forbidden: int = 0
    rate_limited: int = 0
    # publish-to-delivery latency per reading transport (see pushwire.core.histogram)
    delivery_latency: dict[str, Histogram] = field(
        default_factory=lambda: {t: Histogram() for t in TRANSPORTS}
    )

    def delivered(self, transport: str, entries: Sequence[LogEntry]) -> None:
        """Count messages handed to readers of `transport`, and their publish-to-delivery
        latency."""
        self.messages_out[transport] += len(entries)
        latency = self.delivery_latency[transport]
        now = time.time()
        for entry in entries:
            latency.observe(now - entry.message.created_at)

    def delivered_one(self, transport: str, entry: LogEntry) -> None:
        """`delivered` of one live message: a fan-out calls it once per subscriber, so
        without the tuple, the loop and the histogram's method call."""
        self.messages_out[transport] += 1
        latency = self.delivery_latency[transport]
        value = time.time() - entry.message.created_at
        latency.counts[bisect_left(latency.bounds, value)] += 1
        latency.sum += value


def open_auth() -> AuthService:
    """An auth service that admits everybody to everything (anonymous on, no users, no
    rules, never started): for an app made without the server's service (tests, embedding)."""
    return AuthService(MemoryAuthStore(), AuthSettings(anonymous="on"))


@dataclass(slots=True)
class HttpState:
    hub: Hub
    log: MessageLog
    settings: Settings
    auth: AuthService = field(default_factory=open_auth)
    stats: HttpStats = field(default_factory=HttpStats)
    live: LiveConnections = field(init=False)
    # connected clients of every transport, for GET /v1/admin/clients
    clients: ClientRegistry = field(default_factory=ClientRegistry)
    # messages per second one caller (token, user, or anonymous IP) may publish
    publish_rate: KeyedLimiter[str] | None = field(init=False)
    # what GET /metrics exposes: this server's collectors only (not prometheus_client's
    # global registry, so that several servers can run in one process)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # told about JSON WebSocket subscriptions and acks (the push gateway: device presence)
    ws_events: WsEvents | None = None

    def __post_init__(self) -> None:
        self.live = LiveConnections(self.auth)
        rate = self.settings.publish_rate_per_client
        self.publish_rate = KeyedLimiter(rate, max(1.0, 2 * rate)) if rate > 0 else None

    def busy(self) -> bool:
        """True when a new waiter/stream/subscription would exceed http_max_listeners."""
        return self.log.listener_count >= self.settings.http_max_listeners


async def get_state(conn: HTTPConnection) -> HttpState:
    """FastAPI dependency (works for HTTP requests and WebSockets); async so that FastAPI
    does not hand it to its thread pool on every request."""
    state: HttpState = conn.app.state.pushwire
    return state
