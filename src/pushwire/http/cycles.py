"""Request cycles on an HTTP connection: the base (`_Cycle`), a hot endpoint's (`_FastCycle`)
and a stream's (`StreamCycle`: poll, long-poll, SSE; handlers in http/streams.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pushwire.http.connection_deadlines import _IDLE
from pushwire.http.connection_deadlines import (
    KEEP_ALIVE_TIMEOUT as KEEP_ALIVE_TIMEOUT,  # (also read by http/streams.py)
)
from pushwire.http.eager import run_eagerly
from pushwire.http.longpoll_deadlines import SLOT
from pushwire.http.routes import FastRoute, StreamRoute
from pushwire.http.status_lines import _json_head, status_line
from pushwire.http.wire import WireRequest, WireResponse, error_response

if TYPE_CHECKING:
    from pushwire.http.connection import HttpProtocol

log = logging.getLogger(__name__)


class _Cycle:
    """One request and its response on a connection."""

    __slots__ = ("active", "complete", "done", "keep_alive", "proto", "response_started")

    def __init__(self, proto: HttpProtocol, keep_alive: bool) -> None:
        self.proto = proto
        self.keep_alive = keep_alive
        self.complete = False  # the whole request (head and body) is parsed
        self.active = False  # its turn to be answered
        self.response_started = False
        self.done = False

    def start(self) -> None:
        self.active = True

    def body(self, chunk: bytes) -> None:
        raise NotImplementedError

    def message_complete(self) -> None:
        self.complete = True

    def disconnected(self) -> None:
        """The connection is lost."""

    def drained(self) -> None:
        """The transport's write buffer went below its low-water mark."""

    def finish(self) -> None:
        self.done = True
        self.proto.cycle_done(self)


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _FastCycle(_Cycle):
    """A hot endpoint: the handler runs once the body is in (or over its limit), without a
    task unless it has to wait."""

    __slots__ = ("chunks", "expect_continue", "head", "request", "route", "running", "size")

    def __init__(
        self, proto: HttpProtocol, request: WireRequest, route: FastRoute, keep_alive: bool
    ) -> None:
        super().__init__(proto, keep_alive)
        self.request = request
        self.route = route
        self.chunks: list[bytes] = []
        self.size = 0
        self.running = False
        self.head = request.method == "HEAD"
        self.expect_continue = False
        declared: bytes | None = None
        for name, value in request.headers:  # one pass for both headers
            if name == b"content-length":
                if declared is None:
                    declared = value
            elif name == b"expect" and value.lower() == b"100-continue":
                self.expect_continue = True
        if declared is not None and declared.isdigit() and int(declared) > route.body_limit:
            self._over(int(declared))

    def _over(self, size: int) -> None:
        self.request.oversize = size
        self.chunks = []
        self.keep_alive = False  # the rest of the body is not read: close after answering

    def start(self) -> None:
        super().start()
        if self.complete or self.request.oversize:
            self._run()
        elif self.expect_continue:
            self.proto.write(_CONTINUE)

    def body(self, chunk: bytes) -> None:
        if self.request.oversize or self.done:
            return
        self.size += len(chunk)
        if self.size > self.route.body_limit:
            self._over(self.size)
            if self.active:
                self._run()
            return
        self.chunks.append(chunk)  # bounded by the route's body limit

    def message_complete(self) -> None:
        super().message_complete()
        if self.active:
            self._run()

    def _run(self) -> None:
        if self.running:
            return
        self.running = True
        request = self.request
        if self.chunks:
            request.body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            self.chunks = []
        self.drive(self.route.handler(request))

    def drive(self, handling: Coroutine[Any, Any, WireResponse]) -> None:
        """Run the handler's coroutine; reply when it finishes (now, or from its task)."""
        try:
            started = run_eagerly(self.proto.loop, handling)
        except Exception as exc:
            self._respond(internal_error(exc, self.request))
            return
        if not isinstance(started, asyncio.Task):
            self._respond(started)
            return
        task = started
        self.proto.server.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[WireResponse]) -> None:
        self.proto.server.tasks.discard(task)
        if task.cancelled():
            self.proto.abort()
            return
        exc = task.exception()
        if exc is not None:
            self._respond(internal_error(exc, self.request))
            return
        self._respond(task.result())

    def _respond(self, response: WireResponse) -> None:
        self.response_started = True
        keep = self.keep_alive
        if (
            keep
            and not response.headers
            and not self.head
            and response.content_type == "application/json"
        ):
            # the common answer: a prebuilt status line and content type
            body = response.body
            self.proto.write(b"%b%d\r\n\r\n%b" % (_json_head(response.status), len(body), body))
            self.finish()
            return
        head = [
            status_line(response.status),
            b"content-type: ",
            response.content_type.encode("latin-1"),
            b"\r\ncontent-length: ",
            str(len(response.body)).encode(),
            b"\r\n",
        ]
        for name, value in response.headers:
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        if not keep:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        if not self.head:
            head.append(response.body)
        self.proto.write(b"".join(head))
        self.finish()


class StreamCycle(_FastCycle):
    """A request answered by the stream side (http/streams.py), without a task while it
    waits: a held long-poll answers with one prebuilt response (`reply`, the connection
    stays kept-alive); an SSE stream (`open_stream`) writes its head, drops the parser,
    and then each `send` is one `transport.write` of shared bytes (a close-delimited body);
    `on_drain` runs when a paused transport drains, `on_lost` when the client goes away."""

    __slots__ = ("on_drain", "on_lost", "rested", "transport")

    def __init__(
        self, proto: HttpProtocol, request: WireRequest, route: FastRoute, keep_alive: bool
    ) -> None:
        super().__init__(proto, request, route, keep_alive)
        self.on_drain: Callable[[], None] | None = None
        self.on_lost: Callable[[], None] | None = None
        self.transport = proto.transport
        # answered the usual way (`answered`, kept-alive, nothing queued): all but `done`
        # and `response_started` are as `HttpProtocol.hold_on_lane` sets them for reuse
        self.rested = False

    def _run(self) -> None:
        if self.running:
            return
        self.running = True
        request = self.request
        assert isinstance(self.route, StreamRoute)
        try:
            started = run_eagerly(self.proto.loop, self.route.stream_handler(request, self))
        except Exception as exc:
            self._respond(internal_error(exc, request))
            return
        if not isinstance(started, asyncio.Task):
            if started is not None:
                self._respond(started)
            return
        self.proto.server.tasks.add(started)
        started.add_done_callback(self._stream_task_done)

    def _stream_task_done(self, task: asyncio.Task[WireResponse | None]) -> None:
        self.proto.server.tasks.discard(task)
        if task.cancelled():
            self.proto.abort()
            return
        exc = task.exception()
        if exc is not None:
            if not self.response_started:
                self._respond(internal_error(exc, self.request))
            else:
                log.error("unhandled error in a stream", exc_info=exc)
                self.proto.abort()
            return
        result = task.result()
        if result is not None and not self.done and not self.response_started:
            self._respond(result)

    @property
    def lost(self) -> bool:
        transport = self.transport
        return transport is None or transport.is_closing()

    def answer(self, kept: bytes, closing: bytes) -> None:
        """Answer a held request with one prebuilt response (`kept`: for a kept-alive
        connection; `closing`: the same with `connection: close`)."""
        if self.write_answer(kept, closing):
            self.answered()

    def write_answer(self, kept: bytes, closing: bytes) -> bool:
        """`answer`'s write alone (a long-poll woken by a publish writes first and
        completes the cycle with `answered` after the other waiters' writes); False when
        the request was answered already."""
        if self.done or self.response_started:
            return False
        self.response_started = True
        self.on_lost = None
        if not self.head:
            # `HttpProtocol.write` inline (once per woken long-poll)
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.write(kept if self.keep_alive and not self.proto.closing else closing)
        return True

    def answered(self) -> bool:
        """The rest of `answer` after `write_answer`: the next request's turn. True when
        the kept-alive connection now waits for its next request (nothing queued)."""
        if self.done or not self.response_started:
            return False
        proto = self.proto
        pipeline = proto.pipeline
        transport = proto.transport
        if (
            self.keep_alive
            and not proto.closing
            and len(pipeline) == 1
            and pipeline[0] is self
            and proto.idle  # (not when the next request's head began meanwhile)
            and proto.upgrade is None
            and transport is not None
            and not transport.is_closing()
        ):
            # the usual wake: what `cycle_done` does for a kept-alive connection with
            # nothing queued (wait for the next request)
            self.done = self.rested = True
            pipeline.clear()
            if proto.read_paused:
                proto.resume_reading()
            # `_arm_keep_alive` inline (once per woken long-poll): the connection's deadline
            # bucket comes due first and files it again for the rest, unless it is in none
            # or a later one
            proto.head_timing = False
            proto.deadline_kind = _IDLE
            proto.deadline = when = proto.loop.time() + KEEP_ALIVE_TIMEOUT
            slot = proto.slot
            if not slot or (slot - 1) * SLOT >= when:  # (`HttpProtocol.file`)
                proto.file(when)
            return True
        if len(pipeline) > 1:
            # a request pipelined behind this one starts on the next loop turn, not inside
            # the publish that answered this one (it may be a publish itself)
            self.done = True
            proto.loop.call_soon(proto.cycle_done, self)
            return False
        self.finish()
        return False

    def hold(self) -> None:
        """The request is held (a long-poll): drop what its parsing left, so that a held
        request keeps no per-request objects besides this cycle (fewer objects for the
        cyclic GC to walk while 10,000 wait). The next request's head makes new lists."""
        proto = self.proto
        if proto.headers is self.request.headers:
            # still this request's head (the next one's, once begun, has lists of its own)
            proto.url = _NO_URL
            proto.headers = _NO_HEADERS
        self.request = _DROPPED
        if self.complete:
            self.chunks = _NO_CHUNKS  # the body is complete: nothing is appended any more

    def answer_response(self, response: WireResponse) -> None:
        """Answer a held request with `response` (an error, a 204)."""
        if self.done or self.response_started:
            return
        self.on_lost = None
        self._respond(response)

    def open_stream(
        self,
        head: bytes,
        on_drain: Callable[[], None] | None,
        on_lost: Callable[[], None] | None,
    ) -> None:
        """Start a close-delimited response: `head` (status line and headers, without
        `connection: close` and the blank line). The parser is dropped: bytes the client
        sends from now on are ignored."""
        self.response_started = True
        self.keep_alive = False
        self.on_drain, self.on_lost = on_drain, on_lost
        proto = self.proto
        proto.parser = None
        proto.meter = None
        proto.refused = True  # no more requests on this connection
        proto.url = []
        proto.headers = []
        proto.write(head + b"connection: close\r\n\r\n")
        self.request = _DROPPED
        self.chunks = []

    def send(self, data: bytes) -> None:
        """Stream bytes (shared: written as they are)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def writable(self) -> bool:
        return not self.proto.write_paused

    def end_stream(self) -> None:
        """The stream is complete: close the connection (after what was written)."""
        self.on_drain = self.on_lost = None
        if not self.done:
            self.finish()

    def drained(self) -> None:
        if self.on_drain is not None:
            self.on_drain()

    def disconnected(self) -> None:
        on_lost, self.on_lost, self.on_drain = self.on_lost, None, None
        if on_lost is not None:
            on_lost()


_DROPPED = WireRequest("GET", "", b"", [], None)  # what a stream keeps of its request
# empty placeholders for a held request (`StreamCycle.hold`): never appended to, because
# `on_message_begin` makes new lists before the parser reports a URL or header again
_NO_CHUNKS: list[bytes] = []
_NO_URL: list[bytes] = []
_NO_HEADERS: list[tuple[bytes, bytes]] = []


def internal_error(exc: BaseException, request: WireRequest) -> WireResponse:
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal", "internal server error")
