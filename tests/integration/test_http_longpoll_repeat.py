"""The usual long-poll re-ask recognised by one comparison (http/replay.py
`ReplayHead.expect`, `HttpProtocol.data_received`, http/streams.py
`_ReaskLane.reask_repeated`): every client woken by one message re-asks with the same head
and the same cursor, so once one re-ask with that cursor was taken from bytes, the next
connections' reads are compared with that whole head, and the lane only checks that the
cursor is the connection's own last one. Counted by the listener's `served_repeated`.

Whatever differs from that head (another header, a body, a bad or foreign cursor, an
oversize head, a pipelined request, `Connection: close`, a split read) must get the answer
the full parse gives. Real sockets against an in-process server."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import Reader, longpoll_request, message_payloads, publish, until, waiters
from pushwire.http.server import HttpServer

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(log_max_messages=100))


def _http(srv: InProcessServer) -> HttpServer:
    assert srv.server is not None and srv.server._http is not None
    return srv.server._http


def _repeated(srv: InProcessServer) -> int:
    http = _http(srv)
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

    def ask(self, flt: str, raw: bytes | None = None) -> None:
        self.sock.sendall(raw if raw is not None else longpoll_request(flt, self.cursor))

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = self.reader.response()
        if status == 200:
            self.got += message_payloads(body)
            self.cursor = headers["pushwire-cursor"]
        return status, headers, body


def _round(srv: InProcessServer, clients: list[_Client], flt: str, payload: str) -> None:
    """Every client re-asks and is held; one message wakes them all."""
    for client in clients:
        client.ask(flt)
    until(lambda: len(waiters(srv, flt)) == len(clients))
    publish(srv, flt, payload.encode())
    for client in clients:
        status, _, body = client.answer()
        assert status == 200, body


def _warm(srv: InProcessServer, clients: list[_Client], flt: str) -> None:
    """Each client's first long-poll (answered at once), then two held rounds: the second
    leaves the shared head with the round's cursor as the template's expected bytes."""
    publish(srv, flt, b"w0")
    for client in clients:
        client.ask(flt)
        status, _, body = client.answer()
        assert status == 200 and message_payloads(body) == ["w0"], body
    _round(srv, clients, flt, "w1")
    _round(srv, clients, flt, "w2")


def test_a_wave_of_re_asks_with_one_cursor_is_recognised_by_one_comparison(
    srv: InProcessServer,
) -> None:
    flt = "repeat/wave"
    clients = [_Client(srv) for _ in range(4)]
    try:
        _warm(srv, clients, flt)
        before = _repeated(srv)
        sent = []
        for i in range(6):
            sent.append(f"m{i}")
            _round(srv, clients, flt, sent[-1])
        # per round, the first re-ask with the new cursor is taken from bytes the general
        # way (and sets the expected head); the other three match it whole
        assert _repeated(srv) - before >= 3 * 6
        for client in clients:
            assert client.got == ["w0", "w1", "w2", *sent]  # in order, none lost or twice
    finally:
        for client in clients:
            client.sock.close()


def _expected_set(srv: InProcessServer, flt: str) -> tuple[_Client, bytes]:
    """Two clients on one head; `b` re-asks with the cursor both got last and is held,
    which makes that head the expected bytes; then a message that `a` has not asked for.
    (a client whose next read equal to the expected bytes is its own re-ask, those bytes)"""
    a, b = _Client(srv), _Client(srv)
    _warm(srv, [a, b], flt)
    before = _repeated(srv)
    _round(srv, [a, b], flt, "r1")
    assert _repeated(srv) - before >= 1  # the second of the round matched whole
    assert a.cursor == b.cursor
    b.ask(flt)
    until(lambda: len(waiters(srv, flt)) == 1)
    publish(srv, flt, b"r2")
    status, _, body = b.answer()
    assert status == 200 and message_payloads(body) == ["r2"]
    b.sock.close()
    return a, longpoll_request(flt, a.cursor)


def test_a_re_ask_that_missed_a_message_gets_it_at_once(srv: InProcessServer) -> None:
    flt = "repeat/missed"
    a, head = _expected_set(srv, flt)
    with a.sock:
        before = _repeated(srv)
        a.ask(flt, head)
        status, _, body = a.answer()
        assert status == 200 and message_payloads(body) == ["r2"]
        assert _repeated(srv) - before == 1  # matched whole, answered from memory
        # and the next one waits again
        a.ask(flt)
        until(lambda: len(waiters(srv, flt)) == 1)
        publish(srv, flt, b"r3")
        status, _, body = a.answer()
        assert status == 200 and message_payloads(body) == ["r3"]


def test_the_expected_bytes_with_a_cursor_not_the_connections_are_parsed(
    srv: InProcessServer,
) -> None:
    """The expected head is shared by the listener's connections: a client that re-sends
    it with a cursor older than its last reply's gets what the full parse answers."""
    flt = "repeat/foreign"
    a, head = _expected_set(srv, flt)
    with a.sock:
        a.ask(flt, head)
        status, _, body = a.answer()
        assert status == 200 and message_payloads(body) == ["r2"]
        publish(srv, flt, b"r3")
        before = _repeated(srv)
        a.ask(flt, head)  # the cursor before r2 again
        status, _, body = a.answer()
        assert status == 200 and message_payloads(body) == ["r2", "r3"]
        assert _repeated(srv) == before


def _json_error(status: int, headers: dict[str, str], body: bytes, want: int, code: str) -> None:
    assert status == want, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == code


@pytest.mark.parametrize(
    "variant",
    ["header", "body", "bad_cursor", "pipelined", "close", "split", "long_line", "big_head"],
)
def test_anything_but_the_expected_bytes_gets_the_full_parse_answer(
    srv: InProcessServer, variant: str
) -> None:
    flt = "repeat/odd"
    a, head = _expected_set(srv, flt)
    with a.sock:
        before = _repeated(srv)
        end = head[:-2]  # the head without its blank line
        if variant == "header":
            a.ask(flt, end + b"Accept: */*\r\n\r\n")
            status, _, body = a.answer()
            assert status == 200 and message_payloads(body) == ["r2"]
        elif variant == "body":
            a.ask(flt, end + b"Content-Length: 2\r\n\r\nab")
            status, _, body = a.answer()
            assert status == 200 and message_payloads(body) == ["r2"]
        elif variant == "bad_cursor":
            a.ask(flt, head.replace(a.cursor.encode(), b"nonsense"))
            _json_error(*a.answer(), 400, "bad_cursor")
        elif variant == "pipelined":
            a.ask(flt, head + f"GET /v1/poll/{flt}?since=all HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, _, body = a.answer()
            assert status == 200 and message_payloads(body) == ["r2"]
            status, _, body = a.reader.response()
            assert status == 200 and "r2" in message_payloads(body)
        elif variant == "close":
            a.ask(flt, end + b"Connection: close\r\n\r\n")
            status, headers, body = a.answer()
            assert status == 200 and message_payloads(body) == ["r2"]
            assert headers["connection"] == "close" and a.reader.closed()
        elif variant == "split":
            a.ask(flt, head[:30])
            http = _http(srv)
            until(
                lambda: srv.call(
                    lambda: any(c.meter is not None and c.meter.size > 0 for c in http.connections)
                )
            )
            a.ask(flt, head[30:])
            status, _, body = a.answer()
            assert status == 200 and message_payloads(body) == ["r2"]
        elif variant == "long_line":
            long_cursor = a.cursor.encode() + b"9" * 9000  # over http_max_request_line
            a.ask(flt, head.replace(a.cursor.encode(), long_cursor))
            _json_error(*a.reader.response(), 414, "uri_too_long")
            assert a.reader.closed()
        else:
            a.ask(flt, end + b"X-Pad: " + b"a" * 17_000 + b"\r\n\r\n")  # over http_max_head
            _json_error(*a.reader.response(), 431, "header_fields_too_large")
            assert a.reader.closed()
        assert _repeated(srv) == before
