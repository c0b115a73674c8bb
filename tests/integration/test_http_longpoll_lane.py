"""The long-poll re-ask lane (http/streams.py `_ReaskLane`, http/protocol.py `StreamLane`):
a kept-alive client's re-ask with the previous reply's cursor, the same filter and options
and only plain headers is answered or held again straight from its head. It must behave as
the normal path: pipelined answers in order, timeouts, cursors and gaps, an ACL change on
the very next re-ask, and anything that differs from the previous long-poll going the
normal way. Real sockets against an in-process server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers.inproc import InProcessServer
from pushwire.core.acl import AclRule

from .test_http_publish_cache import Reader, publish_request

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")

DEADLINE = 10.0


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    server = InProcessServer(log_max_messages=3).start()
    try:
        yield server
    finally:
        server.stop()


def _connect(srv: InProcessServer) -> socket.socket:
    assert srv.server is not None and srv.server.http_address is not None
    return socket.create_connection(srv.server.http_address, timeout=10)


def _longpoll(
    flt: str, since: str | None = None, timeout: str = "30", extra: str = "", head: str = ""
) -> bytes:
    query = f"timeout={timeout}{extra}" + (f"&since={since}" if since else "")
    return f"GET /v1/longpoll/{flt}?{query} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode()


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def _publish(srv: InProcessServer, topic: str, body: bytes) -> None:
    with _connect(srv) as sock:
        sock.sendall(publish_request(topic, body))
        assert Reader(sock).response()[0] == 201


def _waiters(srv: InProcessServer, flt: str) -> list[Any]:
    assert srv.server is not None
    log = srv.server.log

    def held() -> list[Any]:
        group = log._groups.get(flt)
        return list(group.members) if group is not None else []

    return srv.call(held)


def _held_on_lane(srv: InProcessServer, flt: str) -> bool:
    """One request held on `flt`, and it is the lane's (its reused cycle)."""
    waiters = _waiters(srv, flt)
    if len(waiters) != 1:
        return False
    poller = waiters[0].sink
    return srv.call(lambda: poller.cycle is not None and poller.cycle is poller.lane_cycle)


def _held_normally(srv: InProcessServer, flt: str) -> bool:
    waiters = _waiters(srv, flt)
    if len(waiters) != 1:
        return False
    poller = waiters[0].sink
    return srv.call(lambda: poller.cycle is not None and poller.cycle is not poller.lane_cycle)


def _payloads(body: bytes) -> list[str]:
    return [m["payload"] for m in json.loads(body)["messages"]]


def _first_reply(srv: InProcessServer, reader: Reader, sock: socket.socket, flt: str) -> str:
    """A long-poll held the normal way, answered by a publish: its cursor."""
    sock.sendall(_longpoll(flt))
    _until(lambda: _held_normally(srv, flt))
    _publish(srv, flt, b"m0")
    status, headers, body = reader.response()
    assert status == 200 and _payloads(body) == ["m0"]
    return headers["pushwire-cursor"]


def test_a_re_ask_held_on_the_lane_answers_before_a_request_pipelined_behind_it(
    srv: InProcessServer,
) -> None:
    with _connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/o")
        for n in range(3):
            # the re-ask and a publish to another topic behind it, in one write
            sock.sendall(_longpoll("lane/o", cursor) + publish_request("lane/x", b"x"))
            _until(lambda: _held_on_lane(srv, "lane/o"))
            _publish(srv, "lane/o", b"m%d" % (n + 1))
            status, headers, body = reader.response()
            assert status == 200 and _payloads(body) == [f"m{n + 1}"]
            assert headers["pushwire-gap"] == "false"
            cursor = headers["pushwire-cursor"]
            status, _, body = reader.response()
            assert status == 201 and json.loads(body)["topic"] == "lane/x"


def test_a_re_ask_is_answered_at_once_from_the_log_with_what_came_meanwhile(
    srv: InProcessServer,
) -> None:
    with _connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/a")
        _publish(srv, "lane/a", b"m1")
        _publish(srv, "lane/other", b"not for this filter")
        _publish(srv, "lane/a", b"m2")
        # answered at once, and a request pipelined behind it after it
        sock.sendall(_longpoll("lane/a", cursor) + publish_request("lane/x", b"x"))
        status, headers, body = reader.response()
        assert status == 200 and _payloads(body) == ["m1", "m2"], body
        assert json.loads(body)["cursor"] == headers["pushwire-cursor"]
        assert reader.response()[0] == 201
        # the new cursor: nothing after it, so held (on the lane) until the next message
        sock.sendall(_longpoll("lane/a", headers["pushwire-cursor"]))
        _until(lambda: _held_on_lane(srv, "lane/a"))
        _publish(srv, "lane/a", b"m3")
        status, _, body = reader.response()
        assert status == 200 and _payloads(body) == ["m3"]


def test_a_re_ask_on_the_lane_times_out_with_its_cursor(srv: InProcessServer) -> None:
    with _connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(_longpoll("lane/t", timeout="0.2"))
        status, headers, body = reader.response()
        assert status == 200 and _payloads(body) == []
        cursor = headers["pushwire-cursor"]
        for _ in range(2):
            sock.sendall(_longpoll("lane/t", cursor, timeout="0.2"))
            status, headers, body = reader.response()  # after the deadline: empty
            assert status == 200 and _payloads(body) == []
            assert headers["pushwire-cursor"] == cursor
        _publish(srv, "lane/t", b"late")
        sock.sendall(_longpoll("lane/t", cursor, timeout="0.2"))
        status, _, body = reader.response()
        assert status == 200 and _payloads(body) == ["late"]


def test_a_re_ask_behind_evicted_messages_reports_the_gap(srv: InProcessServer) -> None:
    """log_max_messages=3: five messages while the client is away evict two of them."""
    with _connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/g")
        for n in range(1, 6):
            _publish(srv, "lane/g", b"m%d" % n)
        sock.sendall(_longpoll("lane/g", cursor))
        status, headers, body = reader.response()
        assert status == 200, body
        assert headers["pushwire-gap"] == "true"
        assert json.loads(body)["gap"] is True
        assert _payloads(body) == ["m3", "m4", "m5"]
        sock.sendall(_longpoll("lane/g", headers["pushwire-cursor"]))
        _until(lambda: _held_on_lane(srv, "lane/g"))
        _publish(srv, "lane/g", b"m6")
        status, headers, body = reader.response()
        assert status == 200 and _payloads(body) == ["m6"]
        assert headers["pushwire-gap"] == "false"


def test_an_acl_rule_applies_to_the_next_re_ask_on_the_lane(srv: InProcessServer) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    with _connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/acl")
        sock.sendall(_longpoll("lane/acl", cursor))
        _until(lambda: _held_on_lane(srv, "lane/acl"))
        _publish(srv, "lane/acl", b"m1")
        status, headers, _ = reader.response()
        assert status == 200
        cursor = headers["pushwire-cursor"]
        rule = srv._run(auth.add_rule(AclRule("anonymous", None, "deny", "read", "lane/#")))
        sock.sendall(_longpoll("lane/acl", cursor))
        status, _, body = reader.response()
        assert status == 403, body
        assert json.loads(body)["error"]["code"] == "forbidden"
        assert rule.id is not None
        srv._run(auth.remove_rule(rule.id))
        # after the refusal the next request goes the normal way, then the lane again
        sock.sendall(_longpoll("lane/acl", cursor))
        _until(lambda: _held_normally(srv, "lane/acl"))
        _publish(srv, "lane/acl", b"m2")
        status, headers, body = reader.response()
        assert status == 200 and _payloads(body) == ["m2"]
        sock.sendall(_longpoll("lane/acl", headers["pushwire-cursor"]))
        _until(lambda: _held_on_lane(srv, "lane/acl"))


def test_a_user_created_makes_the_next_re_ask_on_the_lane_unauthorized(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    with _connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/u")
        sock.sendall(_longpoll("lane/u", cursor, timeout="0"))  # on the lane: at once
        status, headers, _ = reader.response()
        assert status == 200
        # anonymous is "auto": allowed from loopback only while there are no users
        srv._run(srv.server.auth.add_user("erin", "a long enough password"))
        sock.sendall(_longpoll("lane/u", headers["pushwire-cursor"], timeout="0"))
        status, _, body = reader.response()
        assert status == 401, body


def test_a_re_ask_that_differs_from_the_previous_long_poll_goes_the_normal_way(
    srv: InProcessServer,
) -> None:
    with _connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/d")
        _publish(srv, "lane/d", b"m1")
        _publish(srv, "lane/d", b"m2")
        # another option (limit=1): one message and more=true
        sock.sendall(_longpoll("lane/d", cursor, extra="&limit=1"))
        status, headers, body = reader.response()
        assert status == 200 and _payloads(body) == ["m1"]
        assert json.loads(body)["more"] is True
        # a cursor that is not the previous reply's (since=all): everything kept
        sock.sendall(_longpoll("lane/d", "all", extra="&limit=1"))
        status, _, body = reader.response()
        assert status == 200 and _payloads(body) == ["m0"]
        # credentials (wrong ones): refused, not held
        sock.sendall(_longpoll("lane/d", cursor, head="Authorization: Bearer nope\r\n"))
        status, _, body = reader.response()
        assert status == 401, body
        # If-None-Match: nothing new after the tag -> 304 at the deadline
        sock.sendall(_longpoll("lane/d", timeout="0"))
        status, headers, _ = reader.response()
        last = headers["pushwire-cursor"]
        sock.sendall(_longpoll("lane/d", timeout="0", head=f'If-None-Match: "{last}"\r\n'))
        status, _, _ = reader.response()
        assert status == 304
        # another filter (answered at once), then back: a re-ask that differs in its filter
        sock.sendall(_longpoll("lane/e", last, timeout="0"))
        status, headers, body = reader.response()
        assert status == 200 and _payloads(body) == []
        sock.sendall(_longpoll("lane/d", headers["pushwire-cursor"]))
        _until(lambda: _held_normally(srv, "lane/d"))
        _publish(srv, "lane/d", b"m3")
        status, _, body = reader.response()
        assert status == 200 and _payloads(body) == ["m3"]
