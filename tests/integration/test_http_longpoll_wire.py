"""A publish's walk writes the kept-alive response straight to each held long-poll's
connection (http/reader.py `LongPollWaiter.wire`): the first waiter of the walk writes
through its sink (which builds the response once), the others write the same bytes to
their transports without their sink, request cycle or caller; each sink's `replied`
catches up afterwards. What must not change: every client gets exactly one response with
the message and the cursor its usual re-ask is recognised by; a connection that is closing
gets the closing response; a connection whose next long-poll comes with other credentials
is checked against the new caller's rights. Real sockets against an in-process server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import (
    Reader,
    basic_auth,
    connect,
    longpoll_request,
    message_payloads,
    publish,
    until,
    waiters,
)
from pushwire.core.acl import AclRule
from pushwire.http import streams

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")

N = 8


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def test_a_wake_goes_through_one_sink_and_writes_straight_to_the_other_connections(
    srv: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert srv.server is not None
    socks = [connect(srv) for _ in range(N)]
    try:
        readers = [Reader(s) for s in socks]
        for sock in socks:
            sock.sendall(longpoll_request("wire/a"))
        until(lambda: len(waiters(srv, "wire/a")) == N)
        pollers: list[Any] = [w.sink for w in waiters(srv, "wire/a")]
        through_sink: list[str] = []
        write_reply = streams._LongPoller.write_reply

        def counted(self: streams._LongPoller, body: bytes, cursor: str) -> None:
            through_sink.append(cursor)
            write_reply(self, body, cursor)

        monkeypatch.setattr(streams._LongPoller, "write_reply", counted)
        for round_, payload in enumerate(["one", "two", "three"]):
            through_sink.clear()
            publish(srv, "wire/a", payload.encode())
            # one sink builds and writes the response; the other N - 1 connections get the
            # same bytes from the walk (on main: N calls)
            assert len(through_sink) == 1, (round_, through_sink)
            cursors = set()
            for reader in readers:
                status, headers, body = reader.response()
                assert status == 200 and message_payloads(body) == [payload]
                assert headers.get("connection") != "close"
                cursors.add(headers["pushwire-cursor"])
            assert len(cursors) == 1
            cursor = cursors.pop()
            # each sink caught up: its cursor is the response's (what its usual re-ask is
            # recognised by), the request is off the held count, nothing is armed
            assert srv.call(lambda: [p.cursor for p in pollers]) == [cursor] * N
            assert srv.call(lambda: [p.waiter.wire for p in pollers]) == [None] * N
            assert srv.call(lambda: [p.waiter.written for p in pollers]) == [None] * N
            assert srv.call(lambda: pollers[0].state.stats.connections["longpoll"]) == 0
            for sock in socks:
                sock.sendall(longpoll_request("wire/a", cursor))
            until(lambda: len(waiters(srv, "wire/a")) == N)
        # the re-asks went the usual way (taken from their bytes, the lane's inline hold)
        http = srv.server._http
        assert http is not None
        assert srv.call(lambda: http.served_repeated) >= N
    finally:
        for sock in socks:
            sock.close()


def test_a_held_connection_that_is_closing_gets_the_closing_response(
    srv: InProcessServer,
) -> None:
    socks = [connect(srv) for _ in range(3)]
    try:
        readers = [Reader(s) for s in socks]
        for sock in socks:
            sock.sendall(longpoll_request("wire/b"))
        until(lambda: len(waiters(srv, "wire/b")) == 3)
        held = waiters(srv, "wire/b")
        # the last one held is walked after the others (the walk's order is the group's):
        # it closes once its response is out (what a server shutting down does)
        last = held[-1].sink
        srv.call(lambda: last.cycle.proto.shutdown())
        publish(srv, "wire/b", b"bye")
        answers = [reader.response() for reader in readers]
        for status, _headers, body in answers:
            assert status == 200 and message_payloads(body) == ["bye"]
        closing = [
            i for i, (_s, headers, _b) in enumerate(answers) if headers.get("connection") == "close"
        ]
        assert len(closing) == 1, answers
        assert readers[closing[0]].closed()
    finally:
        for sock in socks:
            sock.close()


def test_a_long_poll_with_other_credentials_on_the_same_connection_gets_its_rights(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    srv._run(auth.add_user("ann", "ann's long password"))
    srv._run(auth.add_user("ben", "ben's long password"))
    srv._run(auth.add_rule(AclRule("all", None, "allow", "readwrite", "wire/#")))
    srv._run(auth.add_rule(AclRule("user", "ben", "deny", "read", "wire/secret")))
    ann, ben = basic_auth("ann", "ann's long password"), basic_auth("ben", "ben's long password")
    socks = [connect(srv) for _ in range(3)]
    try:
        readers = [Reader(s) for s in socks]
        # the first connection long-polls as ann, then as ben; the others stay ann
        for sock in socks:
            sock.sendall(longpoll_request("wire/%23", head=ann))
        until(lambda: len(waiters(srv, "wire/#")) == 3)

        def publish_as_ann(topic: str, body: bytes) -> None:
            with connect(srv) as pub:
                head = f"POST /v1/publish/{topic} HTTP/1.1\r\nHost: x\r\n{ann}"
                pub.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                assert Reader(pub).response()[0] == 201

        publish_as_ann("wire/secret", b"for ann")
        cursors = []
        for reader in readers:
            status, headers, body = reader.response()
            assert status == 200 and message_payloads(body) == ["for ann"]
            cursors.append(headers["pushwire-cursor"])
        socks[0].sendall(longpoll_request("wire/%23", cursors[0], head=ben))
        for sock, cursor in zip(socks[1:], cursors[1:], strict=True):
            sock.sendall(longpoll_request("wire/%23", cursor, head=ann))
        until(lambda: len(waiters(srv, "wire/#")) == 3)
        held = waiters(srv, "wire/#")
        names = sorted(w.caller.identity.username for w in held)
        assert names == ["ann", "ann", "ben"]
        publish_as_ann("wire/secret", b"ann again")
        # ben's request is still held (the message is not for him), ann's were answered
        until(lambda: len(waiters(srv, "wire/#")) == 1)
        for reader in readers[1:]:
            status, _headers, body = reader.response()
            assert status == 200 and message_payloads(body) == ["ann again"]
        publish_as_ann("wire/open", b"for all")
        status, _headers, body = readers[0].response()
        assert status == 200 and message_payloads(body) == ["for all"]
    finally:
        for sock in socks:
            sock.close()
