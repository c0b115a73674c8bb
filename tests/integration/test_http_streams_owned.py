"""Poll, long-poll and SSE served natively by the owned HTTP protocol (http/streams.py),
over raw sockets: served from bytes (not through the ASGI app), a held long-poll answers
on a connection that stays kept-alive, a client leaving a held long-poll or a stream ends
its registrations, and the answers match those of the ASGI path (requests with Origin)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import Reader, connect, publish, publish_request, until
from pushwire.http.server import HttpServer

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(sse_heartbeat=600))


def _http(srv: InProcessServer) -> HttpServer:
    assert srv.server is not None and srv.server._http is not None
    return srv.server._http


def _get(path: str, extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n"


def _open(srv: InProcessServer, transport: str) -> int:
    """Open connections of `transport`, as /metrics counts them (through the ASGI app)."""
    assert srv.server is not None and srv.server.http_address is not None
    host, port = srv.server.http_address
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
    line = f'pushwire_open_connections{{transport="{transport}"}} '
    for row in text.splitlines():
        if row.startswith(line):
            return int(float(row[len(line) :]))
    return 0


def test_poll_and_a_held_long_poll_are_served_from_bytes_on_one_kept_alive_connection(
    srv: InProcessServer,
) -> None:
    owned = _http(srv).served_owned
    publish(srv, "o/a", b"one")
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(_get("/v1/poll/o/a?since=all"))
        status, headers, body = reader.response()
        assert status == 200 and headers["content-type"] == "application/json"
        cursor = headers["pushwire-cursor"]
        assert [m["payload"] for m in json.loads(body)["messages"]] == ["one"]
        # a long-poll after the cursor is held until the next publish
        sock.sendall(_get(f"/v1/longpoll/o/a?since={cursor}&timeout=30"))
        until(lambda: _open(srv, "longpoll") == 1)
        publish(srv, "o/a", b"two")
        status, headers, body = reader.response()
        assert status == 200 and headers["etag"] == f'"{headers["pushwire-cursor"]}"'
        assert [m["payload"] for m in json.loads(body)["messages"]] == ["two"]
        assert "connection" not in headers
        # the same connection answers the next request: it stayed kept-alive
        sock.sendall(_get("/v1/longpoll/o/a?limit=0"))
        status, _, body = reader.response()
        assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"
        sock.sendall(_get("/v1/poll/o/a?since=all&limit=1"))
        status, _, body = reader.response()
        assert status == 200 and json.loads(body)["more"] is True
    until(lambda: _open(srv, "longpoll") == 0)
    # two publishes, two polls, two long-polls: all from bytes (/metrics went to the app)
    assert _http(srv).served_owned - owned == 6


def test_a_client_leaving_a_held_long_poll_ends_it(srv: InProcessServer) -> None:
    with connect(srv) as sock:
        sock.sendall(_get("/v1/longpoll/o/gone?timeout=30"))
        until(lambda: _open(srv, "longpoll") == 1)
    until(lambda: _open(srv, "longpoll") == 0)
    # a later publish finds nobody waiting, and a new long-poll is answered by it
    with connect(srv) as sock:
        sock.sendall(_get("/v1/longpoll/o/gone?timeout=30"))
        until(lambda: _open(srv, "longpoll") == 1)
        publish(srv, "o/gone", b"after")
        status, _, body = Reader(sock).response()
        assert status == 200 and json.loads(body)["messages"][0]["payload"] == "after"


def test_sse_is_a_close_delimited_stream_from_bytes_and_ends_with_its_client(
    srv: InProcessServer,
) -> None:
    owned = _http(srv).served_owned
    with connect(srv) as sock:
        sock.sendall(_get("/v1/sse/o/s"))
        file = sock.makefile("rb")
        assert file.readline() == b"HTTP/1.1 200 OK\r\n"
        head = []
        while (line := file.readline()) != b"\r\n":
            head.append(line.decode().lower().strip())
        assert "content-type: text/event-stream; charset=utf-8" in head
        assert "connection: close" in head and "cache-control: no-store" in head
        assert file.readline().startswith(b": pushwire ")
        assert file.readline() == b"\n"
        until(lambda: _open(srv, "sse") == 1)
        # bytes the client sends now are not parsed (nor answered)
        sock.sendall(b"this is not HTTP\r\n\r\n")
        publish(srv, "o/s", b"live")
        event = [file.readline() for _ in range(3)]
        assert event[0].startswith(b"id: ") and event[2] == b"\n"
        assert json.loads(event[1].removeprefix(b"data: "))["payload"] == "live"
        file.close()  # with the socket: the client goes away
    until(lambda: _open(srv, "sse") == 0)
    assert _http(srv).served_owned - owned == 2  # the stream and the publish


@pytest.mark.parametrize(
    "path",
    [
        "/v1/poll/a/+x",
        "/v1/poll/a?limit=zero",
        "/v1/poll/a?since=nonsense",
        "/v1/longpoll/a?timeout=-1",
        "/v1/longpoll/a?auth=bad-token",
        "/v1/sse/$share/g/a",
        "/v1/sse/a?since=nonsense",
    ],
)
def test_owned_and_asgi_stream_answers_alike(srv: InProcessServer, path: str) -> None:
    replies = []
    for extra in (b"", b"Origin: http://x\r\n"):
        with connect(srv) as sock:
            sock.sendall(_get(path, extra))
            replies.append(Reader(sock).response())
    (s1, h1, b1), (s2, h2, b2) = replies
    assert s1 == s2 and s1 >= 400
    assert json.loads(b1) == json.loads(b2)
    assert h1.get("www-authenticate") == h2.get("www-authenticate")


def test_a_request_pipelined_behind_a_held_long_poll_is_answered_after_it(
    srv: InProcessServer,
) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(_get("/v1/longpoll/o/pipe?timeout=30") + publish_request("o/pipe", b"second"))
        until(lambda: _open(srv, "longpoll") == 1)
        publish(srv, "o/pipe", b"first")
        status, _, body = reader.response()
        assert status == 200 and json.loads(body)["messages"][0]["payload"] == "first"
        status, _, body = reader.response()
        assert status == 201
        sock.sendall(_get("/v1/poll/o/pipe?since=all"))
        status, _, body = reader.response()
        assert [m["payload"] for m in json.loads(body)["messages"]] == ["first", "second"]
