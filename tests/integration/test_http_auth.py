"""Identities, tokens and topic ACLs on the HTTP doors: publish (raw, JSON, batch), poll,
long-poll, SSE and the JSON WebSocket, driven the way an operator does it (the
`pushwire user/token/acl` CLI against the running server's data dir) and used with real
clients (httpx, httpx-sse, websockets). Also: failed-login rate limiting, the request-head
(slowloris) guard, the WebSocket message size limit, and HTTPS/WSS with credentials.

The setup shared by most tests (module scope):

    alice  role auditor   may read users/# (the auditor rule) but not users/bob/# (a deny)
    bob                   only his own tree, users/bob/#
    root   role admin     readwrite everything (and the admin API)

    rules: all     allow readwrite users/%u/#
           auditor allow read      users/#
           alice   deny  read      users/bob/#
           admin   allow readwrite #
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from helpers.admin import cli
from helpers.certs import make_certs
from helpers.jsonws import recv, request
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("pushwire users, tokens and ACLs on HTTP")

WWW_AUTH = 'Bearer realm="pushwire", Basic realm="pushwire"'
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "root": "root-secret"}


def basic(user: str, password: str | None = None) -> dict[str, str]:
    secret = PASSWORDS[user] if password is None else password
    raw = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Secured:
    srv: ServerProcess
    data_dir: Path
    url: str
    ws: str
    alice_token: str

    def new_token(self, user: str, *extra: str) -> tuple[str, str]:
        """A token made with the CLI, once the running server accepts it: (token, id)."""
        created = json.loads(
            cli(self.data_dir, "token", "create", "--user", user, "--json", *extra)
        )
        token = created["token"]
        deadline = time.monotonic() + 10
        while httpx.get(f"{self.url}/metrics", headers=bearer(token)).status_code != 200:
            assert time.monotonic() < deadline, "the server did not pick up the new token"
            time.sleep(0.1)
        return token, created["id"]

    def publish(self, topic: str, payload: str, user: str = "root") -> httpx.Response:
        return httpx.post(f"{self.url}/v1/publish/{topic}", content=payload, headers=basic(user))


def _start(base: Path, *extra: str, users: dict[str, list[str]] | None = None) -> ServerProcess:
    srv = ServerProcess(
        base / "data", base / "logs", kind="pushwire", sys_interval=0, extra_args=list(extra)
    )
    for name, roles in (users or {}).items():
        role_args = [a for r in roles for a in ("--role", r)]
        cli(
            srv.data_dir, "user", "add", name, *role_args, "--password-stdin", stdin=PASSWORDS[name]
        )
    return srv.start()


def start_with_fan_acl(base: Path) -> ServerProcess:
    """A server with users alice and root (role admin) and the fan-out tests' rules: admin
    reads and writes everything, alice reads fan/# but not fan/secret/#. Set through the
    admin API, so they apply at once (no store watch to wait for)."""
    srv = _start(base, users={"alice": [], "root": ["admin"]})
    try:
        admin = f"http://{srv.host}:{srv.http_port}/v1/admin/acl"
        for rule in (
            {"role": "admin", "access": "allow", "permission": "readwrite", "filter": "#"},
            {"user": "alice", "access": "allow", "permission": "read", "filter": "fan/#"},
            {"user": "alice", "access": "deny", "permission": "read", "filter": "fan/secret/#"},
        ):
            assert httpx.post(admin, json=rule, headers=basic("root")).status_code == 201
    except BaseException:
        srv.cleanup()
        raise
    return srv


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    base = tmp_path_factory.mktemp("http-auth")
    # a generous failed-login budget: the tests below make a few failed logins on purpose
    srv = _start(
        base,
        "--login-failures-burst",
        "1000",
        users={"alice": ["auditor"], "bob": [], "root": ["admin"]},
    )
    try:
        d = srv.data_dir
        cli(d, "acl", "add", "--all", "--allow", "readwrite", "users/%u/#")
        cli(d, "acl", "add", "--role", "auditor", "--allow", "read", "users/#")
        cli(d, "acl", "add", "--user", "alice", "--deny", "read", "users/bob/#")
        cli(d, "acl", "add", "--role", "admin", "--allow", "readwrite", "#")
        assert srv.http_port is not None
        url = f"http://{srv.host}:{srv.http_port}"
        state = Secured(srv, d, url, f"ws://{srv.host}:{srv.http_port}/v1/ws", "")
        state.alice_token, _ = state.new_token("alice")  # also waits for the rules above
        yield state
    finally:
        srv.cleanup()


def error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str)
    return message


def no_secrets(text: str) -> None:
    for secret in PASSWORDS.values():
        assert secret not in text


async def closed_with(ws: ClientConnection, timeout: float = 5.0) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    rcvd = info.value.rcvd
    assert rcvd is not None, "closed without a close frame"
    return rcvd.code, rcvd.reason


# -- no credentials, bad credentials, the three ways to give them ----------------------------


READ_PATHS = ["/v1/poll/users/bob/%23", "/v1/longpoll/users/bob/%23?timeout=0"]


@pytest.mark.parametrize(
    ("method", "path", "kw"),
    [
        ("POST", "/v1/publish/users/bob/x", {"content": b"hi"}),
        ("POST", "/v1/publish", {"json": {"topic": "users/bob/x", "payload": "hi"}}),
        ("GET", "/v1/poll/users/bob/%23", {}),
        ("GET", "/v1/longpoll/users/bob/%23?timeout=0", {}),
        ("GET", "/v1/sse/users/bob/%23", {}),
        ("GET", "/metrics", {}),
        ("GET", "/v1/admin/users", {}),
    ],
)
def test_unauthenticated_requests_are_refused_with_401(
    secured: Secured, method: str, path: str, kw: dict[str, Any]
) -> None:
    # users exist and anonymous is "auto": no credentials, no entry, even from loopback
    r = httpx.request(method, secured.url + path, **kw)
    error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"] == WWW_AUTH


def test_bad_credentials_are_refused_and_never_echoed(secured: Secured) -> None:
    url = f"{secured.url}/v1/poll/users/bob/%23"
    for headers in (
        basic("bob", "wrong-password"),
        basic("nobody", "bob-secret"),
        bearer("pw_000000000000_" + "A" * 43),
        bearer("not-a-token"),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Digest username=bob"},
        {"Authorization": "Bearer"},
    ):
        r = httpx.get(url, headers=headers)
        error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"] == WWW_AUTH
        no_secrets(r.text)
    assert "no-colon" not in r.text
    r = httpx.get(url, params={"auth": "bob-secret"})
    error(r, 401, "unauthorized")
    no_secrets(r.text)
    no_secrets(secured.srv.output())  # the failures are logged, the credentials are not


def test_bearer_basic_and_query_token_all_work(secured: Secured) -> None:
    tok = secured.alice_token
    assert secured.publish("users/alice/creds", "c").status_code == 201
    for kw in (
        {"headers": basic("alice")},
        {"headers": bearer(tok)},
        {"params": {"auth": tok}},
        {"headers": basic("", tok)},  # HTTP Basic with an empty name and a token
    ):
        r = httpx.get(f"{secured.url}/v1/poll/users/alice/creds", **kw)  # type: ignore[arg-type]
        assert r.status_code == 200, (kw, r.text)
        assert [m["payload"] for m in r.json()["messages"]] == ["c"]
    # ?auth= is for the URLs browsers cannot add headers to: not for publishing
    r = httpx.post(f"{secured.url}/v1/publish/users/alice/x", params={"auth": tok}, content=b"x")
    assert "?auth=" in error(r, 400, "bad_request")
    # credentials twice are ambiguous
    r = httpx.get(
        f"{secured.url}/v1/poll/users/alice/creds", params={"auth": tok}, headers=basic("bob")
    )
    error(r, 400, "bad_request")


# -- topic ACLs: publish --------------------------------------------------------------------


def test_users_cannot_write_each_others_topics(secured: Secured) -> None:
    url = secured.url
    r = httpx.post(f"{url}/v1/publish/users/alice/inbox", content=b"x", headers=basic("bob"))
    message = error(r, 403, "forbidden")
    assert "users/alice/inbox" in message
    r = httpx.put(f"{url}/v1/publish/users/bob/inbox", content=b"x", headers=basic("alice"))
    error(r, 403, "forbidden")
    r = httpx.post(
        f"{url}/v1/publish",
        json={"topic": "users/alice/inbox", "payload": "x"},
        headers=bearer(secured.alice_token),
    )
    assert r.status_code == 201, r.text
    # $SYS is nobody's to write, admins included
    r = httpx.post(f"{url}/v1/publish/$SYS/x", content=b"x", headers=basic("root"))
    error(r, 403, "forbidden")


def test_a_batch_with_one_denied_topic_is_refused_whole(secured: Secured) -> None:
    url = secured.url
    batch = [
        {"topic": "users/bob/batch", "payload": "mine"},
        {"topic": "users/alice/batch", "payload": "not mine"},
    ]
    r = httpx.post(f"{url}/v1/publish", json=batch, headers=basic("bob"))
    message = error(r, 403, "forbidden")
    assert message.startswith("message 1:") and "users/alice/batch" in message
    # nothing of it was published, not even the allowed first message
    r = httpx.get(f"{url}/v1/poll/users/bob/batch", headers=basic("bob"))
    assert r.json()["messages"] == []
    r = httpx.post(f"{url}/v1/publish", json=batch[:1], headers=basic("bob"))
    assert r.status_code == 201 and len(r.json()) == 1


# -- topic ACLs: reading ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/poll/users/alice/%23", "/v1/longpoll/users/alice/%23", "/v1/sse/users/alice/%23"]
)
def test_users_cannot_read_each_others_topics(secured: Secured, path: str) -> None:
    r = httpx.get(secured.url + path, headers=basic("bob"), timeout=5)
    message = error(r, 403, "forbidden")
    assert "users/alice/#" in message
    # alice is an auditor (reads users/#) but bob's tree is denied to her in particular
    bob_path = path.replace("alice", "bob")
    error(httpx.get(secured.url + bob_path, headers=basic("alice"), timeout=5), 403, "forbidden")
    # and nobody but admins reads $SYS
    sys_path = path.replace("users/alice/%23", "%24SYS/%23")
    error(httpx.get(secured.url + sys_path, headers=basic("alice"), timeout=5), 403, "forbidden")


def test_a_wildcard_poll_never_contains_denied_topics(secured: Secured) -> None:
    for topic in ("users/carol/w1", "users/bob/w1", "users/alice/w1", "users/bob/w2"):
        assert secured.publish(topic, topic).status_code == 201
    r = httpx.get(f"{secured.url}/v1/poll/users/%23", headers=basic("alice"))
    assert r.status_code == 200, r.text
    topics = [m["topic"] for m in r.json()["messages"]]
    assert "users/carol/w1" in topics and "users/alice/w1" in topics
    assert not [t for t in topics if t.startswith("users/bob/")]
    # page by page (limit=1): pages made only of denied messages are read past, nothing
    # denied leaks
    seen: list[str] = []
    cursor = "all"
    for _ in range(50):
        r = httpx.get(
            f"{secured.url}/v1/poll/users/%23",
            params={"since": cursor, "limit": "1"},
            headers=basic("alice"),
        )
        body = r.json()
        seen += [m["topic"] for m in body["messages"]]
        cursor = body["cursor"]
        if not body["more"]:
            break
    assert "users/carol/w1" in seen and not [t for t in seen if t.startswith("users/bob/")]
    # the admin sees bob's messages on the same filter
    r = httpx.get(f"{secured.url}/v1/poll/users/%23", headers=basic("root"))
    assert "users/bob/w2" in [m["topic"] for m in r.json()["messages"]]


async def test_a_wildcard_longpoll_is_not_answered_with_denied_topics(secured: Secured) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as client:
        r = await client.get("/v1/poll/users/%23?since=latest", headers=basic("alice"))
        cursor = r.json()["cursor"]
        held = asyncio.ensure_future(
            client.get(
                "/v1/longpoll/users/%23",
                params={"since": cursor, "timeout": "8"},
                headers=basic("alice"),
            )
        )
        await _until_waiters(client, 1)
        r = await client.post("/v1/publish/users/bob/lp", content=b"bob's", headers=basic("root"))
        assert r.status_code == 201
        await asyncio.sleep(0.2)
        assert not held.done(), "woken and answered with a message alice may not receive"
        await client.post("/v1/publish/users/carol/lp", content=b"carol's", headers=basic("root"))
        reply = await asyncio.wait_for(held, 5)
    assert reply.status_code == 200
    assert [m["topic"] for m in reply.json()["messages"]] == ["users/carol/lp"]


async def _until_waiters(client: httpx.AsyncClient, n: int) -> None:
    for _ in range(100):
        text = (await client.get("/metrics", headers=basic("root"))).text
        if f"pushwire_longpoll_waiters {n}.0\n" in text:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {n} long-poll waiter(s)")


async def test_a_wildcard_sse_stream_never_carries_denied_topics(secured: Secured) -> None:
    assert secured.publish("users/bob/sse0", "old bob").status_code == 201
    async with (
        httpx.AsyncClient(base_url=secured.url, timeout=10) as client,
        aconnect_sse(
            client, "GET", "/v1/sse/users/%23?since=all", headers=basic("alice")
        ) as events,
    ):
        assert events.response.status_code == 200
        for topic in ("users/bob/sse1", "users/carol/sse1", "users/bob/sse2", "users/carol/end"):
            await client.post(f"/v1/publish/{topic}", content=topic.encode(), headers=basic("root"))
        topics: list[str] = []
        async with asyncio.timeout(5):
            async for event in events.aiter_sse():
                if event.event == "message":
                    topics.append(json.loads(event.data)["topic"])
                if topics and topics[-1] == "users/carol/end":
                    break
    assert "users/carol/sse1" in topics
    assert not [t for t in topics if t.startswith("users/bob/")], topics


# -- the JSON WebSocket -----------------------------------------------------------------------


async def test_websocket_handshake_credentials(secured: Secured) -> None:
    for kw in (
        {"additional_headers": basic("bob", "nope")},
        {"additional_headers": bearer("pw_000000000000_" + "A" * 43)},
    ):
        with pytest.raises(InvalidStatus) as info:
            async with connect(secured.ws, **kw):  # type: ignore[arg-type]
                pass
        response = info.value.response
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == WWW_AUTH
        assert json.loads(response.body or b"{}")["error"]["code"] == "unauthorized"
    for kw in (
        {"additional_headers": basic("alice")},
        {"additional_headers": bearer(secured.alice_token)},
    ):
        async with connect(secured.ws, **kw) as ws:  # type: ignore[arg-type]
            assert (await request(ws, {"type": "ping"}))["type"] == "pong"
    async with connect(f"{secured.ws}?auth={secured.alice_token}") as ws:
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_websocket_without_credentials_must_authenticate_first(secured: Secured) -> None:
    async with connect(secured.ws) as ws:  # accepted, but only an auth frame is
        await ws.send(json.dumps({"type": "subscribe", "sub": "s", "filter": "users/bob/#"}))
        code, reason = await closed_with(ws)
    assert code == 4401 and "auth" in reason
    async with connect(secured.ws) as ws:
        await ws.send(json.dumps({"type": "auth", "username": "bob", "password": "nope"}))
        code, _ = await closed_with(ws)
    assert code == 4401
    async with connect(secured.ws) as ws:
        r = await request(ws, {"type": "auth", "token": secured.alice_token, "ref": 1})
        assert r == {"type": "authenticated", "user": "alice", "ref": 1}
        r = await request(ws, {"type": "subscribe", "sub": "s", "filter": "users/alice/#"})
        assert r["type"] == "subscribed"
        # once only
        r = await request(ws, {"type": "auth", "token": secured.alice_token})
        assert r["type"] == "error" and r["code"] == "bad_request"


async def test_websocket_acl_on_subscribe_publish_and_delivery(secured: Secured) -> None:
    async with connect(secured.ws, additional_headers=basic("alice")) as ws:
        r = await request(ws, {"type": "subscribe", "sub": "b", "filter": "users/bob/#", "ref": 1})
        assert r["type"] == "error" and r["code"] == "forbidden" and r["ref"] == 1
        assert "users/bob/#" in r["message"]
        r = await request(ws, {"type": "publish", "topic": "users/bob/x", "payload": "x"})
        assert r["type"] == "error" and r["code"] == "forbidden"
        r = await request(ws, {"type": "publish", "topic": "users/alice/ws", "payload": "mine"})
        assert r["type"] == "published"
        r = await request(ws, {"type": "subscribe", "sub": "all", "filter": "users/#"})
        assert r["type"] == "subscribed"
        for topic in ("users/bob/ws1", "users/carol/ws1", "users/bob/ws2", "users/carol/ws2"):
            assert secured.publish(topic, topic).status_code == 201
        got = [await recv(ws), await recv(ws)]
        assert [f["topic"] for f in got] == ["users/carol/ws1", "users/carol/ws2"]
    async with connect(secured.ws, additional_headers=basic("bob")) as ws:
        r = await request(ws, {"type": "subscribe", "sub": "a", "filter": "users/alice/#"})
        assert r["type"] == "error" and r["code"] == "forbidden"
        r = await request(ws, {"type": "subscribe", "sub": "s", "filter": "$SYS/#"})
        assert r["type"] == "error" and r["code"] == "forbidden"


# -- revocation -------------------------------------------------------------------------------


async def test_revoked_token_is_refused_and_its_live_readers_end(secured: Secured) -> None:
    token, token_id = secured.new_token("bob")
    async with (
        httpx.AsyncClient(base_url=secured.url, timeout=10) as client,
        aconnect_sse(client, "GET", "/v1/sse/users/bob/%23", params={"auth": token}) as events,
        connect(secured.ws, additional_headers=bearer(token)) as ws,
    ):
        assert events.response.status_code == 200
        r = await request(ws, {"type": "subscribe", "sub": "s", "filter": "users/bob/#"})
        assert r["type"] == "subscribed"
        held = asyncio.ensure_future(
            client.get(
                "/v1/longpoll/users/bob/%23", params={"timeout": "20"}, headers=bearer(token)
            )
        )
        await _until_waiters(client, 1)
        await asyncio.to_thread(cli, secured.data_dir, "token", "revoke", token_id)
        # the server notices within about a second and ends all three
        reply = await asyncio.wait_for(held, 10)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthorized"
        code, _ = await closed_with(ws, 10)
        assert code == 4403
        closing: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            async for event in events.aiter_sse():
                if event.event == "close":
                    closing.append(json.loads(event.data))
        assert [c["reason"] for c in closing] == ["revoked"]  # ... and then the stream ended
    for refused in (
        httpx.get(f"{secured.url}/v1/poll/users/bob/%23", headers=bearer(token)),
        httpx.get(f"{secured.url}/v1/sse/users/bob/%23", params={"auth": token}),
        httpx.post(f"{secured.url}/v1/publish/users/bob/x", content=b"x", headers=bearer(token)),
    ):
        error(refused, 401, "unauthorized")
    with pytest.raises(InvalidStatus) as info:
        async with connect(secured.ws, additional_headers=bearer(token)):
            pass
    assert info.value.response.status_code == 401
    assert token not in secured.srv.output()


# -- failed-login rate limit ------------------------------------------------------------------


async def test_failed_logins_lock_only_that_username(tmp_path: Path) -> None:
    # Every client here is 127.0.0.1, as behind a reverse proxy: bob's failures lock bob
    # (even with his correct password) but not alice, and not tokens.
    srv = _start(tmp_path, "--login-failures-burst", "3", users={"bob": [], "alice": []})
    try:
        url = f"http://{srv.host}:{srv.http_port}"
        poll = f"{url}/v1/poll/users/bob/%23"
        for _ in range(3):
            error(httpx.get(poll, headers=basic("bob", "wrong")), 401, "unauthorized")
        r = httpx.get(poll, headers=basic("bob"))
        error(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1
        with pytest.raises(InvalidStatus) as info:
            async with connect(
                f"ws://{srv.host}:{srv.http_port}/v1/ws", additional_headers=basic("bob")
            ):
                pass
        assert info.value.response.status_code == 429
        assert httpx.get(f"{url}/v1/poll/users/alice/%23", headers=basic("alice")).is_success
        r = httpx.get(poll, headers=bearer("pw_000000000000_" + "A" * 43))
        error(r, 401, "unauthorized")
        assert "too many failed logins from 127.0.0.1 for user 'bob'" in srv.output()
        no_secrets(srv.output())
    finally:
        srv.cleanup()


async def test_one_address_over_its_overall_budget_is_rate_limited(tmp_path: Path) -> None:
    srv = _start(
        tmp_path,
        "--login-failures-burst",
        "3",
        "--login-failures-address-burst",
        "4",
        users={"alice": []},
    )
    try:
        poll = f"http://{srv.host}:{srv.http_port}/v1/poll/users/alice/%23"
        for name in ("u1", "u2", "u3", "u4"):  # spraying: one guess per username
            error(httpx.get(poll, headers=basic(name, "x")), 401, "unauthorized")
        error(httpx.get(poll, headers=basic("alice")), 429, "rate_limited")
        assert "too many failed logins from 127.0.0.1 (any user)" in srv.output()
    finally:
        srv.cleanup()


# -- limits: request head timeout, WebSocket message size ------------------------------------


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        tmp_path / "data",
        tmp_path / "logs",
        kind="pushwire",
        memory=True,
        sys_interval=0,
        extra_args=["--http-header-timeout", "0.5", "--ws-max-message", "2048"],
    )
    try:
        yield srv.start()
    finally:
        srv.cleanup()


def _read_all(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(4096)  # the socket timeout bounds this: a hung server fails it
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_slow_request_heads_are_cut_off(limited: ServerProcess) -> None:
    assert limited.http_port is not None
    address = (limited.host, limited.http_port)
    with socket.create_connection(address, timeout=10) as slow:
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # ... and never the end
        reply = _read_all(slow)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b'"request_timeout"' in reply
    with socket.create_connection(address, timeout=10) as silent:
        assert _read_all(silent) == b""  # closed without a word
    # a keep-alive connection that starts a second request and stalls is cut off as well
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = conn.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        conn.sendall(b"GET /v1/health HTTP/1.1\r\n")
        assert b"HTTP/1.1 408 " in _read_all(conn)
    # prompt clients are unaffected, and the guard counts what it did
    text = httpx.get(f"http://{address[0]}:{address[1]}/metrics").text
    assert "pushwire_http_head_timeouts_total 3.0" in text


async def test_websocket_messages_over_the_limit_close_1009(limited: ServerProcess) -> None:
    url = f"ws://{limited.host}:{limited.http_port}/v1/ws"
    async with connect(url) as ws:
        r = await request(ws, {"type": "publish", "topic": "t", "payload": "x" * 1500})
        assert r["type"] == "published"
        await ws.send(json.dumps({"type": "publish", "topic": "t", "payload": "x" * 3000}))
        code, _ = await closed_with(ws)
    assert code == 1009


# -- HTTPS and WSS with credentials -----------------------------------------------------------


async def test_https_and_wss_with_credentials(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    certs = make_certs(tmp_path / "certs")
    srv = server_factory(
        sys_interval=0,
        admin=("root", PASSWORDS["root"]),
        extra_args=[
            *("--tls-cert", certs.server_cert, "--tls-key", certs.server_key),
            *("--mqtt-tls-port", "0", "--http-tls"),
        ],
    )
    url = f"https://127.0.0.1:{srv.http_port}"
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    async with httpx.AsyncClient(base_url=url, verify=ctx, timeout=10) as client:
        error(await client.get("/v1/poll/a/%23"), 401, "unauthorized")
        r = await client.post("/v1/admin/tokens", json={"user": "root"}, headers=basic("root"))
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        async with connect(
            f"wss://127.0.0.1:{srv.http_port}/v1/ws", ssl=ctx, additional_headers=bearer(token)
        ) as ws:
            r2 = await request(ws, {"type": "subscribe", "sub": "s", "filter": "a/#"})
            assert r2["type"] == "subscribed"
            r = await client.post("/v1/publish/a/b", content=b"over tls", headers=bearer(token))
            assert r.status_code == 201
            frame = await recv(ws)
            assert frame["type"] == "message" and frame["payload"] == "over tls"
        r = await client.get("/v1/poll/a/%23", params={"auth": token})
        assert [m["payload"] for m in r.json()["messages"]] == ["over tls"]
