"""The JSON WebSocket at /v1/ws: several subscriptions per connection, publish, acks.

The protocol is documented in docs/websocket.md. In short, every frame is a JSON object
with a "type"; requests may carry a "ref" that the reply echoes.

One task reads frames and handles requests; one task sends. Everything the server sends
(replies, live messages, pings) goes through one sink per connection, so frames leave in
order. Each subscription is a reader (http/reader.py): it replays its backlog from the log
page by page before it takes live messages (de-duplicated by id), and a client that stops
reading is detected (`stream_buffer` messages held back: closed with 4001, it resumes with
its cursors).

Authentication happens before `accept()`: `Authorization` (Bearer or Basic) or `?auth=` in
the handshake; bad credentials are refused with an HTTP 401 (429 when rate limited) and the
JSON error body, so the client never gets a WebSocket. A handshake without credentials is
accepted as anonymous when the anonymous policy admits it; otherwise it is accepted only to
receive an `auth` frame (`{"type": "auth", "token": ...}` or `"username"` + `"password"`),
which must be the first frame and arrive within `http_header_timeout` seconds (browsers
cannot set headers, and a token in a frame stays out of URLs and logs). Every subscription
is checked against the topic ACL (`forbidden` error frame), every message before it is sent
(`can_receive`), and every publish.

Close codes: 1000 normal; 1001 server shutting down (reconnect later); 1011 server error;
4000 heartbeat timeout and 4001 too slow (both: reconnect now, resume with your cursors);
4400 protocol error (do not retry the same thing); 4401 not authenticated (no or bad `auth`
frame); 4403 the credentials were revoked (token revoked or expired, user removed); 4429
too many failed logins from this address (retry later).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, WebSocket
from pydantic import ValidationError
from starlette.datastructures import QueryParams
from starlette.websockets import WebSocketDisconnect

from pushwire.core.acl import DEVICE_ROLE
from pushwire.core.clients import ClientInfo
from pushwire.core.consumers import LEGACY_OWNER, Consumer, ConsumerLimit
from pushwire.core.identity import AuthResult
from pushwire.core.log import LATEST, Cursor, LogEntry, format_cursor
from pushwire.core.text import JsonError, TextError, check_json_value
from pushwire.http.auth import (
    Caller,
    Credentials,
    authenticate,
    client_ip,
    make_caller,
    read_credentials,
    refusal,
    unauthorized,
)
from pushwire.http.cursor import MAX_ID, CursorError, parse_cursor
from pushwire.http.encode import dumps, entry_ws
from pushwire.http.errors import ApiError, error_json
from pushwire.http.poll import check_filter
from pushwire.http.publish import (
    PublishRequest,
    charge_publish,
    publish_specs,
    result,
    spec_from_request,
)
from pushwire.http.reader import OVERFLOW, REVOKED, QueueSink, Sink, StreamReader
from pushwire.http.state import HttpState, get_state
from pushwire.http.websocket_codec import text_frame
from pushwire.tls import scope_certificate_name

log = logging.getLogger(__name__)
router = APIRouter(tags=["subscribe"])

SUBPROTOCOL = "pushwire.v1"
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL = 1011
CLOSE_HEARTBEAT = 4000
CLOSE_TOO_SLOW = 4001
CLOSE_PROTOCOL = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_REVOKED = 4403
CLOSE_RATE_LIMITED = 4429
BACKLOG_PAGE = 200
PING = b'{"type":"ping"}'
MAX_SUB_NAME = 128

# the `auth` frame: "no" (the handshake had credentials: it is an error), "optional" (the
# connection is anonymous and may log in), "required" (nothing else is accepted first)
AuthFrame = Literal["no", "optional", "required"]


class _Sub:
    """One subscription: its reader (http/reader.py) writes into the connection's sink."""

    __slots__ = ("active", "consumer", "filter", "name", "name_json", "reader")

    def __init__(self, name: str, flt: str) -> None:
        self.name = name
        self.name_json = json.dumps(name, ensure_ascii=False)
        self.filter = flt
        self.active = True
        self.consumer: Consumer | None = None
        self.reader: StreamReader | None = None

    @property
    def last(self) -> int:
        """Highest id handled (sent, or skipped as expired or denied)."""
        return self.reader.last if self.reader is not None else 0


class _WsFormat:
    """WebSocket `message` frames of one subscription (its name spliced into the entry's
    shared JSON, cached on the entry for the common names); consumers mark redeliveries.
    `framed`: whole RFC 6455 frames (the owned protocol writes them as they are), else the
    JSON text (the ASGI path hands it to uvicorn)."""

    __slots__ = ("framed", "key", "sub")
    transport = "ws"

    def __init__(self, sub: _Sub, framed: bool = False) -> None:
        self.sub = sub
        self.framed = framed
        # the entry's cache key of this subscription's first delivery (see `entry_ws`),
        # built once here instead of once per delivery
        self.key = sys.intern(("wf:" if framed else "ws:") + sub.name_json)

    def message(self, entry: LogEntry, epoch: str) -> bytes:
        sub = self.sub
        c = sub.consumer
        if c is None:
            # a fan-out's every subscriber after the first: the shared bytes, one dict lookup
            wire = entry.wire
            if wire is not None:
                frame: bytes | None = wire.get(self.key)
                if frame is not None:
                    return frame
            return entry_ws(entry, epoch, sub.name_json, False, self.framed)
        redelivered = entry.id <= c.delivered
        if entry.id > c.delivered:
            c.delivered = entry.id
        return entry_ws(entry, epoch, sub.name_json, redelivered, self.framed)

    def gap(self, cursor: str, epoch: str) -> bytes:
        frame = {"type": "gap", "sub": self.sub.name, "cursor": cursor, "epoch": epoch}
        data = dumps(frame).encode()
        return text_frame(data) if self.framed else data


class WsClose(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class WsSession:
    """The JSON protocol of one connection, whatever carries its frames: requests in
    (`on_text`), replies, messages and pings out through `sink`. Two drivers: the owned
    protocol (http/websocket.py: callbacks, frames written as shared bytes, no task while
    idle) and the ASGI app (`WsConnection` below: for requests the owned protocol hands to
    the app, those with a foreign `Origin` or `X-Forwarded-For`)."""

    # slots: an idle connection holds only these (no per-object dict)
    __slots__ = (
        "auth_frame",
        "caller",
        "catchup",
        "client_id",
        "client_key",
        "first",
        "heartbeat",
        "ip",
        "last_seen",
        "log",
        "loop",
        "missed",
        "since",
        "sink",
        "state",
        "subs",
        "tracked",
    )
    framed = False  # the sink takes whole RFC 6455 frames (the owned protocol)

    def __init__(
        self,
        state: HttpState,
        caller: Caller | None,
        sink: Sink,
        ip: str,
        *,
        auth_frame: AuthFrame = "no",
    ) -> None:
        """`caller` None with `auth_frame` "no": no ACL at all (in-process tests)."""
        self.state = state
        self.log = state.log
        self.caller = caller
        self.auth_frame: AuthFrame = auth_frame
        self.ip = ip
        self.tracked: Caller | None = None  # registered for revocation under this identity
        s = state.settings
        self.heartbeat = s.ws_heartbeat
        self.missed: float = s.ws_missed_heartbeats
        # every frame leaves through this one sink, in order: replies, pings, messages
        self.sink = sink
        self.subs: dict[str, _Sub] = {}
        self.catchup: list[_Sub] = []  # subscriptions still replaying their backlog
        self.loop = asyncio.get_running_loop()
        self.last_seen = self.loop.time()
        self.first = True  # the next frame is the first (it may be `auth`)
        self.client_id = ""
        self.since = 0.0
        self.client_key: int | None = None  # in the admin API's client list while set

    def register(self) -> None:
        """Into the admin API's client list (`GET /v1/admin/clients`) while it runs."""
        clients = self.state.clients
        self.client_id = clients.next_id("ws")
        self.since = time.time()
        self.client_key = clients.register(self.describe)

    def unregister(self) -> None:
        key, self.client_key = self.client_key, None
        if key is not None:
            self.state.clients.unregister(key)

    def describe(self) -> ClientInfo:
        identity = self.caller.identity if self.caller is not None else None
        return ClientInfo(
            self.client_id,
            "ws",
            identity.username if identity is not None else None,
            identity.token_id if identity is not None else None,
            self.ip,
            self.since,
            self.client_info_filters(),
        )

    # -- lifecycle ------------------------------------------------------------------------

    def client_info_filters(self) -> tuple[str, ...]:
        """The filters subscribed now (for the admin API's client list)."""
        return tuple(sub.filter for sub in self.subs.values())

    def revoke(self, reason: str) -> None:
        """The credentials stopped being valid: the connection closes with 4403."""
        self.sink.close(REVOKED)

    def make_reader(self, flt: str, fmt: _WsFormat) -> StreamReader:
        """The reader of one subscription (the owned protocol's is a faster kind)."""
        s = self.state.settings
        return StreamReader(
            self.log,
            flt,
            self.sink,
            fmt,
            self.state.stats,
            caller=self.caller,
            limit=s.stream_buffer,
            max_bytes=s.stream_buffer_bytes,
        )

    def _track(self, caller: Caller) -> bool:
        if not self.state.live.track(caller.identity, self):
            return False
        self.tracked = caller
        if DEVICE_ROLE in caller.identity.roles:
            # a push device is offline within 1.5 heartbeats of silence (docs/gateway.md)
            self.missed = min(self.missed, 1.5)
        return True

    def begin(self) -> bool:
        """Register for revocation; False: the credentials were revoked meanwhile."""
        return self.caller is None or self._track(self.caller)

    def end(self) -> None:
        """The connection is gone: subscriptions and revocation entry with it."""
        for sub in self.subs.values():
            self._drop(sub)
        self.subs.clear()
        self.catchup.clear()
        if self.tracked is not None:
            self.state.live.untrack(self.tracked.identity, self)
            self.tracked = None

    def _drop(self, sub: _Sub) -> None:
        if sub.active and self.state.ws_events is not None and self.caller is not None:
            self.state.ws_events.ws_unsubscribed(self.caller.identity, sub.filter, id(self))
        sub.active = False
        if sub.reader is not None:
            self._forget(sub.reader)
            sub.reader.cancel()
            sub.reader = None
        if sub.consumer is not None:
            self.log.consumers.detach(sub.consumer)
            sub.consumer = None

    def _remember(self, reader: StreamReader) -> None:
        """A new reader writes into the sink (the driver resumes it when the sink drains)."""

    def _forget(self, reader: StreamReader) -> None:
        """The reader ended."""

    def _flooded(self) -> bool:
        """The client sends requests but does not read the replies."""
        return False

    def _send(self, frame: dict[str, Any]) -> None:
        sink = self.sink
        if self._flooded():
            if not self.closed_for():
                self.state.stats.stream_overflows += 1
            sink.close(OVERFLOW)
            return
        # replies answer the client's own requests: not held back behind messages
        data = dumps(frame).encode()
        sink.send(text_frame(data) if self.framed else data)

    def closed_for(self) -> str:
        """Why the sink was closed ("" while open)."""
        return ""

    # -- receiving ------------------------------------------------------------------------

    async def on_text(self, text: str | None) -> None:
        """One frame from the client (None: a binary frame). Raises `WsClose` to end the
        connection."""
        self.last_seen = self.loop.time()
        if text is None:
            raise WsClose(CLOSE_PROTOCOL, "binary frames are not part of the protocol")
        try:
            data = json.loads(text)
            check_json_value(data, self.state.settings.json_max_depth, "frame")
        except (RecursionError, JsonError, TextError) as exc:
            # valid JSON (or too deep to tell), but nesting or text pushwire refuses:
            # an error frame without the ref (it may be the bad text), the connection
            # stays
            reason = "frame nests too deep" if isinstance(exc, RecursionError) else str(exc)
            self._send({"type": "error", "code": "bad_request", "message": reason})
            return
        except ValueError:
            raise WsClose(CLOSE_PROTOCOL, "frame is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise WsClose(CLOSE_PROTOCOL, 'frame is not an object with a "type"')
        if self.first:
            self.first = False
            if data["type"] == "auth" and self.auth_frame != "no":
                await self._authenticate(data)
                return
            if self.auth_frame == "required":
                self.state.stats.unauthorized += 1
                raise WsClose(
                    CLOSE_UNAUTHORIZED,
                    "authentication required: send an auth frame first, or credentials "
                    "in the handshake",
                )
        ref = data.get("ref")
        try:
            await self._handle(data["type"], data)
        except ApiError as exc:
            if exc.status == 403:
                self.state.stats.forbidden += 1
            frame: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
            if ref is not None:
                frame["ref"] = ref
            self._send(frame)

    def auth_timeout(self) -> WsClose:
        """No auth frame in time (when one is required)."""
        self.state.stats.unauthorized += 1
        return WsClose(CLOSE_UNAUTHORIZED, "authentication timeout")

    async def _authenticate(self, data: dict[str, Any]) -> None:
        """The first frame `{"type": "auth", "token"}` or `{"type": "auth", "username",
        "password"}`: on success the connection acts as that identity (`authenticated`
        reply); on failure it is closed (4401, or 4429 when rate limited)."""
        token, username, password = data.get("token"), data.get("username"), data.get("password")
        if isinstance(token, str) and username is None and password is None:
            creds = Credentials("bearer", secret=token)
        elif isinstance(password, str) and token is None and isinstance(username, str | None):
            creds = Credentials("basic", username=username or None, secret=password)
        else:
            raise WsClose(
                CLOSE_PROTOCOL, 'an auth frame has a "token", or a "username" and a "password"'
            )
        state = self.state
        result = await authenticate(state.auth, creds, self.ip)
        if not result.ok or result.identity is None:
            raise _auth_close(state, result)
        caller = make_caller(state.auth, result.identity, self.ip)
        if not self._track(caller):
            state.stats.unauthorized += 1
            raise WsClose(CLOSE_UNAUTHORIZED, "the credentials were revoked")
        self.caller = caller
        self._send(_with_ref({"type": "authenticated", "user": result.identity.username}, data))

    async def _handle(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "subscribe":
            self._subscribe(data)
        elif kind == "unsubscribe":
            self._unsubscribe(data)
        elif kind == "ack":
            self._ack(data)
        elif kind == "publish":
            await self._publish(data)
        elif kind == "ping":
            self._send(_with_ref({"type": "pong"}, data))
        elif kind == "pong":
            pass  # last_seen is already updated
        elif kind == "auth":
            raise ApiError(
                400,
                "bad_request",
                "auth must be the first frame of a connection opened without credentials",
            )
        else:
            raise ApiError(400, "unknown_type", f"unknown frame type {kind!r}")

    def _sub_name(self, data: dict[str, Any]) -> str:
        name = data.get("sub")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_SUB_NAME:
            raise ApiError(400, "bad_request", f'"sub" must be a string of 1..{MAX_SUB_NAME}')
        return name

    def _subscribe(self, data: dict[str, Any]) -> None:
        name = self._sub_name(data)
        flt = data.get("filter")
        if not isinstance(flt, str):
            raise ApiError(400, "bad_topic", '"filter" must be a string')
        check_filter(flt, self.state.settings.max_topic_levels)
        if self.caller is not None:
            self.caller.check_subscribe(flt)
        if name in self.subs:
            raise ApiError(400, "duplicate_sub", f"subscription {name!r} exists")
        if len(self.subs) >= self.state.settings.ws_max_subscriptions:
            raise ApiError(429, "too_many_subscriptions", "too many subscriptions")
        if self.state.busy():
            self.state.stats.rejected_busy += 1
            raise ApiError(503, "too_many_listeners", "the server is at its listener limit")
        ack = data.get("ack", False)
        if not isinstance(ack, bool):
            raise ApiError(400, "bad_request", '"ack" must be true or false')
        consumer_name = data.get("consumer")
        if ack and (not isinstance(consumer_name, str) or not consumer_name):
            raise ApiError(400, "bad_request", 'an "ack" subscription needs a "consumer" name')
        since = data.get("since")
        cursor: Cursor
        try:
            if isinstance(since, int) and not isinstance(since, bool):
                if since > MAX_ID:
                    raise CursorError(f"cursor id out of range: {since}")
                cursor = Cursor.after(since) if since >= 0 else LATEST
            elif isinstance(since, str):
                cursor = parse_cursor(since)
            elif since is None:
                cursor = LATEST
            else:
                raise CursorError('"since" must be a string or an id')
        except CursorError as exc:
            raise ApiError(400, "bad_cursor", str(exc)) from None
        log = self.log
        consumers = log.consumers
        owner = consumer_owner(self.caller)
        consumer: Consumer | None = None
        if ack:
            assert isinstance(consumer_name, str)
            if len(consumer_name) > MAX_SUB_NAME:
                raise ApiError(400, "bad_request", f'"consumer" is 1..{MAX_SUB_NAME} characters')
            consumer = consumers.get(owner, consumer_name, flt)
            if consumer is None:
                try:
                    consumers.check_room(owner)
                except ConsumerLimit as exc:
                    raise ApiError(429, "too_many_consumers", str(exc)) from None
            elif since is None:
                cursor = Cursor.after(consumer.acked, log.epoch)
        sub = _Sub(name, flt)
        reader = self.make_reader(flt, _WsFormat(sub, self.framed))
        sub.reader = reader
        self._remember(reader)
        # listen, then resolve: in one step, so nothing published in between is lost
        after = reader.open(cursor)
        gap = reader.gap
        if ack:
            assert isinstance(consumer_name, str)
            if consumer is None:
                consumer = consumers.open(owner, consumer_name, flt, after)
            elif since is not None or gap:
                consumers.reset(consumer, after)
            consumers.attach(consumer)
            sub.consumer = consumer
        self.subs[name] = sub
        self.catchup.append(sub)
        epoch = log.epoch
        self._send(
            _with_ref(
                {
                    "type": "subscribed",
                    "sub": name,
                    "filter": flt,
                    "cursor": format_cursor(epoch, after),
                    "epoch": epoch,
                },
                data,
            )
        )
        if self.state.ws_events is not None and self.caller is not None:
            self.state.ws_events.ws_subscribed(self.caller.identity, flt, id(self))

    def _unsubscribe(self, data: dict[str, Any]) -> None:
        name = self._sub_name(data)
        sub = self.subs.pop(name, None)
        if sub is None:
            raise ApiError(404, "unknown_sub", f"no subscription {name!r}")
        self._drop(sub)
        if sub in self.catchup:
            self.catchup.remove(sub)
        self._send(_with_ref({"type": "unsubscribed", "sub": name}, data))

    def _ack(self, data: dict[str, Any]) -> None:
        name = self._sub_name(data)
        sub = self.subs.get(name)
        if sub is None:
            raise ApiError(404, "unknown_sub", f"no subscription {name!r}")
        if sub.consumer is None:
            raise ApiError(400, "bad_request", f"subscription {name!r} was not made with ack")
        upto = data.get("id")
        if isinstance(upto, str):
            try:
                c = parse_cursor(upto)
            except CursorError as exc:
                raise ApiError(400, "bad_cursor", str(exc)) from None
            if c.kind != "id" or (c.epoch is not None and c.epoch != self.log.epoch):
                raise ApiError(400, "bad_cursor", "ack takes an id or EPOCH:ID of this epoch")
            upto = c.id
        if not isinstance(upto, int) or isinstance(upto, bool) or upto < 0:
            raise ApiError(400, "bad_request", '"id" must be a message id')
        if upto > sub.last:
            raise ApiError(400, "bad_request", f"id {upto} was not delivered yet")
        self.log.consumers.ack(sub.consumer, upto)
        if self.state.ws_events is not None and self.caller is not None:
            self.state.ws_events.ws_acked(self.caller.identity, sub.filter, upto)

    async def _publish(self, data: dict[str, Any]) -> None:
        fields = {k: v for k, v in data.items() if k not in ("type", "ref")}
        try:
            req = PublishRequest.model_validate(fields)
        except ValidationError as exc:
            msg = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                for e in exc.errors()
            )
            raise ApiError(400, "bad_request", msg) from None
        spec = spec_from_request(
            req, self.state.settings.http_max_payload, self.state.settings.max_topic_levels
        )
        if self.caller is not None:
            self.caller.check_publish(spec.topic)
        charge_publish(self.state, self.caller, 1)
        (message,) = await publish_specs(self.state, [spec], "ws", "ws")
        self._send(_with_ref({"type": "published", **result(self.state, message)}, data))

    # -- the backlog ----------------------------------------------------------------------

    def catch_up_now(self) -> bool:
        """Replay what fits one in-memory page at once (no task: always for `latest`);
        True when no subscription is still replaying."""
        page_bytes = self.state.settings.read_max_bytes
        for sub in list(self.catchup):
            reader = sub.reader
            if not sub.active or reader is None or reader.replay_now(BACKLOG_PAGE, page_bytes):
                self.catchup.remove(sub)
        return not self.catchup

    async def _catch_up(self) -> None:
        """One backlog page for each subscription still replaying."""
        page_bytes = self.state.settings.read_max_bytes
        for sub in list(self.catchup):
            reader = sub.reader
            if (
                not sub.active
                or reader is None
                or not await reader.replay_page(BACKLOG_PAGE, page_bytes)
            ) and sub in self.catchup:
                self.catchup.remove(sub)


class WsConnection(WsSession):
    """The JSON protocol on the ASGI app's WebSocket: one task reads frames and handles
    requests, one sends what waits in a `QueueSink`."""

    __slots__ = ("ws",)
    sink: QueueSink

    def __init__(
        self,
        ws: WebSocket,
        state: HttpState,
        caller: Caller | None = None,
        *,
        auth_frame: AuthFrame = "no",
    ) -> None:
        s = state.settings
        sink = QueueSink(s.stream_buffer, s.stream_buffer_bytes)
        # (an in-process driver's socket may have no peer address)
        peer = getattr(ws, "client", None)
        super().__init__(state, caller, sink, peer.host if peer else "", auth_frame=auth_frame)
        self.ws = ws

    def _remember(self, reader: StreamReader) -> None:
        self.sink.on_drain.append(reader)

    def _forget(self, reader: StreamReader) -> None:
        self.sink.on_drain.remove(reader)

    def _flooded(self) -> bool:
        sink = self.sink
        return not sink.writable() and len(sink.chunks) >= 2 * sink.limit

    def closed_for(self) -> str:
        return self.sink.reason

    async def run(self) -> None:
        if not self.begin():
            with contextlib.suppress(Exception):
                await self.ws.close(CLOSE_REVOKED, "credentials revoked")
            return
        receiver = asyncio.ensure_future(self._receive_loop())
        sender = asyncio.ensure_future(self._send_loop())
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            close: WsClose | None = None
            for task in done:
                exc = task.exception()
                if isinstance(exc, WsClose):
                    close = exc
                elif exc is not None and not isinstance(exc, WebSocketDisconnect | OSError):
                    log.error("websocket connection failed", exc_info=exc)
                    close = WsClose(CLOSE_INTERNAL, "internal error")
            if close is not None:
                # a close reason is at most 123 bytes of UTF-8 (RFC 6455 5.5)
                reason = close.reason.encode()[:123].decode("utf-8", "ignore")
                with contextlib.suppress(Exception):
                    await self.ws.close(close.code, reason)
        finally:
            for task in (receiver, sender):
                task.cancel()
            await asyncio.gather(receiver, sender, return_exceptions=True)
            self.end()

    async def _receive_loop(self) -> None:
        ws = self.ws
        while True:
            if self.first and self.auth_frame == "required":
                timeout = self.state.settings.http_header_timeout
                try:
                    message = await asyncio.wait_for(ws.receive(), timeout)
                except TimeoutError:
                    raise self.auth_timeout() from None
            else:
                message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            await self.on_text(message.get("text"))

    async def _send_loop(self) -> None:
        loop = self.loop
        sink = self.sink
        stats = self.state.stats
        next_ping = loop.time() + self.heartbeat
        while True:
            if not self.catchup and not sink.chunks and not sink.reason:
                # wake for the next ping, or when the silence limit would be reached
                deadline = min(next_ping, self.last_seen + self.heartbeat * self.missed)
                await sink.wait(max(0.0, deadline - loop.time()))
            frames = sink.take()
            for frame in frames:
                await self.ws.send_text(frame.decode())
            if sink.reason:
                raise close_for(sink.reason)
            now = loop.time()
            if now - self.last_seen >= self.heartbeat * self.missed:
                stats.heartbeat_timeouts += 1
                raise WsClose(CLOSE_HEARTBEAT, "heartbeat timeout")
            if now >= next_ping:
                await self.ws.send_text(PING.decode())
                next_ping = now + self.heartbeat
            if self.catchup:
                await self._catch_up()


def close_for(reason: str) -> WsClose:
    """The close code for why a reader ended the stream (http/reader.py)."""
    if reason == OVERFLOW:
        return WsClose(CLOSE_TOO_SLOW, "too slow: resume with your cursors")
    if reason == REVOKED:
        return WsClose(CLOSE_REVOKED, "credentials revoked")
    return WsClose(CLOSE_GOING_AWAY, "server shutting down")


def consumer_owner(caller: Caller | None) -> str:
    """Whose consumers a connection uses: a user's (password, token or certificate: a
    worker keeps its position when it changes credentials), or, for anonymous callers, their
    address's (anonymous clients have nothing else to tell them apart, and the address is
    what the server already keys them by, e.g. for publish rates)."""
    if caller is None:
        return LEGACY_OWNER  # no authentication at all (an embedded app)
    name = caller.identity.username
    return f"user:{name}" if name is not None else f"anonymous:{caller.ip}"


def _with_ref(frame: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    ref = request.get("ref")
    if ref is not None:
        frame["ref"] = ref
    return frame


def _auth_close(state: HttpState, result: AuthResult) -> WsClose:
    if result.reason == "rate_limited":
        state.stats.rate_limited += 1
        return WsClose(CLOSE_RATE_LIMITED, result.message)
    state.stats.unauthorized += 1
    return WsClose(CLOSE_UNAUTHORIZED, result.message)


def deny_counted(state: HttpState, exc: ApiError) -> None:
    """Count a refused handshake (401 / 429)."""
    if exc.status == 401:
        state.stats.unauthorized += 1
    elif exc.status == 429:
        state.stats.rate_limited += 1


async def admit(
    state: HttpState,
    authorization: list[str],
    query: QueryParams,
    ip: str,
    cert_name: str | None,
) -> tuple[Caller | None, AuthFrame]:
    """The handshake's authentication, on either path: credentials in `Authorization` or
    `?auth=`; else the verified client certificate's name; else anonymous when the policy
    admits it (an `auth` frame may follow), or an `auth` frame is required. Raises
    `ApiError` (401 / 429 / 400) to refuse the handshake with an HTTP error."""
    auth = state.auth
    creds = read_credentials(authorization, query, allow_query=True)
    if creds.kind == "none" and cert_name is not None:
        result = auth.authenticate_certificate(cert_name, ip)
    elif creds.kind == "none":
        anonymous = auth.admit_anonymous(ip)
        if anonymous.ok and anonymous.identity is not None:
            return make_caller(auth, anonymous.identity, ip), "optional"
        return None, "required"
    else:
        result = await authenticate(auth, creds, ip)
    if not result.ok or result.identity is None:
        raise refusal(result)
    if not state.live.alive(result.identity):
        raise unauthorized("the credentials were revoked")
    return make_caller(auth, result.identity, ip), "no"


def choose_subprotocol(offered: list[str]) -> str | None:
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


async def _deny(websocket: WebSocket, state: HttpState, exc: ApiError) -> None:
    """Refuse the handshake with an HTTP error response (uvicorn supports the ASGI
    websocket.http.response extension; without it Starlette answers a plain 403)."""
    deny_counted(state, exc)
    await websocket.send_denial_response(error_json(exc.status, exc.code, exc.message, exc.headers))


@router.websocket("/v1/ws")
async def websocket_endpoint(
    websocket: WebSocket, state: Annotated[HttpState, Depends(get_state)]
) -> None:
    """JSON WebSocket protocol (docs/websocket.md), through the ASGI app: for handshakes
    the owned protocol does not serve itself (http/websocket.py)."""
    ip = client_ip(websocket)
    try:
        caller, auth_frame = await admit(
            state,
            websocket.headers.getlist("authorization"),
            websocket.query_params,
            ip,
            scope_certificate_name(websocket.scope),
        )
    except ApiError as exc:
        await _deny(websocket, state, exc)
        return
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=choose_subprotocol(offered))
    stats = state.stats
    stats.connections["ws"] += 1
    stats.connections_total["ws"] += 1
    conn = WsConnection(websocket, state, caller, auth_frame=auth_frame)
    conn.register()
    try:
        await conn.run()
    finally:
        conn.unregister()
        stats.connections["ws"] -= 1
