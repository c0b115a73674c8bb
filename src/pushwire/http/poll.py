"""Poll and long-poll: ask with a cursor, get what came after it and the next cursor.

Long-poll holds the request until a matching message exists or the timeout passes. A held
request is a `LongPollWaiter` (http/reader.py) in the log's listener group of its filter and
one entry in the loop's shared deadline buckets (http/longpoll_deadlines.py): a publish
answers every waiter of the filter with the same pre-encoded one-message body, by callback,
without re-reading the log; every response is written before any waiter's bookkeeping
(`MessageLog.settle_later`). (On this
Starlette path the request handler also awaits a future and a task watches for the
client's disconnect; the owned protocol needs neither.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from pushwire.core.clients import ClientInfo
from pushwire.core.log import ALL, LATEST, Cursor, MessageLog, ReadResult, Start
from pushwire.core.text import TextError, check_text
from pushwire.core.topics import TopicError, validate_filter
from pushwire.http.auth import Caller, unauthorized
from pushwire.http.cursor import CursorError, parse_cursor, parse_duration, parse_etag
from pushwire.http.encode import entry_longpoll, poll_body
from pushwire.http.errors import (
    ApiError,
    bad_cursor,
    bad_request,
    bad_topic,
    error_responses,
)
from pushwire.http.reader import (
    LongPollWaiter,
    ReplySink,
    read_from,
    read_visible,
    read_visible_now,
)
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
            return _parse_cursor(since), False
        if if_none_match:
            tag = parse_etag(if_none_match)
            if tag is not None and tag != "*":
                return _parse_cursor(tag), True
    except CursorError as exc:
        raise bad_cursor(str(exc)) from None
    return default, False


_CURSORS: dict[str, Cursor] = {}  # parsed cursors that do not depend on the clock
_CURSORS_KEPT = 256
# epochs of `EPOCH:ID` cursors that `parse_cursor` accepted (its alphabet and length
# checked): a reply's cursor with one of them is parsed without the regular expressions
_EPOCHS: set[str] = set()
_EPOCHS_KEPT = 16


def _parse_cursor(text: str) -> Cursor:
    """`parse_cursor`, kept for the cursors that mean the same at any time (ids, `all`,
    `latest`): every long-poll client woken by one message re-asks with the same text.
    Clients of per-user topics each re-ask with their own id, so the kept texts turn
    over all the time: the shape of a reply's cursor is recognised first."""
    cursor = _CURSORS.get(text)
    if cursor is None:
        epoch, colon, digits = text.rpartition(":")
        if (
            colon
            and epoch in _EPOCHS
            and digits.isascii()
            and digits.isdigit()
            and len(digits) <= 18  # below MAX_ID: parse_cursor checks the longer ones
        ):
            cursor = Cursor("id", int(digits), epoch)
        else:
            cursor = parse_cursor(text)
            if cursor.epoch is not None:
                if len(_EPOCHS) >= _EPOCHS_KEPT:
                    _EPOCHS.clear()
                _EPOCHS.add(cursor.epoch)
        if cursor.kind != "time":
            if len(_CURSORS) >= _CURSORS_KEPT:
                _CURSORS.clear()
            _CURSORS[text] = cursor
    return cursor


def check_limit(state: HttpState, limit: int | None) -> int:
    s = state.settings
    if limit is None:
        return min(s.poll_limit, s.poll_max_limit)
    if limit < 1 or limit > s.poll_max_limit:
        raise bad_request(f"limit must be 1..{s.poll_max_limit}")
    return limit


Answer = tuple[int, bytes, dict[str, str]]  # status, JSON body (b"": none), headers


def poll_answer(
    state: HttpState, result: ReadResult, transport: str, from_etag: bool, requested: int | None
) -> Answer:
    """The reply to a (long-)poll read, on any transport."""
    epoch = result.epoch
    headers = _poll_headers(result.cursor, result.gap)
    if result.gap:
        state.stats.gaps += 1
    if from_etag and not result.entries and not result.gap and requested == result.next_id:
        return 304, b"", headers
    entries = result.entries
    state.stats.delivered(transport, entries)
    if len(entries) == 1 and not result.gap and not result.more:
        entry = entries[0]
        if entry.id == result.next_id:
            # what a woken long-poll gets: the body cached on the entry, shared
            return 200, entry_longpoll(entry, epoch), headers
    return 200, poll_body(entries, epoch, result.next_id, result.gap, result.more), headers


def starlette_response(answer: Answer) -> Response:
    status, body, headers = answer
    if status == 304:
        return Response(status_code=304, headers=headers)
    return Response(body, status, headers, media_type="application/json")


def poll_response(
    state: HttpState, result: ReadResult, transport: str, from_etag: bool, requested: int | None
) -> Response:
    return starlette_response(poll_answer(state, result, transport, from_etag, requested))


def _poll_headers(cursor: str, gap: bool) -> dict[str, str]:
    return {
        "ETag": f'"{cursor}"',
        "Pushwire-Cursor": cursor,
        "Pushwire-Gap": "true" if gap else "false",
        "Cache-Control": "no-store",
    }


async def poll_read(
    state: HttpState,
    caller: Caller,
    filter: str,
    since: str | None,
    limit: int | None,
    if_none_match: str | None,
) -> Answer:
    """A poll, on any transport (raises ApiError)."""
    check_filter(filter, state.settings.max_topic_levels)
    caller.check_subscribe(filter)
    n = check_limit(state, limit)
    cursor, from_etag = request_cursor(since, if_none_match, ALL)
    state.stats.connections_total["poll"] += 1
    result = await read_from(state.log, filter, cursor, n, caller, state.settings.read_max_bytes)
    return poll_answer(state, result, "poll", from_etag, cursor.id if from_etag else None)


async def _poll(
    state: HttpState,
    caller: Caller,
    filter: str,
    since: str | None,
    limit: int | None,
    if_none_match: str | None,
) -> Response:
    return starlette_response(await poll_read(state, caller, filter, since, limit, if_none_match))


class _FutureReply:
    """The Starlette side of a held long-poll (a `ReplySink`): the answer the reader gives
    becomes the response the request handler awaits."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Response]) -> None:
        self.future = future

    def reply(self, body: bytes, cursor: str) -> None:
        self._set(
            Response(body, media_type="application/json", headers=_poll_headers(cursor, False))
        )

    def write_reply(self, body: bytes, cursor: str) -> None:
        self.reply(body, cursor)  # the handler's coroutine writes it later anyway

    def replied(self) -> None:
        pass

    def not_modified(self, cursor: str) -> None:
        self._set(Response(status_code=304, headers=_poll_headers(cursor, False)))

    def refuse(self, reason: str) -> None:
        if not self.future.done():
            self.future.set_exception(unauthorized(reason))

    def _set(self, response: Response) -> None:
        if not self.future.done():
            self.future.set_result(response)


async def _until_disconnect(receive: Callable[[], Awaitable[Any]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class LongPollStart:
    """A long-poll's first read: its answer when it has one at once, else what holding it
    needs (`hold_longpoll`); or, from `longpoll_begin`, `pending`: the read must wait for
    the disk (`longpoll_read` does)."""

    __slots__ = (
        "after",
        "answer",
        "floor",
        "from_etag",
        "gap",
        "limit",
        "pending",
        "requested",
        "wait",
    )

    def __init__(
        self,
        answer: Answer | None,
        after: int,
        wait: float,
        from_etag: bool,
        requested: int | None,
    ) -> None:
        self.answer = answer
        self.after = after
        self.wait = wait
        self.from_etag = from_etag
        self.requested = requested
        self.pending = False
        self.floor = 0
        self.gap = False
        self.limit = 0


class LongPollAsk:
    """A long-poll's options, parsed and validated (`longpoll_ask`)."""

    __slots__ = ("cursor", "from_etag", "limit", "wait")

    def __init__(self, cursor: Cursor, from_etag: bool, limit: int, wait: float) -> None:
        self.cursor = cursor
        self.from_etag = from_etag
        self.limit = limit
        self.wait = wait


def longpoll_check(state: HttpState, caller: Caller, filter: str) -> None:
    """The filter, and the caller's right to read it (raises ApiError)."""
    check_filter(filter, state.settings.max_topic_levels)
    caller.check_subscribe(filter)


def longpoll_ask(
    state: HttpState,
    since: str | None,
    limit: int | None,
    timeout: str | None,
    if_none_match: str | None,
) -> LongPollAsk:
    """A long-poll's options (raises ApiError)."""
    n = check_limit(state, limit)
    s = state.settings
    wait = s.longpoll_timeout
    if timeout is not None:
        wait = _timeout(timeout, s.longpoll_max_timeout)
    cursor, from_etag = request_cursor(since, if_none_match, LATEST)
    return LongPollAsk(cursor, from_etag, n, wait)


def _quiet_until(log: MessageLog, filter: str, start: Start) -> int | None:
    """Where a long-poll may wait without reading the log: nothing was published after its
    cursor (the usual re-ask), or nothing for its filter, only other topics' messages (a
    per-user topic's re-ask): past the log's last id, as the read's next id would say.
    None: it has to read."""
    after, last = start.after, log.last_id
    if after == last or log.quiet_after(filter, after, start.floor):
        return max(after, last)
    return None


def longpoll_begin(
    state: HttpState, caller: Caller, filter: str, ask: LongPollAsk
) -> LongPollStart:
    """A long-poll's first read without waiting, after `longpoll_check` (raises 503 when
    it would have to wait and too many already do); `pending` when the read reaches
    messages only on disk (then `longpoll_rest`)."""
    wait, from_etag, n = ask.wait, ask.from_etag, ask.limit
    log = state.log
    state.stats.connections_total["longpoll"] += 1
    start = log.resolve(filter, ask.cursor)
    requested = after = start.after
    if not start.gap and wait > 0:
        hold = _quiet_until(log, filter, start)
        if hold is not None:
            busy_check(state)
            return LongPollStart(None, hold, wait, from_etag, requested)
    s = state.settings
    result = read_visible_now(log, filter, after, n, start.floor, caller, s.read_max_bytes)
    if result is None:
        first = LongPollStart(None, after, wait, from_etag, requested)
        first.pending, first.floor, first.gap, first.limit = True, start.floor, start.gap, n
        return first
    return _first_answer(state, result, start.gap, after, wait, from_etag, requested)


def longpoll_now(
    state: HttpState, caller: Caller, filter: str, cursor: Cursor, limit: int, wait: float
) -> LongPollStart | None:
    """`longpoll_begin` for a re-ask on the lane (http/streams.py `_ReaskLane`), after
    the same checks (passed earlier on the connection): None, having changed nothing, when
    the read would reach the disk or holding would be refused (503): the request then goes
    the normal way, which says why."""
    log = state.log
    start = log.resolve(filter, cursor)
    after = start.after
    if not start.gap and wait > 0:
        hold = _quiet_until(log, filter, start)
        if hold is not None:
            if state.busy():
                return None
            state.stats.connections_total["longpoll"] += 1
            return LongPollStart(None, hold, wait, False, after)
    s = state.settings
    result = read_visible_now(log, filter, after, limit, start.floor, caller, s.read_max_bytes)
    if result is None:
        return None
    result.gap = result.gap or start.gap
    if not (result.entries or result.gap or wait <= 0) and state.busy():
        return None
    state.stats.connections_total["longpoll"] += 1
    return _first_answer(state, result, start.gap, after, wait, False, after)


def parse_kept_cursor(text: str) -> Cursor:
    """A cursor as since= gives it (raises CursorError), kept when it means the same at
    any time."""
    return _parse_cursor(text)


def _first_answer(
    state: HttpState,
    result: ReadResult,
    gap: bool,
    after: int,
    wait: float,
    from_etag: bool,
    requested: int | None,
) -> LongPollStart:
    result.gap = result.gap or gap
    if result.entries or result.gap or wait <= 0:
        answer = poll_answer(state, result, "longpoll", from_etag, requested)
        return LongPollStart(answer, after, wait, from_etag, requested)
    # past anything the caller may not receive (the waiter's `start` catches up with what
    # was published while a read waited for the disk)
    busy_check(state)
    return LongPollStart(None, result.next_id, wait, from_etag, requested)


async def longpoll_read(
    state: HttpState,
    caller: Caller,
    filter: str,
    since: str | None,
    limit: int | None,
    timeout: str | None,
    if_none_match: str | None,
) -> LongPollStart:
    """A long-poll's checks and first read, on any transport (`longpoll_check`,
    `longpoll_ask`, `longpoll_begin`, then the read from disk when it needs one)."""
    longpoll_check(state, caller, filter)
    ask = longpoll_ask(state, since, limit, timeout, if_none_match)
    first = longpoll_begin(state, caller, filter, ask)
    if not first.pending:
        return first
    return await longpoll_rest(state, caller, filter, first)


async def longpoll_rest(
    state: HttpState, caller: Caller, filter: str, first: LongPollStart
) -> LongPollStart:
    """The first read of a `pending` long-poll (`longpoll_begin`): from disk."""
    result = await read_visible(
        state.log,
        filter,
        first.after,
        first.limit,
        first.floor,
        caller,
        state.settings.read_max_bytes,
    )
    return _first_answer(
        state, result, first.gap, first.after, first.wait, first.from_etag, first.requested
    )


_TIMEOUTS: dict[str, float] = {}  # timeout= texts already parsed (clients repeat theirs)


def _timeout(given: str, most: float) -> float:
    wait = _TIMEOUTS.get(given)
    if wait is None:
        try:
            wait = parse_duration(given)
        except ValueError as exc:
            raise bad_request(f"timeout: {exc}") from None
        if wait < 0:
            raise bad_request("timeout must not be negative")
        if len(_TIMEOUTS) >= _CURSORS_KEPT:
            _TIMEOUTS.clear()
        _TIMEOUTS[given] = wait
    return min(wait, most)


def busy_check(state: HttpState) -> None:
    """Raise 503 when one more waiter would exceed http_max_listeners."""
    if state.busy():
        state.stats.rejected_busy += 1
        raise ApiError(503, "too_many_listeners", "too many waiting clients", {"Retry-After": "1"})


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
    first = await longpoll_read(state, caller, filter, since, limit, timeout, if_none_match)
    if first.answer is not None:
        return starlette_response(first.answer)
    answer: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    held = hold_longpoll(
        state,
        caller,
        filter,
        _FutureReply(answer),
        first.after,
        first.wait,
        first.from_etag,
        first.requested,
    )
    waiter = held.waiter

    def gone(_task: asyncio.Future[None]) -> None:
        waiter.cancel()
        if not answer.done():
            answer.set_result(Response(status_code=204))  # nobody is listening any more

    disconnect = asyncio.ensure_future(_until_disconnect(request.receive))
    disconnect.add_done_callback(gone)
    try:
        return await answer
    finally:
        disconnect.remove_done_callback(gone)
        disconnect.cancel()
        held.end()


class HeldLongPoll:
    """A held long-poll's waiter and its registrations (`hold_longpoll`); `end` (once,
    after the answer or the client's disconnect) undoes them."""

    # the admin API's client-list entry is this object's bound `describe` (as SSE's
    # `SseStream`), not `register_reader`'s closure and two lambdas (~1 KB per held poll)
    __slots__ = ("client_id", "client_key", "ip", "since", "state", "waiter")

    def __init__(self, state: HttpState, waiter: LongPollWaiter, ip: str) -> None:
        self.state = state
        self.waiter = waiter
        self.ip = ip
        clients = state.clients
        self.client_id = clients.next_id("longpoll")
        self.since = time.time()
        self.client_key = clients.register(self.describe)

    def describe(self) -> ClientInfo:
        waiter = self.waiter
        identity = waiter.caller.identity if waiter.caller is not None else None
        return ClientInfo(
            self.client_id,
            "longpoll",
            identity.username if identity is not None else None,
            identity.token_id if identity is not None else None,
            self.ip,
            self.since,
            (waiter.filter,),
        )

    def end(self) -> None:
        waiter = self.waiter
        waiter.cancel()
        if waiter.caller is not None:
            self.state.live.untrack(waiter.caller.identity, waiter)
        self.state.clients.unregister(self.client_key)
        self.state.stats.connections["longpoll"] -= 1


def hold_longpoll(
    state: HttpState,
    caller: Caller,
    flt: str,
    sink: ReplySink,
    after: int,
    wait: float,
    from_etag: bool,
    requested: int | None,
) -> HeldLongPoll:
    """Hold a long-poll whose first read found nothing (on any transport): its waiter
    answers through `sink` by callback (a message, the deadline `wait` seconds from now,
    shutdown, or refusal on revocation). Raises 401 when the credentials were revoked
    meanwhile. Call `end()` on the result once it has answered or the client left."""
    waiter = LongPollWaiter(
        state.log,
        flt,
        sink,
        state.stats,
        caller=caller,
        after=after,
        from_etag=from_etag,
        requested=requested,
    )
    if not state.live.track(caller.identity, waiter):
        raise unauthorized("the credentials were revoked")
    waiter.start(asyncio.get_running_loop().time() + wait)
    state.stats.connections["longpoll"] += 1
    return HeldLongPoll(state, waiter, caller.ip)
