"""http/auth.py without sockets: reading credentials, the answers to refusals, the revocation
index, ACL filtering of reads (poll pages, SSE, the WebSocket sender)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.datastructures import QueryParams

from pushwire.config import Settings
from pushwire.core.acl import AclRule
from pushwire.core.auth import AuthService
from pushwire.core.auth_settings import AuthSettings
from pushwire.core.hub import Hub
from pushwire.core.identity import ANONYMOUS, AuthResult, Identity
from pushwire.core.log import ALL, MessageLog
from pushwire.core.message import Message
from pushwire.core.passwords import Passwords
from pushwire.engines.auth_store import MemoryAuthStore
from pushwire.engines.memory import MemoryEngine
from pushwire.http.auth import (
    WWW_AUTHENTICATE,
    Caller,
    Credentials,
    LiveConnections,
    make_caller,
    read_credentials,
    refusal,
)
from pushwire.http.errors import ApiError
from pushwire.http.reader import read_visible
from pushwire.http.sse import _stream
from pushwire.http.state import HttpState
from pushwire.http.ws import WsConnection


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def creds(header: str | None = None, query: str = "", *, allow_query: bool = True) -> Credentials:
    return read_credentials(
        [header] if header is not None else [], QueryParams(query), allow_query=allow_query
    )


# -- reading credentials --------------------------------------------------------------------


def test_credentials_forms() -> None:
    assert creds() == Credentials("none")
    assert creds("Bearer pw_x") == Credentials("bearer", secret="pw_x")
    assert creds("bearer   pw_x ") == Credentials("bearer", secret="pw_x")
    # Basic splits on the first colon: passwords may contain colons, names may not
    assert creds("Basic " + b64("bob:pa:ss")) == Credentials("basic", "bob", "pa:ss")
    assert creds("BASIC " + b64("zoë:pw")) == Credentials("basic", "zoë", "pw")
    assert creds("Basic " + b64(":pw_token")) == Credentials("basic", None, "pw_token")
    assert creds(query="auth=pw_q&since=all") == Credentials("query", secret="pw_q")


@pytest.mark.parametrize(
    ("header", "query", "allow_query", "status"),
    [
        ("Basic !!notbase64", "", True, 401),
        ("Basic " + b64("no-colon"), "", True, 401),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "", True, 401),
        ("Digest username=bob", "", True, 401),
        ("Bearer", "", True, 401),
        ("Bearer  ", "", True, 401),
        (None, "auth=", True, 401),
        (None, "auth=pw_q", False, 400),
        ("Bearer pw_h", "auth=pw_q", True, 400),
        (None, "auth=pw_a&auth=pw_b", True, 400),
    ],
)
def test_credentials_refused(
    header: str | None, query: str, allow_query: bool, status: int
) -> None:
    with pytest.raises(ApiError) as info:
        creds(header, query, allow_query=allow_query)
    exc = info.value
    assert exc.status == status
    if status == 401:
        assert exc.code == "unauthorized"
        assert exc.headers == {"WWW-Authenticate": WWW_AUTHENTICATE}
    for secret in ("pw_q", "pw_h", "no-colon", "notbase64"):
        assert secret not in exc.message


def test_two_authorization_headers_are_refused() -> None:
    with pytest.raises(ApiError) as info:
        read_credentials(["Bearer a", "Bearer b"], QueryParams(""), allow_query=True)
    assert info.value.status == 400


def test_credentials_repr_hides_the_secret() -> None:
    text = repr(Credentials("basic", "bob", "hunter2")) + str(Credentials("bearer", None, "pw_s"))
    assert "hunter2" not in text and "pw_s" not in text and "bob" in text


def test_refusals() -> None:
    limited = refusal(AuthResult(None, "rate_limited", "too many", retry_after=4.2))
    assert (limited.status, limited.code, limited.headers) == (
        429,
        "rate_limited",
        {"Retry-After": "5"},
    )
    bad = refusal(AuthResult(None, "bad_credentials", "bad username or password"))
    assert (bad.status, bad.code, bad.message) == (401, "unauthorized", "bad username or password")
    assert bad.headers == {"WWW-Authenticate": WWW_AUTHENTICATE}


# -- the revocation index -------------------------------------------------------------------


class Conn:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def revoke(self, reason: str) -> None:
        self.reasons.append(reason)


@pytest.fixture
async def auth() -> AsyncIterator[AuthService]:
    cheap = Passwords(time_cost=1, memory_cost_kib=8, parallelism=1)
    service = AuthService(MemoryAuthStore(), AuthSettings(), passwords=cheap)
    await service.start()
    await service.add_user("bob", "bob-pw")
    await service.add_user("carol", "carol-pw")
    yield service
    await service.stop()


async def test_revoking_a_token_ends_only_its_connections(auth: AuthService) -> None:
    live = LiveConnections(auth)
    token = await auth.create_token("bob")
    other = await auth.create_token("bob")
    by_token = (await auth.authenticate_token(token.token, "10.0.0.1")).identity
    by_other = (await auth.authenticate_token(other.token, "10.0.0.1")).identity
    by_password = (await auth.authenticate_password("bob", "bob-pw", "10.0.0.1")).identity
    assert by_token is not None and by_other is not None and by_password is not None
    a, b, c, gone = Conn(), Conn(), Conn(), Conn()
    for identity, conn in ((by_token, a), (by_other, b), (by_password, c), (by_token, gone)):
        assert live.track(identity, conn)
    live.untrack(by_token, gone)
    await auth.revoke_token(token.info.id)
    assert a.reasons and not b.reasons and not c.reasons and not gone.reasons
    assert live.revoked_total == 1
    # tracking after the revocation (a request authenticated just before it) is refused
    assert not live.alive(by_token)
    assert not live.track(by_token, Conn())


async def test_removing_a_user_ends_its_password_and_token_connections(
    auth: AuthService,
) -> None:
    live = LiveConnections(auth)
    token = await auth.create_token("bob")
    by_token = (await auth.authenticate_token(token.token, "10.0.0.1")).identity
    by_password = (await auth.authenticate_password("bob", "bob-pw", "10.0.0.1")).identity
    carol = (await auth.authenticate_password("carol", "carol-pw", "10.0.0.1")).identity
    assert by_token is not None and by_password is not None and carol is not None
    conns = [Conn(), Conn(), Conn()]
    for identity, conn in zip((by_token, by_password, carol), conns, strict=True):
        live.track(identity, conn)
    anonymous = Conn()
    assert live.track(ANONYMOUS, anonymous) and len(live) == 3  # anonymous is not tracked
    await auth.remove_user("bob")
    assert [bool(c.reasons) for c in conns] == [True, True, False]
    assert not anonymous.reasons
    assert not live.alive(by_password)


# -- ACL filtering of reads -----------------------------------------------------------------


def make_state(auth: AuthService, **settings: Any) -> HttpState:
    hub = Hub(MemoryEngine())
    log = MessageLog(hub.engine)
    hub.add_observer(log.observer)
    return HttpState(hub, log, Settings.model_validate(settings), auth)


async def bob_caller(auth: AuthService) -> Caller:
    await auth.add_rule(AclRule("all", None, "allow", "read", "t/#"))
    await auth.add_rule(AclRule("user", "bob", "deny", "read", "t/secret/#"))
    return make_caller(auth, Identity("bob"), "10.0.0.1")


async def test_read_visible_skips_denied_topics_page_by_page(auth: AuthService) -> None:
    state = make_state(auth)
    caller = await bob_caller(auth)
    for topic in ("t/secret/1", "t/secret/2", "t/open/3", "t/secret/4"):
        state.hub.publish(Message(topic, topic.encode()))
    result = await read_visible(state.log, "t/#", 0, 1, 0, caller)
    # the first two pages were only denied messages: read past them
    assert [e.message.topic for e in result.entries] == ["t/open/3"] and result.more
    result = await read_visible(state.log, "t/#", result.next_id, 1, 0, caller)
    assert result.entries == [] and not result.more and result.next_id == 4
    everything = await read_visible(state.log, "t/#", 0, 10, 0, None)
    assert len(everything.entries) == 4


async def test_sse_stream_leaves_out_denied_topics_and_ends_on_revocation(
    auth: AuthService,
) -> None:
    state = make_state(auth, sse_heartbeat=5)
    caller = await bob_caller(auth)
    state.hub.publish(Message("t/secret/old", b"x"))
    state.hub.publish(Message("t/a", b"old"))
    gen = _stream(state, "t/#", ALL, "all", caller)
    await gen.__anext__()  # registered
    backlog = await gen.__anext__()
    assert b'"t/a"' in backlog and b"secret" not in backlog
    state.hub.publish(Message("t/secret/new", b"x"))
    state.hub.publish(Message("t/b", b"live"))
    live = await asyncio.wait_for(gen.__anext__(), 2)
    assert b'"t/b"' in live and b"secret" not in live
    state.live.token_revoked("none")  # another token: nothing happens
    state.live.user_removed("bob")
    rest = [chunk async for chunk in gen]
    assert rest[-1].startswith(b"event: close\n") and b'"revoked"' in rest[-1]
    assert state.log.listener_count == 0 and len(state.live) == 0


class FakeWebSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None
        self.client = None

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_websocket_filters_delivery_and_closes_4403_on_revocation(
    auth: AuthService,
) -> None:
    state = make_state(auth, ws_heartbeat=5)
    caller = await bob_caller(auth)
    ws = FakeWebSocket()
    conn = WsConnection(ws, state, caller)  # type: ignore[arg-type]
    run = asyncio.ensure_future(conn.run())
    await ws.incoming.put(
        {"type": "websocket.receive", "text": '{"type":"subscribe","sub":"s","filter":"t/#"}'}
    )
    await ws.incoming.put(
        {
            "type": "websocket.receive",
            "text": '{"type":"subscribe","sub":"x","filter":"t/secret/#"}',
        }
    )
    for _ in range(100):
        if len(ws.sent) >= 2:
            break
        await asyncio.sleep(0.01)
    assert [f["type"] for f in ws.sent] == ["subscribed", "error"]
    assert ws.sent[1]["code"] == "forbidden"
    state.hub.publish(Message("t/secret/1", b"x"))
    state.hub.publish(Message("t/ok", b"y"))
    for _ in range(100):
        if len(ws.sent) >= 3:
            break
        await asyncio.sleep(0.01)
    assert [f.get("topic") for f in ws.sent[2:]] == ["t/ok"]
    state.live.user_removed("bob")
    await asyncio.wait_for(run, 2)
    assert ws.closed is not None and ws.closed[0] == 4403
    assert state.log.listener_count == 0 and len(state.live) == 0


async def test_websocket_auth_frame_required_closes_4401_on_anything_else(
    auth: AuthService,
) -> None:
    state = make_state(auth, ws_heartbeat=5)
    ws = FakeWebSocket()
    conn = WsConnection(ws, state, None, auth_frame="required")  # type: ignore[arg-type]
    await ws.incoming.put({"type": "websocket.receive", "text": '{"type":"ping"}'})
    await asyncio.wait_for(conn.run(), 2)
    assert ws.closed is not None and ws.closed[0] == 4401
    assert ws.sent == []
