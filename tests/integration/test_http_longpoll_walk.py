"""What one publish's walk over many held long-polls shares (http/reader.py `_Walk`): the
message's reply and cursor are encoded once, the ACL answer is looked up once per caller
`Permissions` (anonymous callers share one) and not once per waiter, and the answered
waiters' bookkeeping is settled in one batch after the writes (the listener group left at
once, the delivery counters updated once). Per-message ACL still applies to each waiter:
callers with different rights, interleaved in one walk, each get exactly what they may read.
Real sockets against an in-process server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import (
    Reader,
    basic_auth,
    connect,
    longpoll_request,
    message_payloads,
    publish_request,
    until,
    waiters,
)
from pushwire.core.acl import AclRule
from pushwire.core.permissions import Permissions

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")

N = 8


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def test_a_wake_checks_the_acl_once_for_waiters_sharing_permissions_and_counts_each(
    srv: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert srv.server is not None
    server = srv.server
    socks = [connect(srv) for _ in range(N)]
    try:
        readers = [Reader(s) for s in socks]
        for sock in socks:
            sock.sendall(longpoll_request("walk/a"))
        until(lambda: len(waiters(srv, "walk/a")) == N)
        stats = waiters(srv, "walk/a")[0].stats
        latency = stats.delivery_latency["longpoll"]
        out_before = srv.call(lambda: stats.messages_out["longpoll"])
        observed_before = srv.call(lambda: sum(latency.counts))
        checks: list[str] = []
        can_receive = Permissions.can_receive

        def counted(self: Permissions, topic: str) -> bool:
            checks.append(topic)
            return can_receive(self, topic)

        monkeypatch.setattr(Permissions, "can_receive", counted)
        with connect(srv) as pub:
            pub.sendall(publish_request("walk/a", b"one"))
            assert Reader(pub).response()[0] == 201
        monkeypatch.undo()
        # the N anonymous waiters share one Permissions: one look-up for the whole walk
        assert checks == ["walk/a"], checks
        cursors = []
        for reader in readers:
            status, headers, body = reader.response()
            assert status == 200 and message_payloads(body) == ["one"]
            cursors.append(headers["pushwire-cursor"])
        assert len(set(cursors)) == 1
        # settled in one batch: none held (each kept-alive connection keeps its place in
        # the group between its requests), every delivery counted and timed
        assert waiters(srv, "walk/a") == []
        assert srv.call(lambda: server.log.listener_count) == N
        assert srv.call(lambda: stats.messages_out["longpoll"]) == out_before + N
        assert srv.call(lambda: sum(latency.counts)) == observed_before + N
        assert srv.call(lambda: stats.connections["longpoll"]) == 0
        # and all held again by their re-asks, woken again by the next message
        for sock in socks:
            sock.sendall(longpoll_request("walk/a", cursors[0]))
        until(lambda: len(waiters(srv, "walk/a")) == N)
        with connect(srv) as pub:
            pub.sendall(publish_request("walk/a", b"two"))
            assert Reader(pub).response()[0] == 201
        for reader in readers:
            status, _headers, body = reader.response()
            assert status == 200 and message_payloads(body) == ["two"]
    finally:
        for sock in socks:
            sock.close()


def test_callers_with_different_rights_interleaved_in_one_walk_each_get_what_they_may_read(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    srv._run(auth.add_user("ann", "ann's long password"))
    srv._run(auth.add_user("ben", "ben's long password"))
    srv._run(auth.add_rule(AclRule("all", None, "allow", "readwrite", "walk/#")))
    srv._run(auth.add_rule(AclRule("user", "ben", "deny", "read", "walk/secret")))
    ann, ben = basic_auth("ann", "ann's long password"), basic_auth("ben", "ben's long password")
    who = [ann if i % 2 == 0 else ben for i in range(N)]  # ann, ben, ann, ben, ...
    socks = [connect(srv) for _ in range(N)]
    try:
        readers = [Reader(s) for s in socks]
        for sock, head in zip(socks, who, strict=True):
            sock.sendall(longpoll_request("walk/%23", head=head))
        until(lambda: len(waiters(srv, "walk/#")) == N)

        def publish(topic: str, body: bytes) -> None:
            with connect(srv) as pub:
                pub.sendall(publish_request(topic, body, ann.encode()))
                assert Reader(pub).response()[0] == 201

        publish("walk/secret", b"for ann")
        # ann's waiters were answered in the walk; ben's stay held, the message skipped
        until(lambda: len(waiters(srv, "walk/#")) == N // 2)
        assert {w.caller.identity.username for w in waiters(srv, "walk/#")} == {"ben"}
        publish("walk/open", b"for all")
        got: list[tuple[str, list[str]]] = []
        for reader, head in zip(readers, who, strict=True):
            status, _headers, body = reader.response()
            assert status == 200, body
            got.append(("ann" if head == ann else "ben", message_payloads(body)))
        assert got == [
            ("ann", ["for ann"]) if i % 2 == 0 else ("ben", ["for all"]) for i in range(N)
        ], got
    finally:
        for sock in socks:
            sock.close()
