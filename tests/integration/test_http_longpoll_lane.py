"""The long-poll re-ask lane (http/streams.py `_ReaskLane`, http/routes.py `StreamLane`):
a kept-alive client's re-ask with the previous reply's cursor, the same filter and options
and only plain headers is answered or held again straight from its head. It must behave as
the normal path: pipelined answers in order, timeouts, cursors and gaps, an ACL change on
the very next re-ask, and anything that differs from the previous long-poll going the
normal way. Real sockets against an in-process server."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import (
    Reader,
    connect,
    held_on_lane,
    longpoll_request,
    message_payloads,
    publish,
    publish_request,
    until,
    waiters,
)
from pushwire.core.acl import AclRule

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(log_max_messages=3))


def _held_normally(srv: InProcessServer, flt: str) -> bool:
    held = waiters(srv, flt)
    if len(held) != 1:
        return False
    poller = held[0].sink
    return srv.call(lambda: poller.cycle is not None and poller.cycle is not poller.lane_cycle)


def _first_reply(srv: InProcessServer, reader: Reader, sock: socket.socket, flt: str) -> str:
    """A long-poll held the normal way, answered by a publish: its cursor."""
    sock.sendall(longpoll_request(flt))
    until(lambda: _held_normally(srv, flt))
    publish(srv, flt, b"m0")
    status, headers, body = reader.response()
    assert status == 200 and message_payloads(body) == ["m0"]
    return headers["pushwire-cursor"]


def test_a_re_ask_held_on_the_lane_answers_before_a_request_pipelined_behind_it(
    srv: InProcessServer,
) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/o")
        for n in range(3):
            # the re-ask and a publish to another topic behind it, in one write
            sock.sendall(longpoll_request("lane/o", cursor) + publish_request("lane/x", b"x"))
            until(lambda: held_on_lane(srv, "lane/o"))
            publish(srv, "lane/o", b"m%d" % (n + 1))
            status, headers, body = reader.response()
            assert status == 200 and message_payloads(body) == [f"m{n + 1}"]
            assert headers["pushwire-gap"] == "false"
            cursor = headers["pushwire-cursor"]
            status, _, body = reader.response()
            assert status == 201 and json.loads(body)["topic"] == "lane/x"


def test_a_re_ask_is_answered_at_once_from_the_log_with_what_came_meanwhile(
    srv: InProcessServer,
) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/a")
        publish(srv, "lane/a", b"m1")
        publish(srv, "lane/other", b"not for this filter")
        publish(srv, "lane/a", b"m2")
        # answered at once, and a request pipelined behind it after it
        sock.sendall(longpoll_request("lane/a", cursor) + publish_request("lane/x", b"x"))
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["m1", "m2"], body
        assert json.loads(body)["cursor"] == headers["pushwire-cursor"]
        assert reader.response()[0] == 201
        # the new cursor: nothing after it, so held (on the lane) until the next message
        sock.sendall(longpoll_request("lane/a", headers["pushwire-cursor"]))
        until(lambda: held_on_lane(srv, "lane/a"))
        publish(srv, "lane/a", b"m3")
        status, _, body = reader.response()
        assert status == 200 and message_payloads(body) == ["m3"]


def test_a_re_ask_on_the_lane_times_out_with_its_cursor(srv: InProcessServer) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("lane/t", timeout="0.2"))
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == []
        cursor = headers["pushwire-cursor"]
        for _ in range(2):
            sock.sendall(longpoll_request("lane/t", cursor, timeout="0.2"))
            status, headers, body = reader.response()  # after the deadline: empty
            assert status == 200 and message_payloads(body) == []
            assert headers["pushwire-cursor"] == cursor
        publish(srv, "lane/t", b"late")
        sock.sendall(longpoll_request("lane/t", cursor, timeout="0.2"))
        status, _, body = reader.response()
        assert status == 200 and message_payloads(body) == ["late"]


def test_a_re_ask_behind_evicted_messages_reports_the_gap(srv: InProcessServer) -> None:
    """log_max_messages=3: five messages while the client is away evict two of them."""
    with connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/g")
        for n in range(1, 6):
            publish(srv, "lane/g", b"m%d" % n)
        sock.sendall(longpoll_request("lane/g", cursor))
        status, headers, body = reader.response()
        assert status == 200, body
        assert headers["pushwire-gap"] == "true"
        assert json.loads(body)["gap"] is True
        assert message_payloads(body) == ["m3", "m4", "m5"]
        sock.sendall(longpoll_request("lane/g", headers["pushwire-cursor"]))
        until(lambda: held_on_lane(srv, "lane/g"))
        publish(srv, "lane/g", b"m6")
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["m6"]
        assert headers["pushwire-gap"] == "false"


def test_an_acl_rule_applies_to_the_next_re_ask_on_the_lane(srv: InProcessServer) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    with connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/acl")
        sock.sendall(longpoll_request("lane/acl", cursor))
        until(lambda: held_on_lane(srv, "lane/acl"))
        publish(srv, "lane/acl", b"m1")
        status, headers, _ = reader.response()
        assert status == 200
        cursor = headers["pushwire-cursor"]
        rule = srv._run(auth.add_rule(AclRule("anonymous", None, "deny", "read", "lane/#")))
        sock.sendall(longpoll_request("lane/acl", cursor))
        status, _, body = reader.response()
        assert status == 403, body
        assert json.loads(body)["error"]["code"] == "forbidden"
        assert rule.id is not None
        srv._run(auth.remove_rule(rule.id))
        # after the refusal the next request goes the normal way, then the lane again
        sock.sendall(longpoll_request("lane/acl", cursor))
        until(lambda: _held_normally(srv, "lane/acl"))
        publish(srv, "lane/acl", b"m2")
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["m2"]
        sock.sendall(longpoll_request("lane/acl", headers["pushwire-cursor"]))
        until(lambda: held_on_lane(srv, "lane/acl"))


def test_a_user_created_makes_the_next_re_ask_on_the_lane_unauthorized(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    with connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/u")
        sock.sendall(longpoll_request("lane/u", cursor, timeout="0"))  # on the lane: at once
        status, headers, _ = reader.response()
        assert status == 200
        # anonymous is "auto": allowed from loopback only while there are no users
        srv._run(srv.server.auth.add_user("erin", "a long enough password"))
        sock.sendall(longpoll_request("lane/u", headers["pushwire-cursor"], timeout="0"))
        status, _, body = reader.response()
        assert status == 401, body


def test_a_re_ask_that_differs_from_the_previous_long_poll_goes_the_normal_way(
    srv: InProcessServer,
) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        cursor = _first_reply(srv, reader, sock, "lane/d")
        publish(srv, "lane/d", b"m1")
        publish(srv, "lane/d", b"m2")
        # another option (limit=1): one message and more=true
        sock.sendall(longpoll_request("lane/d", cursor, extra="&limit=1"))
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["m1"]
        assert json.loads(body)["more"] is True
        # a cursor that is not the previous reply's (since=all): everything kept
        sock.sendall(longpoll_request("lane/d", "all", extra="&limit=1"))
        status, _, body = reader.response()
        assert status == 200 and message_payloads(body) == ["m0"]
        # credentials (wrong ones): refused, not held
        sock.sendall(longpoll_request("lane/d", cursor, head="Authorization: Bearer nope\r\n"))
        status, _, body = reader.response()
        assert status == 401, body
        # If-None-Match: nothing new after the tag -> 304 at the deadline
        sock.sendall(longpoll_request("lane/d", timeout="0"))
        status, headers, _ = reader.response()
        last = headers["pushwire-cursor"]
        sock.sendall(longpoll_request("lane/d", timeout="0", head=f'If-None-Match: "{last}"\r\n'))
        status, _, _ = reader.response()
        assert status == 304
        # another filter (answered at once), then back: a re-ask that differs in its filter
        sock.sendall(longpoll_request("lane/e", last, timeout="0"))
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == []
        sock.sendall(longpoll_request("lane/d", headers["pushwire-cursor"]))
        until(lambda: _held_normally(srv, "lane/d"))
        publish(srv, "lane/d", b"m3")
        status, _, body = reader.response()
        assert status == 200 and message_payloads(body) == ["m3"]
