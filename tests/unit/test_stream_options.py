"""The owned protocol's option reader for poll, long-poll and SSE (http/streams.py) reads
what the declaration's `Endpoint.read_options` (the ASGI path) reads."""

from __future__ import annotations

import pytest

from pushwire.http.endpoints import Endpoint
from pushwire.http.stream_endpoints import LONGPOLL, POLL, SSE
from pushwire.http.streams import _Options
from pushwire.http.wire import WireRequest

QUERIES = [
    b"",
    b"since=all",
    b"since=1:2&limit=3",
    b"limit=1&limit=2",
    b"since=",
    b"since",
    b"timeout=30s&since=latest&other=x",
    b"since=a%3Ab",
    b"since=a+b",
    b"&&since=5&",
    b"auth=abc&since=10m",
]
HEADERS = [
    [],
    [(b"if-none-match", b'"e:1"'), (b"last-event-id", b"e:2")],
    [(b"last-event-id", b"e:3"), (b"last-event-id", b"e:4")],
]


@pytest.mark.parametrize("endpoint", [POLL, LONGPOLL, SSE], ids=["poll", "longpoll", "sse"])
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("headers", HEADERS, ids=["none", "both", "twice"])
def test_fast_options_match_the_declaration(
    endpoint: Endpoint, query: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    request = WireRequest("GET", "/x", query, headers, None)
    fresh = WireRequest("GET", "/x", query, headers, None)
    assert _Options(endpoint).read(request) == endpoint.read_options(fresh)
