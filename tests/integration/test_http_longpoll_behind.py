"""A kept-alive long-poll client that re-asks after a message passed it (the wake answered
it, then the next message came before its re-ask): its re-ask is answered at once with that
one message's cached response, without the log's read (http/streams.py `_ReaskLane._take`,
core/log.py `MessageLog.only_after`). Whatever is not exactly that case is read as before:
two messages behind, the log's newest on another topic, a message the caller may not read,
an expired one. Real sockets against an in-process server."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import (
    Reader,
    connect,
    longpoll_request,
    message_payloads,
    publish,
    publish_request,
    until,
    waiters,
    woken,
)
from pushwire.core.acl import AclRule
from pushwire.http import poll

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def _woken(
    srv: InProcessServer, sock: socket.socket, reader: Reader, flt: str, head: str = ""
) -> str:
    """Hold a long-poll on `flt`, wake it with a message, return the reply's cursor."""
    sock.sendall(longpoll_request(flt, head=head))
    (cursor,) = woken(srv, flt, [reader], b"first")
    return cursor


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    longpoll_now = poll.longpoll_now

    def counted(*args: Any) -> Any:
        calls.append(args)
        return longpoll_now(*args)

    monkeypatch.setattr(poll, "longpoll_now", counted)
    return calls


def test_a_client_one_message_behind_gets_it_at_once_without_a_read(
    srv: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert srv.server is not None
    with connect(srv) as sock:
        reader = Reader(sock)
        cursor = _woken(srv, sock, reader, "behind/a")
        assert waiters(srv, "behind/a") == []  # between requests
        publish(srv, "behind/a", b"second")  # passes the connection between requests
        reads = _count_reads(monkeypatch)
        sock.sendall(longpoll_request("behind/a", cursor))
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["second"]
        assert headers.get("connection") != "close"
        # answered from the message's cached response, not through the read (on main: 1)
        assert reads == []
        # and its next re-ask is the usual one: held, then woken by the next message
        sock.sendall(longpoll_request("behind/a", headers["pushwire-cursor"]))
        until(lambda: len(waiters(srv, "behind/a")) == 1)
        publish(srv, "behind/a", b"third")
        status, _headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["third"]


def test_two_messages_behind_get_both_in_order(srv: InProcessServer) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        cursor = _woken(srv, sock, reader, "behind/b")
        publish(srv, "behind/b", b"second")
        publish(srv, "behind/b", b"third")
        sock.sendall(longpoll_request("behind/b", cursor))
        status, _headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["second", "third"]


def test_one_behind_when_another_topic_is_newer_answers_with_the_logs_last_cursor(
    srv: InProcessServer,
) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        cursor = _woken(srv, sock, reader, "behind/c")
        publish(srv, "behind/c", b"second")
        publish(srv, "behind/other", b"not for it")
        sock.sendall(longpoll_request("behind/c", cursor))
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["second"]
        _epoch, last = headers["pushwire-cursor"].split(":")
        # past the other topic's message too, as the read says
        assert int(last) == int(cursor.split(":")[1]) + 2


def test_one_behind_after_the_rules_changed_is_checked_in_full(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    srv._run(auth.add_user("ann", "ann's long password"))
    srv._run(auth.add_rule(AclRule("all", None, "allow", "readwrite", "behind/#")))
    ann = "Authorization: Basic " + base64.b64encode(b"ann:ann's long password").decode() + "\r\n"
    # (with a filter without wildcards, a caller allowed to long-poll it may read its
    # messages unless the rules change meanwhile: then the full checks run again)
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("behind/d", head=ann))
        until(lambda: len(waiters(srv, "behind/d")) == 1)
        with connect(srv) as pub:
            pub.sendall(publish_request("behind/d", b"first", ann.encode()))
            assert Reader(pub).response()[0] == 201
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["first"]
        with connect(srv) as pub:
            pub.sendall(publish_request("behind/d", b"second", ann.encode()))
            assert Reader(pub).response()[0] == 201
        # ann may no longer read it when she re-asks: the rules are checked again (full
        # path), the message is not hers
        srv._run(auth.add_rule(AclRule("user", "ann", "deny", "read", "behind/d")))
        sock.sendall(longpoll_request("behind/d", headers["pushwire-cursor"], head=ann))
        status, _headers, body = reader.response()
        assert status == 403, body


def test_one_behind_on_an_expired_message_holds_it(srv: InProcessServer) -> None:
    assert srv.server is not None
    log = srv.server.log
    with connect(srv) as sock:
        reader = Reader(sock)
        cursor = _woken(srv, sock, reader, "behind/e")
        with connect(srv) as pub:
            pub.sendall(publish_request("behind/e", b"short-lived", b"Pushwire-TTL: 0.2\r\n"))
            assert Reader(pub).response()[0] == 201
        entry = srv.call(lambda: log.read("behind/e", int(cursor.split(":")[1]), 10).entries[0])
        until(lambda: srv.call(lambda: entry.message.expired()))
        sock.sendall(longpoll_request("behind/e", cursor))
        until(lambda: len(waiters(srv, "behind/e")) == 1)  # held: nothing for it
        publish(srv, "behind/e", b"next")
        status, _headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["next"]
