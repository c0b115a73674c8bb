"""The raw publish's lane on the owned protocol (http/publish.py `PublishLane`): a plain
publish on a kept-alive connection is answered without a request object, a cycle or a
coroutine. What it must keep of `publish_raw`: replies in request order when publishes are
pipelined (lane and non-lane ones mixed), bodies that arrive in pieces, `Connection: close`,
the content type, the publish rate's 429, 413 before the body, and on SQLite the 201 only
once the message is on disk (it is there after a restart)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import Reader, connect

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


def publish(path: str, body: bytes, extra: bytes = b"") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + extra + b"\r\n" + body


def start(**settings: object) -> InProcessServer:
    return InProcessServer(**settings).start()


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def warm(sock: socket.socket, reader: Reader, topic: str = "lane/warm") -> None:
    """The connection's first publish finds its caller the long way; later ones may take
    the lane."""
    sock.sendall(publish(f"/v1/publish/{topic}", b"w"))
    assert reader.response()[0] == 201


def poll_all(srv: InProcessServer, topic: str) -> list[dict[str, object]]:
    with connect(srv) as sock:
        sock.sendall(f"GET /v1/poll/{topic}?since=all HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, _headers, body = Reader(sock).response()
    assert status == 200, body
    messages: list[dict[str, object]] = json.loads(body)["messages"]
    return messages


def test_pipelined_publishes_are_answered_in_order(srv: InProcessServer) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        warm(sock, reader)
        sock.sendall(
            publish("/v1/publish/lane/a", b"one")
            + publish("/v1/publish/lane/b?qos=1", b"two")  # the query: not on the lane
            + publish("/v1/publish/lane/a", b"three", b"Pushwire-Retain: 1\r\n")  # not either
            + publish("/v1/publish/lane/b", b"four")
            + publish("/v1/publish/lane/a", b"five")
        )
        replies = [reader.response() for _ in range(5)]
    assert [status for status, _, _ in replies] == [201] * 5
    bodies = [json.loads(body) for _, _, body in replies]
    assert [b["topic"] for b in bodies] == ["lane/a", "lane/b", "lane/a", "lane/b", "lane/a"]
    ids = [b["id"] for b in bodies]
    assert ids == list(range(ids[0], ids[0] + 5))
    assert all(b["cursor"] == f"{b['epoch']}:{b['id']}" and b["stored"] for b in bodies)
    assert [m["payload"] for m in poll_all(srv, "lane/a")] == ["one", "three", "five"]


def test_a_body_in_pieces_and_the_content_type(srv: InProcessServer) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        warm(sock, reader)
        request = publish("/v1/publish/lane/pieces", b"0123456789" * 10, b"Content-Type: a/b\r\n")
        for i in range(0, len(request), 7):
            sock.sendall(request[i : i + 7])
        status, _headers, body = reader.response()
        assert status == 201, body
        sock.sendall(publish("/v1/publish/lane/pieces", b"", b"Content-Type: c/d\r\n"))
        status, _headers, body = reader.response()
        assert status == 201, body
    first, empty = poll_all(srv, "lane/pieces")
    assert first["payload"] == "0123456789" * 10 and first["content_type"] == "a/b"
    assert empty["payload"] == "" and empty["content_type"] == "c/d"


def test_connection_close_is_honoured(srv: InProcessServer) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        warm(sock, reader)
        sock.sendall(publish("/v1/publish/lane/close", b"x", b"Connection: close\r\n"))
        status, headers, _body = reader.response()
        assert status == 201
        assert headers.get("connection") == "close"
        assert reader.closed()


def test_an_oversized_body_is_refused_before_it_is_read() -> None:
    server = start(http_max_payload=16)
    try:
        with connect(server) as sock:
            reader = Reader(sock)
            warm(sock, reader)
            sock.sendall(publish("/v1/publish/lane/big", b"x" * 17)[:-17])  # head only
            status, headers, body = reader.response()
            assert status == 413, body
            assert json.loads(body)["error"]["code"] == "payload_too_large"
            assert headers.get("connection") == "close"
        assert poll_all(server, "lane/big") == []
    finally:
        server.stop()


def test_the_publish_rate_applies_on_the_lane() -> None:
    server = start(publish_rate_per_client=0.001)  # a burst of 1, then nothing for minutes
    try:
        with connect(server) as sock:
            reader = Reader(sock)
            warm(sock, reader)
            sock.sendall(publish("/v1/publish/lane/rate", b"x"))
            status, headers, body = reader.response()
            assert status == 429, body
            assert json.loads(body)["error"]["code"] == "rate_limited"
            assert int(headers["retry-after"]) >= 1
            sock.sendall(publish("/v1/publish/lane/rate", b"y"))  # still open, still refused
            assert reader.response()[0] == 429
        assert poll_all(server, "lane/rate") == []
    finally:
        server.stop()


def test_on_sqlite_a_201_means_on_disk(tmp_path: Path) -> None:
    settings = {"memory": False, "data_dir": str(tmp_path)}
    server = start(**settings)
    try:
        with connect(server) as sock:
            reader = Reader(sock)
            warm(sock, reader)
            sock.sendall(b"".join(publish("/v1/publish/lane/disk", b"m%d" % i) for i in range(5)))
            replies = [reader.response() for _ in range(5)]
        assert [status for status, _, _ in replies] == [201] * 5
        assert all(json.loads(body)["stored"] for _, _, body in replies)
    finally:
        server.stop()
    again = start(**settings)
    try:
        messages = poll_all(again, "lane/disk")
        assert [m["payload"] for m in messages] == [f"m{i}" for i in range(5)]
    finally:
        again.stop()


def wait_for_body(srv: InProcessServer, size: int) -> None:
    """Until a connection of `srv` holds `size` bytes of a lane request's body."""
    assert srv.server is not None and srv.server._http is not None
    http = srv.server._http

    def held() -> int:
        return max((sum(map(len, c.lane_body or ())) for c in http.connections), default=0)

    deadline = time.monotonic() + 10
    while srv.call(held) < size:
        assert time.monotonic() < deadline, "the body never reached the server"
        time.sleep(0.01)


def test_head_timer_on_the_lane_covers_heads_not_bodies() -> None:
    """A kept-alive lane connection that starts a head and stalls is cut off (408); a body
    that takes longer than the head timeout is not (the body is not the head)."""
    server = start(http_header_timeout=0.5)
    try:
        with connect(server) as slow_body, connect(server) as stalled:
            body_reader, stalled_reader = Reader(slow_body), Reader(stalled)
            warm(slow_body, body_reader)
            warm(stalled, stalled_reader)
            request = publish("/v1/publish/lane/slow", b"0123456789")
            slow_body.sendall(request[:-5])  # the head and half the body
            wait_for_body(server, 5)
            slow_body.sendall(request[-5:-3])  # more of the body, in a read of its own
            wait_for_body(server, 7)
            stalled.sendall(b"POST /v1/publish/lane/slow HTTP/1.1\r\n")  # half a head
            status, _headers, body = stalled_reader.response()  # the head timeout fired
            assert status == 408, body
            assert stalled_reader.closed()
            slow_body.sendall(request[-3:])
            status, _headers, body = body_reader.response()
            assert status == 201, body
        assert [m["payload"] for m in poll_all(server, "lane/slow")] == ["0123456789"]
    finally:
        server.stop()
