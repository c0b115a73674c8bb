"""The raw publish's hot path on the owned protocol. What it caches on a kept-alive
connection (http/auth.py `CallerCache`, the per-topic ACL answers, the checked topics) never
outlives a change: a user created, an ACL rule added or removed takes effect on the very
next request of the same connection. Which requests it serves itself (the server's own
`Origin`) and which it leaves to the app (other origins, CORS, proxies)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import Reader, connect, publish_request
from pushwire.core.acl import AclRule

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def _publish(sock: socket.socket, reader: Reader, topic: str) -> tuple[int, dict[str, object]]:
    sock.sendall(publish_request(topic, b"hi"))
    status, _headers, body = reader.response()
    return status, json.loads(body)


def test_an_anonymous_caller_is_asked_again_once_users_exist(srv: InProcessServer) -> None:
    assert srv.server is not None
    server = srv.server
    with connect(srv) as sock:
        reader = Reader(sock)
        for _ in range(2):  # the second answer comes from the connection's cache
            status, body = _publish(sock, reader, "cache/a")
            assert status == 201, body
        # anonymous is "auto": allowed from loopback only while there are no users
        srv._run(server.auth.add_user("carol", "a long enough password"))
        status, body = _publish(sock, reader, "cache/a")
        assert status == 401, body
        assert body["error"]["code"] == "unauthorized"  # type: ignore[index]


def test_an_acl_rule_change_applies_to_the_next_request(srv: InProcessServer) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    with connect(srv) as sock:
        reader = Reader(sock)
        for _ in range(2):
            status, body = _publish(sock, reader, "cache/b")
            assert status == 201, body
        rule = srv._run(auth.add_rule(AclRule("anonymous", None, "deny", "write", "cache/#")))
        status, body = _publish(sock, reader, "cache/b")
        assert status == 403, body
        assert body["error"]["code"] == "forbidden"  # type: ignore[index]
        assert rule.id is not None
        srv._run(auth.remove_rule(rule.id))
        status, body = _publish(sock, reader, "cache/b")
        assert status == 201, body


def test_the_prebuilt_reply_is_the_documented_json(srv: InProcessServer) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(publish_request("cache/%C3%A9t%C3%A9", b"hi"))
        status, headers, raw = reader.response()
    assert status == 201
    assert headers["content-type"] == "application/json"
    body = json.loads(raw)
    assert set(body) == {"id", "topic", "epoch", "time", "cursor", "stored"}
    assert body["topic"] == "cache/été"
    assert body["cursor"] == f"{body['epoch']}:{body['id']}"
    assert body["stored"] is True
    assert isinstance(body["time"], float)
    # the same bytes as the generic JSON renderer (compact, UTF-8, not \u-escaped)
    assert raw == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _served(srv: InProcessServer) -> tuple[int, int]:
    """(requests answered from bytes, requests passed to the ASGI app)."""
    assert srv.server is not None and srv.server._http is not None
    http = srv.server._http
    return srv.call(lambda: (http.served_owned, http.served_asgi))


def _origin_publish(origin: str, host: str = "x") -> bytes:
    body = b"hi"
    return (
        f"POST /v1/publish/cache/o HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_a_publish_from_the_servers_own_origin_stays_on_the_owned_protocol(
    srv: InProcessServer,
) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        owned, asgi = _served(srv)
        sock.sendall(_origin_publish("HTTP://X/"))  # normalized: scheme and host, any case
        status, _, body = reader.response()
        assert status == 201, body
        assert _served(srv) == (owned + 1, asgi)
        # another origin: the app's Origin check refuses it, as before
        sock.sendall(_origin_publish("http://evil.example"))
        status, _, body = reader.response()
        assert status == 403, body
        assert json.loads(body)["error"]["code"] == "forbidden_origin"
        assert _served(srv) == (owned + 1, asgi + 1)


def test_a_publish_through_a_proxy_stays_on_the_owned_protocol(srv: InProcessServer) -> None:
    """The trusted proxy's client is applied natively (http/forwarded.py), and the
    connection's cached anonymous caller (the proxy's own, from loopback) is not reused for
    the client it names."""
    with connect(srv) as sock:
        reader = Reader(sock)
        status, _ = _publish(sock, reader, "cache/p")  # the proxy itself: cached anonymous
        assert status == 201
        owned, asgi = _served(srv)
        sock.sendall(publish_request("cache/p", b"hi", b"X-Forwarded-For: 10.1.2.3\r\n"))
        status, _, body = reader.response()
        # the trusted loopback proxy's client is 10.1.2.3: no anonymous access from there
        assert status == 401, body
        assert _served(srv) == (owned + 1, asgi)


def test_with_cors_origins_a_browser_publish_goes_to_the_app() -> None:
    server = InProcessServer(cors_origins=["http://app.example"]).start()
    try:
        with connect(server) as sock:
            reader = Reader(sock)
            owned, asgi = _served(server)
            sock.sendall(_origin_publish("http://app.example"))
            status, headers, body = reader.response()
            assert status == 201, body
            assert headers["access-control-allow-origin"] == "http://app.example"
            assert _served(server) == (owned, asgi + 1)
    finally:
        server.stop()
