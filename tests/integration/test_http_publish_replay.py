"""A kept-alive publisher's next request recognised from its bytes (http/lane_replay.py,
`HttpProtocol._lane_replayed`): a read that is exactly the connection's previous lane
publish head (with any `Content-Length`) and a body of that length skips the parser and
goes to the publish lane. It must answer as the full parse does (ids, cursor, content type,
nothing lost), fall back on anything else (another header, a pipelined or split request, a
query string, `Connection: close`), never keep a head that is not plainly one request, let
an ACL rule or a new user apply to the very next publish, and on SQLite still answer 201
only once the message is on disk. Counted by the listener's `served_lane_replayed`. Real
sockets against an in-process server."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import Reader
from pushwire.core.acl import AclRule
from pushwire.http.server import HttpServer

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")

HEAD = "POST /v1/publish/{topic} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n{extra}"


def publish(topic: str, body: bytes, extra: str = "") -> bytes:
    head = HEAD.format(topic=topic, extra=extra) + f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def _http(srv: InProcessServer) -> HttpServer:
    assert srv.server is not None and srv.server._http is not None
    return srv.server._http


def _replayed(srv: InProcessServer) -> int:
    http = _http(srv)
    count: int = srv.call(lambda: http.served_lane_replayed)
    return count


def _connect(srv: InProcessServer) -> socket.socket:
    assert srv.server is not None and srv.server.http_address is not None
    sock = socket.create_connection(srv.server.http_address, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _created(reader: Reader, topic: str) -> dict[str, object]:
    status, _headers, body = reader.response()
    assert status == 201, body
    reply: dict[str, object] = json.loads(body)
    assert reply["topic"] == topic and reply["stored"] is True
    assert reply["cursor"] == f"{reply['epoch']}:{reply['id']}"
    return reply


def _warm(srv: InProcessServer, sock: socket.socket, reader: Reader, topic: str) -> None:
    """The connection's first publish finds its caller the long way; the second takes the
    lane and leaves its head as the connection's; the third is taken from bytes."""
    before = _replayed(srv)
    for body in (b"w0", b"w1", b"w2"):
        sock.sendall(publish(topic, body))
        _created(reader, topic)
    assert _replayed(srv) == before + 1


def poll_all(srv: InProcessServer, topic: str) -> list[dict[str, object]]:
    assert srv.server is not None and srv.server.http_address is not None
    with socket.create_connection(srv.server.http_address, timeout=10) as sock:
        sock.sendall(f"GET /v1/poll/{topic}?since=all HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, _headers, body = Reader(sock).response()
    assert status == 200, body
    messages: list[dict[str, object]] = json.loads(body)["messages"]
    return messages


def test_many_publishes_are_taken_from_bytes_and_lose_nothing(srv: InProcessServer) -> None:
    topic = "replay/many"
    with _connect(srv) as sock:
        reader = Reader(sock)
        _warm(srv, sock, reader, topic)
        before = _replayed(srv)
        ids = []
        for n in range(50):
            sock.sendall(publish(topic, b"%02d" % n))
            ids.append(_created(reader, topic)["id"])
        assert _replayed(srv) == before + 50
    assert ids == list(range(int(str(ids[0])), int(str(ids[0])) + 50))
    messages = poll_all(srv, topic)
    assert [m["payload"] for m in messages] == ["w0", "w1", "w2"] + [f"{n:02d}" for n in range(50)]
    assert {m["content_type"] for m in messages} == {"text/plain"}


def test_every_divergence_takes_the_full_parse(srv: InProcessServer) -> None:
    topic = "replay/diverge"
    with _connect(srv) as sock:
        reader = Reader(sock)
        _warm(srv, sock, reader, topic)
        before = _replayed(srv)
        sock.sendall(publish(topic, b"longer body"))  # another Content-Length: the same head
        _created(reader, topic)
        assert _replayed(srv) == before + 1
        diverging = [
            publish(topic, b"h1", "Accept: */*\r\n"),  # another header
            publish(topic + "?ttl=60", b"q1"),  # a query string
        ]
        for request in diverging:
            before = _replayed(srv)
            sock.sendall(request)
            _created(reader, topic)
            assert _replayed(srv) == before, request
        before = _replayed(srv)
        sock.sendall(publish(topic, b"p1") + publish(topic, b"p2"))  # two in one read
        _created(reader, topic)
        _created(reader, topic)
        assert _replayed(srv) == before
        # the plain head again, alone in its read: the connection keeps it (the diverging
        # requests above each left their own head, and the pair in one read none)
        sock.sendall(publish(topic, b"k1"))
        _created(reader, topic)
        request = publish(topic, b"s1")  # in two writes (perhaps one read: either way)
        sock.sendall(request[:20])
        sock.sendall(request[20:])
        _created(reader, topic)
        # a head split over two reads teaches nothing and takes nothing away: the head kept
        # is still the plain one, so the next publish is taken from bytes
        before = _replayed(srv)
        sock.sendall(publish(topic, b"r1"))
        _created(reader, topic)
        assert _replayed(srv) == before + 1
        sock.sendall(publish(topic, b"c1", "Connection: close\r\n"))  # not kept-alive
        status, headers, _ = reader.response()
        assert status == 201 and headers.get("connection") == "close"
        assert reader.closed()
        assert _replayed(srv) == before + 1
    payloads = [m["payload"] for m in poll_all(srv, topic)][3:]
    assert payloads == ["longer body", "h1", "q1", "p1", "p2", "k1", "s1", "r1", "c1"]


def test_a_head_the_parser_reads_differently_is_never_kept(srv: InProcessServer) -> None:
    """Heads that are not plainly `name: value` lines (no space after the colon, spaces
    around a value) are served by the full parse every time, never from bytes."""
    for n, extra in enumerate(["Accept:*/*\r\n", "Accept:  */*  \r\n"]):
        topic = f"replay/odd{n}"
        with _connect(srv) as sock:
            reader = Reader(sock)
            before = _replayed(srv)
            for body in (b"o0", b"o1", b"o2", b"o3"):
                sock.sendall(publish(topic, body, extra))
                _created(reader, topic)
            assert _replayed(srv) == before
        assert [m["payload"] for m in poll_all(srv, topic)] == ["o0", "o1", "o2", "o3"]


def test_an_acl_rule_and_a_new_user_apply_to_the_next_publish_from_bytes(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    topic = "replay/acl"
    with _connect(srv) as sock:
        reader = Reader(sock)
        _warm(srv, sock, reader, topic)
        rule = srv._run(auth.add_rule(AclRule("anonymous", None, "deny", "write", "replay/#")))
        sock.sendall(publish(topic, b"d1"))
        status, _, body = reader.response()
        assert status == 403, body
        assert json.loads(body)["error"]["code"] == "forbidden"
        assert rule.id is not None
        srv._run(auth.remove_rule(rule.id))
        # allowed again: the lane learns the connection's caller again, then from bytes
        sock.sendall(publish(topic, b"a1"))
        _created(reader, topic)
        before = _replayed(srv)
        sock.sendall(publish(topic, b"a2"))
        _created(reader, topic)
        assert _replayed(srv) == before + 1
        # anonymous is "auto": allowed from loopback only while there are no users
        srv._run(auth.add_user("erin", "a long enough password"))
        sock.sendall(publish(topic, b"u1"))
        status, _, body = reader.response()
        assert status == 401, body
        assert json.loads(body)["error"]["code"] == "unauthorized"
    assert [m["payload"] for m in poll_all_as(srv, topic)][3:] == ["a1", "a2"]


def poll_all_as(srv: InProcessServer, topic: str, user: str = "erin") -> list[dict[str, object]]:
    """`poll_all` with `user`'s credentials (anonymous is refused once a user exists)."""
    assert srv.server is not None and srv.server.http_address is not None
    basic = base64.b64encode(f"{user}:a long enough password".encode()).decode()
    with socket.create_connection(srv.server.http_address, timeout=10) as sock:
        sock.sendall(
            f"GET /v1/poll/{topic}?since=all HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Basic {basic}\r\n\r\n".encode()
        )
        status, _headers, body = Reader(sock).response()
    assert status == 200, body
    messages: list[dict[str, object]] = json.loads(body)["messages"]
    return messages


def test_on_sqlite_a_publish_from_bytes_is_answered_once_on_disk(tmp_path: Path) -> None:
    settings = {"memory": False, "data_dir": str(tmp_path)}
    topic = "replay/disk"
    server = InProcessServer(**settings).start()
    try:
        with _connect(server) as sock:
            reader = Reader(sock)
            _warm(server, sock, reader, topic)
            before = _replayed(server)
            for n in range(5):
                sock.sendall(publish(topic, b"m%d" % n))
                _created(reader, topic)
            assert _replayed(server) == before + 5
    finally:
        server.stop()
    again = InProcessServer(**settings).start()
    try:
        payloads = [m["payload"] for m in poll_all(again, topic)]
        assert payloads == ["w0", "w1", "w2", "m0", "m1", "m2", "m3", "m4"]
    finally:
        again.stop()


# -- a publisher with a Bearer token: on the lane, its token checked on every request ------


def _user_with_token(srv: InProcessServer, user: str = "tess") -> str:
    assert srv.server is not None
    auth = srv.server.auth
    srv._run(auth.add_user(user, "a long enough password"))
    token: str = srv._run(auth.create_token(user)).token
    return token


def _bearer(token: str) -> str:
    return f"Authorization: Bearer {token}\r\n"


def test_a_token_publisher_is_taken_from_bytes_and_checked_every_time(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    stats = srv.server.auth.stats
    token = _user_with_token(srv)
    topic = "replay/token"
    with _connect(srv) as sock:
        reader = Reader(sock)
        before_ok = srv.call(lambda: stats.logins_ok)
        before = _replayed(srv)
        for n in range(20):
            sock.sendall(publish(topic, b"%02d" % n, _bearer(token)))
            _created(reader, topic)
        # the first request is parsed (and learns the head), the others are from bytes
        assert _replayed(srv) == before + 19
        # the token is checked on every request: nothing is cached
        assert srv.call(lambda: stats.logins_ok) == before_ok + 20
        token_id = srv._run(srv.server.auth.list_tokens("tess"))[0].id
        srv._run(srv.server.auth.revoke_token(token_id))
        sock.sendall(publish(topic, b"rv", _bearer(token)))
        status, headers, body = reader.response()
        assert status == 401, body
        assert json.loads(body)["error"]["code"] == "unauthorized"
        assert "www-authenticate" in headers
    payloads = [m["payload"] for m in poll_all_as(srv, topic, "tess")]
    assert payloads == [f"{n:02d}" for n in range(20)]


def test_a_wrong_token_on_the_lane_costs_one_failed_login_per_request() -> None:
    server = InProcessServer(login_failures_burst=3).start()
    try:
        assert server.server is not None
        stats = server.server.auth.stats
        token = _user_with_token(server)
        wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        topic = "replay/wrong"
        with _connect(server) as sock:
            reader = Reader(sock)
            sock.sendall(publish(topic, b"ok", _bearer(token)))
            _created(reader, topic)
            failed = server.call(lambda: stats.logins_failed)
            statuses = []
            for _ in range(4):
                sock.sendall(publish(topic, b"no", _bearer(wrong)))
                status, _, body = reader.response()
                statuses.append((status, json.loads(body)["error"]["code"]))
            # a burst of 3 failures, then the 429: each request took one attempt
            assert statuses == [(401, "unauthorized")] * 3 + [(429, "rate_limited")]
            assert server.call(lambda: stats.logins_failed) == failed + 3
        assert [m["payload"] for m in poll_all_as(server, topic, "tess")] == ["ok"]
    finally:
        server.stop()


def test_the_acl_and_other_credentials_for_a_token_publisher(srv: InProcessServer) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    token = _user_with_token(srv)
    with _connect(srv) as sock:
        reader = Reader(sock)
        srv._run(auth.add_rule(AclRule("user", "tess", "allow", "readwrite", "replay/#")))
        rule = srv._run(auth.add_rule(AclRule("user", "tess", "deny", "write", "replay/no/#")))
        for _ in range(3):  # parsed, then from bytes: the same answer
            sock.sendall(publish("replay/no/x", b"d1", _bearer(token)))
            status, _, body = reader.response()
            assert status == 403, body
            assert json.loads(body)["error"]["code"] == "forbidden"
        sock.sendall(publish("replay/no/x", b"d1", _bearer(token) + "X-Other: 1\r\n"))
        assert reader.response()[0] == 403  # the long way agrees
        assert rule.id is not None
        sock.sendall(
            publish(
                "replay/ok", b"b1", "Authorization: Basic dGVzczphIGxvbmcgZW5vdWdoIHBhc3N3b3Jk\r\n"
            )
        )
        _created(reader, "replay/ok")  # Basic goes the long way
        sock.sendall(publish("replay/ok", b"t1", _bearer(token) + _bearer(token)))
        status, _, body = reader.response()
        assert status == 400, body  # credentials twice: the long way's 400
        sock.sendall(publish("replay/ok", b"t2", "Authorization: Bearer\r\n"))
        assert reader.response()[0] == 401
    assert [m["payload"] for m in poll_all_as(srv, "replay/ok", "tess")] == ["b1"]
