"""The minimal ASGI bridge: a request for the FastAPI app (admin API, `/metrics`, docs,
console) on the HTTP listener's own connection."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

from pushwire.http.cycles import _CONTINUE, _Cycle
from pushwire.http.status_lines import status_line
from pushwire.http.wire import error_response

if TYPE_CHECKING:
    from pushwire.http.connection import HttpProtocol

log = logging.getLogger(__name__)


BODY_HIGH_WATER = 256 * 1024  # buffered request body before the connection stops reading


def _expects_continue(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in headers)


class _AsgiCycle(_Cycle):
    """A request for the ASGI app: `receive` hands it the body, `send` writes the response
    (chunked when the app gives no length)."""

    __slots__ = (
        "body_sent",
        "buffered",
        "chunked",
        "chunks",
        "expect_continue",
        "head",
        "lost",
        "scope",
        "waiter",
    )

    def __init__(self, proto: HttpProtocol, scope: dict[str, Any], keep_alive: bool) -> None:
        super().__init__(proto, keep_alive)
        self.scope = scope
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None
        self.lost = False
        self.body_sent = False  # the last http.request message was handed over
        self.chunked = False
        self.expect_continue = _expects_continue(scope["headers"])
        self.head = scope["method"] == "HEAD"

    def start(self) -> None:
        super().start()
        task = self.proto.loop.create_task(self._run())
        self.proto.server.tasks.add(task)
        task.add_done_callback(self.proto.server.tasks.discard)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def body(self, chunk: bytes) -> None:
        if self.done:
            return
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        if self.buffered > BODY_HIGH_WATER:
            self.proto.pause_reading()
        self._wake()

    def message_complete(self) -> None:
        super().message_complete()
        self._wake()

    def disconnected(self) -> None:
        self.lost = True
        self._wake()

    async def _run(self) -> None:
        try:
            await self.proto.server.app(self.scope, self.receive, self.send)
        except Exception as exc:
            log.error("unhandled error in the ASGI app", exc_info=exc)
            if not self.response_started and not self.lost:
                self.keep_alive = False
                await self._send_error()
                return
        if self.done or self.lost:
            return
        if not self.response_started:
            log.error("the ASGI app returned without a response")
            self.keep_alive = False
            await self._send_error()
        else:
            self.proto.abort()  # an incomplete response: the client must not wait for more

    async def _send_error(self) -> None:
        response = error_response(500, "internal", "internal server error")
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await self.send({"type": "http.response.body", "body": response.body})

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue and not self.complete and not self.response_started:
            self.expect_continue = False
            self.proto.write(_CONTINUE)
        while True:
            if self.lost or self.done:
                return {"type": "http.disconnect"}
            if self.chunks:
                chunk = self.chunks.popleft() if len(self.chunks) == 1 else self._take_all()
                self.buffered = 0
                self.proto.resume_reading()
                more = not (self.complete and not self.chunks)
                self.body_sent = not more
                return {"type": "http.request", "body": chunk, "more_body": more}
            if self.complete and not self.body_sent:
                self.body_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            self.waiter = self.proto.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    def _take_all(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data

    async def send(self, message: dict[str, Any]) -> None:
        if self.lost or self.done:
            return
        kind = message["type"]
        if kind == "http.response.start":
            if self.response_started:
                raise RuntimeError("response already started")
            self.response_started = True
            status = int(message["status"])
            head = [status_line(status)]
            length = False
            for name, value in message.get("headers", ()):
                lname = name.lower()
                if lname == b"content-length":
                    length = True
                elif lname == b"connection" and value.lower() == b"close":
                    self.keep_alive = False
                    continue
                elif lname == b"transfer-encoding":
                    continue
                head += [name, b": ", value, b"\r\n"]
            if not length and not self.head and status not in (204, 304) and status >= 200:
                self.chunked = True
                head.append(b"transfer-encoding: chunked\r\n")
            if not self.keep_alive or self.proto.closing:
                head.append(b"connection: close\r\n")
            head.append(b"\r\n")
            self.proto.write(b"".join(head))
        elif kind == "http.response.body":
            if not self.response_started:
                raise RuntimeError("response body before its start")
            body: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if not self.head:
                if self.chunked:
                    if body:
                        self.proto.write(b"%x\r\n%b\r\n" % (len(body), body))
                    if not more:
                        self.proto.write(b"0\r\n\r\n")
                elif body:
                    self.proto.write(body)
            if not more:
                self._wake()
                self.finish()
            else:
                await self.proto.drain()
