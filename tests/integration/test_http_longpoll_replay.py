"""A kept-alive long-poll client's re-ask recognised from its bytes (http/replay.py,
`HttpProtocol._replayed`): a read that is exactly the connection's previous lane head with
another cursor skips the parser and goes to the stream lane. It must answer as the full
parse does (cursor advancing, nothing lost or duplicated), fall back on anything else (a
changed header, a pipelined request, a split read, a body), let an ACL rule or a new user
apply to the very next re-ask, and leave a malformed cursor to the JSON 400. Counted by the
listener's `served_replayed`. Real sockets against an in-process server."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import Reader, held_on_lane, longpoll_request, message_payloads, publish, until
from pushwire.core.acl import AclRule
from pushwire.http.server import HttpServer

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(log_max_messages=100))


def _http(srv: InProcessServer) -> HttpServer:
    assert srv.server is not None and srv.server._http is not None
    return srv.server._http


def _replayed(srv: InProcessServer) -> int:
    http = _http(srv)
    return srv.call(lambda: http.served_replayed)


def _connect(srv: InProcessServer) -> socket.socket:
    assert srv.server is not None and srv.server.http_address is not None
    sock = socket.create_connection(srv.server.http_address, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _warm(srv: InProcessServer, sock: socket.socket, reader: Reader, flt: str) -> str:
    """The first long-poll, then a re-ask on the lane that leaves its head as the
    connection's template (answered at once): the cursor to re-ask with."""
    publish(srv, flt, b"m0")
    sock.sendall(longpoll_request(flt, "all", timeout="0"))
    status, headers, body = reader.response()
    assert status == 200 and message_payloads(body)[-1] == "m0"
    sock.sendall(longpoll_request(flt, headers["pushwire-cursor"], timeout="0"))
    status, headers, body = reader.response()
    assert status == 200 and message_payloads(body) == []
    return headers["pushwire-cursor"]


def test_many_re_asks_are_taken_from_bytes_and_lose_nothing(srv: InProcessServer) -> None:
    flt = "replay/many"
    with _connect(srv) as sock:
        reader = Reader(sock)
        cursor = _warm(srv, sock, reader, flt)
        before = _replayed(srv)
        got: list[str] = []
        sent: list[str] = []
        for i in range(30):
            if i % 3 == 0:
                # published before the re-ask: answered at once from the log
                for j in range(2):
                    sent.append(f"a{i}.{j}")
                    publish(srv, flt, sent[-1].encode())
                sock.sendall(longpoll_request(flt, cursor))
            else:
                # held on the lane, then woken by the publish
                sock.sendall(longpoll_request(flt, cursor))
                until(lambda: held_on_lane(srv, flt))
                sent.append(f"h{i}")
                publish(srv, flt, sent[-1].encode())
            status, headers, body = reader.response()
            assert status == 200, body
            got += message_payloads(body)
            assert headers["pushwire-cursor"] != cursor  # the cursor advances
            cursor = headers["pushwire-cursor"]
        assert got == sent  # in order, none lost, none twice
        # all but the first two: timeout=30 differs from the warm-up's, so the lane learns
        # the new options on the first, and the head is kept from the second
        assert _replayed(srv) - before == 28


def test_every_divergence_takes_the_full_parse(srv: InProcessServer) -> None:
    flt = "replay/div"
    with _connect(srv) as sock:
        reader = Reader(sock)
        cursor = _warm(srv, sock, reader, flt)
        before = _replayed(srv)

        # another header (one the lane allows): parsed, answered, not from bytes
        sock.sendall(longpoll_request(flt, cursor, timeout="0", head="Accept: */*\r\n"))
        status, headers, _ = reader.response()
        assert status == 200 and _replayed(srv) == before
        cursor = headers["pushwire-cursor"]
        # ...and that head is now the template
        sock.sendall(longpoll_request(flt, cursor, timeout="0", head="Accept: */*\r\n"))
        status, headers, _ = reader.response()
        assert status == 200 and _replayed(srv) == before + 1
        cursor = headers["pushwire-cursor"]
        before += 1

        # a second request pipelined in the same read: both answered, in order
        publish(srv, flt, b"p1")
        sock.sendall(
            longpoll_request(flt, cursor, timeout="0", head="Accept: */*\r\n")
            + b"GET /v1/poll/replay/div?since=all HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["p1"]
        cursor = headers["pushwire-cursor"]
        status, _, body = reader.response()
        assert status == 200 and "p1" in message_payloads(body)
        assert _replayed(srv) == before

        # the head split over two reads: the parser puts it together
        publish(srv, flt, b"p2")
        whole = longpoll_request(flt, cursor, timeout="0", head="Accept: */*\r\n")
        http = _http(srv)

        def partial_head_read() -> bool:
            return srv.call(
                lambda: any(c.meter is not None and c.meter.size > 0 for c in http.connections)
            )

        sock.sendall(whole[:20])
        until(partial_head_read)
        sock.sendall(whole[20:])
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["p2"]
        cursor = headers["pushwire-cursor"]
        assert _replayed(srv) == before

        # the template's bytes with the new cursor are taken from bytes again
        sock.sendall(longpoll_request(flt, cursor, timeout="0", head="Accept: */*\r\n"))
        status, headers, _ = reader.response()
        assert status == 200
        assert _replayed(srv) == before + 1
        cursor = headers["pushwire-cursor"]

        # a body (Content-Length): the normal way, answered as such
        head = "Accept: */*\r\nContent-Length: 2\r\n"
        sock.sendall(longpoll_request(flt, cursor, timeout="0", head=head) + b"ab")
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == []
        assert _replayed(srv) == before + 1


def test_an_acl_rule_and_a_new_user_apply_to_the_next_re_ask_from_bytes(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    flt = "replay/acl"
    with _connect(srv) as sock:
        reader = Reader(sock)
        cursor = _warm(srv, sock, reader, flt)
        before = _replayed(srv)
        sock.sendall(longpoll_request(flt, cursor, timeout="0"))
        status, headers, _ = reader.response()
        assert status == 200 and _replayed(srv) == before + 1  # from bytes
        cursor = headers["pushwire-cursor"]
        rule = srv._run(auth.add_rule(AclRule("anonymous", None, "deny", "read", "replay/#")))
        sock.sendall(longpoll_request(flt, cursor, timeout="0"))
        status, _, body = reader.response()
        assert status == 403, body
        assert json.loads(body)["error"]["code"] == "forbidden"
        assert rule.id is not None
        srv._run(auth.remove_rule(rule.id))
        # allowed again: the normal way first (it learns the head again), then from bytes
        cursor = _warm(srv, sock, reader, flt)
        before = _replayed(srv)
        sock.sendall(longpoll_request(flt, cursor, timeout="0"))
        status, headers, _ = reader.response()
        assert status == 200 and _replayed(srv) == before + 1
        # anonymous is "auto": allowed from loopback only while there are no users
        srv._run(srv.server.auth.add_user("erin", "a long enough password"))
        sock.sendall(longpoll_request(flt, headers["pushwire-cursor"], timeout="0"))
        status, _, body = reader.response()
        assert status == 401, body
        assert json.loads(body)["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("bad", ["nonsense", "12%2034", "9" * 200, "1:2:3"])
def test_a_malformed_cursor_in_the_template_gets_the_json_400(
    srv: InProcessServer, bad: str
) -> None:
    flt = "replay/bad"
    with _connect(srv) as sock:
        reader = Reader(sock)
        _warm(srv, sock, reader, flt)
        before = _replayed(srv)
        sock.sendall(longpoll_request(flt, bad, timeout="0"))
        status, headers, body = reader.response()
        assert status == 400, body
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "bad_cursor"
        assert _replayed(srv) == before


def test_a_head_after_bytes_left_in_the_parser_is_parsed_with_them(
    srv: InProcessServer,
) -> None:
    """A re-ask followed by the first byte of a method in the same read: the parser holds
    the start of a next request, so the template's bytes in the next read are not a request
    of their own (the full parse finds the stray byte before them: 400)."""
    flt = "replay/left"
    with _connect(srv) as sock:
        reader = Reader(sock)
        cursor = _warm(srv, sock, reader, flt)
        sock.sendall(longpoll_request(flt, cursor, timeout="0") + b"G")
        status, headers, _ = reader.response()
        assert status == 200
        before = _replayed(srv)
        sock.sendall(longpoll_request(flt, headers["pushwire-cursor"], timeout="0"))
        status, headers, body = reader.response()
        assert status == 400, body
        assert json.loads(body)["error"]["code"] == "bad_request"
        assert _replayed(srv) == before


def _lane_head(srv: InProcessServer) -> tuple[object, object]:
    """(the connection's replay template, the template its poller's lane checked)."""
    http = _http(srv)

    def heads() -> tuple[object, object]:
        (conn,) = [c for c in http.connections if c.stream_state is not None]
        return conn.replay, getattr(conn.stream_state, "lane_head", None)

    return srv.call(heads)


def test_a_template_checked_once_skips_the_query_string_until_the_options_change(
    srv: InProcessServer,
) -> None:
    flt = "replay/checked"
    with _connect(srv) as sock:
        reader = Reader(sock)
        cursor = _warm(srv, sock, reader, flt)
        # two re-asks from bytes: the first checks the template's query string against
        # the connection's options, the next ones take the cursor bytes alone
        for _ in range(3):
            sock.sendall(longpoll_request(flt, cursor, timeout="0"))
            status, headers, body = reader.response()
            assert status == 200 and message_payloads(body) == []
            cursor = headers["pushwire-cursor"]
        replay, checked = _lane_head(srv)
        assert replay is not None and checked is replay
        # other options (a parsed request): the checked template no longer stands for them
        sock.sendall(longpoll_request(flt, cursor, timeout="30", extra="&limit=5"))
        until(lambda: held_on_lane(srv, flt) or bool(_waiters_held(srv, flt)))
        assert _lane_head(srv)[1] is None
        publish(srv, flt, b"m1")
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["m1"]
        cursor = headers["pushwire-cursor"]
        # the old template's bytes again (timeout=0): answered by its own options, at once
        # and empty, not held by the limit=5/timeout=30 ones of the previous request
        sock.sendall(longpoll_request(flt, cursor, timeout="0"))
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == []
        cursor = headers["pushwire-cursor"]
        # and once more from bytes, then a message published before the re-ask
        publish(srv, flt, b"m2")
        sock.sendall(longpoll_request(flt, cursor, timeout="0"))
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == ["m2"]


def _waiters_held(srv: InProcessServer, flt: str) -> list[object]:
    assert srv.server is not None
    log = srv.server.log
    return srv.call(
        lambda: (
            [m for m in g.members if not getattr(m, "between", False)]
            if (g := log._groups.get(flt))
            else []
        )
    )


def test_a_re_ask_with_nothing_newer_is_refused_when_the_listeners_are_full() -> None:
    """The listeners are counted with the lane's shortest hold (the cursor of the last
    reply, nothing newer): at `http_max_listeners` a new long-poll gets the JSON 503 while
    the woken connection is between its requests, which keeps its place for its re-ask."""
    server = InProcessServer(log_max_messages=100, http_max_listeners=1).start()
    try:
        flt = "replay/full"
        with _connect(server) as sock, _connect(server) as other:
            reader = Reader(sock)
            cursor = _warm(server, sock, reader, flt)
            before = _replayed(server)
            # held, woken: parsed (new options), on the lane (the template is learned),
            # from bytes (the template is checked), from bytes (taken as it is)
            for n in range(4):
                sock.sendall(longpoll_request(flt, cursor))
                until(lambda: len(_waiters_held(server, flt)) == 1)
                publish(server, flt, b"m%d" % n)
                status, headers, body = reader.response()
                assert status == 200 and message_payloads(body) == [f"m{n}"]
                cursor = headers["pushwire-cursor"]
            assert _replayed(server) - before == 2
            # between its requests the woken connection keeps its listener place: another
            # connection asking meanwhile gets the JSON 503
            other.sendall(longpoll_request(flt, cursor))
            status, _, body = Reader(other).response()
            assert status == 503, body
            assert json.loads(body)["error"]["code"] == "too_many_listeners"
            # and its own re-ask from bytes is held in that place (not refused)
            sock.sendall(longpoll_request(flt, cursor))
            until(lambda: len(_waiters_held(server, flt)) == 1)
            publish(server, flt, b"after")
            status, _, body = reader.response()
            assert status == 200 and message_payloads(body) == ["after"]
    finally:
        server.stop()
