"""The HTTP listener's own protocol: an `asyncio.Protocol` on httptools (the C parser).

The hot endpoints (http/endpoints.py) are served straight from the parser's callbacks: no
ASGI scope, no Starlette request, no per-request task when the handler does not wait; poll,
long-poll and SSE too (`StreamRoute` / `StreamCycle`, handlers in http/streams.py).
Everything else (the admin API, `/metrics`, `/openapi.json`, the docs, the console) goes
to the FastAPI app on the same port through a minimal ASGI bridge (`_AsgiCycle`). A
WebSocket upgrade is offered first to the native JSON WebSocket (`HttpServer.native_websocket`,
http/websocket.py); what it does not take is handed, with its head, to uvicorn's sans-I/O
WebSocket protocol (http/ws_protocol.py) on the same transport.

Per connection: the request-head guard (http/guard.py: timeout, 414/431, 400 for malformed
requests, with the JSON error model and a lingering close), the per-address admission
(`core.admission`), the TLS client certificate's name (into the ASGI scope's `tls`
extension; nothing is kept by address), keep-alive (5 s idle) and pipelining (responses in
request order: requests queue up behind the one being answered).

Requests through a reverse proxy stay on the hot paths: `X-Forwarded-For` and
`X-Forwarded-Proto` from a trusted proxy give the request's client and scheme
(http/forwarded.py, the rule the ASGI app applies with the same `forwarded_allow_ips`), and
are ignored from any other peer. Requests carrying `Origin` (browsers: CORS and the Origin
rules of http/browser.py) go to the ASGI app, except a hot request from the server's own
origin when no `cors_origins` are set: the app would pass it as it is.

The listener's other parts, one job each: http/server.py (`HttpServer`: settings, hot
routes, resolved request lines, the protocol factory), http/routes.py (`FastRoute`,
`StreamRoute`, the `Lane` / `StreamLane` protocols), http/cycles.py (`_Cycle`, `_FastCycle`,
`StreamCycle`), http/asgi_cycle.py (`_AsgiCycle`), http/upgrade.py (`UpgradeRequest`),
http/eager.py (`run_eagerly`), http/status_lines.py, http/connection_deadlines.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

import httptools

from pushwire.http.asgi_cycle import _AsgiCycle
from pushwire.http.auth import CallerCache
from pushwire.http.browser import normalize_origin, own_origin_of
from pushwire.http.connection_deadlines import _HEAD, _IDLE, KEEP_ALIVE_TIMEOUT
from pushwire.http.cursor import MAX_CURSOR_LEN
from pushwire.http.cycles import (
    _DROPPED,
    _NO_CHUNKS,
    _NO_HEADERS,
    _NO_URL,
    StreamCycle,
    _FastCycle,
)
from pushwire.http.guard import (
    RESPONSE_400,
    RESPONSE_408,
    RESPONSE_429,
    HeadCounters,
    HeadMeter,
)
from pushwire.http.lane_replay import LANE_LEARNS, LANE_RETRY, LaneHead, one_request
from pushwire.http.longpoll_deadlines import SLOT, LongPollDeadlines, deadlines_of
from pushwire.http.replay import CURSOR_BYTES, ReplayHead
from pushwire.http.routes import StreamRoute
from pushwire.http.status_lines import _JSON_201
from pushwire.http.upgrade import UpgradeRequest, _first, _is_websocket
from pushwire.http.wire import WireRequest, WireResponse, error_response
from pushwire.tls import certificate_username, tls_extension

if TYPE_CHECKING:
    from pushwire.http.cycles import _Cycle
    from pushwire.http.routes import FastRoute, StreamLane, StreamState
    from pushwire.http.server import HttpServer

log = logging.getLogger(__name__)


MAX_PIPELINE = 16  # queued requests on one connection before it stops reading


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection (see the module docstring)."""

    # slots: an idle connection is this object and its transport, nothing else
    __slots__ = (
        "admitted_ip",
        "callers",
        "cert_name",
        "client",
        "closing",
        "counting",
        "deadline",
        "deadline_kind",
        "drain_waiters",
        "head_bytes",
        "head_timing",
        "headers",
        "idle",
        "lane_authorization",
        "lane_body",
        "lane_caller",
        "lane_ctype",
        "lane_head",
        "lane_keep",
        "lane_learns",
        "lane_method",
        "lane_read",
        "lane_route",
        "lane_tail",
        "linger",
        "local",
        "loop",
        "meter",
        "parser",
        "parsing",
        "pipeline",
        "read_paused",
        "reading",
        "refused",
        "replay",
        "scheme",
        "server",
        "slot",
        "stream_state",
        "timers",
        "transport",
        "upgrade",
        "upgrade_request",
        "url",
        "write_paused",
    )

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = None  # made on the first byte
        self.meter: HeadMeter | None = None
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.scheme = "http"
        self.cert_name: str | None = None
        self.admitted_ip: str | None = None
        self.callers: CallerCache | None = None  # made by the first hot request
        # what the stream side keeps between requests (http/streams.py: a long-poll's
        # waiter); told `lost()` when the connection goes
        self.stream_state: StreamState | None = None
        # requests in order: the first is being answered, the others wait
        # (a list, not a deque: an empty deque is ~600 bytes on every idle connection, and
        # the pipeline is at most MAX_PIPELINE long)
        self.pipeline: list[_Cycle] = []
        self.parsing: _Cycle | None = None  # the request whose head/body the parser is in
        self.counting = True  # the next bytes are head bytes (the meter counts them)
        # the parser is between requests: it holds no byte of the next one (httptools
        # begins a message at its first byte, even when the read that ended the previous
        # one carried it)
        self.idle = True
        self.url: list[bytes] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.upgrade: bytes | None = None  # a WebSocket upgrade's head, waiting its turn
        # the same, parsed: (method, url, headers, length of the head in `upgrade`)
        self.upgrade_request: tuple[bytes, bytes, list[tuple[bytes, bytes]], int] | None = None
        self.refused = False
        self.closing = False
        self.write_paused = False
        # who waits for the transport to drain (`drain`): made by the first, then reused
        # (an idle connection has none)
        self.drain_waiters: list[asyncio.Future[None]] | None = None
        # the head or keep-alive deadline: an entry in the loop's shared deadline buckets
        # (http/longpoll_deadlines.py), not a timer of its own; `slot` its bucket (0: none)
        self.deadline_kind = 0  # _HEAD, _IDLE or 0 (none)
        self.deadline = 0.0
        self.slot = 0
        self.timers: LongPollDeadlines | None = None
        self.linger: asyncio.TimerHandle | None = None
        self.head_timing = False
        self.head_bytes = False
        self.read_paused = False
        # a request on its route's `Lane` (see `_lane`): the route, what `Lane.admit`
        # answered, the path's tail, keep-alive, Content-Type, the body's chunks
        self.lane_route: FastRoute | None = None
        self.lane_caller: object = None
        self.lane_tail = ""
        self.lane_keep = False
        self.lane_method = ""
        self.lane_ctype: bytes | None = None
        self.lane_authorization: bytes | None = None  # its Authorization header, if any
        # made by the connection's first lane body, then reused (an idle connection has none)
        self.lane_body: list[bytes] | None = None
        # the connection's last publish head taken by the lane from a read that was that
        # one request (http/lane_replay.py): a read that is that head (with any
        # Content-Length) and a body of that length skips the parser (`_lane_replayed`)
        self.lane_head: LaneHead | None = None
        # lane requests alone in their read, not taken from bytes, since the last one that
        # was: past `LANE_LEARNS` the connection (mostly) stops learning (its heads do not
        # repeat; http/lane_replay.py)
        self.lane_learns = 0
        # during `feed_data`: the read, when it began between requests, else None
        self.lane_read: bytes | None = None
        # the connection's last long-poll head taken by its stream lane, split around the
        # cursor (http/replay.py): a read that is that head with another cursor skips the
        # parser (`_replayed`)
        self.replay: ReplayHead | None = None
        # during `feed_data`: the read, when it may be exactly one request head (a
        # template for `replay`), else None
        self.reading: bytes | None = None

    # -- connection -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr = cast(asyncio.Transport, transport)
        self.transport = tr
        peer = tr.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client = _address(peer)
        admission = self.server.admission
        if admission is not None:
            ip = self.client[0] if self.client is not None else ""
            if admission.admit(ip) is not None:
                tr.write(RESPONSE_429)  # refused before a byte is read
                tr.close()
                self.refused = True
                return
            self.admitted_ip = ip
        self.server.connections.add(self)
        local = tr.get_extra_info("sockname")
        if isinstance(local, tuple):
            self.local = _address(local)
        if tr.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
            self.cert_name = certificate_username(tr.get_extra_info("peercert"))
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unfile()
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        self.server.connections.discard(self)
        self._release()
        for cycle in self.pipeline:
            cycle.disconnected()
        self._wake_drain_waiters()
        self.parser = None
        state, self.stream_state = self.stream_state, None
        if state is not None:
            state.lost()

    def _release(self) -> None:
        if self.admitted_ip is not None and self.server.admission is not None:
            self.server.admission.release(self.admitted_ip)
            self.admitted_ip = None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.pipeline:
            self.pipeline[0].drained()  # a stream sends what waited
        self._wake_drain_waiters()

    def _wake_drain_waiters(self) -> None:
        waiters = self.drain_waiters
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            waiters.clear()

    async def drain(self) -> None:
        if self.write_paused and self.transport is not None and not self.transport.is_closing():
            waiter = self.loop.create_future()
            if self.drain_waiters is None:
                self.drain_waiters = []
            self.drain_waiters.append(waiter)
            await waiter

    def shutdown(self) -> None:
        """The server stops: close when the response under way is complete."""
        self.closing = True
        if not self.pipeline and self.lane_route is None and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- bytes in -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # answered and closing: the parser sees nothing more
        if self.upgrade is not None:
            self.upgrade += data  # for the WebSocket protocol, once it takes over
            return
        # between requests (the parser holds no partial head and no body) with nothing
        # queued: a repeated long-poll head may skip the parser
        fresh = self.idle and not self.pipeline and self.lane_route is None and self.parsing is None
        if fresh and self.lane_head is not None and self._lane_replayed(self.lane_head, data):
            return
        replay = self.replay
        if fresh and replay is not None:
            if data == replay.expected and not self.closing:
                # the usual re-ask: the template's head with the cursor every client woken
                # by the last message re-asks with, byte for byte (`ReplayHead.expect`: a
                # head taken before, within the limits), so one complete head and nothing
                # else; the lane checks that the cursor is this connection's
                self.head_timing = False
                self.deadline_kind = 0  # `_disarm`: complete (the lane sets what is next)
                if replay.lane.reask_replayed(self, replay, replay.expected_cursor):
                    server = self.server
                    server.served_owned += 1
                    server.served_replayed += 1
                    server.served_repeated += 1
                    return
            elif self._replayed(replay, data):
                return
        parser = self.parser
        if parser is None:
            # the connection's first bytes, or the first ones the byte comparisons above did
            # not take since a held long-poll let the parser go (below)
            parser = self.parser = httptools.HttpRequestParser(self)
            self.meter = HeadMeter(self.server.max_request_line, self.server.max_head)
        # the first bytes of the next request on a kept-alive connection start its head's
        # clock; the timer itself is set after this read, and only when the head is still
        # incomplete then (a request that comes whole in one read needs none)
        timed = False
        if not self.head_timing and not self.pipeline and self.lane_route is None:
            self.head_timing = timed = True
        if self.head_timing:
            self.head_bytes = True
        if self.counting:
            assert self.meter is not None
            refusal = self.meter.oversize(data)
            if refusal is not None:
                HeadCounters.refused_total["too_long"] += 1
                self._refuse(refusal)
                return
        if fresh:
            self.lane_read = data  # `_lane_complete` may keep its head
            if data.endswith(b"\r\n\r\n") and data.find(b"\r\n\r\n") == len(data) - 4:
                self.reading = data  # one head and nothing else: `_reask` may keep it
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            head: bytes | None = self.upgrade  # set by on_headers_complete for a WebSocket
            if head is not None:
                self.upgrade = head + data[upgrade.args[0] :]
                self._upgrade_when_idle()
        except httptools.HttpParserError:
            HeadCounters.refused_total["malformed"] += 1
            self._refuse(RESPONSE_400)
        finally:
            self.reading = self.lane_read = None
        if timed and self.head_timing:
            self._deadline(_HEAD, self.server.head_timeout)
        if self.idle:
            pipeline = self.pipeline
            if len(pipeline) == 1 and self.upgrade is None:
                cycle = pipeline[0]
                if (
                    isinstance(cycle, StreamCycle)
                    and cycle.request is _DROPPED
                    and cycle.keep_alive
                    and not cycle.response_started
                ):
                    # a request held (a long-poll), kept alive, and the parser between
                    # requests: it holds nothing a new one would not, so it goes while the
                    # connection waits (~1 KB of an idle long-poll connection); the next
                    # read makes one again, unless it is a re-ask taken from its bytes
                    # (`replay`), which needs no parser
                    self.parser = self.meter = None

    # httptools calls these as it parses

    def on_message_begin(self) -> None:
        state = self.stream_state
        if state is not None:
            state.request_begins()
        self.idle = False
        self.counting = True
        self.url = []
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.counting = False
        self._disarm()
        parser = self.parser
        assert parser is not None and self.transport is not None
        url = self.url[0] if len(self.url) == 1 else b"".join(self.url)
        raw_method = parser.get_method()
        headers = self.headers
        if parser.should_upgrade() and _is_websocket(headers) and self.server.websocket:
            head = [raw_method, b" ", url, b" HTTP/1.1\r\n"]
            for name, value in headers:
                head += [name, b": ", value, b"\r\n"]
            head.append(b"\r\n")
            self.upgrade = b"".join(head)
            self.upgrade_request = (raw_method, url, headers, len(self.upgrade))
            self.parsing = None
            return
        keep_alive = parser.should_keep_alive() and not self.closing
        hot = self.server.hot_urls.get((raw_method, url))
        if hot is None:
            hot = self.server.resolve(raw_method, url)
        route, method, path, raw_path, query = hot
        if (
            route is not None
            and route.lane is not None
            and not self.pipeline
            and not query
            and self.cert_name is None
            and self._lane(route, method, path[len(route.prefix) :], headers, keep_alive)
        ):
            return
        if (
            self.stream_state is not None
            and keep_alive
            and not self.pipeline
            and raw_method == b"GET"
            and self.cert_name is None
            and isinstance(route, StreamRoute)
            and route.reask is not None
            and self._reask(route, route.reask, path, query, headers)
        ):
            return
        client = self.client
        if route is not None:
            client = self._served_here(route, headers)
            if client is _NOT_HERE:
                route = None
        cycle: _Cycle
        if route is not None:
            callers = self.callers
            if client is not self.client:
                callers = None  # a proxy's clients vary per request: no per-connection caller
            elif callers is None:
                callers = self.callers = CallerCache()
            request = WireRequest(
                method,
                path,
                query,
                headers,
                client,
                self.cert_name,
                path[len(route.prefix) :],
                callers=callers,
            )
            if isinstance(route, StreamRoute):
                cycle = StreamCycle(self, request, route, keep_alive)
            else:
                cycle = _FastCycle(self, request, route, keep_alive)
            self.server.served_owned += 1
        else:
            cycle = _AsgiCycle(self, self._scope(method, url, raw_path, query), keep_alive)
            self.server.served_asgi += 1
        self.parsing = cycle
        self.pipeline.append(cycle)
        if len(self.pipeline) == 1:
            cycle.start()
        elif len(self.pipeline) > MAX_PIPELINE:
            self.pause_reading()

    def _lane(
        self,
        route: FastRoute,
        method: str,
        tail: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
    ) -> bool:
        """Take a request on its route's lane (see `Lane`): True when it was taken."""
        lane = route.lane
        assert lane is not None
        length: bytes | None = None
        ctype: bytes | None = None
        authorization: bytes | None = None
        allowed = lane.headers
        for name, value in headers:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                if ctype is None:
                    ctype = value
            elif name == b"authorization":
                if authorization is not None:
                    return False  # credentials twice: the handler's 400
                authorization = value
            elif name not in allowed:
                return False
        if length is None or not length.isdigit() or int(length) > route.body_limit:
            return False
        caller = lane.admit(self.callers, tail, authorization, self.client)
        if caller is None:
            return False
        self.lane_route = route
        self.lane_caller = caller
        self.lane_authorization = authorization
        self.lane_tail = tail
        self.lane_keep = keep_alive
        self.lane_method = method
        self.lane_ctype = ctype
        self.parsing = None
        self.server.served_owned += 1
        return True

    def _reask(
        self,
        route: StreamRoute,
        lane: StreamLane,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> bool:
        """Offer a request to its stream route's lane (see `StreamLane`): True when taken."""
        allowed = lane.headers
        for name, _ in headers:
            if name not in allowed:
                return False
        tail = path[len(route.prefix) :]
        if not lane.reask(self, route, tail, query):
            self.replay = None
            return False
        self.server.served_owned += 1
        data = self.reading
        if data is not None:
            # the read was this head alone: the next one may be recognised from its bytes
            self.replay = self.server.replay_heads.learn(data, query, route, tail)
        return True

    def _replayed(self, replay: ReplayHead, data: bytes) -> bool:
        """`data` is the connection's kept long-poll head with another cursor (see
        http/replay.py): offer it to the stream lane as the parser would have, within the
        same head limits. True when the lane took it; False, with nothing changed, for the
        full parse."""
        prefix, suffix = replay.prefix, replay.suffix
        if not (data.startswith(prefix) and data.endswith(suffix)):
            return False
        cursor = data[len(prefix) : len(data) - len(suffix)]
        server = self.server
        if (
            not 0 < len(cursor) <= MAX_CURSOR_LEN
            or cursor.translate(None, CURSOR_BYTES)  # `is_cursor_token`, inline
            or self.closing
            or self.upgrade is not None
            or replay.line_fixed + len(cursor) > server.max_request_line
            or len(data) > server.max_head
        ):
            return False
        self._disarm()  # the head is complete (the lane sets the next deadline)
        text = cursor.decode("latin-1")
        if not replay.lane.reask_replayed(self, replay, text):
            return False
        server.served_owned += 1
        server.served_replayed += 1
        replay.expect(data, text)  # the next client with this cursor: one comparison
        return True

    def answered_on_lane(self, response: bytes) -> None:
        """A lane request was answered at once with `response` (kept-alive): wait for the
        next request."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(response)
        if self.read_paused:
            self.resume_reading()
        self.head_timing = False  # `_arm_keep_alive`
        self._deadline(_IDLE, KEEP_ALIVE_TIMEOUT)

    def hold_on_lane(self, cycle: StreamCycle | None, route: StreamRoute) -> StreamCycle:
        """A lane request is held: it takes its turn in the pipeline as `cycle` (the
        connection's, reused; made when None), complete and answered by the stream side
        (`StreamCycle.answer`, ...). Its head's lists are dropped, as `StreamCycle.hold`
        does."""
        if cycle is not None and cycle.rested and cycle.proto is self:
            # the usual re-ask after the usual answer: only these moved since it was held
            cycle.response_started = cycle.done = cycle.rested = False
        else:
            if cycle is None or cycle.proto is not self:
                cycle = StreamCycle(self, _DROPPED, route, True)
                cycle.chunks = _NO_CHUNKS  # a lane request has no body
            # ready again (once per re-ask, so inline): complete (a lane request has no
            # body), its turn, nothing answered yet
            cycle.keep_alive = cycle.complete = cycle.active = cycle.running = True
            cycle.response_started = cycle.done = cycle.head = cycle.expect_continue = False
            cycle.rested = False
            cycle.on_drain = cycle.on_lost = None
            cycle.transport = self.transport
        self.pipeline.append(cycle)
        self.url = _NO_URL
        self.headers = _NO_HEADERS
        return cycle

    def _lane_complete(self, route: FastRoute) -> None:
        """The body of a lane request is in: publish, and reply (or start a cycle that
        replies when the lane's coroutine finishes)."""
        self.lane_route = None
        chunks = self.lane_body
        if chunks:
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
        else:
            body = b""
        caller, self.lane_caller = self.lane_caller, None
        keep = self.lane_keep and not self.closing
        data = self.lane_read
        if data is not None and keep:
            # the read began with this request: when it was exactly this request, its
            # head may be recognised from its bytes next time (`_lane_replayed`); a read
            # that held less or more than one request (a head split over two reads) teaches
            # nothing: the head kept before stays (it is only ever used for bytes that match
            # it, so keeping it is never wrong)
            head = self.lane_head
            if head is None or not head.body_at(data):
                one = one_request(data, len(body))
                if one is not None:
                    self.lane_learns = learns = self.lane_learns + 1
                    if learns <= LANE_LEARNS or not learns % LANE_RETRY:
                        self._lane_learn(one, route)
        self._lane_answer(route, caller, self.lane_tail, self.lane_ctype, body, keep)

    def _lane_learn(self, head: bytes, route: FastRoute) -> None:
        """Keep `head`, the bytes of the lane request just parsed, when it can be
        recognised from its bytes (http/lane_replay.py `LaneHeads.learn`)."""
        assert self.parser is not None
        url = self.url[0] if len(self.url) == 1 else b"".join(self.url)
        learned = self.server.lane_heads.learn(
            head,
            self.parser.get_method(),
            url,
            self.headers,
            route,
            self.lane_tail,
            self.lane_method,
            self.lane_ctype,
            self.lane_authorization,
        )
        if learned is not None:
            self.lane_head = learned

    def _lane_replayed(self, head: LaneHead, data: bytes) -> bool:
        """`data` may be the connection's kept publish head (with any Content-Length) and
        a body of that length (see http/lane_replay.py): take it on the lane as the parser
        would have. False, with nothing changed, for the full parse."""
        route = head.route
        server = self.server
        if len(data) == head.size and data.startswith(head.whole):
            at = head.at  # the same length as the last request taken with it
        else:
            at = head.body_at(data)
            if not at or at > server.max_head or len(data) - at > route.body_limit:
                return False  # (the same head limits and body limit as the full parse's)
            head.expect(data, at)
        lane = route.lane
        if lane is None or self.closing:
            return False
        caller = lane.admit(self.callers, head.tail, head.authorization, self.client)
        if caller is None:
            return False  # the full parse, and the handler, say why
        state = self.stream_state
        if state is not None:
            state.request_begins()  # as `on_message_begin`: a long-poll client no longer
        server.served_owned += 1
        server.served_lane_replayed += 1
        self.lane_learns = 0
        self.lane_method = head.method
        self.headers = head.headers  # for a reply that needs a cycle (`_lane_answer`)
        self._lane_answer(route, caller, head.tail, head.ctype, data[at:], True)
        return True

    def _lane_answer(
        self,
        route: FastRoute,
        caller: object,
        tail: str,
        ctype: bytes | None,
        body: bytes,
        keep: bool,
    ) -> None:
        """Run a lane request whose body is in; a kept-alive 201 is written here, anything
        else gets the cycle of a hot request."""
        lane = route.lane
        assert lane is not None
        try:
            result = lane.run(caller, tail, ctype, body)
        except Exception as exc:
            log.error("unhandled error on a publish to %r", tail, exc_info=exc)
            result = error_response(500, "internal", "internal server error")
        if isinstance(result, bytes):
            if keep:
                transport = self.transport
                if transport is not None and not transport.is_closing():
                    transport.write(b"%b%d\r\n\r\n%b" % (_JSON_201, len(result), result))
                if self.read_paused:
                    self.resume_reading()
                self.head_timing = False  # `_arm_keep_alive`
                self._deadline(_IDLE, KEEP_ALIVE_TIMEOUT)
                return
            result = WireResponse(201, result)
        # anything but a kept-alive 201: the cycle of a hot request, as if it came that way
        request = WireRequest(self.lane_method, route.prefix + tail, b"", self.headers, self.client)
        request.path_tail = tail
        cycle = _FastCycle(self, request, route, keep)
        cycle.complete = cycle.running = True
        self.pipeline.append(cycle)
        cycle.start()
        if isinstance(result, WireResponse):
            cycle._respond(result)
        else:
            cycle.drive(result)

    def _served_here(
        self, route: FastRoute, headers: list[tuple[bytes, bytes]]
    ) -> tuple[str, int] | None:
        """The client of a hot request that stays on this protocol (the connection's peer,
        or the one a trusted proxy names: http/forwarded.py), or `_NOT_HERE` for the app.
        An `Origin` (a browser) goes to the app, unless the app's only browser rule for it
        is the Origin check (no `cors_origins`: no CORS headers to add) and the origin is
        the server's own, which that check lets through."""
        origin: bytes | None = None
        forwarded = False
        for name, value in headers:
            if name == b"origin":
                if origin is None:
                    origin = value
            elif name == b"x-forwarded-for" or name == b"x-forwarded-proto":
                forwarded = True
        client, scheme = self.client, self.scheme
        if forwarded and self.server.proxies is not None:
            client, given = self.server.proxies.client(client, headers)
            if given is not None:
                scheme = given
        if origin is None:
            return client
        if not route.own_origin_ok:
            return _NOT_HERE
        host = _first(headers, b"host")
        if host is None:
            return _NOT_HERE
        own = own_origin_of(scheme, host.decode("latin-1"))
        return client if normalize_origin(origin.decode("latin-1")) == own else _NOT_HERE

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.body(body)
        elif self.lane_route is not None:
            # bounded: Content-Length is within the limit
            if self.lane_body is None:
                self.lane_body = [body]
            else:
                self.lane_body.append(body)

    def on_message_complete(self) -> None:
        self.idle = True
        self.counting = True
        if self.meter is not None:
            self.meter.reset()
        lane = self.lane_route
        if lane is not None:
            self._lane_complete(lane)
            return
        cycle, self.parsing = self.parsing, None
        if cycle is not None:
            cycle.message_complete()

    def _scope(self, method: str, url: bytes, raw_path: bytes, query: bytes) -> dict[str, Any]:
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        assert self.parser is not None
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.parser.get_http_version(),
            "server": self.local,
            "client": self.client,
            "scheme": self.scheme,
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
        }
        if self.scheme == "https":
            scope["extensions"] = {"tls": tls_extension(self.cert_name)}
        return scope

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    # -- responses ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def cycle_done(self, cycle: _Cycle) -> None:
        """`cycle`'s response is complete: answer the next request, or wait for one."""
        if self.pipeline and self.pipeline[0] is cycle:
            del self.pipeline[0]
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not cycle.keep_alive or self.closing:
            transport.close()
            return
        if self.pipeline:
            if len(self.pipeline) <= 1:
                self.resume_reading()
            self.pipeline[0].start()
            return
        if self.upgrade is not None and self.parsing is None:
            self._upgrade_when_idle()
            return
        self.resume_reading()
        self._arm_keep_alive()

    def _upgrade_when_idle(self) -> None:
        """Hand the connection to the WebSocket protocol once earlier answers are out."""
        if self.pipeline or self.upgrade is None or self.transport is None:
            return
        head, self.upgrade = self.upgrade, None
        self._disarm()
        self._unfile()  # its bucket would keep this protocol alive until it comes due
        self.server.connections.discard(self)
        self.parser = None
        self.refused = True  # this protocol sees no more bytes
        admitted, self.admitted_ip = self.admitted_ip, None
        release = self._release_ip(admitted)
        if self._upgrade_natively(head, release):
            return
        assert self.server.websocket is not None
        self.server.websocket(self.transport, self.cert_name, release)
        protocol = cast(asyncio.Protocol, self.transport.get_protocol())
        protocol.data_received(head)

    def _upgrade_natively(self, head: bytes, release: Callable[[], None]) -> bool:
        """Offer the upgrade to the native WebSocket (http/websocket.py) first."""
        native, target = self.server.native_websocket, self.upgrade_request
        self.upgrade_request = None
        if native is None or target is None or self.transport is None:
            return False
        method, url, headers, head_length = target
        parsed = httptools.parse_url(url)
        request = UpgradeRequest(
            self.transport,
            method,
            parsed.path,
            parsed.query or b"",
            headers,
            head[head_length:],
            self.client,
            self.cert_name,
            self.scheme,
            release,
        )
        return native(request)

    def _release_ip(self, ip: str | None) -> Callable[[], None]:
        admission = self.server.admission

        def release() -> None:
            if ip is not None and admission is not None:
                admission.release(ip)

        return release

    def _refuse(self, response: bytes) -> None:
        """Answer `response` and close; the parser sees nothing more. If a response of an
        earlier request on this connection is under way (pipelining), close without a word
        rather than mix the two. A request still held (a long-poll) is let go.

        A lingering close: closing a socket with unread input makes the kernel send a reset,
        which can destroy the answer before the client reads it (a client still sending its
        huge head). So the write side is shut after the answer (FIN; TLS has no half-close,
        the answer's content-length and `connection: close` say it is complete) and further
        input is discarded, unparsed, until the client closes, for at most `head_timeout`
        seconds."""
        self.refused = True
        self._disarm()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not self.pipeline or not self.pipeline[0].response_started:
            transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
        # a request held before this one (a long-poll) will not be answered now that the
        # write side is shut: it stops waiting (a publish's wake would write after the EOF)
        for cycle in self.pipeline:
            cycle.disconnected()
        self.linger = self.loop.call_later(self.server.head_timeout, transport.close)

    # -- timers ---------------------------------------------------------------------------

    # One deadline per connection, in the loop's shared buckets (http/longpoll_deadlines.py:
    # at most one 50 ms slot late, never early), moved lazily: a busy keep-alive connection
    # moves a number per request; its bucket, when it comes due first, files it again for
    # the rest.

    def _arm_head(self) -> None:
        self.head_timing = True
        self.head_bytes = False
        self._deadline(_HEAD, self.server.head_timeout)

    def _arm_keep_alive(self) -> None:
        self.head_timing = False
        self._deadline(_IDLE, KEEP_ALIVE_TIMEOUT)

    def _disarm(self) -> None:
        self.head_timing = False
        self.deadline_kind = 0  # a pending timer finds nothing to do

    def _deadline(self, kind: int, delay: float) -> None:
        self.deadline_kind = kind
        self.deadline = when = self.loop.time() + delay
        self.file(when)

    def file(self, when: float) -> None:
        """Be told (`due`) at `when` at the latest: the bucket it is in already comes due
        first, else it is filed (again) under `when`."""
        slot = self.slot
        timers = self.timers
        if slot:
            if (slot - 1) * SLOT < when:
                # its bucket comes due no later than `when`'s own would (first, or the
                # same slot): it files it again for the rest when it is early
                return
            assert timers is not None
            timers.remove(self)
        if timers is None or timers.stopped:
            timers = self.timers = deadlines_of(self.loop)
        timers.add(self, when)

    def _unfile(self) -> None:
        if self.slot and self.timers is not None:
            self.timers.remove(self)

    def due(self, now: float) -> None:
        """Its deadline bucket came due (`LongPollDeadlines`)."""
        kind = self.deadline_kind
        if kind == 0:
            return
        if now < self.deadline:
            self.file(self.deadline)  # moved later since it was filed: the rest
            return
        self.deadline_kind = 0
        if kind == _HEAD:
            self._head_expired()
        else:
            self._idle_expired()

    def _head_expired(self) -> None:
        self.head_timing = False
        transport = self.transport
        if transport is None or transport.is_closing() or transport.get_protocol() is not self:
            return
        HeadCounters.timeouts_total += 1
        if self.head_bytes:
            transport.write(RESPONSE_408)
        transport.close()

    def _idle_expired(self) -> None:
        if self.transport is not None and not self.pipeline and self.lane_route is None:
            self.transport.close()


def _address(address: tuple[Any, ...]) -> tuple[str, int]:
    """(host, port) of a socket address; the transport's own tuple when it is one already
    (the transport keeps it: no second tuple per connection)."""
    if len(address) == 2 and type(address[0]) is str and type(address[1]) is int:
        return cast(tuple[str, int], address)
    return (str(address[0]), int(address[1]))


_NOT_HERE = ("", -1)  # `_served_here`: the request goes to the ASGI app (compared by identity)
