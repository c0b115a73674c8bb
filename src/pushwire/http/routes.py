"""The HTTP listener's route table entries: a hot route (`FastRoute`), a stream route
(`StreamRoute`, served by http/streams.py) and the lanes a kept-alive connection's next request
may take without its full parse (`Lane`, `StreamLane`)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from pushwire.http.auth import CallerCache
from pushwire.http.replay import ReplayHead
from pushwire.http.wire import WireRequest, WireResponse

if TYPE_CHECKING:
    from pushwire.http.connection import HttpProtocol
    from pushwire.http.cycles import StreamCycle


Handler = Callable[[WireRequest], Coroutine[Any, Any, WireResponse]]


class Lane(Protocol):
    """A hot endpoint's common case as two synchronous calls, without a `WireRequest`, a
    cycle object or a coroutine (the raw publish: http/publish.py `PublishLane`). The
    protocol uses it for a request with a `Content-Length` within the route's limit, no
    query string, no client certificate, only `headers`, and nothing before it in the
    pipeline; the handler answers every other request."""

    headers: frozenset[bytes]  # header names (lower case) a lane request may carry

    def admit(
        self,
        callers: CallerCache | None,
        tail: str,
        authorization: bytes | None,
        client: tuple[str, int] | None,
    ) -> object | None:
        """At the end of the head: what `run` needs to know of the caller (or of why it is
        refused), or None when the handler must answer (no side effect then).
        `authorization`: the request's one Authorization header, if any."""

    def run(
        self, admitted: Any, tail: str, content_type: bytes | None, body: bytes
    ) -> bytes | WireResponse | Coroutine[Any, Any, WireResponse]:
        """With the body: the body of a 201 JSON reply, another response, or a coroutine
        giving the response when it has to wait."""


class StreamLane(Protocol):
    """A stream endpoint's common re-ask without a `WireRequest`, a cycle object or a
    coroutine (the kept-alive long-poll: http/streams.py `_ReaskLane`). The protocol offers
    it a keep-alive GET with only `headers` (so no body), no client certificate, nothing
    in the pipeline, on a connection with `stream_state`."""

    headers: frozenset[bytes]  # header names (lower case) a lane request may carry

    def reask(self, proto: HttpProtocol, route: StreamRoute, tail: str, query: bytes) -> bool:
        """At the end of the head: True when the lane answered the request or held it
        (`HttpProtocol.hold_on_lane`); False, with no side effect, for the handler."""

    def reask_replayed(self, proto: HttpProtocol, replay: ReplayHead, cursor: str) -> bool:
        """`reask` of a head recognised from its bytes (http/replay.py): `cursor` is its
        since= value, the query string is `replay`'s around it."""


class StreamState(Protocol):
    """Per-connection state of the stream side (`HttpProtocol.stream_state`)."""

    def lost(self) -> None:
        """The connection is gone."""

    def request_begins(self) -> None:
        """The parser began a request on this connection (not a head recognised from its
        bytes, `ReplayHead`)."""


class FastRoute:
    """A hot endpoint served from bytes: `prefix` + the rest of the path (`path_tail`)."""

    __slots__ = ("body_limit", "exact", "handler", "lane", "methods", "own_origin_ok", "prefix")

    def __init__(
        self,
        methods: frozenset[str],
        prefix: str,
        handler: Handler,
        body_limit: int,
        own_origin_ok: bool = False,
        lane: Lane | None = None,
        exact: bool = False,
    ) -> None:
        self.methods = methods
        self.prefix = prefix
        self.handler = handler
        self.body_limit = body_limit
        # requests with `Origin` equal to the server's own may be served here (see
        # `HttpProtocol._served_here`): true when no `cors_origins` are configured
        self.own_origin_ok = own_origin_ok
        self.lane = lane
        self.exact = exact  # the path is `prefix` itself (no tail)


# -- stream routes (poll, long-poll, SSE: http/streams.py) -----------------------------------

StreamHandler = Callable[["WireRequest", "StreamCycle"], Coroutine[Any, Any, WireResponse | None]]


class StreamRoute(FastRoute):
    """A hot endpoint that may answer later or as a stream: its handler returns a response
    at once, or None when it took the request's `StreamCycle` over (a held long-poll, an
    SSE stream)."""

    __slots__ = ("reask", "stream_handler")

    def __init__(
        self,
        methods: frozenset[str],
        prefix: str,
        handler: StreamHandler,
        reask: StreamLane | None = None,
    ) -> None:
        super().__init__(methods, prefix, _no_handler, 0)
        self.stream_handler = handler
        self.reask = reask  # the common re-ask's lane (`StreamLane`), if the route has one


async def _no_handler(_request: WireRequest) -> WireResponse:  # pragma: no cover
    raise AssertionError("a StreamRoute is served by its stream handler")
