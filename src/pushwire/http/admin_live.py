"""The admin API's live view: `GET /v1/admin/clients` (connected clients of every
transport) and `GET /v1/admin/sessions` (MQTT sessions and their queues).

Admins only, like the rest of `/v1/admin/` (401 without credentials, 403 for others).
"""

from __future__ import annotations

import heapq
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from pushwire.core.clients import ClientInfo
from pushwire.core.session import Session
from pushwire.http.auth import AdminDep
from pushwire.http.errors import error_responses
from pushwire.http.state import HttpState, get_state

router = APIRouter(prefix="/v1/admin", tags=["admin API"])

_TOTAL = {
    "Pushwire-Total": {"description": "how many there are in all", "schema": {"type": "integer"}}
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {"headers": _TOTAL},
    **error_responses(401, 403, 429),
}


class ClientOut(BaseModel):
    id: str = Field(description="MQTT client id; HTTP readers get a generated one (sse-12)")
    transport: str = Field(description="mqtt, mqtts, mqtt-ws, sse, longpoll or ws")
    user: str | None = Field(description="null: anonymous")
    token_id: str | None = Field(description="the access token it logged in with, if any")
    address: str
    since: float = Field(description="Unix seconds the connection was opened")
    subscriptions: list[str]

    @classmethod
    def of(cls, c: ClientInfo) -> ClientOut:
        return cls(
            id=c.id,
            transport=c.transport,
            user=c.user,
            token_id=c.token_id,
            address=c.address,
            since=c.since,
            subscriptions=list(c.subscriptions),
        )


class SessionOut(BaseModel):
    client_id: str
    owner: str | None = Field(description="the user the session belongs to (null: anonymous)")
    connected: bool
    persistent: bool = Field(description="kept after the connection ends")
    expiry_interval: int | None = Field(description="seconds kept after disconnect; null: ever")
    disconnected_at: float | None
    subscriptions: list[str]
    queued: int = Field(description="messages waiting to be sent")
    inflight: int = Field(description="QoS 1/2 messages sent and not yet acknowledged")

    @classmethod
    def of(cls, s: Session) -> SessionOut:
        return cls(
            client_id=s.client_id,
            owner=s.owner,
            connected=s.link is not None,
            persistent=s.persistent,
            expiry_interval=s.expiry_interval,
            disconnected_at=s.disconnected_at,
            subscriptions=list(s.subscriptions),
            queued=s.waiting,
            inflight=len(s.inflight),
        )


@router.get(
    "/clients",
    summary="Connected clients, every transport",
    response_model=list[ClientOut],
    responses=_ERRORS,
)
async def list_clients(
    _admin: AdminDep, state: Annotated[HttpState, Depends(get_state)], response: Response
) -> list[ClientOut]:
    """MQTT connections (TCP, TLS, WebSocket) that completed CONNECT, SSE streams, held
    long-polls and JSON WebSockets, oldest first, at most --admin-list-limit of them
    (`Pushwire-Total`: how many there are). Plain polls are requests, not connections:
    they are not listed."""
    clients = state.clients.list()
    response.headers["Pushwire-Total"] = str(len(clients))
    return [ClientOut.of(c) for c in clients[: state.settings.admin_list_limit]]


@router.get(
    "/sessions",
    summary="MQTT sessions and their queue depths",
    response_model=list[SessionOut],
    responses=_ERRORS,
)
async def list_sessions(
    _admin: AdminDep, state: Annotated[HttpState, Depends(get_state)], response: Response
) -> list[SessionOut]:
    """The sessions the hub holds, connected or kept for a client that will come back, the
    deepest queue first, at most --admin-list-limit of them (`Pushwire-Total`: how many
    there are)."""
    sessions = state.hub.sessions.values()
    response.headers["Pushwire-Total"] = str(len(sessions))
    deepest = heapq.nsmallest(
        state.settings.admin_list_limit,
        sessions,
        key=lambda s: (-(s.waiting + len(s.inflight)), s.client_id),
    )
    return [SessionOut.of(s) for s in deepest]
