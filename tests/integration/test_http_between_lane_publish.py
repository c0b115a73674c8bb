"""A kept-alive long-poll client between its requests (http/streams.py `_LongPoller`) that
then publishes on the same connection with a head recognised from its bytes (http/connection.py
`_lane_replayed`, which skips the parser and so `on_message_begin`) is no longer a long-poll
client: it leaves the admin client list and its listener group, as a parsed request makes it
do. Real sockets against an in-process server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import (
    Reader,
    connect,
    longpoll_request,
    publish_request,
    until,
    waiters,
    woken,
)
from pushwire.http.state import HttpState

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(log_max_messages=100))


def _state(srv: InProcessServer) -> HttpState:
    assert srv.server is not None and srv.server._ws_native is not None
    return srv.server._ws_native.state


def _listed(srv: InProcessServer) -> int:
    clients = _state(srv).clients
    return sum(1 for c in srv.call(clients.list) if c.transport == "longpoll")


def _listeners(srv: InProcessServer) -> int:
    assert srv.server is not None
    log = srv.server.log
    return srv.call(lambda: log.listener_count)


def _lane_replayed(srv: InProcessServer) -> int:
    assert srv.server is not None and srv.server._http is not None
    http = srv.server._http
    count: int = srv.call(lambda: http.served_lane_replayed)
    return count


def test_a_publish_replayed_from_its_bytes_between_long_polls_ends_the_client(
    srv: InProcessServer,
) -> None:
    request = publish_request("bl/pub", b"x")
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("bl/lp"))
        (cursor,) = woken(srv, "bl/lp", [reader], b"one")
        # a parsed publish: leaves, and its head is learned for the next one
        sock.sendall(request)
        assert reader.response()[0] == 201
        assert _listed(srv) == 0 and _listeners(srv) == 0
        sock.sendall(longpoll_request("bl/lp", cursor))
        woken(srv, "bl/lp", [reader], b"two")
        assert _listed(srv) == 1 and _listeners(srv) == 1  # between its requests
        before = _lane_replayed(srv)
        sock.sendall(request)  # the same bytes: taken without the parser
        assert reader.response()[0] == 201
        assert _lane_replayed(srv) == before + 1  # (the path under test was taken)
        assert _listed(srv) == 0 and _listeners(srv) == 0


def test_a_request_begun_while_the_long_poll_was_held_ends_the_client_once_answered(
    srv: InProcessServer,
) -> None:
    """The next request's first bytes arrive while the long-poll is held (so its
    `request_begins` came before the wake): once woken, the connection is not a long-poll
    client waiting for its next request, it is in one."""
    request = publish_request("bl/pub", b"x")
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("bl/lp"))
        until(lambda: len(waiters(srv, "bl/lp")) == 1)
        sock.sendall(request[:20])  # the parser begins the publish behind the held poll
        assert srv.server is not None and srv.server._http is not None
        http = srv.server._http
        until(lambda: srv.call(lambda: sum(1 for p in http.connections if not p.idle)) == 1)
        woken(srv, "bl/lp", [reader], b"one")
        sock.sendall(request[20:])
        assert reader.response()[0] == 201
        assert _listed(srv) == 0 and _listeners(srv) == 0
