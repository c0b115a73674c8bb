"""What a held long-poll connection keeps while it waits (http/connection.py `data_received`):
no request parser (httptools' parser and the head meter, ~1 KB) once its request is held,
kept alive, with the parser between requests; the usual re-ask taken from its bytes
(http/replay.py) needs none, and any other read makes one again: a pipelined request behind
the held one, a head split over reads, a publish on the same connection, a malformed request
(its JSON 400 and the close; the long-poll held before it is let go, so that a publish's wake
writes nothing after the connection's EOF). And what connections waiting on one filter can
share, they share (the filter string), or do not keep (a drain list, a body list, a second
address tuple). Real sockets against an in-process server."""

from __future__ import annotations

import json
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

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(log_max_messages=100))


def _held_parsers(srv: InProcessServer, flt: str) -> list[Any]:
    """The request parser of every connection whose long-poll on `flt` is held now."""

    held = waiters(srv, flt)

    def parsers() -> list[Any]:
        return [w.sink.cycle.proto.parser for w in held if w.sink.cycle is not None]

    return srv.call(parsers)


def test_held_long_polls_keep_no_parser_and_their_re_asks_need_none(
    srv: InProcessServer,
) -> None:
    socks = [connect(srv) for _ in range(4)]
    readers = [Reader(s) for s in socks]
    try:
        for sock in socks:
            sock.sendall(longpoll_request("idle/a"))
        until(lambda: len(_held_parsers(srv, "idle/a")) == 4)
        assert _held_parsers(srv, "idle/a") == [None] * 4
        # three rounds of wake and re-ask (the second and third are taken from bytes): each
        # message once, in order, and the held connections still keep no parser
        for n in range(3):
            until(lambda: len(_held_parsers(srv, "idle/a")) == 4)
            publish(srv, "idle/a", b"m%d" % n)
            for sock, reader in zip(socks, readers, strict=True):
                status, headers, body = reader.response()
                assert status == 200 and message_payloads(body) == [f"m{n}"]
                sock.sendall(longpoll_request("idle/a", since=headers["pushwire-cursor"]))
            until(lambda: len(_held_parsers(srv, "idle/a")) == 4)
            assert _held_parsers(srv, "idle/a") == [None] * 4
    finally:
        for sock in socks:
            sock.close()


def test_a_connection_without_a_parser_parses_whatever_comes_next(srv: InProcessServer) -> None:
    pipelined, malformed, split, publisher = (connect(srv) for _ in range(4))
    try:
        for sock in (pipelined, malformed, split, publisher):
            sock.sendall(longpoll_request("idle/b"))
        until(lambda: _held_parsers(srv, "idle/b") == [None] * 4)  # (held: no parser)
        # a request pipelined behind the held long-poll: answered after it, in order
        pipelined.sendall(b"GET /v1/poll/idle/b HTTP/1.1\r\nHost: x\r\n\r\n")
        # a malformed request behind another: the JSON 400 and the close; the held
        # long-poll is let go (the wake below writes nothing after the EOF)
        malformed.sendall(b"GET /v1/poll/idle/b HTTP/1.1\r\nHost x\r\n\r\n")
        reader = Reader(malformed)
        status, _, body = reader.response()
        assert status == 400 and set(json.loads(body)["error"]) == {"code", "message"}
        assert reader.closed()
        until(lambda: len(waiters(srv, "idle/b")) == 3)
        # half a head behind a third, the rest in another read
        split.sendall(b"GET /v1/poll/idle/b HTT")
        publish(srv, "idle/b", b"one")
        split.sendall(b"P/1.1\r\nHost: x\r\n\r\n")
        for sock in (pipelined, split):
            reader = Reader(sock)
            status, _, body = reader.response()
            assert status == 200 and message_payloads(body) == ["one"]
            status, _, body = reader.response()
            assert status == 200 and message_payloads(body) == ["one"]  # the poll
        # a publish on a connection whose parser went (answered, between requests)
        reader = Reader(publisher)
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["one"]
        publisher.sendall(publish_request("idle/b", b"two"))
        assert reader.response()[0] == 201
        # and a long-poll again on it, with other options: held, then answered
        publisher.sendall(longpoll_request("idle/b", since=headers["pushwire-cursor"]))
        status, _, body = reader.response()
        assert status == 200 and message_payloads(body) == ["two"]
    finally:
        for sock in (pipelined, malformed, split, publisher):
            sock.close()


def test_connections_waiting_on_one_filter_share_what_they_keep(srv: InProcessServer) -> None:
    """Per held connection only what is its own: the filter string is one object for all
    the waiters on it (and their checks), no drain list, no body list, the peer address
    the transport's own tuple."""
    socks = [connect(srv) for _ in range(4)]
    readers = [Reader(s) for s in socks]
    try:
        for sock in socks:
            sock.sendall(longpoll_request("idle/c"))
        until(lambda: len(waiters(srv, "idle/c")) == 4)
        publish(srv, "idle/c", b"one")
        for sock, reader in zip(socks, readers, strict=True):
            status, headers, _ = reader.response()
            assert status == 200
            sock.sendall(longpoll_request("idle/c", since=headers["pushwire-cursor"]))
        until(lambda: len(waiters(srv, "idle/c")) == 4)
        held = waiters(srv, "idle/c")

        def kept() -> list[tuple[Any, ...]]:
            return [
                (
                    w.filter,
                    w.sink.checked_filter,
                    w.sink.shape_filter,
                    w.sink.cycle.proto.drain_waiters,
                    w.sink.cycle.chunks,
                    w.sink.cycle.proto.client
                    is w.sink.cycle.proto.transport.get_extra_info("peername"),
                )
                for w in held
            ]

        rows = srv.call(kept)
        first = rows[0][0]
        for flt, checked, shape, drain, chunks, own_peer in rows:
            assert flt == "idle/c"
            assert flt is first and checked is first and shape is first
            assert drain is None and chunks == [] and own_peer
    finally:
        for sock in socks:
            sock.close()
