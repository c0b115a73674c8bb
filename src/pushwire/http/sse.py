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

The stream is read by the one reader (http/reader.py): it registers with the log before
it reads the backlog, so nothing published in between is lost; a client that falls more
than `stream_buffer` messages behind is told so (`event: close`, reason overflow) and
disconnected.

The filter must be readable by the caller (else 403), and every message is checked with
`can_receive` before it is sent (a wildcard stream never carries denied topics).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from pushwire.core.clients import ClientInfo
from pushwire.core.identity import Identity
from pushwire.core.log import LATEST, Cursor, LogEntry, format_cursor
from pushwire.http.auth import Caller
from pushwire.http.cursor import CursorError, parse_cursor
from pushwire.http.encode import dumps, entry_sse
from pushwire.http.errors import ApiError, bad_cursor
from pushwire.http.poll import _until_disconnect, check_filter
from pushwire.http.reader import QueueSink, Sink, StreamReader
from pushwire.http.state import HttpState

router = APIRouter(tags=["subscribe"])  # routes: http/stream_endpoints.py

BACKLOG_PAGE = 500


_GONE = "disconnected"  # the client went away: end the stream without a close event


class SseFormat:
    """SSE frames: a message is its entry's cached event (encoded once for every stream)."""

    __slots__ = ("requested",)
    transport = "sse"

    def __init__(self, requested: str) -> None:
        self.requested = requested

    def message(self, entry: LogEntry, epoch: str) -> bytes:
        return entry_sse(entry, epoch)

    def gap(self, cursor: str, epoch: str) -> bytes:
        return _event(
            "gap", {"cursor": cursor, "epoch": epoch, "requested": self.requested}, cursor
        )


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
    cursor, requested = check_sse(state, caller, filter, since, last_event_id)
    body = _SseBody()
    body.gen = _stream(state, filter, cursor, requested, caller, body)
    return _SseResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def check_sse(
    state: HttpState,
    caller: Caller,
    filter: str,
    since: str | None,
    last_event_id: str | None,
) -> tuple[Cursor, str]:
    """An SSE request's checks, on any transport (raises ApiError): its cursor and how
    it was asked for (the gap event's `requested`)."""
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
    return cursor, last_event_id or since or "latest"


class SseStream:
    """An SSE stream's reader and its registrations, on any transport (this Starlette
    path, or the owned protocol with its own Sink): `open_sse` starts it, `end` (once,
    when the stream stops for whatever reason) undoes the registrations."""

    # the admin API's client-list entry is this object's bound `describe`, not a closure
    # over the request (a function, its cells and two lambdas were ~1 KB per idle stream)
    __slots__ = ("client_id", "client_key", "identity", "ip", "reader", "since", "state")

    def __init__(self, state: HttpState, reader: StreamReader, identity: Identity | None) -> None:
        self.state = state
        self.reader = reader
        self.identity = identity
        self.client_key = 0
        self.client_id = ""
        self.ip = ""
        self.since = 0.0

    def register(self, ip: str) -> None:
        """Into the admin API's client list (`GET /v1/admin/clients`) while it runs."""
        clients = self.state.clients
        self.client_id = clients.next_id("sse")
        self.ip = ip
        self.since = time.time()
        self.client_key = clients.register(self.describe)

    def describe(self) -> ClientInfo:
        identity = self.identity
        return ClientInfo(
            self.client_id,
            "sse",
            identity.username if identity is not None else None,
            identity.token_id if identity is not None else None,
            self.ip,
            self.since,
            (self.reader.filter,),
        )

    def hello(self, after: int) -> bytes:
        """The first bytes of the stream: a comment with the starting cursor."""
        return f": pushwire {format_cursor(self.state.log.epoch, after)}\n\n".encode()

    def close_event(self, reason: str) -> bytes:
        """The last event when the reader ended the stream (Sink.close's reason)."""
        return _event("close", {"reason": reason, "cursor": self.reader.cursor})

    def end(self) -> None:
        state = self.state
        self.reader.cancel()
        if self.identity is not None:
            state.live.untrack(self.identity, self.reader)
        state.clients.unregister(self.client_key)
        state.stats.connections["sse"] -= 1


def open_sse(
    state: HttpState,
    flt: str,
    cursor: Cursor,
    requested: str,
    caller: Caller | None,
    sink: Sink,
    make_reader: Callable[[SseFormat], StreamReader] | None = None,
) -> tuple[SseStream, int]:
    """Start an SSE stream into `sink` (the request was checked: filter, ACL, busy):
    the reader registered with the log and the cursor resolved in one step, tracked for
    revocation, counted and listed. Returns the stream and the id its replay starts
    after; then write `stream.hello(after)`, run the replay (`reader.replay_now`, else
    `await reader.replay`), and call `stream.end()` when the stream stops.
    `make_reader`: the transport's own `StreamReader` for this format (the owned
    protocol's, http/sse_reader.py); else the general one."""
    settings = state.settings
    fmt = SseFormat(requested)
    if make_reader is not None:
        reader = make_reader(fmt)
    else:
        reader = StreamReader(
            state.log,
            flt,
            sink,
            fmt,
            state.stats,
            caller=caller,
            limit=settings.stream_buffer,
            max_bytes=settings.stream_buffer_bytes,
        )
    after = reader.open(cursor)
    stats = state.stats
    stats.connections["sse"] += 1
    stats.connections_total["sse"] += 1
    identity = caller.identity if caller is not None else None
    stream = SseStream(state, reader, identity)
    if identity is not None and not state.live.track(identity, reader):
        reader.revoke("revoked")  # revoked since the request was authenticated
    stream.register(caller.ip if caller is not None else "")
    return stream, after


async def _stream(
    state: HttpState,
    flt: str,
    cursor: Cursor,
    requested: str,
    caller: Caller | None = None,
    body: _SseBody | None = None,
) -> AsyncGenerator[bytes, None]:
    """The event stream on the Starlette path (the reader in http/reader.py does the
    work); `caller` None: no ACL filtering and no revocation (tests); `body.receive`: the
    connection, watched for a disconnect (which ends the stream)."""
    settings = state.settings
    heartbeat = settings.sse_heartbeat
    sink = QueueSink(settings.stream_buffer, settings.stream_buffer_bytes)
    # registered here, when the response starts (its `finally` then surely runs), and
    # before the backlog read, in the same step: nothing published in between is lost
    stream, after = open_sse(state, flt, cursor, requested, caller, sink)
    reader = stream.reader
    sink.on_drain.append(reader)
    watcher: asyncio.Future[None] | None = None

    def gone(_task: asyncio.Future[None]) -> None:
        reader.cancel()
        sink.close(_GONE)

    if body is not None and body.receive is not None:
        watcher = asyncio.ensure_future(_until_disconnect(body.receive))
        watcher.add_done_callback(gone)
    try:
        yield stream.hello(after)
        # the backlog, page by page (live messages wait in the reader meanwhile)
        if not reader.replay_now(BACKLOG_PAGE, settings.read_max_bytes):
            while await reader.replay_page(BACKLOG_PAGE, settings.read_max_bytes):
                if sink.chunks:
                    yield b"".join(sink.take())
        while True:
            if sink.chunks:
                yield b"".join(sink.take())
                continue
            if sink.reason:
                if sink.reason == _GONE:
                    return
                yield stream.close_event(sink.reason)
                return
            if not await sink.wait(heartbeat):
                yield b": hb\n\n"
    finally:
        if watcher is not None:
            watcher.remove_done_callback(gone)
            watcher.cancel()
        stream.end()
