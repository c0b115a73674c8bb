"""Poll, long-poll and SSE served natively on the owned HTTP protocol (http/connection.py).

The handlers take the request's `StreamCycle` and the one reader (http/reader.py):

- poll: one response, as any hot endpoint;
- long-poll: answered at once when the first read found something, else held by a
  `LongPollWaiter` whose `ReplySink` is `_HeldReply`: no task, no future; the answer is one
  prebuilt response (head and body), shared by every waiter a publish wakes with the same
  body and cursor; the connection stays kept-alive. The client's disconnect ends the hold;
- SSE: the head is written, the parser is dropped, and the reader's `Sink` is `_SseSink`:
  `send` is one `transport.write` of the entry's cached event bytes; `writable` follows the
  transport's pause/resume, which calls `reader.resume()`. Heartbeats come from one timer
  for all the streams of a listener (`_Heartbeats`), not a task per stream.

Requests carrying `Origin` (CORS) still reach the same readers through the ASGI app
(http/stream_endpoints.py), where the CORS middleware adds its headers; those through a
reverse proxy stay here (http/forwarded.py names their client).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from pushwire.core.clients import ClientInfo
from pushwire.core.identity import Identity
from pushwire.core.log import ALL, Cursor
from pushwire.http import cycles, poll, sse
from pushwire.http.auth import Caller, caller_from, unauthorized
from pushwire.http.connection import HttpProtocol
from pushwire.http.connection_deadlines import _IDLE
from pushwire.http.cursor import CursorError
from pushwire.http.cycles import StreamCycle
from pushwire.http.delivery_tally import WalkTally
from pushwire.http.endpoints import Endpoint, api_error_response
from pushwire.http.errors import ApiError
from pushwire.http.longpoll_deadlines import SLOT
from pushwire.http.reader import LongPollWaiter, StreamReader, entry_longpoll_reply
from pushwire.http.replay import ReplayHead
from pushwire.http.routes import StreamRoute
from pushwire.http.sse_reader import SseLiveReader, live_reader
from pushwire.http.state import HttpState
from pushwire.http.status_lines import status_line
from pushwire.http.stream_endpoints import LONGPOLL, POLL, SSE, integer
from pushwire.http.wire import WireRequest, WireResponse

StreamServe = Callable[[WireRequest, StreamCycle], Coroutine[Any, Any, WireResponse | None]]

_HEARTBEAT = b": hb\n\n"
_SSE_HEAD = (
    status_line(200)
    + b"content-type: text/event-stream; charset=utf-8\r\n"
    + b"cache-control: no-store\r\nx-accel-buffering: no\r\n"
)


def _headers(headers: dict[str, str]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")


def _answer_bytes(status: int, body: bytes, headers: dict[str, str]) -> tuple[bytes, bytes]:
    """A complete (long-)poll response, for a kept-alive and for a closing connection."""
    head = status_line(status) + _headers(headers)
    if status != 304:
        head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
    return head + b"\r\n" + body, head + b"connection: close\r\n\r\n" + body


def _wire(answer: poll.Answer) -> WireResponse:
    status, body, headers = answer
    if status == 304:
        return WireResponse(304, b"", list(headers.items()), "")
    return WireResponse(status, body, list(headers.items()))


class _Options:
    """An endpoint's options read as `Endpoint.read_options` reads them (the query wins
    over the headers; a repeated query option: its last value, as Starlette's
    QueryParams), without building a QueryParams for the common plain query string (no
    `%`, `+`, `;`: nothing to decode). Anything else goes to `read_options`."""

    __slots__ = ("by_header", "endpoint", "keys", "names")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.names = frozenset(o.name for o in endpoint.options)
        self.keys = tuple(o.name for o in endpoint.options) + tuple(
            h.name.lower() for h in endpoint.headers
        )
        by_header = {o.header.lower().encode(): o.name for o in endpoint.options if o.header}
        by_header.update({h.name.lower().encode(): h.name.lower() for h in endpoint.headers})
        self.by_header = by_header

    def query_only(self, request: WireRequest) -> bool:
        """No header of the request gives an option: the query string says it all."""
        by_header = self.by_header
        return not by_header or all(name not in by_header for name, _ in request.headers)

    def read(self, request: WireRequest) -> dict[str, str | None]:
        query = request.query_string
        if b"%" in query or b"+" in query:
            return self.endpoint.read_options(request)
        values: dict[str, str | None] = dict.fromkeys(self.keys)
        by_header = self.by_header
        if by_header:
            for name, value in request.headers:
                key = by_header.get(name)
                if key is not None and values[key] is None:
                    values[key] = value.decode("latin-1")
        if query:
            names = self.names
            for pair in query.decode("latin-1").split("&"):
                option, _, given = pair.partition("=")
                if option in names:
                    values[option] = given
        return values


_NO_QUERY = WireRequest("GET", "", b"", [], None).query  # the empty QueryParams


def _anonymous(request: WireRequest) -> bool:
    """No credentials in the headers, the certificate or `?auth=` (`%` might encode it)."""
    query = request.query_string
    if request.cert_name is not None or b"auth" in query or b"%" in query:
        return False
    return request.header(b"authorization") is None


def _known_caller(state: HttpState, request: WireRequest) -> Caller | None:
    """The connection's cached anonymous caller, when the request is anonymous and the
    auth snapshot is the one it was admitted under (http/auth.py `CallerCache`)."""
    cache = request.callers
    if cache is None or cache.caller is None or not _anonymous(request):
        return None
    return cache.anonymous(state.auth)


async def _caller(state: HttpState, request: WireRequest) -> Caller:
    cache = request.callers
    anonymous = cache is not None and _anonymous(request)
    if anonymous:
        assert cache is not None
        found = cache.anonymous(state.auth)
        if found is not None:
            return found
    snapshot = state.auth.snapshot
    query = request.query_string
    # only `?auth=` of the query matters to authentication: parsed only when it may be there
    params = request.query if b"auth" in query or b"%" in query else _NO_QUERY
    caller = await caller_from(
        state.auth,
        request.header_list(b"authorization"),
        params,
        request.ip,
        request.cert_name,
        allow_query=True,
    )
    if anonymous:
        assert cache is not None
        cache.keep(state.auth, snapshot, caller)
    return caller


_POLL, _LONGPOLL, _SSE = _Options(POLL), _Options(LONGPOLL), _Options(SSE)


# -- poll -----------------------------------------------------------------------------------


async def serve_poll(
    state: HttpState, request: WireRequest, _cycle: StreamCycle
) -> WireResponse | None:
    options = _POLL.read(request)
    caller = await _caller(state, request)
    answer = await poll.poll_read(
        state,
        caller,
        request.path_tail,
        options["since"],
        integer(options, "limit"),
        options["if-none-match"],
    )
    return _wire(answer)


# -- long-poll ------------------------------------------------------------------------------


class _ReplyCache:
    """The last few replies built, by cursor: every waiter a publish wakes gets the same
    body object and cursor, so the whole response is built once and written to each; and
    clients that fell behind catch up with the same few one-message bodies (cached on their
    entries), so their responses are kept too. A hit needs the very body object."""

    __slots__ = ("asked", "last_body", "last_closing", "last_kept", "replies")

    KEPT = 16

    def __init__(self) -> None:
        self.replies: dict[str, tuple[bytes, tuple[bytes, bytes]]] = {}
        # and the long-poll options parsed, by query string (`_asked`)
        self.asked: dict[bytes, poll.LongPollAsk] = {}
        # the last reply built or found: what every waiter of a wake looks up
        # (`_LongPoller.write_reply` reads it without a call)
        self.last_body = b""
        self.last_kept = self.last_closing = b""

    def reply(self, body: bytes, cursor: str) -> tuple[bytes, bytes]:
        found = self.replies.get(cursor)
        if found is not None and found[0] is body:
            response = found[1]
        else:
            response = _answer_bytes(200, body, poll._poll_headers(cursor, False))
            replies = self.replies
            if len(replies) >= self.KEPT and cursor not in replies:
                del replies[next(iter(replies))]  # the oldest
            replies[cursor] = (body, response)
        self.last_body = body
        self.last_kept, self.last_closing = response
        return response


class _LongPoller:
    """A connection's long-poll side, kept between its requests (`HttpProtocol.stream_state`):
    the held request's `ReplySink`, and what a kept-alive client's next long-poll can reuse:
    the `LongPollWaiter` (restarted, its deadline moved lazily), the client registry's
    describer, and the last passed filter/ACL check (valid while the caller, the filter,
    the auth snapshot and the ACL rules are the same objects/version). A re-ask of the same
    long-poll thus allocates no waiter, deadline, closure or caller (`bench/micro_longpoll.py`).
    Woken by a publish, it writes the response at once (`write_reply`) and settles the rest
    after every other waiter has written (`replied`). A kept-alive connection then stays a
    long-poll client *between* its requests (`LongPollWaiter.between`): listed, tracked for
    revocation, its waiter in its listener group (counted under `http_max_listeners`), so
    that its usual re-ask moves only the waiter's cursor and deadline; any other request
    (`request_begins`) or the connection's end (`lost`, also after its keep-alive idle
    timeout) undoes that (`leave`). `pushwire_longpoll_waiters` counts held requests only."""

    __slots__ = (
        "cache",
        "checked_acl",
        "checked_caller",
        "checked_filter",
        "checked_snapshot",
        "client_id",
        "client_key",
        "cursor",
        "cycle",
        "describe",
        "lane_cycle",
        "lane_head",
        "lane_prefix",
        "lane_suffix",
        "on_lost",
        "shape",
        "shape_filter",
        "shape_limit",
        "shape_wait",
        "since",
        "state",
        "tracked",
        "waiter",
    )

    def __init__(self, state: HttpState, cache: _ReplyCache) -> None:
        self.state = state
        self.cache = cache
        self.cycle: StreamCycle | None = None  # the request held now
        self.waiter: LongPollWaiter | None = None
        # the identity the revocation index tracks the held request under (None: anonymous)
        self.tracked: Identity | None = None
        self.checked_caller: Caller | None = None
        self.checked_filter = ""
        self.checked_snapshot: object = None
        self.checked_acl = -1
        self.client_id = ""
        self.client_key = 0
        self.since = 0.0
        # bound once: handed out on every hold without a new method object
        self.describe: Callable[[], ClientInfo] = self._describe
        self.on_lost: Callable[[], None] = self.lost
        # what the re-ask lane (`_ReaskLane`) compares a request with: the previous
        # long-poll's filter, its query string without since= (None: that request may not
        # be re-asked on the lane), its limit and wait, and the cursor of the last reply
        self.shape: bytes | None = None
        self.shape_filter = ""
        self.shape_limit = 0
        self.shape_wait = 0.0
        self.cursor: str | None = None
        self.lane_cycle: StreamCycle | None = None  # the lane's held request, reused
        # a re-ask's query string around its since= value, learned from the first one the
        # lane took: the next re-asks are checked with two comparisons, not split again
        self.lane_prefix: bytes | None = None
        self.lane_suffix = b""
        # the replayed head template (http/replay.py) whose query string the lane checked
        # against `shape`: a re-ask with that template needs no query string at all
        self.lane_head: ReplayHead | None = None

    def checked(self, caller: Caller, flt: str) -> bool:
        """Whether this caller's right to read `flt` was checked on this connection under
        the rules in force now."""
        auth = self.state.auth
        return (
            caller is self.checked_caller
            and flt == self.checked_filter
            and auth.snapshot is self.checked_snapshot
            and auth.acl.version == self.checked_acl
        )

    def passed(self, caller: Caller, flt: str) -> None:
        auth = self.state.auth
        self.checked_caller, self.checked_filter = caller, flt
        self.checked_snapshot, self.checked_acl = auth.snapshot, auth.acl.version

    def hold(self, cycle: StreamCycle, caller: Caller, flt: str, first: poll.LongPollStart) -> None:
        """Hold the request (raises 401 when the credentials were revoked meanwhile)."""
        self.hold_at(cycle, caller, flt, first.after, first.from_etag, first.requested, first.wait)

    def hold_at(
        self,
        cycle: StreamCycle,
        caller: Caller,
        flt: str,
        after: int,
        from_etag: bool,
        requested: int | None,
        wait: float,
    ) -> None:
        """`hold` of a first read's outcome given as its parts (the lane's re-ask with
        nothing newer than its cursor builds no `LongPollStart`)."""
        state = self.state
        waiter = self.waiter
        if waiter is None:
            waiter = self.waiter = LongPollWaiter(
                state.log, flt, self, state.stats, caller=caller, after=after
            )
        elif waiter.caller is not caller or waiter.filter != flt:
            self.leave()
            if not waiter.done:
                waiter.cancel()  # (answered before a next request runs: not expected)
            # another caller object (credentials are checked per request) or filter: the
            # same waiter, which is in no listener group while it is not held
            waiter.given(caller, flt)
        if not waiter.between:
            identity = caller.identity
            # (an anonymous caller is not tracked: nothing can revoke it)
            if identity.username is not None:
                if not state.live.track(identity, waiter):
                    raise unauthorized("the credentials were revoked")
                self.tracked = identity
            if not self.client_id:
                self.client_id = state.clients.next_id("longpoll")
                self.since = time.time()
            self.client_key = state.clients.register(self.describe)
        # else: answered by a wake and still registered since (tracked, listed, in its
        # listener group): held again, only its cursor and deadline change (`restart`)
        self.cycle = cycle
        cycle.on_lost = self.on_lost
        state.stats.connections["longpoll"] += 1
        proto = cycle.proto
        # a kept-alive GET: a wake may write its kept-alive response straight to the
        # connection (`LongPollWaiter.wire`, `replied` catches up); `_end` and `replied`
        # undo it, whatever answers the request
        waiter.wire = proto if cycle.keep_alive and not cycle.head else None
        waiter.restart(after, from_etag, requested, proto.loop.time() + wait)

    def _describe(self) -> ClientInfo:
        waiter = self.waiter
        identity = waiter.caller.identity if waiter is not None and waiter.caller else None
        return ClientInfo(
            self.client_id,
            "longpoll",
            identity.username if identity is not None else None,
            identity.token_id if identity is not None else None,
            waiter.caller.ip if waiter is not None and waiter.caller else "",
            self.since,
            (waiter.filter,) if waiter is not None else (),
        )

    # the ReplySink of the held request

    def reply(self, body: bytes, cursor: str) -> None:
        kept, closing = self.cache.reply(body, cursor)
        cycle = self._end()
        if cycle is not None:
            self.cursor = cursor
            cycle.answer(kept, closing)

    def write_reply(self, body: bytes, cursor: str) -> None:
        # in a publish's wake: the response's write alone; `replied` does the rest. Every
        # waiter of the wake has the same body object: its response is the cache's last
        cycle = self.cycle
        if cycle is None:
            return
        self.cursor = cursor
        # `StreamCycle.write_answer` inline (once per woken waiter, before the next one's
        # write): the transport's write is the only call
        if cycle.done or cycle.response_started:
            return
        cycle.response_started = True
        cycle.on_lost = None
        if cycle.head:
            return
        cache = self.cache
        if cache.last_body is not body:
            cache.reply(body, cursor)
        transport = cycle.transport
        if transport is not None and not transport.is_closing():
            if cycle.keep_alive and not cycle.proto.closing:
                transport.write(cache.last_kept)
                waiter = self.waiter
                if waiter is not None:
                    # the same bytes for the next waiters of this wake: they write them
                    # straight to their connections (`LongPollWaiter.wire`)
                    waiter.walk.kept = cache.last_kept
            else:
                transport.write(cache.last_closing)

    def replied(self) -> None:
        # once per woken waiter, after the wake's writes: a kept-alive connection now
        # waiting for its next request stays registered `between` requests (its listener
        # group, the client list, the revocation index), so that its usual re-ask only
        # moves the waiter's cursor and deadline; else `_end` inline
        cycle, self.cycle = self.cycle, None
        waiter = self.waiter
        assert waiter is not None  # the one that was woken
        waiter.wire = None
        cursor = waiter.written
        if cycle is None:
            waiter.written = None
            return
        if cursor is not None:
            # the wake wrote the response straight to the connection: what `write_reply`
            # does besides the write
            waiter.written = None
            self.cursor = cursor
            cycle.response_started = True
            cycle.on_lost = None
        state = self.state
        state.stats.connections["longpoll"] -= 1  # (held requests only)
        proto = cycle.proto
        pipeline = proto.pipeline
        transport = proto.transport
        if (
            # `StreamCycle.answered`'s usual case inline (once per woken waiter): kept
            # alive, nothing queued, the parser between requests
            cycle.response_started
            and not cycle.done
            and cycle.keep_alive
            and not proto.closing
            and len(pipeline) == 1
            and pipeline[0] is cycle
            and proto.idle
            and proto.upgrade is None
            and transport is not None
            and not transport.is_closing()
        ):
            cycle.done = cycle.rested = True
            pipeline.clear()
            if proto.read_paused:
                proto.resume_reading()
            # `_arm_keep_alive`: the connection's deadline bucket comes due first and
            # files it again for the rest, unless it is in none or a later one
            proto.head_timing = False
            proto.deadline_kind = _IDLE
            proto.deadline = when = proto.loop.time() + cycles.KEEP_ALIVE_TIMEOUT
            slot = proto.slot
            if not slot or (slot - 1) * SLOT >= when:  # (`HttpProtocol.file`)
                proto.file(when)
        elif not cycle.answered():
            self._unregister(state)
            return
        waiter.between = True

    def leave(self) -> None:
        """The connection is no longer a long-poll client between requests (it closed, or
        began another request than the lane's usual re-ask): undo what `replied` kept."""
        waiter = self.waiter
        if waiter is None or not waiter.between:
            return
        waiter.leave()
        self._unregister(self.state)

    def request_begins(self) -> None:
        """`StreamState`: the parser began a request on this connection."""
        self.leave()

    def not_modified(self, cursor: str) -> None:
        cycle = self._end()
        if cycle is not None:
            self.cursor = cursor
            cycle.answer(*_answer_bytes(304, b"", poll._poll_headers(cursor, False)))

    def refuse(self, reason: str) -> None:
        self.cursor = None  # (its next long-poll is not the lane's: checked in full)
        self.leave()  # revoked between requests: off the client list at once
        cycle = self._end()
        if cycle is not None:
            cycle.answer_response(
                api_error_response(self.state, ApiError(401, "unauthorized", reason))
            )

    def lost(self) -> None:
        """The client went away (held or not)."""
        waiter = self.waiter
        if waiter is not None:
            self.leave()
            waiter.cancel()
        self._end()

    def _end(self) -> StreamCycle | None:
        """Undo the hold's registrations; the request that was held, if one was."""
        cycle, self.cycle = self.cycle, None
        if cycle is None:
            return None
        waiter = self.waiter
        if waiter is not None:
            waiter.wire = None
        state = self.state
        self._unregister(state)
        state.stats.connections["longpoll"] -= 1
        return cycle

    def _unregister(self, state: HttpState) -> None:
        """Off the revocation index and the client list (what a hold registered)."""
        if self.tracked is not None:
            assert self.waiter is not None  # the one it tracked
            state.live.untrack(self.tracked, self.waiter)
            self.tracked = None
        state.clients.unregister(self.client_key)


def _poller(state: HttpState, cycle: StreamCycle, cache: _ReplyCache) -> _LongPoller:
    proto = cycle.proto
    poller = proto.stream_state
    if not isinstance(poller, _LongPoller):
        poller = proto.stream_state = _LongPoller(state, cache)
    return poller


_ASKED_KEPT = 256


def _asked(
    state: HttpState, request: WireRequest, asked: dict[bytes, poll.LongPollAsk]
) -> poll.LongPollAsk:
    """The request's long-poll options. Those given by the query string alone (no option
    header) are kept by it in `asked` (the listener's: they depend on its settings),
    unless they depend on the clock: every client woken by one message re-asks with the
    same query string."""
    query = request.query_string
    plain = _LONGPOLL.query_only(request)
    if plain:
        found = asked.get(query)
        if found is not None:
            return found
    options = _LONGPOLL.read(request)
    ask = poll.longpoll_ask(
        state,
        options["since"],
        integer(options, "limit"),
        options["timeout"],
        options["if-none-match"],
    )
    if plain and ask.cursor.kind != "time" and len(query) <= 512:
        if len(asked) >= _ASKED_KEPT:
            asked.clear()
        asked[query] = ask
    return ask


async def serve_longpoll(
    state: HttpState, request: WireRequest, cycle: StreamCycle, cache: _ReplyCache
) -> WireResponse | None:
    """A long-poll. The usual re-ask of a kept-alive client (anonymous: the connection's
    cached caller; its filter checked already) runs to its end without waiting: held again,
    or answered with the cached response of the message it missed."""
    poller = _poller(state, cycle, cache)
    poller.shape = poller.cursor = None  # until this request is answered
    poller.lane_head = None
    caller = _known_caller(state, request)
    if caller is None:
        caller = await _caller(state, request)
    # the filter the waiter and its checks keep while it waits: one str for all the
    # connections on it
    flt = _shared(request.path_tail)
    if not poller.checked(caller, flt):
        poll.longpoll_check(state, caller, flt)
        poller.passed(caller, flt)
    ask = _asked(state, request, cache.asked)
    first = poll.longpoll_begin(state, caller, flt, ask)
    if first.pending:
        first = await poll.longpoll_rest(state, caller, flt, first)
    _shape(poller, request, caller, ask)
    if first.answer is not None:
        status, body, headers = first.answer
        if status == 200:
            poller.cursor = headers["Pushwire-Cursor"]
        if status == 200 and not cycle.head and headers["Pushwire-Gap"] == "false":
            # the usual catch-up: one message, whose body (cached on the entry) and whole
            # response the woken waiters share
            cycle.answer(*cache.reply(body, headers["Pushwire-Cursor"]))
            return None
        return _wire(first.answer)
    if cycle.lost:
        return None  # the client left during the first read
    poller.hold(cycle, caller, flt, first)
    if not cycle.done:
        cycle.hold()  # nothing of the request is needed while it is held
    return None


_SHARED_KEPT = 1024
_shared_values: dict[Any, Any] = {}


_Kept = TypeVar("_Kept", str, bytes)


def _shared(value: _Kept) -> _Kept:
    """One object for equal filters and query strings that connections keep while they
    wait (a str per connection otherwise: ~50-60 B each); bounded."""
    found = _shared_values.get(value)
    if found is not None:
        return cast(_Kept, found)
    if len(_shared_values) >= _SHARED_KEPT:
        _shared_values.clear()
    _shared_values[value] = value
    return value


# -- the long-poll re-ask lane --------------------------------------------------------------

# headers a lane re-ask may carry: none that gives an option or credentials or a body
_LANE_HEADERS = frozenset((b"host", b"user-agent", b"accept", b"accept-encoding", b"connection"))


def _split_since(query: bytes) -> tuple[bytes | None, bytes] | None:
    """(the since= value or None, the query string without it); None when since= may be
    there twice or in a form this does not read."""
    if query.startswith(b"since="):
        start = 0
    else:
        start = query.find(b"&since=") + 1
        if start == 0:
            return (None, query) if b"since" not in query else None
    end = query.find(b"&", start)
    if end < 0:
        since, rest = query[start + 6 :], query[: max(start - 1, 0)]
    else:
        since, rest = query[start + 6 : end], query[:start] + query[end + 1 :]
    if b"since" in rest:
        return None
    return since, rest


def _shape(
    poller: _LongPoller, request: WireRequest, caller: Caller, ask: poll.LongPollAsk
) -> None:
    """Whether the next long-poll of this connection may take the lane: this one was a
    plain anonymous GET (the connection's cached caller, only `_LANE_HEADERS`, a query
    string with nothing to decode and no credentials); the lane then takes a re-ask with
    the same filter and query string but for since=."""
    callers = request.callers
    query = request.query_string
    if (
        request.method != "GET"
        or request.cert_name is not None
        or callers is None
        or callers.caller is not caller
        or b"%" in query
        or b"+" in query
        or b"auth" in query
        or len(query) > 512
    ):
        return
    for name, _ in request.headers:
        if name not in _LANE_HEADERS:
            return
    split = _split_since(query)
    if split is None:
        return
    poller.shape = split[1]
    poller.lane_prefix = None
    poller.lane_head = None
    poller.shape_filter = _shared(request.path_tail)
    poller.shape_limit = ask.limit
    poller.shape_wait = ask.wait


class _ReaskLane:
    """The re-ask of a kept-alive long-poll client without a `WireRequest`, a cycle object
    or a coroutine (http/routes.py `StreamLane`): a GET with only `_LANE_HEADERS`, the
    filter and query string of the connection's previous long-poll (`_shape`) but for
    since=, which is the cursor of the previous reply; from the connection's cached
    anonymous caller, still valid under the auth snapshot, whose filter check still holds
    for the ACL rules' version. It is answered at once from memory when something is
    visible after the cursor, else held on the connection's waiter again. Everything else,
    and whatever would wait for the disk or be refused (503), goes to `serve_longpoll`:
    the lane decides before it changes anything."""

    headers = _LANE_HEADERS

    __slots__ = ("cache", "kept_cursor", "kept_text", "state")

    def __init__(self, state: HttpState, cache: _ReplyCache) -> None:
        self.state = state
        self.cache = cache
        # the last cursor text `_take` parsed, and what it means (every client woken by
        # one message re-asks with the same text object, http/connection.py `data_received`)
        self.kept_text: str | None = None
        self.kept_cursor: Cursor = ALL

    def reask(self, proto: HttpProtocol, route: StreamRoute, tail: str, query: bytes) -> bool:
        poller = proto.stream_state
        if not isinstance(poller, _LongPoller):
            return False
        shape = poller.shape
        if shape is None or tail != poller.shape_filter:
            return False
        prefix, suffix = poller.lane_prefix, poller.lane_suffix
        if (
            prefix is not None
            and query.startswith(prefix)
            and query.endswith(suffix)
            and len(query) > len(prefix) + len(suffix)
        ):
            since = query[len(prefix) : len(query) - len(suffix)]
            if b"&" in since:
                return False
        else:
            split = _split_since(query)
            if split is None or split[1] != shape or split[0] is None:
                return False
            since = split[0]
            start = query.find(b"since=" + since) + 6  # where the value starts: learn
            poller.lane_prefix = _shared(query[:start])
            poller.lane_suffix = query[start + len(since) :]
        return self._take(proto, poller, route, tail, since.decode("latin-1"))

    def reask_replayed(self, proto: HttpProtocol, replay: ReplayHead, cursor: str) -> bool:
        """`reask` of a head recognised from its bytes (http/replay.py), with its cursor.
        When the connection's previous lane request came with the same template (its query
        string checked against the connection's `shape` then, which has not changed
        since), no query string is rebuilt and split.

        The usual re-ask, once per delivery, runs here to its end: a woken connection still
        registered `between` requests (its listener group, the client list) re-asks with
        the cursor of the reply it got (`kept_text`, parsed already) and nothing is newer.
        `_take`'s checks and its usual outcome (`hold_on_lane`, `hold_at`, the waiter's
        `restart`) inline; anything else (or any check failing, before anything changed)
        goes to `_take`."""
        poller = proto.stream_state
        if not isinstance(poller, _LongPoller):
            return False
        tail = replay.tail
        if poller.lane_head is not replay:
            query = replay.query_prefix + cursor.encode("latin-1") + replay.query_suffix
            if not self.reask(proto, replay.route, tail, query):
                return False
            if poller.shape is not None:
                poller.lane_head = replay
            return True
        waiter = poller.waiter
        cycle = poller.lane_cycle
        if (
            cursor is not self.kept_text
            or waiter is None
            or not waiter.between
            or cycle is None
            or not cycle.rested
            or poller.cycle is not None
            or cursor != poller.cursor
        ):
            return self._take(proto, poller, replay.route, tail, cursor)
        state = self.state
        auth = state.auth
        snapshot = auth.snapshot
        callers = proto.callers
        caller = callers.caller if callers is not None else None
        kept = self.kept_cursor
        log = state.log
        last = log.last_id
        wait = poller.shape_wait
        if (
            callers is None
            or callers.snapshot is not snapshot
            or caller is None
            or caller is not poller.checked_caller
            or snapshot is not poller.checked_snapshot
            or auth.acl.version != poller.checked_acl
            or tail != poller.checked_filter
            or caller is not waiter.caller
            or tail != waiter.filter
            or kept.kind != "id"
            or kept.id != last
            or (kept.epoch is not None and kept.epoch != log.epoch)
            or wait <= 0
            or cycle.proto is not proto
        ):
            return self._take(proto, poller, replay.route, tail, cursor)
        state.stats.connections_total["longpoll"] += 1
        auth.stats.anonymous_admitted += 1
        poller.cursor = None
        # `hold_on_lane` of a rested cycle (its head's lists went with the previous one)
        cycle.response_started = cycle.done = cycle.rested = False
        proto.pipeline.append(cycle)
        # `hold_at` of a waiter `between` requests (tracked, listed, in its group)
        poller.cycle = cycle
        cycle.on_lost = poller.on_lost
        state.stats.connections["longpoll"] += 1
        waiter.wire = proto  # (a lane request: a kept-alive GET)
        # `restart` (nothing newer: no catch-up read)
        waiter.after = waiter.requested = last
        waiter.from_etag = waiter.done = waiter.between = False
        waiter.deadline = deadline = proto.loop.time() + wait
        slot = waiter.slot
        if not slot or (slot - 1) * SLOT >= deadline:  # (`LongPollWaiter.arm`)
            waiter.arm(deadline)
        return True

    def _take(
        self, proto: HttpProtocol, poller: _LongPoller, route: StreamRoute, tail: str, text: str
    ) -> bool:
        """The lane's checks and answer once the request's since= value (`text`) is known.
        Once per delivery: the usual re-ask (the cursor of the last reply, nothing newer)
        runs here to its hold without another call of the lane."""
        if text != poller.cursor or poller.cycle is not None:
            return False
        if text is self.kept_text:
            cursor = self.kept_cursor
        else:
            try:
                cursor = poll.parse_kept_cursor(text)
            except CursorError:
                return False
            if cursor.kind != "time":  # (a reply's cursor is an id: means the same later)
                self.kept_text, self.kept_cursor = text, cursor
        state = self.state
        auth = state.auth
        snapshot = auth.snapshot
        callers = proto.callers
        if callers is None or callers.snapshot is not snapshot:
            return False
        caller = callers.caller
        if (
            caller is None
            # `poller.checked(caller, tail)`, inline (once per delivery)
            or caller is not poller.checked_caller
            or tail != poller.checked_filter
            or snapshot is not poller.checked_snapshot
            or auth.acl.version != poller.checked_acl
        ):
            return False
        log = state.log
        wait = poller.shape_wait
        last = log.last_id
        if (
            cursor.kind == "id"
            and (cursor.epoch is None or cursor.epoch == log.epoch)
            and wait > 0
            # or nothing newer for this filter: a per-user topic's re-ask
            and (cursor.id == last or (cursor.id < last and log.quiet_after(tail, cursor.id)))
        ):
            # the usual re-ask: the cursor of the last reply, nothing newer in the log (so
            # no gap, nothing to read): what `longpoll_now` decides, without its objects
            waiter = poller.waiter
            if (
                waiter is None or not waiter.between
            ) and log.listener_count >= state.settings.http_max_listeners:  # `state.busy()`
                # (a waiter `between` requests is counted already: it keeps its place)
                return False  # the normal way refuses it (503)
            state.stats.connections_total["longpoll"] += 1
            auth.stats.anonymous_admitted += 1
            poller.cursor = None
            cycle = poller.lane_cycle = proto.hold_on_lane(poller.lane_cycle, route)
            try:
                # past the other topics' messages, as the read's next id would say
                poller.hold_at(cycle, caller, tail, last, False, cursor.id, wait)
            except ApiError as exc:
                cycle.answer_response(api_error_response(state, exc))
            return True
        if (
            cursor.kind == "id"
            and cursor.id < last
            and (cursor.epoch is None or cursor.epoch == log.epoch)
            and (entry := log.only_after(tail, cursor.id)) is not None
            and caller.can_receive(entry.message.topic)
        ):
            # one message came since this connection's last reply (its client re-asked
            # after the wake that passed it `between` requests): that message's cached
            # response, as `longpoll_now` would answer, without the log's read
            state.stats.connections_total["longpoll"] += 1
            auth.stats.anonymous_admitted += 1
            state.stats.delivered("longpoll", (entry,))
            body, poller.cursor = entry_longpoll_reply(entry, log.epoch)
            proto.answered_on_lane(self.cache.reply(body, poller.cursor)[0])
            return True
        first = poll.longpoll_now(state, caller, tail, cursor, poller.shape_limit, wait)
        if first is None:
            return False
        # taken: counted and answered as `serve_longpoll` would
        auth.stats.anonymous_admitted += 1
        answer = first.answer
        if answer is not None:
            _status, body, headers = answer
            poller.cursor = cursor_text = headers["Pushwire-Cursor"]
            if headers["Pushwire-Gap"] == "false":
                response = self.cache.reply(body, cursor_text)[0]
            else:
                response = _answer_bytes(200, body, headers)[0]
            proto.answered_on_lane(response)
            return True
        poller.cursor = None
        cycle = poller.lane_cycle = proto.hold_on_lane(poller.lane_cycle, route)
        try:
            poller.hold(cycle, caller, tail, first)
        except ApiError as exc:
            cycle.answer_response(api_error_response(state, exc))
        return True


# -- SSE ------------------------------------------------------------------------------------


class _SseSink:
    """An SSE stream's `Sink` on the owned protocol."""

    __slots__ = ("beats", "cycle", "pending", "sent", "stream")

    def __init__(self, cycle: StreamCycle, beats: _Heartbeats) -> None:
        self.cycle = cycle
        self.beats = beats
        self.stream: sse.SseStream | None = None
        # wrote something since the last heartbeat tick (the live messages its reader
        # writes itself set the reader's own flag, `SseLiveReader.sent`)
        self.sent = False
        self.pending = ""  # closed before the hello was written: the reason

    def send(self, data: bytes) -> None:
        self.sent = True
        self.cycle.send(data)

    def writable(self) -> bool:
        return self.cycle.writable()

    def close(self, reason: str) -> None:
        stream = self.stream
        if stream is None:
            self.pending = reason
            return
        self.cycle.send(stream.close_event(reason))
        self._end()
        self.cycle.end_stream()

    def resume(self) -> None:
        if self.stream is not None:
            self.stream.reader.resume()

    def lost(self) -> None:
        self._end()

    def wrote(self) -> bool:
        """Wrote something since the last tick; clears the flags."""
        sent = self.sent
        self.sent = False
        stream = self.stream
        if stream is not None:
            reader = stream.reader
            if isinstance(reader, SseLiveReader) and reader.sent:
                reader.sent = False
                sent = True
        return sent

    def _end(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            self.beats.sinks.discard(self)
            stream.end()


class _Heartbeats:
    """One timer for every SSE stream of a listener: a comment to each stream that wrote
    nothing since the previous tick (`sse_heartbeat` seconds)."""

    __slots__ = ("interval", "sinks", "timer")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.sinks: set[_SseSink] = set()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, sink: _SseSink) -> None:
        self.sinks.add(sink)
        if self.timer is None and self.interval > 0:
            self.timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self.timer = None
        if not self.sinks:
            return
        for sink in self.sinks:
            if not sink.wrote() and sink.cycle.writable():
                sink.cycle.send(_HEARTBEAT)
        self.timer = asyncio.get_running_loop().call_later(self.interval, self._tick)


async def serve_sse(
    state: HttpState,
    request: WireRequest,
    cycle: StreamCycle,
    beats: _Heartbeats,
    tally: WalkTally,
) -> WireResponse | None:
    options = _SSE.read(request)
    caller = await _caller(state, request)
    flt = request.path_tail
    cursor, requested = sse.check_sse(
        state, caller, flt, options["since"], options["last-event-id"]
    )
    if cycle.lost:
        return None
    sink = _SseSink(cycle, beats)
    cycle.open_stream(_SSE_HEAD, sink.resume, sink.lost)
    stream, after = sse.open_sse(
        state, flt, cursor, requested, caller, sink, live_reader(state, flt, caller, sink, tally)
    )
    sink.stream = stream
    cycle.send(stream.hello(after))
    if sink.pending:
        sink.close(sink.pending)
        return None
    beats.add(sink)
    reader = stream.reader
    settings = state.settings
    if not reader.replay_now(sse.BACKLOG_PAGE, settings.read_max_bytes):
        await _replay(reader, settings.read_max_bytes)
    return None


async def _replay(reader: StreamReader, read_max_bytes: int) -> None:
    """A big or cold backlog: page by page, waiting for the transport to drain."""
    await reader.replay(sse.BACKLOG_PAGE, read_max_bytes)


# -- the routes -----------------------------------------------------------------------------


def _bind(
    state: HttpState,
    serve: Callable[
        [HttpState, WireRequest, StreamCycle], Coroutine[Any, Any, WireResponse | None]
    ],
) -> StreamServe:
    async def handler(request: WireRequest, cycle: StreamCycle) -> WireResponse | None:
        try:
            return await serve(state, request, cycle)
        except ApiError as exc:
            return api_error_response(state, exc)

    return handler


def _route(endpoint: Endpoint, handler: StreamServe) -> StreamRoute:
    return StreamRoute(frozenset(m for m, _ in endpoint.operations), endpoint.prefix, handler)


def stream_routes(state: HttpState) -> list[StreamRoute]:
    """The routes of poll, long-poll and SSE on the owned protocol."""
    cache = _ReplyCache()
    beats = _Heartbeats(state.settings.sse_heartbeat)
    tally = WalkTally(state.stats, "sse", state.log)  # the SSE streams' delivery counter

    async def longpoll(request: WireRequest, cycle: StreamCycle) -> WireResponse | None:
        # one coroutine per request: the route handler is the long-poll itself
        try:
            return await serve_longpoll(state, request, cycle, cache)
        except ApiError as exc:
            return api_error_response(state, exc)

    async def sse_stream(s: HttpState, r: WireRequest, c: StreamCycle) -> WireResponse | None:
        return await serve_sse(s, r, c, beats, tally)

    longpoll_route = _route(LONGPOLL, longpoll)
    longpoll_route.reask = _ReaskLane(state, cache)
    return [
        _route(POLL, _bind(state, serve_poll)),
        longpoll_route,
        _route(SSE, _bind(state, sse_stream)),
    ]
