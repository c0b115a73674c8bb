"""The owned HTTP protocol (http/connection.py) over raw sockets: hot endpoints served from
bytes and everything else through the ASGI app on the same connection, in request order
(pipelining), keep-alive, HTTP/1.0, chunked and `Expect: 100-continue` bodies, oversize
bodies, and the same answers whichever side serves a request."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import Reader, connect, publish_request
from pushwire.core.log import ALL
from pushwire.http.server import HttpServer

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(http_max_payload=1024))


def _http(srv: InProcessServer) -> HttpServer:
    assert srv.server is not None and srv.server._http is not None
    return srv.server._http


def payloads(srv: InProcessServer, topic: str) -> list[bytes]:
    """The payloads the log holds for `topic`, oldest first."""

    def read() -> list[bytes]:
        assert srv.server is not None
        return [e.message.payload for e in srv.server.log.query(topic, ALL, 100).entries]

    return srv.call(read)


HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"


def test_pipelined_requests_are_answered_in_order_across_both_sides(
    srv: InProcessServer,
) -> None:
    owned_before, asgi_before = _http(srv).served_owned, _http(srv).served_asgi
    with connect(srv) as sock:
        sock.sendall(
            publish_request("p/a", b"one")
            + HEALTH
            + publish_request("p/a", b"two")
            + HEALTH
            + publish_request("p/a", b"three")
        )
        reader = Reader(sock)
        replies = [reader.response() for _ in range(5)]
    assert [status for status, _, _ in replies] == [201, 200, 201, 200, 201]
    ids = [json.loads(body)["id"] for status, _, body in replies if status == 201]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert json.loads(replies[1][2])["status"] == "ok"
    assert _http(srv).served_owned - owned_before == 3
    assert _http(srv).served_asgi - asgi_before == 2
    assert payloads(srv, "p/a") == [b"one", b"two", b"three"]


def test_keep_alive_and_http_1_0(srv: InProcessServer) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        for i in range(20):
            sock.sendall(publish_request("k/a", str(i).encode()))
            status, headers, _ = reader.response()
            assert status == 201 and "connection" not in headers
    with connect(srv) as sock:
        sock.sendall(b"POST /v1/publish/k/b HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
        reader = Reader(sock)
        status, headers, _body = reader.response()
        assert status == 201 and headers["connection"] == "close"
        assert reader.closed()


def test_chunked_and_expect_continue_bodies(srv: InProcessServer) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(
            b"POST /v1/publish/c/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        status, _, _body = reader.response()
        assert status == 201
        sock.sendall(
            b"POST /v1/publish/c/a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 5\r\n\r\n"
        )
        assert reader.response()[0] == 100
        sock.sendall(b"fghij")
        assert reader.response()[0] == 201
    assert payloads(srv, "c/a") == [b"abcde", b"fghij"]


def test_oversize_body_gets_413_before_it_is_read_and_the_connection_closes(
    srv: InProcessServer,
) -> None:
    with connect(srv) as sock:
        sock.sendall(
            b"POST /v1/publish/o/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 10
        )
        reader = Reader(sock)
        status, headers, body = reader.response()
        assert status == 413
        assert json.loads(body)["error"]["code"] == "payload_too_large"
        assert headers["connection"] == "close"
        assert reader.closed()
    with connect(srv) as sock:  # chunked: no length up front, refused once over
        sock.sendall(
            b"POST /v1/publish/o/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"400\r\n"
            + b"y" * 1024
            + b"\r\n1\r\nz\r\n"
        )
        status, _, body = Reader(sock).response()
        assert status == 413


def test_owned_and_asgi_sides_answer_alike(srv: InProcessServer) -> None:
    """The same bad requests, once served from bytes and once through the ASGI app (a
    request with `Origin` of the server itself goes there)."""
    cases = [
        publish_request("bad/+/topic", b"x"),
        publish_request("a/b", b"x", b"Pushwire-QoS: 7\r\n"),
        publish_request("a/b?retain=maybe", b"x"),
        publish_request("$SYS/x", b"x"),
        publish_request("a/b?auth=abc", b"x"),
        publish_request("a/b", b"x", b"Authorization: Nonsense\r\n"),
    ]
    for request in cases:
        replies = []
        for extra in (b"", b"Origin: http://x\r\n"):
            head, _, rest = request.partition(b"\r\n")
            with connect(srv) as sock:
                sock.sendall(head + b"\r\n" + extra + rest)
                replies.append(Reader(sock).response())
        (s1, h1, b1), (s2, h2, b2) = replies
        assert s1 == s2 and s1 >= 400, request
        assert json.loads(b1) == json.loads(b2), request
        assert h1.get("www-authenticate") == h2.get("www-authenticate")
