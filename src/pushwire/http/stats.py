"""GET /v1/stats: the counters of /metrics as one JSON object, for the console's charts.

Counters are totals since start; a reader computes rates from two snapshots and `time`.
Same access as /metrics: any identity the server admits.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from pushwire.http.auth import CallerDep
from pushwire.http.errors import error_responses
from pushwire.http.metrics import READERS, STREAMING
from pushwire.http.state import HttpState, get_state

router = APIRouter(tags=["admin"])


class StatsOut(BaseModel):
    time: float = Field(description="server time of the snapshot, Unix seconds")
    uptime: float
    messages_in: dict[str, int] = Field(description="published per transport (total)")
    messages_out: dict[str, int] = Field(description="handed to readers per transport (total)")
    connections: dict[str, int] = Field(description="open connections per transport")
    sessions: int
    queued: int = Field(description="messages waiting in MQTT session queues, inflight included")
    dropped: int = Field(
        description="MQTT messages dropped or refused by full queues, SSE/WebSocket streams "
        "closed as too slow, waiters refused at the listener limit (total)"
    )
    log_messages: int
    log_last_id: int


def snapshot(state: HttpState) -> StatsOut:
    hub = state.hub
    s = hub.stats
    h = state.stats
    http_in = sum(h.messages_in.values())
    # O(sessions): fine for a dashboard that asks every few seconds
    queued = sum(x.waiting + len(x.inflight) for x in hub.sessions.values())
    return StatsOut(
        time=time.time(),
        uptime=s.uptime(),
        messages_in={"mqtt": max(0, s.messages_received - http_in)}
        | {t: h.messages_in[t] for t in ("http", "ws")},
        messages_out={"mqtt": s.messages_sent} | {t: h.messages_out[t] for t in READERS},
        connections={"mqtt": s.clients_connected} | {t: h.connections[t] for t in STREAMING},
        sessions=len(hub.sessions),
        queued=queued,
        dropped=s.publish_dropped + s.queue_overflow + h.stream_overflows + h.rejected_busy,
        log_messages=state.log.size,
        log_last_id=state.log.last_id,
    )


@router.get(
    "/v1/stats",
    summary="Counters and gauges as JSON",
    response_model=StatsOut,
    responses=error_responses(401, 429),
)
async def stats(state: Annotated[HttpState, Depends(get_state)], _caller: CallerDep) -> StatsOut:
    """Messages in/out and connections per transport, session queue depth, drops."""
    return snapshot(state)
