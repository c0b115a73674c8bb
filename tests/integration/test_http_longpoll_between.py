"""A kept-alive long-poll client between its requests (http/streams.py `_LongPoller.replied`,
http/reader.py `LongPollWaiter.between`): once a publish's wake answered it, the connection
stays a connected long-poll client (listed by `GET /v1/admin/clients`, its waiter still in
its listener group and counted against `http_max_listeners`) until it re-asks, begins any
other request, closes or idles out; `pushwire_longpoll_waiters` counts held requests only.
Nothing it was owed is lost meanwhile: what is published between its requests is answered
at once on its re-ask, in order, once. Real sockets against an in-process server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

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
from pushwire.http import connection, cycles
from pushwire.http.state import HttpState

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(log_max_messages=100))


def _state(srv: InProcessServer) -> HttpState:
    assert srv.server is not None and srv.server._ws_native is not None
    return srv.server._ws_native.state  # the HTTP app's state (one per listener)


def _listed(srv: InProcessServer) -> list[tuple[str, tuple[str, ...]]]:
    """The long-poll clients `GET /v1/admin/clients` lists."""
    clients = _state(srv).clients
    return sorted(
        (c.transport, c.subscriptions) for c in srv.call(clients.list) if c.transport == "longpoll"
    )


def _listeners(srv: InProcessServer) -> int:
    assert srv.server is not None
    log = srv.server.log
    return srv.call(lambda: log.listener_count)


def _held_gauge(srv: InProcessServer) -> int:
    stats = _state(srv).stats  # `pushwire_longpoll_waiters`
    return srv.call(lambda: stats.connections["longpoll"])


def test_a_woken_client_stays_listed_between_requests_until_its_keep_alive_idles_out(
    srv: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the connection arms it between requests, the stream cycle after a woken long-poll
    monkeypatch.setattr(connection, "KEEP_ALIVE_TIMEOUT", 0.3)
    monkeypatch.setattr(cycles, "KEEP_ALIVE_TIMEOUT", 0.3)
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("bt/idle"))
        woken(srv, "bt/idle", [reader], b"one")
        # between its requests: still a connected long-poll client, in its group, but no
        # request is held
        assert _listed(srv) == [("longpoll", ("bt/idle",))]
        assert _listeners(srv) == 1
        assert _held_gauge(srv) == 0
        # it does not re-ask: the keep-alive deadline still closes the idle connection
        assert reader.file.read() == b""
    until(lambda: _listed(srv) == [] and _listeners(srv) == 0)


def test_another_request_or_a_close_between_requests_ends_it(srv: InProcessServer) -> None:
    with connect(srv) as a, connect(srv) as b:
        ra, rb = Reader(a), Reader(b)
        a.sendall(longpoll_request("bt/end"))
        b.sendall(longpoll_request("bt/end"))
        cursor_a, _ = woken(srv, "bt/end", [ra, rb], b"one")
        assert _listed(srv) == [("longpoll", ("bt/end",))] * 2
        assert _listeners(srv) == 2
        # `a` publishes on the same connection: no longer a long-poll client
        a.sendall(publish_request("bt/other", b"x"))
        assert ra.response()[0] == 201
        assert _listed(srv) == [("longpoll", ("bt/end",))]
        assert _listeners(srv) == 1
        # `b` closes
        rb.file.close()
        b.close()
        until(lambda: _listed(srv) == [] and _listeners(srv) == 0)
        # `a` long-polls again: held, listed, woken once
        a.sendall(longpoll_request("bt/end", cursor_a))
        woken(srv, "bt/end", [ra], b"two")
        assert _listed(srv) == [("longpoll", ("bt/end",))]


def test_messages_published_between_requests_are_answered_at_once_in_order(
    srv: InProcessServer,
) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("bt/miss"))
        (cursor,) = woken(srv, "bt/miss", [reader], b"m0")
        sock.sendall(longpoll_request("bt/miss", cursor))  # held again on the lane
        (cursor,) = woken(srv, "bt/miss", [reader], b"m1")
        # two messages while it is between requests (its waiter is still in its group)
        publish(srv, "bt/miss", b"m2")
        publish(srv, "bt/miss", b"m3")
        assert _listeners(srv) == 1
        sock.sendall(longpoll_request("bt/miss", cursor))
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["m2", "m3"]
        # and held again from there: the next message once, nothing twice
        sock.sendall(longpoll_request("bt/miss", headers["pushwire-cursor"]))
        woken(srv, "bt/miss", [reader], b"m4")


def test_a_message_the_caller_may_not_read_between_requests_is_skipped_on_re_ask(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    # (any rule makes the default deny: everything else of bt/acl/ is allowed)
    srv._run(auth.add_rule(AclRule("all", None, "allow", "readwrite", "bt/acl/#")))
    srv._run(auth.add_rule(AclRule("anonymous", None, "deny", "read", "bt/acl/secret")))
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("bt/acl/+"))
        (cursor,) = woken(srv, "bt/acl/+", [reader], b"open", "bt/acl/open")
        publish(srv, "bt/acl/secret", b"hidden")  # between its requests, not for it
        sock.sendall(longpoll_request("bt/acl/+", cursor))
        until(lambda: len(waiters(srv, "bt/acl/+")) == 1)  # held: nothing for it yet
        publish(srv, "bt/acl/x", b"shown")
        status, _, body = reader.response()
        assert status == 200 and message_payloads(body) == ["shown"]


def test_credentials_revoked_between_requests_refuse_the_re_ask(srv: InProcessServer) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    srv._run(auth.add_user("ann", "ann's long password"))
    basic = base64.b64encode(b"ann:ann's long password").decode()
    head = f"Authorization: Basic {basic}\r\n"
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("bt/rev", head=head))
        until(lambda: len(waiters(srv, "bt/rev")) == 1)
        with connect(srv) as pub:  # (anonymous may not publish once a user exists)
            pub.sendall(publish_request("bt/rev", b"one", head.encode()))
            assert Reader(pub).response()[0] == 201
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["one"]
        cursor = headers["pushwire-cursor"]
        assert _listed(srv) == [("longpoll", ("bt/rev",))]
        srv._run(auth.remove_user("ann"))
        # revoked between its requests: off the list and out of its group at once
        until(lambda: _listed(srv) == [] and _listeners(srv) == 0)
        sock.sendall(longpoll_request("bt/rev", cursor, head=head))
        status, headers, body = reader.response()
        assert status == 401, body
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "unauthorized"
        assert _listed(srv) == [] and _listeners(srv) == 0
