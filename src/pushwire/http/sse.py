"""Server-Sent Events: one stream per request, `id:` = cursor, resumable.

Resumes from `Last-Event-ID` (what browsers send when they reconnect), else `since=`, else
only new messages. Events:

    id: EPOCH:ID                 a message (data: the message JSON; default event type)
    event: gap                   messages after the requested cursor are gone; replay starts
                                 from the oldest kept (data: {"cursor", "epoch", "requested"})
    event: close                 the server ends the stream (data: {"reason", "cursor"}):
                                 "overflow" (this client was too slow) or "shutdown":
                                 reconnect with the cursor; "revoked" (the token was
                                 revoked or expired, or the user removed): do not reconnect
                                 with the same credentials
    : comment                    a heartbeat every `sse_heartbeat` seconds while idle

The stream registers with the log before it reads the backlog, so nothing published in
between is lost; live messages arrive through a bounded buffer (`stream_buffer`): a client
that falls that far behind is told so (`event: close`, reason overflow) and disconnected.

The filter must be readable by the caller (else 403), and every message is checked with
`can_receive` before it is sent (a wildcard stream never carries denied topics).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from pushwire.core.log import LATEST, Cursor, LogEntry, StreamBuffer, format_cursor
from pushwire.http.auth import Caller
from pushwire.http.cursor import CursorError, parse_cursor
from pushwire.http.encode import dumps, entry_sse
from pushwire.http.errors import ApiError, bad_cursor
from pushwire.http.live_clients import register_reader
from pushwire.http.poll import _until_disconnect, check_filter, read_visible
from pushwire.http.state import HttpState

router = APIRouter(tags=["subscribe"])  # routes: http/stream_endpoints.py

BACKLOG_PAGE = 500


class _SseListener:
    __slots__ = ("buffer",)

    def __init__(self, buffer: StreamBuffer[LogEntry]) -> None:
        self.buffer = buffer

    def notify(self, entry: LogEntry) -> None:
        self.buffer.push(entry, entry.size)

    def close(self) -> None:
        self.buffer.close("shutdown")

    def revoke(self, reason: str) -> None:
        self.buffer.close("revoked")

    def disconnected(self, _task: asyncio.Future[None]) -> None:
        self.buffer.close(_GONE)


_GONE = "disconnected"  # the client went away: end the stream without a close event


class _SseResponse(StreamingResponse):
    """A StreamingResponse without the per-stream task group: the stream itself watches
    for the client's disconnect (one task parked on `receive`), see `_stream`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.body_iterator
        assert isinstance(body, _SseBody)
        body.receive = receive
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in body.gen:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await body.gen.aclose()


class _SseBody:
    """The event stream of one response, and the `receive` it watches for a disconnect."""

    __slots__ = ("gen", "receive")

    def __init__(self) -> None:
        self.gen: AsyncGenerator[bytes, None]
        self.receive: Receive | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.gen


def _event(name: str, data: dict[str, object], cursor: str | None = None) -> bytes:
    head = f"id: {cursor}\n" if cursor is not None else ""
    return f"{head}event: {name}\ndata: {dumps(data)}\n\n".encode()


def _sse(
    state: HttpState,
    caller: Caller,
    filter: str,
    since: str | None,
    last_event_id: str | None,
) -> StreamingResponse:
    check_filter(filter, state.settings.max_topic_levels)
    caller.check_subscribe(filter)
    try:
        if last_event_id:
            cursor = parse_cursor(last_event_id)
        elif since:
            cursor = parse_cursor(since)
        else:
            cursor = LATEST
    except CursorError as exc:
        raise bad_cursor(str(exc)) from None
    if state.busy():
        state.stats.rejected_busy += 1
        raise ApiError(503, "too_many_listeners", "too many streams", {"Retry-After": "1"})
    requested = last_event_id or since or "latest"
    body = _SseBody()
    body.gen = _stream(state, filter, cursor, requested, caller, body)
    return _SseResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(
    state: HttpState,
    flt: str,
    cursor: Cursor,
    requested: str,
    caller: Caller | None = None,
    body: _SseBody | None = None,
) -> AsyncGenerator[bytes, None]:
    """The event stream; `caller` None: no ACL filtering and no revocation (tests);
    `body.receive`: the connection, watched for a disconnect (which ends the stream)."""
    log = state.log
    stats = state.stats
    epoch = log.epoch
    heartbeat = state.settings.sse_heartbeat
    settings = state.settings
    buffer: StreamBuffer[LogEntry] = StreamBuffer(
        settings.stream_buffer, settings.stream_buffer_bytes
    )
    listener = _SseListener(buffer)
    # registered here, when the response starts (its `finally` then surely runs), and
    # before the backlog read, in the same step: nothing published in between is lost
    log.listen(flt, listener)
    start = log.resolve(flt, cursor)
    after, gap, floor = start.after, start.gap, start.floor
    stats.connections["sse"] += 1
    stats.connections_total["sse"] += 1
    last = after
    identity = caller.identity if caller is not None else None
    if identity is not None and not state.live.track(identity, listener):
        listener.revoke("revoked")  # revoked since the request was authenticated
    client_key = register_reader(
        state, "sse", lambda: caller, lambda: (flt,), caller.ip if caller is not None else ""
    )
    watcher: asyncio.Future[None] | None = None
    if body is not None and body.receive is not None:
        watcher = asyncio.ensure_future(_until_disconnect(body.receive))
        watcher.add_done_callback(listener.disconnected)
    try:
        yield f": pushwire {format_cursor(epoch, after)}\n\n".encode()
        # backlog, page by page; the live buffer fills meanwhile and is de-duplicated by id
        while buffer.reason != "revoked":
            result = await read_visible(
                log, flt, last, BACKLOG_PAGE, floor, caller, settings.read_max_bytes
            )
            if gap or result.gap:
                gap = False
                floor = log.last_id  # reported: those evictions are no news any more
                stats.gaps += 1
                yield _event(
                    "gap",
                    {"cursor": format_cursor(epoch, last), "epoch": epoch, "requested": requested},
                    format_cursor(epoch, last),
                )
            if result.entries:
                stats.delivered("sse", result.entries)
                yield b"".join(entry_sse(e, epoch) for e in result.entries)
            last = result.next_id
            if not result.more:
                break
        while True:
            items = await buffer.get(heartbeat)
            if items is None:
                yield b": hb\n\n"
                continue
            if not items:  # closed
                if buffer.reason == _GONE:
                    return
                if buffer.reason == "overflow":
                    stats.stream_overflows += 1
                yield _event(
                    "close", {"reason": buffer.reason, "cursor": format_cursor(epoch, last)}
                )
                return
            fresh = [
                e
                for e in items
                if e.id > last
                and not e.message.expired()
                and (caller is None or caller.can_receive(e.message.topic))
            ]
            last = max(last, items[-1].id)
            if fresh:
                stats.delivered("sse", fresh)
                yield b"".join(entry_sse(e, epoch) for e in fresh)
    finally:
        if watcher is not None:
            watcher.remove_done_callback(listener.disconnected)
            watcher.cancel()
        log.unlisten(flt, listener)
        if identity is not None:
            state.live.untrack(identity, listener)
        state.clients.unregister(client_key)
        stats.connections["sse"] -= 1
