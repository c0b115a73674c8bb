"""A kept-alive publisher whose body length varies, or whose head changes on every request
(http/lane_replay.py): heads that differ only in `Content-Length` are one head, so a
varying-length publisher is taken from bytes (`served_lane_replayed`) and adds one head to
the listener's shared table, not one per length; a publisher whose heads never repeat stops
learning after `LANE_LEARNS` heads, so it does not fill that table (which the heads of other
clients share). Real sockets against an in-process server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import Reader, connect, publish_request
from pushwire.http.lane_replay import LANE_LEARNS, LANE_RETRY
from pushwire.http.server import HttpServer

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def _http(srv: InProcessServer) -> HttpServer:
    assert srv.server is not None and srv.server._http is not None
    return srv.server._http


def _replayed(srv: InProcessServer) -> int:
    http = _http(srv)
    count: int = srv.call(lambda: http.served_lane_replayed)
    return count


def _kept(srv: InProcessServer) -> int:
    heads = _http(srv).lane_heads.heads
    return srv.call(lambda: len(heads))


def _created(reader: Reader, topic: str) -> None:
    status, _headers, body = reader.response()
    assert status == 201, body
    assert json.loads(body)["topic"] == topic


def _payloads(srv: InProcessServer, topic: str) -> list[str]:
    with connect(srv) as sock:
        sock.sendall(f"GET /v1/poll/{topic}?since=all HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, _headers, body = Reader(sock).response()
    assert status == 200, body
    return [m["payload"] for m in json.loads(body)["messages"]]


def test_a_varying_length_publisher_is_taken_from_bytes_with_one_head(
    srv: InProcessServer,
) -> None:
    topic = "lengths/vary"
    bodies = [b"v" * n for n in range(1, 41)]  # every request another Content-Length
    kept = _kept(srv)
    with connect(srv) as sock:
        reader = Reader(sock)
        before = _replayed(srv)
        for body in bodies:
            sock.sendall(publish_request(topic, body))
            _created(reader, topic)
        # the first finds its caller the long way, the second leaves its head: the rest
        # (another length each time) are taken from bytes
        assert _replayed(srv) == before + len(bodies) - 2
    assert _kept(srv) == kept + 1
    assert _payloads(srv, topic) == [b.decode() for b in bodies]


def test_a_length_over_the_body_limit_or_a_short_body_takes_the_full_parse() -> None:
    srv = InProcessServer(http_max_payload=16).start()
    try:
        topic = "lengths/limit"
        with connect(srv) as sock:
            reader = Reader(sock)
            for body in (b"a", b"b", b"c"):
                sock.sendall(publish_request(topic, body))
                _created(reader, topic)
            before = _replayed(srv)
            sock.sendall(publish_request(topic, b"x" * 17))  # over the limit: the 413
            status, _headers, reply = reader.response()
            assert status == 413, reply
            assert _replayed(srv) == before
        with connect(srv) as sock:
            reader = Reader(sock)
            for body in (b"d", b"e"):
                sock.sendall(publish_request(topic, body))
                _created(reader, topic)
            before = _replayed(srv)
            request = publish_request(topic, b"fghij")
            sock.sendall(request[:-2])  # the body's end comes in the next read
            sock.sendall(request[-2:])
            _created(reader, topic)
            sock.sendall(publish_request(topic, b"k"))
            _created(reader, topic)
            # "k" is taken from bytes (the head survived the split request); the split one
            # too only if its two writes came as one read
            assert before + 1 <= _replayed(srv) <= before + 2
        assert _payloads(srv, topic) == ["a", "b", "c", "d", "e", "fghij", "k"]
    finally:
        srv.stop()


def test_a_publisher_whose_heads_never_repeat_stops_filling_the_shared_table(
    srv: InProcessServer,
) -> None:
    kept = _kept(srv)
    topics = [f"lengths/t{n}" for n in range(30)]  # another topic (so head) every time
    with connect(srv) as sock:
        reader = Reader(sock)
        for topic in topics:
            sock.sendall(publish_request(topic, b"x"))
            _created(reader, topic)
        assert _kept(srv) <= kept + LANE_LEARNS
        # it settles on one topic: within `LANE_RETRY` requests it learns that head again
        # and is taken from bytes
        before = _replayed(srv)
        for n in range(LANE_RETRY + 2):
            sock.sendall(publish_request("lengths/settled", b"%d" % n))
            _created(reader, "lengths/settled")
        assert _replayed(srv) > before
    # another client's head still gets its place
    with connect(srv) as sock:
        reader = Reader(sock)
        for body in (b"o1", b"o2", b"o3"):
            sock.sendall(publish_request("lengths/other", body))
            _created(reader, "lengths/other")
    assert _payloads(srv, "lengths/t7") == ["x"]
    assert _payloads(srv, "lengths/other") == ["o1", "o2", "o3"]
