"""A publish's wake of many held long-polls (core/log.py `MessageLog._wake`, http/reader.py
`_Walk.settle`): every woken waiter's response is written during the walk over
the listeners, and the bookkeeping of each answer (leaving the listener group, the
counters, the client registry, the connection's next-request turn) is settled after the
walk, still inside the publish. Nothing is lost or answered twice, the waiters are held
again by their re-asks, and a request pipelined behind a woken long-poll is answered after
it. Real sockets against an in-process server."""

from __future__ import annotations

import contextlib
import json
import os
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
)
from pushwire.core.log import LogEntry

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")

N = 12


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


class _Probe:
    """A log listener registered after the waiters (so told last in the walk): what the
    server's bookkeeping and the clients' sockets look like at that moment."""

    def __init__(self, group: dict[Any, None], stats: Any, socks: list[socket.socket]) -> None:
        self.group = group
        self.stats = stats
        # non-blocking twins of the clients' sockets (a socket with a timeout would wait)
        self.socks = [socket.socket(fileno=os.dup(s.fileno())) for s in socks]
        for sock in self.socks:
            sock.setblocking(False)
        self.seen: list[tuple[int, int, int]] = []

    def notify(self, entry: LogEntry) -> None:
        arrived = 0
        for sock in self.socks:
            with contextlib.suppress(BlockingIOError):
                arrived += bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        self.seen.append((len(self.group), self.stats.connections["longpoll"], arrived))

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def test_a_wake_writes_every_response_before_settling_any_and_all_are_held_again(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    log = srv.server.log
    socks = [connect(srv) for _ in range(N)]
    try:
        readers = [Reader(s) for s in socks]
        for sock in socks:
            sock.sendall(longpoll_request("wake/a"))
        until(lambda: len(waiters(srv, "wake/a")) == N)
        stats = waiters(srv, "wake/a")[0].stats
        probe = _Probe(srv.call(lambda: log._groups["wake/a"].members), stats, socks)
        srv.call(lambda: log.listen("wake/a", probe))
        cursors: list[str] = []
        for wave in range(3):
            publish(srv, "wake/a", b"m%d" % wave)
            # when the last listener was told, every client had its response already and
            # no waiter had left its group or been counted off yet: writes came first
            assert probe.seen[-1] == (N + 1, N, N), probe.seen
            cursors = []
            for reader in readers:
                status, headers, body = reader.response()
                assert status == 200 and message_payloads(body) == [f"m{wave}"]
                cursors.append(headers["pushwire-cursor"])
            # settled after the walk: the counter and the group hold only the probe as
            # held (the woken waiters stay in it `between` their connection's requests)
            assert waiters(srv, "wake/a") == [probe]
            assert srv.call(lambda: len(log._groups["wake/a"].members)) == N + 1
            assert srv.call(lambda: stats.connections["longpoll"]) == 0
            for sock, cursor in zip(socks, cursors, strict=True):
                sock.sendall(longpoll_request("wake/a", cursor))
            until(lambda: len(waiters(srv, "wake/a")) == N + 1)
            assert srv.call(lambda: stats.connections["longpoll"]) == N
            # the probe to the end of the group again (the re-asks joined after it)
            srv.call(lambda: log.unlisten("wake/a", probe))
            srv.call(lambda: log.listen("wake/a", probe))
        # each held re-ask gets the next message, exactly once
        publish(srv, "wake/a", b"last")
        for reader in readers:
            status, _headers, body = reader.response()
            assert status == 200 and message_payloads(body) == ["last"]
        srv.call(lambda: log.unlisten("wake/a", probe))
        probe.close()
    finally:
        for sock in socks:
            sock.close()


def test_a_request_pipelined_behind_a_woken_long_poll_is_answered_after_it(
    srv: InProcessServer,
) -> None:
    with connect(srv) as first, connect(srv) as second:
        first_reader, second_reader = Reader(first), Reader(second)
        first.sendall(longpoll_request("wake/p"))
        # the second connection pipelines a publish behind its long-poll
        second.sendall(longpoll_request("wake/p") + publish_request("wake/other", b"x"))
        until(lambda: len(waiters(srv, "wake/p")) == 2)
        publish(srv, "wake/p", b"one")
        for reader in (first_reader, second_reader):
            status, _headers, body = reader.response()
            assert status == 200 and message_payloads(body) == ["one"]
        status, _headers, body = second_reader.response()
        assert status == 201 and json.loads(body)["topic"] == "wake/other"
        # both connections take requests again
        publish(srv, "wake/other", b"marker")
        first.sendall(publish_request("wake/other", b"y"))
        assert first_reader.response()[0] == 201


def test_a_long_poll_on_the_app_path_is_answered_by_a_wake_beside_owned_ones(
    srv: InProcessServer,
) -> None:
    """A request with an `Origin` goes through the ASGI app (its own `ReplySink`); it is
    woken by the same walk as the owned protocol's waiters."""
    assert srv.server is not None
    host, port = srv.server.http_address  # type: ignore[misc]
    origin = f"Origin: http://{host}:{port}\r\n"
    with connect(srv) as owned, connect(srv) as app:
        owned_reader, app_reader = Reader(owned), Reader(app)
        app.sendall(longpoll_request("wake/o", head=origin))
        owned.sendall(longpoll_request("wake/o"))
        until(lambda: len(waiters(srv, "wake/o")) == 2)
        publish(srv, "wake/o", b"both")
        for reader in (owned_reader, app_reader):
            status, _headers, body = reader.response()
            assert status == 200 and message_payloads(body) == ["both"]
