"""Named consumers (WebSocket `ack` subscriptions) belong to an identity: two users with the
same consumer name have two cursors; an identity holds a bounded number; idle ones expire;
admins list and delete them; they survive a restart of the SQLite store. Real server
process, real WebSocket and HTTP clients."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from helpers.jsonws import messages, request
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("pushwire's JSON WebSocket consumers")

ROOT = ("root", "root-secret")
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def as_user(user: str) -> dict[str, str]:
    return basic(user, PASSWORDS[user])


ROOT_AUTH = basic(*ROOT)


def start(factory: Callable[..., ServerProcess], *flags: str) -> ServerProcess:
    """A server with the SQLite store, an admin (root), and users alice and bob."""
    srv = factory(sys_interval=0, admin=ROOT, extra_args=list(flags))
    for user, password in PASSWORDS.items():
        r = httpx.post(
            f"{url(srv)}/v1/admin/users",
            json={"name": user, "password": password},
            headers=ROOT_AUTH,
        )
        assert r.status_code == 201, r.text
    return srv


def url(srv: ServerProcess) -> str:
    return f"http://{srv.host}:{srv.http_port}"


def ws(srv: ServerProcess, user: str) -> Any:
    return connect(f"ws://{srv.host}:{srv.http_port}/v1/ws", additional_headers=as_user(user))


async def synced_ack(conn: ClientConnection, sub: str, id_: int) -> None:
    await conn.send(json.dumps({"type": "ack", "sub": sub, "id": id_}))
    assert await request(conn, {"type": "ping", "ref": "sync"}) == {"type": "pong", "ref": "sync"}


def publish(srv: ServerProcess, topic: str, payload: bytes) -> None:
    r = httpx.post(f"{url(srv)}/v1/publish/{topic}", content=payload, headers=ROOT_AUTH)
    assert r.status_code == 201, r.text


def sub_frame(consumer: str, flt: str = "jobs/#", name: str = "q") -> dict[str, Any]:
    return {"type": "subscribe", "sub": name, "filter": flt, "ack": True, "consumer": consumer}


def admin_consumers(srv: ServerProcess, **params: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url(srv)}/v1/admin/consumers", params=params, headers=ROOT_AUTH)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()
    return out


async def test_two_users_with_one_consumer_name_keep_their_own_positions(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = start(server_factory)
    async with ws(srv, "alice") as alice:
        assert (await request(alice, sub_frame("worker")))["type"] == "subscribed"
        for i in range(3):
            publish(srv, "jobs/x", b"job%d" % i)
        got = await messages(alice, 3)
        await synced_ack(alice, "q", got[0]["id"])
    # bob picks the same consumer name: a consumer of his own, starting with what is next
    async with ws(srv, "bob") as bob:
        r = await request(bob, sub_frame("worker"))
        assert r["cursor"].endswith(f":{got[2]['id']}"), r
        publish(srv, "jobs/x", b"job3")
        (m,) = await messages(bob, 1)
        assert m["payload"] == "job3" and "redelivered" not in m
        await synced_ack(bob, "q", m["id"])
    # alice's position did not move: her unacknowledged messages come again
    async with ws(srv, "alice") as alice:
        r = await request(alice, sub_frame("worker"))
        assert r["cursor"].endswith(f":{got[0]['id']}"), r
        again = await messages(alice, 3)
        assert [(x["payload"], x.get("redelivered", False)) for x in again] == [
            ("job1", True),
            ("job2", True),
            ("job3", False),
        ]
    listed = admin_consumers(srv)
    assert sorted((c["owner"], c["name"]) for c in listed) == [
        ("user:alice", "worker"),
        ("user:bob", "worker"),
    ]
    assert [c["acked"] for c in admin_consumers(srv, owner="user:alice")] == [got[0]["id"]]


async def test_anonymous_consumers_are_per_address(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Anonymous clients are told apart by address (127.0.0.1 and 127.0.0.2 are both
    loopback)."""
    srv = start(server_factory, "--anonymous", "on")
    address = f"ws://{srv.host}:{srv.http_port}/v1/ws"
    async with connect(address) as one:
        await request(one, sub_frame("w"))
        publish(srv, "jobs/a", b"a0")
        (m,) = await messages(one, 1)
    async with connect(address, local_addr=("127.0.0.2", 0)) as other:
        r = await request(other, sub_frame("w"))
        assert r["cursor"].endswith(f":{m['id']}")  # latest: not the first client's position
    async with connect(address) as one:
        r = await request(one, sub_frame("w"))
        assert r["cursor"].endswith(":0")  # nothing acknowledged: from the start
        (again,) = await messages(one, 1)
        assert again["payload"] == "a0" and again["redelivered"] is True
    owners = sorted(c["owner"] for c in admin_consumers(srv))
    assert owners == ["anonymous:127.0.0.1", "anonymous:127.0.0.2"]


async def test_consumers_per_identity_are_bounded_and_admins_delete_them(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = start(server_factory, "--max-consumers-per-identity", "2")
    async with ws(srv, "alice") as alice:
        for name in ("c1", "c2"):
            r = await request(alice, sub_frame(name, name=name))
            assert r["type"] == "subscribed", r
        r = await request(alice, {**sub_frame("c3", name="c3"), "ref": 3})
        assert (r["type"], r["code"], r["ref"]) == ("error", "too_many_consumers", 3)
        # reopening one she has is fine; another user has room of his own
        await request(alice, {"type": "unsubscribe", "sub": "c1"})
        assert (await request(alice, sub_frame("c1", name="c1")))["type"] == "subscribed"
    async with ws(srv, "bob") as bob:
        assert (await request(bob, sub_frame("c1")))["type"] == "subscribed"
    # admins only
    refused = httpx.get(f"{url(srv)}/v1/admin/consumers", headers=as_user("alice"))
    assert refused.status_code == 403
    assert {c["name"] for c in admin_consumers(srv, owner="user:alice")} == {"c1", "c2"}
    gone = httpx.delete(
        f"{url(srv)}/v1/admin/consumers",
        params={"owner": "user:alice", "name": "c1"},
        headers=ROOT_AUTH,
    )
    assert gone.status_code == 200, gone.text
    assert [(c["owner"], c["name"], c["filter"]) for c in gone.json()] == [
        ("user:alice", "c1", "jobs/#")
    ]
    none = httpx.delete(
        f"{url(srv)}/v1/admin/consumers",
        params={"owner": "user:alice", "name": "c1"},
        headers=ROOT_AUTH,
    )
    assert none.status_code == 404 and none.json()["error"]["code"] == "not_found"
    async with ws(srv, "alice") as alice:
        assert (await request(alice, sub_frame("c3", name="c3")))["type"] == "subscribed"
    assert {c["name"] for c in admin_consumers(srv, owner="user:alice")} == {"c2", "c3"}


async def test_idle_consumers_expire_attached_ones_stay(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = start(server_factory, "--consumer-idle-timeout", "0.3", "--log-sweep-interval", "0.1")
    async with ws(srv, "alice") as alice:
        await request(alice, sub_frame("held", name="held"))
        async with ws(srv, "alice") as brief:
            r = await request(brief, sub_frame("brief", name="brief"))
            assert r["type"] == "subscribed"
        names = {"brief"}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while "brief" in names:
            assert loop.time() < deadline, "the idle consumer was never forgotten"
            await asyncio.sleep(0.05)
            names = {c["name"] for c in admin_consumers(srv, owner="user:alice")}
        assert names == {"held"}  # in use: kept however long it is idle
        (held,) = admin_consumers(srv, owner="user:alice")
        assert held["attached"] == 1 and held["expires"] is None


async def test_consumers_survive_a_restart_with_their_owner(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = start(server_factory)
    async with ws(srv, "alice") as alice:
        await request(alice, sub_frame("w"))
        for i in range(2):
            publish(srv, "jobs/x", b"job%d" % i)
        got = await messages(alice, 2)
        await synced_ack(alice, "q", got[0]["id"])
    srv.restart()
    async with ws(srv, "bob") as bob:
        r = await request(bob, sub_frame("w"))
        assert r["cursor"].endswith(f":{got[1]['id']}")  # his own, new
    async with ws(srv, "alice") as alice:
        r = await request(alice, sub_frame("w"))
        assert r["cursor"].endswith(f":{got[0]['id']}")
        (again,) = await messages(alice, 1)
        assert again["payload"] == "job1" and again["redelivered"] is True
