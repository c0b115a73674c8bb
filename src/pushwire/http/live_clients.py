"""Long-lived HTTP readers (SSE streams, held long-polls, JSON WebSockets) in the client
registry while they run, so that `GET /v1/admin/clients` lists them next to MQTT clients."""

from __future__ import annotations

import time
from collections.abc import Callable

from pushwire.core.clients import ClientInfo
from pushwire.http.auth import Caller
from pushwire.http.state import HttpState


def register_reader(
    state: HttpState,
    transport: str,
    caller: Callable[[], Caller | None],
    subscriptions: Callable[[], tuple[str, ...]],
    address: str,
) -> int:
    """Register a reader; returns the key for `state.clients.unregister`. `caller` and
    `subscriptions` are asked at listing time (a WebSocket may log in with its first frame,
    and subscribes and unsubscribes as it goes)."""
    client_id = state.clients.next_id(transport)
    since = time.time()

    def describe() -> ClientInfo:
        who = caller()
        identity = who.identity if who is not None else None
        return ClientInfo(
            client_id,
            transport,
            identity.username if identity is not None else None,
            identity.token_id if identity is not None else None,
            address,
            since,
            subscriptions(),
        )

    return state.clients.register(describe)
