"""GET /v1/retained/{filter}: the retained messages of the topics a filter matches.

Retained messages are what MQTT hands a new subscriber first (the last message published
with the retain flag, per topic). This endpoint reads them without subscribing, with the
same checks as poll: the caller must be allowed to read the whole filter (else 403), and
messages of topics it may not receive are left out. Expired ones are not returned.
"""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from pushwire.core.message import Message
from pushwire.http.auth import ReaderDep
from pushwire.http.encode import message_priority
from pushwire.http.errors import error_responses
from pushwire.http.poll import check_filter, check_limit
from pushwire.http.state import HttpState, get_state

router = APIRouter(tags=["subscribe"])


class RetainedOut(BaseModel):
    topic: str
    time: float = Field(description="publish time, Unix seconds")
    payload: str | None = Field(None, description="the payload when it is valid UTF-8")
    payload_base64: str | None = Field(None, description="the payload otherwise")
    content_type: str | None = None
    qos: int | None = Field(None, description="publisher's QoS (absent: 0)")
    expires: float | None = Field(None, description="expiry time, Unix seconds")
    priority: int | None = Field(None, description="1..5 when the publisher set one")
    id: int | None = Field(None, description="its id in the message log, when it was logged")


class RetainedResult(BaseModel):
    messages: list[RetainedOut]
    more: bool = Field(description="true when limit cut the reply: ask again with after=next")
    next: str | None = Field(description="the last topic in this reply (null: none)")


def retained_dict(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"topic": m.topic, "time": round(m.created_at, 3)}
    try:
        d["payload"] = m.payload.decode("utf-8")
    except UnicodeDecodeError:
        d["payload_base64"] = base64.b64encode(m.payload).decode("ascii")
    content_type = m.properties.get("content_type")
    if content_type:
        d["content_type"] = content_type
    if m.qos:
        d["qos"] = m.qos
    if m.expires_at is not None:
        d["expires"] = round(m.expires_at, 3)
    priority = message_priority(m)
    if priority is not None:
        d["priority"] = priority
    if m.log_id is not None:
        d["id"] = m.log_id
    return d


@router.get(
    "/v1/retained/{filter:path}",
    summary="The retained messages under a filter",
    response_model=RetainedResult,
    response_model_exclude_none=True,
    responses=error_responses(400, 401, 403, 429),
)
async def retained(
    filter: str,
    state: Annotated[HttpState, Depends(get_state)],
    caller: ReaderDep,
    limit: Annotated[
        int | None, Query(description="most messages in the reply (default --poll-limit)")
    ] = None,
    after: Annotated[
        str | None, Query(description="only topics after this one (the previous reply's next)")
    ] = None,
) -> dict[str, Any]:
    """The last retained message of every topic matching the filter (MQTT syntax; `#` as
    `%23`), in topic order, at most `limit` (up to --poll-max-limit) per reply. 403 when
    the topic ACL does not let the caller read the filter; messages of topics it may not
    receive are left out."""
    check_filter(filter, state.settings.max_topic_levels)
    caller.check_subscribe(filter)
    n = check_limit(state, limit)
    now = time.time()
    visible = [
        m
        for m in state.hub.retained.matching(filter)
        if (after is None or m.topic > after) and not m.expired(now) and caller.can_receive(m.topic)
    ]
    page = visible[:n]
    return {
        "messages": [retained_dict(m) for m in page],
        "more": len(visible) > n,
        "next": page[-1].topic if page else None,
    }
