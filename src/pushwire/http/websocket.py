"""The JSON WebSocket (/v1/ws) served by the owned HTTP protocol, without uvicorn.

The owned protocol (http/connection.py) parses the upgrade request and, once earlier answers
on the connection are out, offers it here (`WsDoor.take`). A handshake this module serves:
`GET /v1/ws`, version 13 with a valid key, no `X-Forwarded-For` (a proxy in front: its
rules live in the ASGI app), and no `Origin` or the server's own when no `cors_origins`
are set (the app's Origin check would let it through as it is). Anything else goes to
uvicorn's WebSocket protocol and the ASGI app, as before (http/ws_protocol.py).

The handshake keeps every check of the ASGI path (`ws.admit`: credentials in the header or
`?auth=`, the client certificate's name, the anonymous policy, revocation; refused with an
HTTP error and the JSON error body), the per-address admission (released when the
connection ends), and the subprotocol.

After the `101`, the HTTP parser is gone: the connection's protocol is `NativeWebSocket`,
which is at once the RFC 6455 endpoint (frames through http/websocket_codec.py), the
JSON protocol (`ws.WsSession`), and the `Sink` of its subscriptions' readers
(http/reader.py). A message goes out as the entry's cached, already framed bytes
(http/encode.py `entry_ws(framed=True)`): one `transport.write` of the same bytes object
for every subscriber. While idle a connection has no task, no timer and no buffer (the
frame parser holds bytes only while a frame is incomplete); one timer per listener sends
the pings and closes silent clients (`_Clock`). A request that waits (a publish to disk,
a password check) runs as a task until it is answered; frames that arrive meanwhile wait
their turn, so replies keep the order of requests.

Closing: the server sends its close frame and waits up to `ws_close_timeout` seconds for
the client's before it closes the TCP connection (closing with unread input would reset
the connection and could destroy the close frame in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.datastructures import QueryParams

from pushwire.core.log import LogEntry
from pushwire.core.permissions import Permissions
from pushwire.http.browser import normalize_origin, own_origin_of
from pushwire.http.delivery_tally import WalkTally
from pushwire.http.eager import run_eagerly
from pushwire.http.errors import ApiError
from pushwire.http.reader import _LIVE, StreamReader
from pushwire.http.state import HttpState
from pushwire.http.status_lines import status_line
from pushwire.http.upgrade import UpgradeRequest
from pushwire.http.websocket_codec import (
    CLOSE_NO_STATUS,
    CLOSE_NORMAL,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    Control,
    FrameParser,
    ProtocolError,
    accept_key,
    close_frame,
    frame,
    text_frame,
    valid_key,
)
from pushwire.http.ws import (
    BACKLOG_PAGE,
    CLOSE_GOING_AWAY,
    CLOSE_HEARTBEAT,
    CLOSE_INTERNAL,
    CLOSE_REVOKED,
    PING,
    WsClose,
    WsSession,
    _WsFormat,
    admit,
    choose_subprotocol,
    close_for,
    deny_counted,
)

log = logging.getLogger(__name__)

PATH = b"/v1/ws"
PING_FRAME = text_frame(PING)
MAX_QUEUED = 64  # frames waiting behind a request that waits, before reading pauses


class WsDoor:
    """What the native JSON WebSockets of one listener share: the state, the limits, the
    heartbeat clock and the open connections (for shutdown)."""

    def __init__(self, state: HttpState, max_message: int) -> None:
        self.state = state
        s = state.settings
        self.max_message = max_message
        self.cors = bool(s.cors_origins)
        self.close_timeout = s.ws_close_timeout
        # a client that sends requests and reads no replies: closed past this (4001)
        self.flood_bytes = 2 * (s.stream_buffer_bytes or 16 * 1024 * 1024)
        self.conns: set[NativeWebSocket] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.clock = _Clock(self, s.ws_heartbeat)
        # the live deliveries of its subscriptions, counted per walk (http/delivery_tally.py)
        self.tally = WalkTally(state.stats, "ws", state.log)

    def take(self, request: UpgradeRequest) -> bool:
        """Serve this upgrade here (True), or leave it to the ASGI path (False)."""
        if request.method != b"GET" or request.path != PATH:
            return False
        key = b""
        version = b""
        origin: bytes | None = None
        host = b""
        for name, value in request.headers:
            if name == b"sec-websocket-key":
                key = value.strip()
            elif name == b"sec-websocket-version":
                version = value.strip()
            elif name == b"x-forwarded-for":
                return False
            elif name == b"origin" and origin is None:
                origin = value
            elif name == b"host" and not host:
                host = value
        if version != b"13" or not valid_key(key):
            return False  # the ASGI path answers it (426 / 400)
        if origin is not None:
            own = own_origin_of(request.scheme, host.decode("latin-1"))
            if self.cors or own is None or normalize_origin(origin.decode("latin-1")) != own:
                return False
        try:
            query = request.query.decode("utf-8")
        except UnicodeDecodeError:
            return False
        conn = NativeWebSocket(self, request)
        request.transport.set_protocol(conn)
        conn.handshake(key, QueryParams(query))
        return True

    def spawn(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def shutdown(self, timeout: float) -> None:
        """Close every connection (1001: resume with your cursors), and wait for them to go
        for up to `timeout` seconds; then drop what is left."""
        for conn in list(self.conns):
            conn.close_with(CLOSE_GOING_AWAY, "server shutting down")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.conns and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.conns):
            conn.abort()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.clock.stop()


class _Clock:
    """One timer for every native WebSocket of a listener: a ping to each connection every
    `ws_heartbeat` seconds, and 4000 to those silent for `ws_missed_heartbeats` of them
    (1.5 for push devices). It runs only while connections are open."""

    def __init__(self, door: WsDoor, heartbeat: float) -> None:
        self.door = door
        self.heartbeat = heartbeat
        self.tick = heartbeat / 4  # how late a ping or a timeout may be
        self.timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.timer is None:
            self.timer = loop.call_later(self.tick, self._run, loop)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        conns = self.door.conns
        if not conns:
            return
        now = loop.time()
        stats = self.door.state.stats
        for conn in list(conns):
            if conn.closing:
                continue
            if now - conn.last_seen >= conn.heartbeat * conn.missed:
                stats.heartbeat_timeouts += 1
                conn.close_with(CLOSE_HEARTBEAT, "heartbeat timeout")
            elif now >= conn.next_ping:
                conn.next_ping = now + conn.heartbeat
                conn.send(PING_FRAME)
        self.timer = loop.call_later(self.tick, self._run, loop)


class NativeWsReader(StreamReader):
    """A subscription's reader on the owned protocol: a live message whose frame is
    already on the entry (every subscriber of a fan-out after the first) goes out in this
    one method, the checks of `StreamReader.notify` and `_deliver` inline and the ACL asked
    of the caller's `Permissions` (its per-topic cache) directly; anything else (held
    while replaying or paused, a consumer's redelivery mark, the first frame's encoding)
    takes the general path. A fan-out's per-subscriber Python is this call, one dict
    lookup, one `transport.write` and the door's `WalkTally` (the counters, in bulk)."""

    __slots__ = ("conn", "key", "perms", "sub", "tally")

    def __init__(self, conn: NativeWebSocket, flt: str, fmt: _WsFormat) -> None:
        state = conn.state
        s = state.settings
        caller = conn.caller
        super().__init__(
            conn.log,
            flt,
            conn,
            fmt,
            state.stats,
            caller=caller,
            limit=s.stream_buffer,
            max_bytes=s.stream_buffer_bytes,
        )
        self.conn = conn
        self.key = fmt.key
        self.perms: Permissions | None = caller.permissions if caller is not None else None
        self.sub = fmt.sub  # its `consumer` set: the general path marks redeliveries
        self.tally = conn.door.tally

    def notify(self, entry: LogEntry) -> None:
        conn = self.conn
        if self._phase != _LIVE or self.pending is not None or conn.paused:
            super().notify(entry)  # held, or dropped once closed
            return
        if entry.id <= self.last:
            return  # the backlog had it
        wire = entry.wire
        frame: bytes | None = wire.get(self.key) if wire is not None else None
        if frame is None or self.sub.consumer is not None:
            self._deliver(entry)
            return
        self.last = entry.id
        message = entry.message
        if message.expires_at is not None and message.expired():
            return
        perms = self.perms
        if perms is not None and not perms.can_receive(message.topic):
            return
        if not conn.closing:
            conn.transport.write(frame)
        self.tally.add(entry)


class NativeWebSocket(WsSession, asyncio.Protocol):
    """One JSON WebSocket on the owned protocol (see the module docstring): the transport's
    protocol after the upgrade, the JSON protocol, and its readers' `Sink`."""

    __slots__ = (
        "busy",
        "closing",
        "door",
        "early",
        "lost",
        "next_ping",
        "open",
        "parser",
        "paused",
        "queued",
        "read_paused",
        "release",
        "replaying",
        "request",
        "timer",
        "transport",
    )
    framed = True

    def __init__(self, door: WsDoor, request: UpgradeRequest) -> None:
        client = request.client
        super().__init__(door.state, None, self, client[0] if client is not None else "")
        self.door = door
        self.transport = request.transport
        self.request: UpgradeRequest | None = request  # until the handshake is answered
        # the per-address admission: released when the connection ends
        self.release: Callable[[], None] | None = request.release
        self.early = request.extra  # bytes that came after the upgrade request
        self.parser: FrameParser | None = None  # made by the 101
        self.open = False
        self.closing = False  # our close frame is out (or the connection is gone)
        self.lost = False
        self.paused = False
        self.read_paused = False
        self.busy: asyncio.Task[Any] | None = None  # a request that waits
        self.queued: deque[str | None] | None = None  # frames behind it
        self.replaying: asyncio.Task[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None  # auth frame, or the close handshake
        self.next_ping = self.last_seen + self.heartbeat

    # -- the handshake ----------------------------------------------------------------------

    def handshake(self, key: bytes, query: QueryParams) -> None:
        try:
            started = run_eagerly(self.loop, self._handshake(key, query))
        except Exception as exc:
            log.error("websocket handshake failed", exc_info=exc)
            self._refuse(500, "internal", "internal server error", {})
            return
        if isinstance(started, asyncio.Task):
            # the credentials are being checked (a password hash, the store): the client's
            # frames wait in the socket, not in memory
            self.read_paused = True
            self.transport.pause_reading()
            self.door.spawn(started)

    async def _handshake(self, key: bytes, query: QueryParams) -> None:
        request = self.request
        assert request is not None
        authorization = [
            value.decode("latin-1") for name, value in request.headers if name == b"authorization"
        ]
        state = self.state
        try:
            self.caller, self.auth_frame = await admit(
                state, authorization, query, self.ip, request.cert_name
            )
        except ApiError as exc:
            deny_counted(state, exc)
            self._refuse(exc.status, exc.code, exc.message, exc.headers or {})
            return
        if self.lost:
            return
        offered: list[str] = []
        for name, value in request.headers:
            if name == b"sec-websocket-protocol":
                offered += [p.strip() for p in value.decode("latin-1").split(",")]
        subprotocol = choose_subprotocol(offered)
        head = (
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-accept: " + accept_key(key) + b"\r\n"
        )
        if subprotocol is not None:
            head += b"sec-websocket-protocol: " + subprotocol.encode() + b"\r\n"
        self.transport.write(head + b"\r\n")
        self.request = None
        self.open = True
        self.parser = FrameParser(self.door.max_message)
        stats = state.stats
        stats.connections["ws"] += 1
        stats.connections_total["ws"] += 1
        self.register()
        door = self.door
        door.conns.add(self)
        door.clock.start(self.loop)
        self.last_seen = self.loop.time()
        self.next_ping = self.last_seen + self.heartbeat
        if not self.begin():
            self.close_with(CLOSE_REVOKED, "credentials revoked")
            return
        if self.auth_frame == "required":
            timeout = state.settings.http_header_timeout
            self.timer = self.loop.call_later(timeout, self._auth_expired)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        early, self.early = self.early, b""
        if early:
            self.data_received(early)

    def _refuse(self, status: int, code: str, message: str, headers: dict[str, str]) -> None:
        """The handshake's HTTP error, with the JSON error body; then close."""
        self.request = None
        self.closing = True
        if self.lost:
            return
        body = json.dumps(
            {"error": {"code": code, "message": message}}, separators=(",", ":")
        ).encode()
        head = status_line(status) + b"content-type: application/json\r\n"
        for name, value in headers.items():
            head += f"{name}: {value}\r\n".encode("latin-1")
        head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        self.transport.write(head + body)
        self._linger()

    def _auth_expired(self) -> None:
        self.timer = None
        if self.first and not self.closing:
            close = self.auth_timeout()
            self.close_with(close.code, close.reason)

    # -- bytes in -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self.open:
            if self.request is not None:
                self.early += data  # the handshake is being checked
            return
        parser = self.parser
        if parser is None:
            return
        try:
            events = parser.feed(data)
        except ProtocolError as exc:
            # the stream cannot be read on: our close frame, then our half of the TCP
            # connection (the client's EOF closes the rest; TLS: the close timeout does)
            self.parser = None
            self.close_with(exc.code, exc.reason)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            return
        for event in events:
            if isinstance(event, Control):
                self._control(event)
            elif self.closing:
                continue  # after our close frame, only the client's close matters
            else:
                self._message(event.text)
            if self.parser is None:
                return

    def _control(self, event: Control) -> None:
        self.last_seen = self.loop.time()
        if event.opcode == OP_PING:
            if not self.closing:
                self.transport.write(frame(OP_PONG, event.payload))
        elif event.opcode == OP_CLOSE:
            # the client's close: answered (unless we began), then the TCP connection closes
            self.parser = None
            if not self.closing:
                code = CLOSE_NORMAL if event.code == CLOSE_NO_STATUS else event.code
                self.closing = True
                self.transport.write(close_frame(code))
                self._ended()
            self.transport.close()

    def _message(self, text: str | None) -> None:
        if self.timer is not None and self.first:
            self.timer.cancel()
            self.timer = None
        if self.busy is not None:
            queued = self.queued
            if queued is None:
                queued = self.queued = deque()
            queued.append(text)
            if len(queued) >= MAX_QUEUED and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
            return
        self._dispatch(text)

    def _dispatch(self, text: str | None) -> None:
        try:
            started = run_eagerly(self.loop, self.on_text(text))
        except WsClose as exc:
            self.close_with(exc.code, exc.reason)
            return
        except Exception as exc:
            log.error("websocket request failed", exc_info=exc)
            self.close_with(CLOSE_INTERNAL, "internal error")
            return
        if isinstance(started, asyncio.Task):
            self.busy = started
            self.door.spawn(started)
            started.add_done_callback(self._handled)
            return
        self._replay()

    def _handled(self, task: asyncio.Task[Any]) -> None:
        self.busy = None
        if task.cancelled() or self.closing:
            return
        exc = task.exception()
        if isinstance(exc, WsClose):
            self.close_with(exc.code, exc.reason)
            return
        if exc is not None:
            log.error("websocket request failed", exc_info=exc)
            self.close_with(CLOSE_INTERNAL, "internal error")
            return
        self._replay()
        queued = self.queued
        while queued and self.busy is None and not self.closing:
            self._dispatch(queued.popleft())
        if not queued:
            self.queued = None
        if self.read_paused and (queued is None or len(queued) < MAX_QUEUED // 2):
            self.read_paused = False
            self.transport.resume_reading()

    # -- the backlog --------------------------------------------------------------------------

    def _replay(self) -> None:
        """New subscriptions replay their backlog: at once when it is in memory and fits a
        page, else in a task (until they are live)."""
        if not self.catchup or self.replaying is not None or self.catch_up_now():
            return
        task = self.loop.create_task(self._replay_all())
        self.replaying = task
        self.door.spawn(task)

    async def _replay_all(self) -> None:
        page_bytes = self.state.settings.read_max_bytes
        try:
            while self.catchup and not self.closing:
                sub = self.catchup[0]
                reader = sub.reader
                if sub.active and reader is not None:
                    await reader.replay(BACKLOG_PAGE, page_bytes)
                if self.catchup and self.catchup[0] is sub:
                    self.catchup.pop(0)
        finally:
            self.replaying = None

    # -- Sink (for the readers) and replies -----------------------------------------------------

    def make_reader(self, flt: str, fmt: _WsFormat) -> StreamReader:
        return NativeWsReader(self, flt, fmt)

    def send(self, data: bytes) -> None:
        if not self.closing:
            self.transport.write(data)

    def writable(self) -> bool:
        return not self.paused

    def close(self, reason: str) -> None:
        """A reader ends the connection (overflow, shutdown, revoked)."""
        exc = close_for(reason)
        self.close_with(exc.code, exc.reason)

    def _flooded(self) -> bool:
        return self.paused and self.transport.get_write_buffer_size() >= self.door.flood_bytes

    def closed_for(self) -> str:
        return "closing" if self.closing else ""

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        for sub in list(self.subs.values()):
            reader: StreamReader | None = sub.reader
            if reader is not None:
                reader.resume()

    # -- the end --------------------------------------------------------------------------------

    def close_with(self, code: int, reason: str) -> None:
        """Send our close frame, end the session, and wait for the client's close."""
        if self.closing:
            return
        self.closing = True
        if not self.lost:
            self.transport.write(close_frame(code, reason))
        self._ended()
        self._linger()

    def _linger(self) -> None:
        if self.lost:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.door.close_timeout, self.transport.close)

    def _ended(self) -> None:
        """The session ends (once): its readers, its registrations, its tasks."""
        if self.client_key is None:
            return
        self.unregister()
        self.end()
        self.state.stats.connections["ws"] -= 1
        self.door.conns.discard(self)
        self.queued = None
        for task in (self.busy, self.replaying):
            if task is not None:
                task.cancel()

    def abort(self) -> None:
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.closing = True
        self.parser = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._ended()
        release, self.release = self.release, None
        if release is not None:
            with contextlib.suppress(Exception):
                release()
