"""The usual re-ask of a woken long-poll client, run to its hold in one step
(http/streams.py `_ReaskLane.reask_replayed`: a connection still registered between its
requests re-asks with the expected bytes, the cursor of its reply, nothing newer), keeps
every check of the full path: an ACL rule or a user added between the wake and the re-ask
applies to that very re-ask (JSON 403 / 401), and a message published between them is
answered at once. The expected bytes of a wave are set by its first re-ask taken from bytes,
so the change comes after that one: the wave's other re-asks are the ones that take the
one step. Real sockets against an in-process server."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import Reader, longpoll_request, message_payloads, publish, until, waiters
from pushwire.core.acl import AclRule
from pushwire.http.server import HttpServer

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(log_max_messages=100))


def _repeated(srv: InProcessServer) -> int:
    assert srv.server is not None and srv.server._http is not None
    http: HttpServer = srv.server._http
    return srv.call(lambda: http.served_repeated)


class _Client:
    """A kept-alive long-poll client on its own connection."""

    def __init__(self, srv: InProcessServer) -> None:
        assert srv.server is not None and srv.server.http_address is not None
        self.sock = socket.create_connection(srv.server.http_address, timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = Reader(self.sock)
        self.cursor = "all"
        self.got: list[str] = []

    def ask(self, flt: str) -> None:
        self.sock.sendall(longpoll_request(flt, self.cursor))

    def answer(self) -> tuple[int, bytes]:
        status, headers, body = self.reader.response()
        if status == 200:
            self.got += message_payloads(body)
            self.cursor = headers["pushwire-cursor"]
        return status, body


def _woken(srv: InProcessServer, clients: list[_Client], flt: str, payload: str) -> None:
    """Every client re-asks and is held; one message wakes them all; their answers read
    (the clients are now between requests)."""
    for client in clients:
        client.ask(flt)
    until(lambda: len(waiters(srv, flt)) == len(clients))
    publish(srv, flt, payload.encode())
    for client in clients:
        status, body = client.answer()
        assert status == 200, body


def _warmed(srv: InProcessServer, flt: str, n: int = 4) -> list[_Client]:
    """`n` clients woken often enough that their re-asks are taken whole (one comparison),
    checked on one more round; then the first re-asks and is held (its re-ask sets the
    expected bytes for the others' cursor), the others are between requests."""
    clients = [_Client(srv) for _ in range(n)]
    for i in range(3):
        _woken(srv, clients, flt, f"w{i}")
    before = _repeated(srv)
    _woken(srv, clients, flt, "w3")
    assert _repeated(srv) - before >= n - 1  # all but the first of the round
    clients[0].ask(flt)
    until(lambda: len(waiters(srv, flt)) == 1)
    return clients


def test_an_acl_rule_added_between_the_wake_and_the_re_ask_refuses_it(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    flt = "rc/acl"
    clients = _warmed(srv, flt)
    try:
        rule = srv._run(auth.add_rule(AclRule("anonymous", None, "deny", "read", "rc/#")))
        for client in clients[1:]:
            client.ask(flt)
        for client in clients[1:]:
            status, body = client.answer()
            assert status == 403, body
            assert json.loads(body)["error"]["code"] == "forbidden"
        assert rule.id is not None
        srv._run(auth.remove_rule(rule.id))
        # allowed again: the first (held since) is woken, the others get it on their re-ask
        publish(srv, flt, b"after")
        for client in clients[1:]:
            client.ask(flt)
        for client in clients:
            status, body = client.answer()
            assert status == 200 and message_payloads(body) == ["after"], body
    finally:
        for client in clients:
            client.sock.close()


def test_a_user_added_between_the_wake_and_the_re_ask_refuses_anonymous(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    flt = "rc/user"
    clients = _warmed(srv, flt)
    try:
        # anonymous is "auto": allowed from loopback only while there are no users
        srv._run(srv.server.auth.add_user("rita", "a long enough password"))
        for client in clients[1:]:
            client.ask(flt)
        for client in clients[1:]:
            status, body = client.answer()
            assert status == 401, body
            assert json.loads(body)["error"]["code"] == "unauthorized"
    finally:
        for client in clients:
            client.sock.close()


def test_a_message_published_between_the_wake_and_the_re_ask_is_answered_at_once(
    srv: InProcessServer,
) -> None:
    flt = "rc/missed"
    clients = _warmed(srv, flt)
    try:
        publish(srv, flt, b"meanwhile")  # wakes the first; the others are between requests
        before = _repeated(srv)
        for client in clients[1:]:
            client.ask(flt)
        for client in clients:
            status, body = client.answer()
            assert status == 200 and message_payloads(body) == ["meanwhile"], body
        assert _repeated(srv) - before == len(clients) - 1
        _woken(srv, clients, flt, "next")
        for client in clients:
            assert client.got == ["w0", "w1", "w2", "w3", "meanwhile", "next"]
    finally:
        for client in clients:
            client.sock.close()
