"""The endpoints behind the web console: retained messages under a filter (with poll's ACL
checks), the admin API's live view (connected clients of every transport, sessions and
their queues), the JSON stats and who-am-I. Uses test_http_auth.py's `secured` server:
alice (role auditor: reads users/#, not users/bob/#), bob, root (admin)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse
from websockets.typing import Subprotocol

from helpers.clients import PahoClient
from integration.http_util import HttpServerProcess, base

from .test_http_auth import PASSWORDS, Secured, basic, bearer, error, secured

__all__ = ["secured"]
pytestmark = pytest.mark.pushwire_only("pushwire's HTTP API")


def _get(secured: Secured, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{secured.url}{path}", headers=headers, timeout=10)


def test_retained_under_a_filter_with_poll_acl(secured: Secured) -> None:
    tag = uuid.uuid4().hex[:6]
    for topic, body in ((f"users/bob/{tag}", "b"), (f"users/alice/{tag}", "a")):
        r = httpx.post(
            f"{secured.url}/v1/publish/{topic}?retain=true", content=body, headers=basic("root")
        )
        assert r.status_code == 201, r.text
    assert secured.publish(f"users/alice/{tag}-live", "not retained").status_code == 201

    # alice may read users/#, but not users/bob/#: bob's retained message is left out
    r = _get(secured, "/v1/retained/users/%23", basic("alice"))
    assert r.status_code == 200, r.text
    topics = [m["topic"] for m in r.json()["messages"]]
    assert f"users/alice/{tag}" in topics
    assert f"users/bob/{tag}" not in topics and f"users/alice/{tag}-live" not in topics
    mine = next(m for m in r.json()["messages"] if m["topic"] == f"users/alice/{tag}")
    assert mine["payload"] == "a" and isinstance(mine["id"], int)

    # the same checks as poll: the whole filter must be readable, the filter valid
    error(_get(secured, "/v1/retained/%23", basic("alice")), 403, "forbidden")
    error(_get(secured, "/v1/retained/a/%23/b", basic("root")), 400, "bad_topic")
    error(_get(secured, "/v1/retained/users/%23", {}), 401, "unauthorized")
    r = _get(secured, f"/v1/retained/users/bob/{tag}", basic("bob"))
    assert [m["payload"] for m in r.json()["messages"]] == ["b"]
    # the token in the URL works as on poll (a browser's EventSource has no headers)
    r = _get(secured, f"/v1/retained/users/alice/{tag}?auth={secured.alice_token}", {})
    assert [m["payload"] for m in r.json()["messages"]] == ["a"]

    # pages: limit, then after= the last topic of the previous page
    r = _get(secured, f"/v1/retained/users/%23?limit=1&after=users/alice/{tag}", basic("root"))
    page = r.json()
    assert [m["topic"] for m in page["messages"]] == [f"users/bob/{tag}"]
    assert page["next"] == f"users/bob/{tag}"
    r = _get(secured, "/v1/retained/users/%23?limit=1", basic("root"))
    assert r.json()["more"] is True and len(r.json()["messages"]) == 1
    error(_get(secured, "/v1/retained/users/%23?limit=0", basic("root")), 400, "bad_request")

    # an empty retained message clears it
    r = httpx.post(
        f"{secured.url}/v1/publish/users/alice/{tag}?retain=true",
        content=b"",
        headers=basic("root"),
    )
    assert r.status_code == 201
    r = _get(secured, f"/v1/retained/users/alice/{tag}", basic("alice"))
    assert r.json()["messages"] == []


def _clients(secured: Secured) -> list[dict[str, Any]]:
    r = _get(secured, "/v1/admin/clients", basic("root"))
    assert r.status_code == 200, r.text
    clients: list[dict[str, Any]] = r.json()
    assert int(r.headers["Pushwire-Total"]) == len(clients)
    return clients


async def _until(secured: Secured, check: Any, what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        clients = await asyncio.to_thread(_clients, secured)
        if check(clients):
            return clients
        assert time.monotonic() < deadline, f"{what}: {clients}"
        await asyncio.sleep(0.05)


async def test_admin_clients_lists_every_transport(secured: Secured) -> None:
    error(_get(secured, "/v1/admin/clients", {}), 401, "unauthorized")
    error(_get(secured, "/v1/admin/clients", basic("alice")), 403, "forbidden")
    tag = uuid.uuid4().hex[:6]
    token, token_id = secured.new_token("alice")
    mqtt = PahoClient(
        secured.srv.host, secured.srv.mqtt_port, f"mq-{tag}", auth=("bob", "bob-secret")
    )
    mqtt.connect()
    mqtt.subscribe(f"users/bob/{tag}/#", qos=1)
    try:
        async with (
            httpx.AsyncClient(base_url=secured.url, timeout=30) as http,
            aconnect_sse(http, "GET", f"/v1/sse/users/alice/{tag}", headers=bearer(token)) as sse,
            websockets.connect(
                secured.ws,
                additional_headers=basic("bob"),
                subprotocols=[Subprotocol("pushwire.v1")],
            ) as ws,
        ):
            assert sse.response.status_code == 200
            await ws.send(
                json.dumps({"type": "subscribe", "sub": "s", "filter": f"users/bob/{tag}"})
            )
            while json.loads(await ws.recv())["type"] != "subscribed":
                pass
            held = asyncio.ensure_future(
                http.get(f"/v1/longpoll/users/bob/{tag}/lp?timeout=30", headers=basic("bob"))
            )

            def complete(clients: list[dict[str, Any]]) -> bool:
                kinds = {c["transport"] for c in clients if tag in "".join(c["subscriptions"])}
                return {"mqtt", "sse", "ws", "longpoll"} <= kinds

            clients = await _until(secured, complete, "all four transports listed")
            by_kind = {c["transport"]: c for c in clients if tag in "".join(c["subscriptions"])}
            assert by_kind["mqtt"]["id"] == f"mq-{tag}"
            assert by_kind["mqtt"]["user"] == "bob" and by_kind["mqtt"]["token_id"] is None
            assert by_kind["mqtt"]["subscriptions"] == [f"users/bob/{tag}/#"]
            assert by_kind["mqtt"]["address"].startswith("127.0.0.1:")
            assert by_kind["sse"]["user"] == "alice" and by_kind["sse"]["token_id"] == token_id
            assert by_kind["sse"]["subscriptions"] == [f"users/alice/{tag}"]
            assert by_kind["ws"]["user"] == "bob"
            assert by_kind["ws"]["subscriptions"] == [f"users/bob/{tag}"]
            assert by_kind["longpoll"]["subscriptions"] == [f"users/bob/{tag}/lp"]
            assert all(c["since"] <= time.time() for c in by_kind.values())

            # the long-poll is answered: it is no longer a connected reader
            assert secured.publish(f"users/bob/{tag}/lp", "x", user="bob").status_code == 201
            assert (await held).status_code == 200
            await _until(
                secured,
                lambda cs: (
                    not any(
                        c["transport"] == "longpoll" and tag in "".join(c["subscriptions"])
                        for c in cs
                    )
                ),
                "the answered long-poll gone",
            )
        # the SSE stream and the WebSocket closed: gone too; the MQTT client stays
        clients = await _until(
            secured,
            lambda cs: (
                {c["transport"] for c in cs if tag in "".join(c["subscriptions"])} == {"mqtt"}
            ),
            "the closed readers gone",
        )
    finally:
        mqtt.close()
    await _until(
        secured, lambda cs: all(c["id"] != f"mq-{tag}" for c in cs), "the MQTT client gone"
    )


def test_admin_sessions_show_queue_depth(secured: Secured) -> None:
    error(_get(secured, "/v1/admin/sessions", basic("bob")), 403, "forbidden")
    name = f"keep-{uuid.uuid4().hex[:6]}"
    sub = PahoClient(
        secured.srv.host,
        secured.srv.mqtt_port,
        name,
        clean_session=False,
        auth=("bob", PASSWORDS["bob"]),
    )
    sub.connect()
    sub.subscribe(f"users/bob/{name}", qos=1)
    sub.disconnect()
    for i in range(3):
        assert secured.publish(f"users/bob/{name}?qos=1", f"m{i}", user="bob").status_code == 201
    r = _get(secured, "/v1/admin/sessions", basic("root"))
    assert r.status_code == 200, r.text
    session = next(s for s in r.json() if s["client_id"] == name)
    assert session == {
        "client_id": name,
        "owner": "bob",
        "connected": False,
        "persistent": True,
        "expiry_interval": None,
        "disconnected_at": session["disconnected_at"],
        "subscriptions": [f"users/bob/{name}"],
        "queued": 3,
        "inflight": 0,
    }
    stats = _get(secured, "/v1/stats", basic("bob")).json()
    assert stats["queued"] >= 3
    assert stats["sessions"] >= 1
    assert set(stats["connections"]) == {"mqtt", "longpoll", "sse", "ws"}
    assert stats["messages_in"]["http"] >= 3


def test_stats_counts_and_me(secured: Secured) -> None:
    error(_get(secured, "/v1/stats", {}), 401, "unauthorized")
    before = _get(secured, "/v1/stats", basic("bob")).json()
    assert secured.publish("users/bob/count", "x", user="bob").status_code == 201
    after = _get(secured, "/v1/stats", basic("bob")).json()
    assert after["messages_in"]["http"] == before["messages_in"]["http"] + 1
    assert after["time"] >= before["time"]

    assert _get(secured, "/v1/me", basic("root")).json() == {
        "user": "root",
        "roles": ["admin"],
        "admin": True,
        "token_id": None,
        "scope": [],
    }
    me = _get(secured, "/v1/me", bearer(secured.alice_token)).json()
    assert me["user"] == "alice" and me["admin"] is False and me["token_id"]
    error(_get(secured, "/v1/me", basic("alice", "wrong")), 401, "unauthorized")


def test_openapi_describes_the_console_endpoints(secured: Secured) -> None:
    paths = httpx.get(f"{secured.url}/openapi.json").json()["paths"]
    for path in (
        "/v1/retained/{filter}",
        "/v1/admin/clients",
        "/v1/admin/sessions",
        "/v1/stats",
        "/v1/me",
    ):
        assert "get" in paths[path], path
    assert "403" in paths["/v1/retained/{filter}"]["get"]["responses"]
    assert not any(p.startswith("/console") for p in paths)


def test_admin_lists_are_cut_at_the_limit(tmp_path: Path) -> None:
    admin = ("root", "root-secret-1")
    srv = HttpServerProcess(
        tmp_path / "data",
        tmp_path / "logs",
        ["--admin-list-limit", "1"],
        kind="pushwire",
        admin=admin,
        sys_interval=0,
    )
    srv.start()
    clients = []
    try:
        for name in ("first", "second"):
            client = PahoClient(srv.host, srv.mqtt_port, name, clean_session=False, auth=admin)
            client.connect()
            clients.append(client)
        r = httpx.get(f"{base(srv)}/v1/admin/clients", auth=admin)
        assert r.headers["Pushwire-Total"] == "2"
        assert [c["id"] for c in r.json()] == ["first"]  # the oldest
        r = httpx.get(f"{base(srv)}/v1/admin/sessions", auth=admin)
        assert r.headers["Pushwire-Total"] == "2" and len(r.json()) == 1
    finally:
        for client in clients:
            client.close()
        srv.cleanup()
