"""The HTTP listener (`HttpServer`): its settings, hot routes and resolved request lines, and
the protocol factory for its connections (http/connection.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from pushwire.core.admission import Admission
from pushwire.http.connection import HttpProtocol
from pushwire.http.forwarded import TrustedProxies
from pushwire.http.lane_replay import LaneHeads
from pushwire.http.replay import ReplayHeads
from pushwire.http.routes import FastRoute
from pushwire.http.strict_url import is_utf8

if TYPE_CHECKING:
    from pushwire.http.upgrade import UpgradeRequest


HOT_URLS = 1024  # resolved hot request lines kept per listener
HOT_URL_BYTES = 512  # longer URLs are resolved each time (the cache stays under 1 MB)


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


# (hot route or None, method, percent-decoded path, raw path, query): see `HttpServer.resolve`
_Target = tuple[FastRoute | None, str, str, bytes, bytes]


class HttpServer:
    """What every connection of one HTTP listener shares."""

    def __init__(
        self,
        app: ASGIApp,
        routes: list[FastRoute],
        *,
        admission: Admission | None,
        head_timeout: float,
        max_request_line: int,
        max_head: int,
        websocket: Callable[[asyncio.Transport, str | None, Callable[[], None]], None]
        | None = None,
        native_websocket: Callable[[UpgradeRequest], bool] | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.app = app
        # whose `X-Forwarded-*` headers are believed (None: nobody's)
        self.proxies = proxies
        self.routes = routes
        self.admission = admission
        self.head_timeout = head_timeout
        self.max_request_line = max_request_line
        self.max_head = max_head
        self.websocket = websocket  # hands a connection over to the WebSocket protocol
        # offered every upgrade first: True when it served it (http/websocket.py)
        self.native_websocket = native_websocket
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        # requests answered from bytes (hot endpoints) and through the ASGI app
        # hot request lines already resolved (`resolve`), oldest out
        self.hot_urls: dict[tuple[bytes, bytes], _Target] = {}
        self.served_owned = 0
        self.served_asgi = 0
        # long-poll re-ask heads recognised from their bytes (http/replay.py), shared by
        # the connections, and how many requests were taken that way
        self.replay_heads = ReplayHeads()
        self.served_replayed = 0
        # of those, the ones recognised by one comparison (`ReplayHead.expected`)
        self.served_repeated = 0
        # publish heads recognised from their bytes (http/lane_replay.py), shared likewise,
        # and how many publishes were taken that way
        self.lane_heads = LaneHeads()
        self.served_lane_replayed = 0

    def protocol(self) -> HttpProtocol:
        return HttpProtocol(self)

    def resolve(self, raw_method: bytes, url: bytes) -> _Target:
        """What a request line asks for: (hot route or None, method, percent-decoded path,
        raw path, query). Hot URLs are kept (bounded): a publisher repeats its URL, and the
        answer depends on nothing else."""
        method = raw_method.decode("ascii")
        parsed = httptools.parse_url(url)
        raw_path: bytes = parsed.path
        query: bytes = parsed.query or b""
        route = None
        path = ""
        if is_utf8(raw_path) and (not query or is_utf8(query.replace(b"+", b" "))):
            path = raw_path.decode("ascii", "surrogateescape")
            if "%" in path:
                path = unquote(path)
            route = self.route(method, path)
        target = (route, method, path, raw_path, query)
        if route is not None and len(url) <= HOT_URL_BYTES:
            if len(self.hot_urls) >= HOT_URLS:
                del self.hot_urls[next(iter(self.hot_urls))]
            self.hot_urls[(raw_method, url)] = target
        return target

    def route(self, method: str, path: str) -> FastRoute | None:
        for route in self.routes:
            if (
                path == route.prefix if route.exact else path.startswith(route.prefix)
            ) and method in route.methods:
                return route
        return None

    async def shutdown(self, timeout: float) -> None:
        """Close idle connections now, the others once their response is complete; after
        `timeout` seconds, close what is left."""
        for conn in list(self.connections):
            conn.shutdown()
        deadline = asyncio.get_running_loop().time() + timeout
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
