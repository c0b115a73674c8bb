"""The JSON WebSocket at /v1/ws: several subscriptions per connection, publish, acks.

The protocol is documented in docs/websocket.md. In short, every frame is a JSON object
with a "type"; requests may carry a "ref" that the reply echoes.

One task reads frames and handles requests; one task sends. Everything the server sends
(replies, live messages, pings) goes through one bounded buffer per connection, so frames
leave in order and a client that stops reading is detected (`stream_buffer` frames waiting:
closed with 4001, it resumes with its cursors). A new subscription replays its backlog from
the log page by page before it takes live messages (de-duplicated by id).

Close codes: 1000 normal; 1001 server shutting down (reconnect later); 1011 server error;
4000 heartbeat timeout and 4001 too slow (both: reconnect now, resume with your cursors);
4400 protocol error (do not retry the same thing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from pushwire.core.log import LATEST, Consumer, Cursor, LogEntry, StreamBuffer, format_cursor
from pushwire.http.cursor import CursorError, parse_cursor
from pushwire.http.encode import dumps, entry_ws
from pushwire.http.errors import ApiError
from pushwire.http.poll import check_filter
from pushwire.http.publish import PublishRequest, publish_specs, result, spec_from_request
from pushwire.http.state import HttpState, get_state

log = logging.getLogger(__name__)
router = APIRouter(tags=["subscribe"])

SUBPROTOCOL = "pushwire.v1"
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL = 1011
CLOSE_HEARTBEAT = 4000
CLOSE_TOO_SLOW = 4001
CLOSE_PROTOCOL = 4400
BACKLOG_PAGE = 200
MAX_SUB_NAME = 128

_Item = tuple["_Sub | None", "LogEntry | str"]


class _Sub:
    __slots__ = (
        "active",
        "catching_up",
        "consumer",
        "filter",
        "floor",
        "gap",
        "last",
        "listener",
        "name",
        "name_json",
    )

    def __init__(self, name: str, flt: str) -> None:
        self.name = name
        self.name_json = json.dumps(name, ensure_ascii=False)
        self.filter = flt
        self.last = 0  # highest id handled (sent or skipped as expired)
        self.catching_up = True
        self.gap = False  # a gap to report before the backlog
        self.floor = 0  # evictions up to this id are no (new) gap for this subscription
        self.active = True
        self.consumer: Consumer | None = None
        self.listener: _SubListener | None = None


class _SubListener:
    __slots__ = ("buffer", "sub")

    def __init__(self, buffer: StreamBuffer[_Item], sub: _Sub) -> None:
        self.buffer = buffer
        self.sub = sub

    def notify(self, entry: LogEntry) -> None:
        self.buffer.push((self.sub, entry))

    def close(self) -> None:
        self.buffer.close("shutdown")


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class WsConnection:
    def __init__(self, ws: WebSocket, state: HttpState) -> None:
        self.ws = ws
        self.state = state
        self.log = state.log
        s = state.settings
        self.heartbeat = s.ws_heartbeat
        self.missed = s.ws_missed_heartbeats
        self.buffer: StreamBuffer[_Item] = StreamBuffer(s.stream_buffer)
        self.subs: dict[str, _Sub] = {}
        self.catchup: list[_Sub] = []
        self.loop = asyncio.get_running_loop()
        self.last_seen = self.loop.time()

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        receiver = asyncio.ensure_future(self._receive_loop())
        sender = asyncio.ensure_future(self._send_loop())
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            close: _Close | None = None
            for task in done:
                exc = task.exception()
                if isinstance(exc, _Close):
                    close = exc
                elif exc is not None and not isinstance(exc, WebSocketDisconnect | OSError):
                    log.error("websocket connection failed", exc_info=exc)
                    close = _Close(CLOSE_INTERNAL, "internal error")
            if close is not None:
                with contextlib.suppress(Exception):
                    await self.ws.close(close.code, close.reason)
        finally:
            for task in (receiver, sender):
                task.cancel()
            await asyncio.gather(receiver, sender, return_exceptions=True)
            for sub in self.subs.values():
                self._drop(sub)
            self.subs.clear()

    def _drop(self, sub: _Sub) -> None:
        sub.active = False
        if sub.listener is not None:
            self.log.unlisten(sub.filter, sub.listener)
            sub.listener = None

    def _send(self, frame: dict[str, Any]) -> None:
        if not self.buffer.push((None, dumps(frame))):
            pass  # closed or overflowing: the sender reports it

    # -- receiving ------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        ws = self.ws
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            self.last_seen = self.loop.time()
            text = message.get("text")
            if text is None:
                raise _Close(CLOSE_PROTOCOL, "binary frames are not part of the protocol")
            try:
                data = json.loads(text)
            except ValueError:
                raise _Close(CLOSE_PROTOCOL, "frame is not JSON") from None
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                raise _Close(CLOSE_PROTOCOL, 'frame is not an object with a "type"')
            ref = data.get("ref")
            try:
                await self._handle(data["type"], data)
            except ApiError as exc:
                frame: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
                if ref is not None:
                    frame["ref"] = ref
                self._send(frame)

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
        check_filter(flt)
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
        consumer: Consumer | None = None
        if ack:
            assert isinstance(consumer_name, str)
            consumer = log.consumer(consumer_name, flt)
            if consumer is not None and since is None:
                cursor = Cursor.after(consumer.acked, log.epoch)
        sub = _Sub(name, flt)
        listener = _SubListener(self.buffer, sub)
        # listen, then resolve: in one step, so nothing published in between is lost
        log.listen(flt, listener)
        sub.listener = listener
        start = log.resolve(flt, cursor)
        after, gap = start.after, start.gap
        if ack:
            assert isinstance(consumer_name, str)
            if consumer is None:
                consumer = log.consumer_open(consumer_name, flt, after)
            elif since is not None or gap:
                log.consumer_reset(consumer, after)
            sub.consumer = consumer
        sub.last = after
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
        sub.gap = gap
        sub.floor = start.floor

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
        self.log.consumer_ack(sub.consumer, upto)

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
        spec = spec_from_request(req, self.state.settings.http_max_payload)
        (message,) = await publish_specs(self.state, [spec], "ws", "ws")
        self._send(_with_ref({"type": "published", **result(self.state, message)}, data))

    # -- sending --------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        loop = self.loop
        buffer = self.buffer
        stats = self.state.stats
        epoch = self.log.epoch
        next_ping = loop.time() + self.heartbeat
        while True:
            if self.catchup:
                items: list[_Item] | None = buffer.take()
            else:
                items = await buffer.get(max(0.0, next_ping - loop.time()))
            if buffer.closed:
                if buffer.reason == "overflow":
                    stats.stream_overflows += 1
                    raise _Close(CLOSE_TOO_SLOW, "too slow: resume with your cursors")
                raise _Close(CLOSE_GOING_AWAY, "server shutting down")
            now = loop.time()
            if now >= next_ping:
                if now - self.last_seen > self.heartbeat * self.missed:
                    stats.heartbeat_timeouts += 1
                    raise _Close(CLOSE_HEARTBEAT, "heartbeat timeout")
                await self.ws.send_text('{"type":"ping"}')
                next_ping = now + self.heartbeat
            if items:
                frames: list[str] = []
                for sub, item in items:
                    if sub is None:
                        assert isinstance(item, str)
                        frames.append(item)
                        continue
                    assert isinstance(item, LogEntry)
                    if not sub.active or sub.catching_up or item.id <= sub.last:
                        continue
                    sub.last = item.id
                    if item.message.expired():
                        continue
                    frames.append(self._frame(sub, item, epoch))
                for frame in frames:
                    await self.ws.send_text(frame)
            if self.catchup:
                await self._catch_up(epoch)

    def _frame(self, sub: _Sub, entry: LogEntry, epoch: str) -> str:
        self.state.stats.messages_out["ws"] += 1
        c = sub.consumer
        if c is None:
            return entry_ws(entry, epoch, sub.name_json, False)
        redelivered = entry.id <= c.delivered
        if entry.id > c.delivered:
            c.delivered = entry.id
        return entry_ws(entry, epoch, sub.name_json, redelivered)

    async def _catch_up(self, epoch: str) -> None:
        """One backlog page for each subscription still replaying."""
        for sub in list(self.catchup):
            if not sub.active:
                self.catchup.remove(sub)
                continue
            result = self.log.read(sub.filter, sub.last, BACKLOG_PAGE, sub.floor)
            if result.gap or sub.gap:
                sub.gap = False
                sub.floor = self.log.last_id
                self.state.stats.gaps += 1
                await self.ws.send_text(
                    dumps(
                        {
                            "type": "gap",
                            "sub": sub.name,
                            "cursor": format_cursor(epoch, sub.last),
                            "epoch": epoch,
                        }
                    )
                )
            frames = [self._frame(sub, e, epoch) for e in result.entries]
            sub.last = result.next_id
            if not result.more:
                sub.catching_up = False
                self.catchup.remove(sub)
            for frame in frames:
                await self.ws.send_text(frame)


def _with_ref(frame: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    ref = request.get("ref")
    if ref is not None:
        frame["ref"] = ref
    return frame


@router.websocket("/v1/ws")
async def websocket_endpoint(
    websocket: WebSocket, state: Annotated[HttpState, Depends(get_state)]
) -> None:
    """JSON WebSocket protocol (docs/websocket.md)."""
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    stats = state.stats
    stats.connections["ws"] += 1
    stats.connections_total["ws"] += 1
    try:
        await WsConnection(websocket, state).run()
    finally:
        stats.connections["ws"] -= 1
