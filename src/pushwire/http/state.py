"""What every HTTP route needs: the hub, the message log, the settings, the counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from pushwire.config import Settings
from pushwire.core.hub import Hub
from pushwire.core.log import MessageLog

TRANSPORTS = ("http", "poll", "longpoll", "sse", "ws")


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


@dataclass(slots=True)
class HttpState:
    hub: Hub
    log: MessageLog
    settings: Settings
    stats: HttpStats = field(default_factory=HttpStats)

    def busy(self) -> bool:
        """True when a new waiter/stream/subscription would exceed http_max_listeners."""
        return self.log.listener_count >= self.settings.http_max_listeners


def get_state(conn: HTTPConnection) -> HttpState:
    """FastAPI dependency (works for HTTP requests and WebSockets)."""
    state: HttpState = conn.app.state.pushwire
    return state
