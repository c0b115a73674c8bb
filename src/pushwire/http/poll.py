"""Poll and long-poll: ask with a cursor, get what came after it and the next cursor.

Long-poll holds the request until a matching message exists or the timeout passes. A held
request is a future registered under its filter in the log's listener trie, one timer-heap
entry for its timeout, and a task parked on the connection's disconnect event: nothing
polls, so 10,000 waiters cost memory, not CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from pushwire.core.log import ALL, LATEST, Cursor, LogEntry, MessageLog, ReadResult
from pushwire.core.text import TextError, check_text
from pushwire.core.topics import TopicError, validate_filter
from pushwire.http.auth import Caller, unauthorized
from pushwire.http.cursor import CursorError, parse_cursor, parse_duration, parse_etag
from pushwire.http.encode import entry_json
from pushwire.http.errors import ApiError, bad_cursor, bad_request, bad_topic, error_responses
from pushwire.http.live_clients import register_reader
from pushwire.http.state import HttpState

router = APIRouter(tags=["subscribe"])  # routes: http/stream_endpoints.py


class MessageOut(BaseModel):
    """A message as JSON readers see it."""

    id: int = Field(description="increases within every topic; resume after it with since=")
    topic: str
    time: float = Field(description="publish time, Unix seconds")
    epoch: str
    payload: str | None = Field(None, description="the payload when it is valid UTF-8")
    payload_base64: str | None = Field(None, description="the payload otherwise")
    content_type: str | None = None
    qos: int | None = Field(None, description="publisher's QoS (absent: 0)")
    retain: bool | None = Field(None, description="publisher's retain flag (absent: false)")
    expires: float | None = Field(None, description="expiry time, Unix seconds")
    priority: int | None = Field(None, description="1..5 when the publisher set one")


class PollResult(BaseModel):
    messages: list[MessageOut]
    cursor: str = Field(description="`EPOCH:ID` to send as since= (or If-None-Match) next")
    epoch: str
    id: int = Field(description="the id part of `cursor`")
    gap: bool = Field(
        description="true when messages after your cursor are gone (evicted, or the log was "
        "reset: another epoch); the reply then starts from the oldest message kept"
    )
    more: bool = Field(description="true when limit cut the reply: ask again right away")


_HEADERS_DOC = {
    "ETag": {"description": 'the next cursor, quoted ("EPOCH:ID")', "schema": {"type": "string"}},
    "Pushwire-Cursor": {"description": "the next cursor", "schema": {"type": "string"}},
    "Pushwire-Gap": {
        "description": "true when messages after the cursor are gone",
        "schema": {"type": "string", "enum": ["true", "false"]},
    },
}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": PollResult, "headers": _HEADERS_DOC},
    304: {
        "description": "If-None-Match was the cursor and nothing came after it",
        "headers": _HEADERS_DOC,
    },
    **error_responses(400, 401, 403, 429),
}


def check_filter(flt: str, max_levels: int) -> None:
    try:
        check_text(flt, "filter")
        validate_filter(flt, max_levels)
    except TextError as exc:
        raise bad_topic(str(exc)) from None
    except TopicError as exc:
        raise bad_topic(f"{exc}: {flt!r}") from None
    if flt.startswith("$share/"):
        raise bad_topic("shared subscriptions are an MQTT feature; subscribe to the filter")


def request_cursor(
    since: str | None, if_none_match: str | None, default: Cursor
) -> tuple[Cursor, bool]:
    """(cursor, came_from_etag): since= wins over If-None-Match; else `default`."""
    try:
        if since is not None and since != "":
            return parse_cursor(since), False
        if if_none_match:
            tag = parse_etag(if_none_match)
            if tag is not None and tag != "*":
                return parse_cursor(tag), True
    except CursorError as exc:
        raise bad_cursor(str(exc)) from None
    return default, False


async def read_visible(
    log: MessageLog,
    flt: str,
    after: int,
    limit: int,
    floor: int,
    caller: Caller | None,
    max_bytes: int = 0,
) -> ReadResult:
    """`log.fetch` (entries only on disk read back), keeping only the messages the caller
    may receive (a wildcard filter can match topics the ACL denies, e.g. allow `#` and deny
    `secret/#`). The cursor still moves past the skipped ones; a page of nothing but
    skipped messages is followed by the next. `max_bytes`: about how much one page holds."""
    while True:
        result = await log.fetch(flt, after, limit, floor, max_bytes)
        if caller is None:
            return result
        visible = [e for e in result.entries if caller.can_receive(e.message.topic)]
        if len(visible) != len(result.entries):
            result.entries = visible
        if visible or not result.more or result.gap:
            return result
        after = result.next_id


def check_limit(state: HttpState, limit: int | None) -> int:
    s = state.settings
    if limit is None:
        return min(s.poll_limit, s.poll_max_limit)
    if limit < 1 or limit > s.poll_max_limit:
        raise bad_request(f"limit must be 1..{s.poll_max_limit}")
    return limit


def poll_response(
    state: HttpState, result: ReadResult, transport: str, from_etag: bool, requested: int | None
) -> Response:
    epoch = result.epoch
    cursor = result.cursor
    headers = {
        "ETag": f'"{cursor}"',
        "Pushwire-Cursor": cursor,
        "Pushwire-Gap": "true" if result.gap else "false",
        "Cache-Control": "no-store",
    }
    if result.gap:
        state.stats.gaps += 1
    if from_etag and not result.entries and not result.gap and requested == result.next_id:
        return Response(status_code=304, headers=headers)
    state.stats.delivered(transport, result.entries)
    body = (
        '{"messages":['
        + ",".join(entry_json(e, epoch) for e in result.entries)
        + f'],"cursor":"{cursor}","epoch":"{epoch}","id":{result.next_id},'
        + f'"gap":{"true" if result.gap else "false"},"more":{"true" if result.more else "false"}}}'
    )
    return Response(body.encode(), media_type="application/json", headers=headers)


async def _poll(
    state: HttpState,
    caller: Caller,
    filter: str,
    since: str | None,
    limit: int | None,
    if_none_match: str | None,
) -> Response:
    check_filter(filter, state.settings.max_topic_levels)
    caller.check_subscribe(filter)
    n = check_limit(state, limit)
    cursor, from_etag = request_cursor(since, if_none_match, ALL)
    state.stats.connections_total["poll"] += 1
    log = state.log
    start = log.resolve(filter, cursor)
    result = await read_visible(
        log, filter, start.after, n, start.floor, caller, state.settings.read_max_bytes
    )
    result.gap = result.gap or start.gap
    return poll_response(state, result, "poll", from_etag, cursor.id if from_etag else None)


class _Waiter:
    """A held long-poll: woken by a matching append, its timeout, a disconnect or shutdown."""

    __slots__ = ("closing", "future")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.closing = False

    def notify(self, entry: LogEntry) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def close(self) -> None:
        self.closing = True
        if not self.future.done():
            self.future.set_result(None)


class _Held:
    """A held long-poll as the revocation index and the disconnect watcher see it: wakes
    whichever future the request is waiting on."""

    __slots__ = ("future", "revoked")

    def __init__(self) -> None:
        self.future: asyncio.Future[None] | None = None
        self.revoked: str | None = None

    def revoke(self, reason: str) -> None:
        self.revoked = reason
        if self.future is not None:
            _wake(self.future)

    def wake_on_done(self, _task: asyncio.Future[None]) -> None:
        if self.future is not None:
            _wake(self.future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _until_disconnect(receive: Callable[[], Awaitable[Any]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _longpoll(
    request: Request,
    state: HttpState,
    caller: Caller,
    filter: str,
    since: str | None,
    limit: int | None,
    timeout: str | None,
    if_none_match: str | None,
) -> Response:
    check_filter(filter, state.settings.max_topic_levels)
    caller.check_subscribe(filter)
    n = check_limit(state, limit)
    s = state.settings
    wait = s.longpoll_timeout
    if timeout is not None:
        try:
            wait = parse_duration(timeout)
        except ValueError as exc:
            raise bad_request(f"timeout: {exc}") from None
        if wait < 0:
            raise bad_request("timeout must not be negative")
        wait = min(wait, s.longpoll_max_timeout)
    cursor, from_etag = request_cursor(since, if_none_match, LATEST)
    log = state.log
    stats = state.stats
    stats.connections_total["longpoll"] += 1
    start = log.resolve(filter, cursor)
    requested = after = start.after
    result = await read_visible(log, filter, after, n, start.floor, caller, s.read_max_bytes)
    result.gap = result.gap or start.gap
    if result.entries or result.gap or wait <= 0:
        return poll_response(state, result, "longpoll", from_etag, requested)
    after = result.next_id  # past anything the caller may not receive
    if state.busy():
        stats.rejected_busy += 1
        raise ApiError(503, "too_many_listeners", "too many waiting clients", {"Retry-After": "1"})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    held = _Held()
    if not state.live.track(caller.identity, held):
        raise unauthorized("the credentials were revoked")
    stats.connections["longpoll"] += 1
    client_key = register_reader(state, "longpoll", lambda: caller, lambda: (filter,), caller.ip)
    disconnect = asyncio.ensure_future(_until_disconnect(request.receive))
    disconnect.add_done_callback(held.wake_on_done)
    try:
        while True:
            future: asyncio.Future[None] = loop.create_future()
            held.future = future
            waiter = _Waiter(future)
            log.listen(filter, waiter)
            timer = loop.call_at(deadline, _wake, future)
            try:
                await future
            finally:
                timer.cancel()
                log.unlisten(filter, waiter)
            if disconnect.done():
                return Response(status_code=204)  # nobody is listening any more
            if held.revoked is not None:
                raise unauthorized(held.revoked)
            result = await read_visible(
                log, filter, after, n, start.floor, caller, s.read_max_bytes
            )
            if result.entries or result.gap or waiter.closing or loop.time() >= deadline:
                return poll_response(state, result, "longpoll", from_etag, requested)
            # woken by messages that are not for this caller (expired, or denied): wait on
            after = result.next_id
    finally:
        state.live.untrack(caller.identity, held)
        state.clients.unregister(client_key)
        stats.connections["longpoll"] -= 1
        disconnect.cancel()
