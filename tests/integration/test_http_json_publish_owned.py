"""`POST /v1/publish` (JSON, single and batch) and requests through a reverse proxy
(`X-Forwarded-For`) served by the owned protocol (http/connection.py), not the ASGI app.

Every answer is the one the FastAPI route gave (status and JSON body, checked against that
route before it moved: the same assertions pass there); what is new is where it is served,
read from the listener's counters (`served_owned` / `served_asgi`), so a broken native path
fails here. The client address a trusted proxy names is the one auth (anonymous loopback)
and the per-client publish rate see; an untrusted peer's `X-Forwarded-For` is ignored."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.inproc import InProcessServer, running

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


def start(**settings: Any) -> InProcessServer:
    return InProcessServer(**settings).start()


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(
        InProcessServer(
            anonymous="on",
            json_max_depth=8,
            http_max_payload=1024,
            acl=[
                {"all": True, "access": "allow", "permission": "readwrite", "filter": "#"},
                {"all": True, "access": "deny", "permission": "write", "filter": "closed/#"},
            ],
        )
    )


def base(srv: InProcessServer) -> str:
    assert srv.server is not None and srv.server.http_address is not None
    return f"http://127.0.0.1:{srv.server.http_address[1]}"


def served(srv: InProcessServer) -> tuple[int, int]:
    """(requests answered by the owned protocol, requests passed to the ASGI app)."""

    def read() -> tuple[int, int]:
        assert srv.server is not None
        http = srv.server._http
        assert http is not None
        return http.served_owned, http.served_asgi

    return srv.call(read)


def test_single_and_batch_are_served_from_bytes(srv: InProcessServer) -> None:
    with httpx.Client(base_url=base(srv)) as client:
        before = served(srv)
        one = client.post("/v1/publish", json={"topic": "a/b", "payload": "hi", "qos": 1})
        batch = client.post(
            "/v1/publish",
            json=[{"topic": "a/1", "payload": "x"}, {"topic": "a/2", "payload_base64": "AAE="}],
        )
        after = served(srv)
        polled = client.get("/v1/poll/a/%23")
    assert one.status_code == 201, one.text
    body = one.json()
    assert body["topic"] == "a/b" and body["stored"] is True
    assert body["cursor"] == f"{body['epoch']}:{body['id']}"
    assert batch.status_code == 201, batch.text
    results = batch.json()
    assert [r["topic"] for r in results] == ["a/1", "a/2"]
    assert results[1]["id"] == results[0]["id"] + 1
    assert polled.status_code == 200
    assert [m["topic"] for m in polled.json()["messages"]] == ["a/b", "a/1", "a/2"]
    # both publishes answered by the owned protocol, none by the app
    assert after[0] - before[0] == 2 and after[1] == before[1]


DEEP = ("[" * 20 + "]" * 20).encode()

# (body, content type, status, error code, message): the FastAPI route's answers
ERRORS: list[tuple[bytes, str, int, str, str | None]] = [
    (b"{nope", "application/json", 400, "bad_request", None),
    (
        b'{"topic": "a"}',
        "text/plain",
        415,
        "unsupported_media_type",
        "POST /v1/publish takes application/json; to publish a raw body use "
        "POST /v1/publish/{topic}",
    ),
    (DEEP, "application/json", 400, "bad_request", None),
    (b"[]", "application/json", 400, "bad_request", "empty batch"),
    (b'{"payload": "x"}', "application/json", 400, "bad_request", "topic: Field required"),
    (
        b'{"topic": "closed/x", "payload": "x"}',
        "application/json",
        403,
        "forbidden",
        None,
    ),
    (
        b'[{"topic": "a"}, {"topic": "closed/x"}]',
        "application/json",
        403,
        "forbidden",
        None,
    ),
    (b'{"topic": "a/+"}', "application/json", 400, "bad_topic", None),
    (
        json.dumps({"topic": "a", "payload": "x" * 2000}).encode(),
        "application/json",
        413,
        "payload_too_large",
        "payload of 2000 bytes is over 1024 bytes",
    ),
]


@pytest.mark.parametrize(("body", "ctype", "status", "code", "message"), ERRORS)
def test_errors_are_the_routes_json_errors(
    srv: InProcessServer, body: bytes, ctype: str, status: int, code: str, message: str | None
) -> None:
    with httpx.Client(base_url=base(srv)) as client:
        before = served(srv)
        response = client.post("/v1/publish", content=body, headers={"content-type": ctype})
        after = served(srv)
        nothing = client.get("/v1/poll/%23")
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if message is not None:
        assert error["message"] == message
    if code == "forbidden":
        assert "closed/x" in error["message"]
        if body.startswith(b"["):
            assert error["message"].startswith("message 1: ")
    assert nothing.json()["messages"] == []  # nothing of an invalid request was published
    assert after[0] - before[0] == 1 and after[1] == before[1]


def test_too_deep_says_so(srv: InProcessServer) -> None:
    with httpx.Client(base_url=base(srv)) as client:
        response = client.post(
            "/v1/publish", content=DEEP, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert "deep" in response.json()["error"]["message"]


def test_over_the_body_limit_is_413_before_the_body(srv: InProcessServer) -> None:
    """The declared length alone is refused (the body is never sent), and the connection
    closes: the rest of that body would not be read."""
    assert srv.server is not None and srv.server.http_address is not None
    limit = 4 * 1024 + 65536  # json_body_limit(http_max_payload=1024)
    with socket.create_connection(("127.0.0.1", srv.server.http_address[1]), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (limit + 1)
        )
        reply = sock.makefile("rb").read()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {
        "error": {
            "code": "payload_too_large",
            "message": f"payload of {limit + 1} bytes is over {limit} bytes",
        }
    }


def test_batch_over_the_batch_limit() -> None:
    server = start(anonymous="on", http_max_batch=2)
    try:
        with httpx.Client(base_url=base(server)) as client:
            response = client.post("/v1/publish", json=[{"topic": "a"}] * 3)
        assert response.status_code == 413
        assert response.json() == {
            "error": {"code": "payload_too_large", "message": "batch of 3 messages is over 2"}
        }
    finally:
        server.stop()


def test_the_app_and_the_owned_protocol_answer_alike() -> None:
    """A request from a configured CORS origin still goes through the ASGI app (its CORS
    headers): the same handler answers there, with the same bodies."""
    server = start(anonymous="on", cors_origins=["http://app.example"])
    try:
        bad = b'{"topic": "a", "qos": 7}'
        with httpx.Client(base_url=base(server)) as client:
            before = served(server)
            native = client.post("/v1/publish", content=bad, headers={"content-type": "a/json"})
            app = client.post(
                "/v1/publish",
                content=bad,
                headers={"content-type": "a/json", "origin": "http://app.example"},
            )
            mid = served(server)
            native_ok = client.post("/v1/publish", json={"topic": "a"})
            app_ok = client.post(
                "/v1/publish", json={"topic": "a"}, headers={"origin": "http://app.example"}
            )
        assert native.status_code == app.status_code == 415
        assert native.json() == app.json()
        assert mid[0] - before[0] == 1 and mid[1] - before[1] == 1
        assert native_ok.status_code == app_ok.status_code == 201
        assert app_ok.json()["id"] == native_ok.json()["id"] + 1
        assert app_ok.headers["access-control-allow-origin"] == "http://app.example"
    finally:
        server.stop()


# -- X-Forwarded-For --------------------------------------------------------------------------


def test_a_trusted_proxys_client_is_the_forwarded_address() -> None:
    """From the trusted proxy (127.0.0.1, the default), the forwarded client is the one
    auth sees: anonymous access is for loopback only (`anonymous=auto`), so a client the
    proxy names from elsewhere is refused, and one it names as loopback is admitted; on the
    owned protocol."""
    server = start()
    try:
        with httpx.Client(base_url=base(server)) as client:
            before = served(server)
            outside = client.post(
                "/v1/publish/t", content=b"x", headers={"x-forwarded-for": "203.0.113.7"}
            )
            inside = client.post(
                "/v1/publish",
                json={"topic": "t"},
                headers={"x-forwarded-for": "127.0.0.9, 127.0.0.1"},
            )
            after = served(server)
        assert outside.status_code == 401
        assert outside.json()["error"]["code"] == "unauthorized"
        assert inside.status_code == 201, inside.text
        assert after[0] - before[0] == 2 and after[1] == before[1]
    finally:
        server.stop()


def test_the_per_client_rate_counts_the_forwarded_address() -> None:
    """One proxy connection, two clients behind it: each has its own publish budget (the
    first one's second publish is refused; the second client's first is not)."""
    server = start(anonymous="on", publish_rate_per_client=0.5)
    try:
        with httpx.Client(base_url=base(server)) as client:
            first = {"x-forwarded-for": "203.0.113.1"}
            second = {"x-forwarded-for": "198.51.100.2"}
            before = served(server)
            ok = client.post("/v1/publish", json={"topic": "t"}, headers=first)
            limited = client.post("/v1/publish/t", content=b"x", headers=first)
            other = client.post("/v1/publish", json={"topic": "t"}, headers=second)
            after = served(server)
        assert ok.status_code == 201, ok.text
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert other.status_code == 201, other.text
        assert after[0] - before[0] == 3 and after[1] == before[1]
    finally:
        server.stop()


def test_an_untrusted_peers_forwarded_for_is_ignored() -> None:
    """127.0.0.1 is not a trusted proxy here: its `X-Forwarded-For` changes nothing. The
    peer (loopback) is admitted anonymously, and both "clients" share its rate budget."""
    server = start(forwarded_allow_ips="10.9.9.9", publish_rate_per_client=0.5)
    try:
        with httpx.Client(base_url=base(server)) as client:
            before = served(server)
            admitted = client.post(
                "/v1/publish", json={"topic": "t"}, headers={"x-forwarded-for": "203.0.113.1"}
            )
            shared = client.post(
                "/v1/publish", json={"topic": "t"}, headers={"x-forwarded-for": "198.51.100.2"}
            )
            after = served(server)
        assert admitted.status_code == 201, admitted.text
        assert shared.status_code == 429
        assert after[0] - before[0] == 2 and after[1] == before[1]
    finally:
        server.stop()


def test_on_sqlite_the_reply_comes_once_the_messages_are_committed(tmp_path: Path) -> None:
    """Write before ack: when the 201 of a batch arrives, another SQLite connection already
    reads every message of it (committed, not only queued for the store thread)."""
    server = start(memory=False, data_dir=str(tmp_path), anonymous="on")
    try:
        with httpx.Client(base_url=base(server)) as client:
            before = served(server)
            for round_ in range(5):
                batch = [{"topic": "disk/j", "payload": f"{round_}-{i}"} for i in range(3)]
                response = client.post("/v1/publish", json=batch)
                assert response.status_code == 201, response.text
                ids = [r["id"] for r in response.json()]
                with sqlite3.connect(tmp_path / "pushwire.db") as db:
                    rows = db.execute(
                        "SELECT payload FROM log WHERE id IN (?, ?, ?) ORDER BY id", ids
                    ).fetchall()
                assert [bytes(r[0]).decode() for r in rows] == [m["payload"] for m in batch]
            assert served(server)[0] - before[0] == 5
    finally:
        server.stop()


def test_a_poll_through_a_trusted_proxy_stays_on_the_owned_protocol() -> None:
    server = start(anonymous="on")
    try:
        with httpx.Client(base_url=base(server)) as client:
            assert client.post("/v1/publish", json={"topic": "p/x", "payload": "m"}).is_success
            before = served(server)
            polled = client.get("/v1/poll/p/x", headers={"x-forwarded-for": "203.0.113.9"})
            after = served(server)
        assert polled.status_code == 200
        assert [m["payload"] for m in polled.json()["messages"]] == ["m"]
        assert after[0] - before[0] == 1 and after[1] == before[1]
    finally:
        server.stop()
