"""Who is connected right now, over every transport: what the admin console lists.

Transports describe their own clients: MQTT connections live in the broker, long-lived HTTP
readers (SSE streams, held long-polls, JSON WebSockets) register here while they run. A
transport that keeps its own list (the MQTT broker; later the device gateway) is added as
a *source*, a function asked at listing time, so nothing is copied on every connect.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """One connected client as the admin API shows it."""

    id: str  # MQTT client id, or a generated id for HTTP readers ("sse-12")
    transport: str  # mqtt, mqtts, mqtt-ws, sse, longpoll, ws
    user: str | None  # None: anonymous
    token_id: str | None  # the access token it authenticated with, if any
    address: str  # "ip:port" or "ip"
    since: float  # Unix seconds the connection was opened
    subscriptions: tuple[str, ...] = field(default=())


Describe = Callable[[], ClientInfo]
Source = Callable[[], Iterable[ClientInfo]]


class ClientRegistry:
    """Live HTTP readers (registered while they run) plus the sources of other transports."""

    def __init__(self) -> None:
        self._live: dict[int, Describe] = {}
        self._keys = itertools.count(1)
        self._sources: list[Source] = []

    def next_id(self, transport: str) -> str:
        """A new client id for a reader that has none of its own (HTTP has no client id)."""
        return f"{transport}-{next(self._keys)}"

    def register(self, describe: Describe) -> int:
        """Add a live reader; `describe` is called at listing time (subscriptions change)."""
        key = next(self._keys)
        self._live[key] = describe
        return key

    def unregister(self, key: int) -> None:
        self._live.pop(key, None)

    def add_source(self, source: Source) -> None:
        self._sources.append(source)

    def __len__(self) -> int:
        return len(self._live)

    def list(self) -> list[ClientInfo]:
        """Every connected client, oldest connection first."""
        out = [describe() for describe in self._live.values()]
        for source in self._sources:
            out.extend(source())
        out.sort(key=lambda c: (c.since, c.id))
        return out
