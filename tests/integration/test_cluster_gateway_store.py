"""The gateway's Redis store (engines/redis/gateway_store.py) on a private redis-server: the
same answers as the SQLite store, a change notice for every registry change, and pushes and
content that any node can read. Two store objects stand for two nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from helpers.redis import RedisServer
from pushwire.engines.redis.gateway_store import RedisGatewayStore
from pushwire.gateway.admin import GatewayAdmin
from pushwire.gateway.model import Content, Push, WakeHook
from pushwire.gateway.store import Conflict, NotFound


@pytest.fixture
def stores(redis_server: RedisServer) -> Iterator[tuple[RedisGatewayStore, RedisGatewayStore]]:
    a, b = RedisGatewayStore(redis_server.url), RedisGatewayStore(redis_server.url)
    a.open()
    b.open()
    yield a, b
    a.close()
    b.close()


def test_registry_changes_on_one_node_are_read_on_the_other(
    stores: tuple[RedisGatewayStore, RedisGatewayStore],
) -> None:
    a, b = stores
    admin = GatewayAdmin(a)
    new = admin.create_app("mail")
    app_id = new.app.app_id
    gen = b.generation()
    assert b.registry().apps[app_id].name == "mail"
    with pytest.raises(Conflict):
        a.add_app(new.app)
    with pytest.raises(NotFound):
        a.revoke_key(app_id, "nope", 1.0)

    a.set_webhooks(app_id, "http://127.0.0.1:1/r", WakeHook("http://127.0.0.1:1/w", "s", 5.0))
    app = b.registry().apps[app_id]
    assert app.receipt_url == "http://127.0.0.1:1/r"
    assert app.wake == WakeHook("http://127.0.0.1:1/w", "s", 5.0)

    device = admin.register_device()
    device_id = device.device.device_id
    token, _ = admin.create_token(device_id, app_id)
    a.touch_devices([(device_id, 123.5), ("dev_gone", 1.0)])
    reg = b.registry()
    assert reg.devices[device_id].last_seen == 123.5
    assert "dev_gone" not in reg.devices
    assert reg.tokens[token.token].deleted is None
    assert b.generation() > gen

    # removing the app ends its tokens (410 from then on), on every node
    a.remove_app(app_id, 50.0)
    reg = b.registry()
    assert app_id not in reg.apps
    assert reg.tokens[token.token].deleted == 50.0
    with pytest.raises(NotFound):
        a.remove_app(app_id, 51.0)
    a.remove_device(device_id, 60.0)
    assert device_id not in b.registry().devices


async def test_a_change_notice_wakes_the_other_node(
    stores: tuple[RedisGatewayStore, RedisGatewayStore],
) -> None:
    a, b = stores
    await b.wait_change(0.01)  # subscribes (returns at once: reload now)
    waiting = asyncio.create_task(b.wait_change(60.0))
    await asyncio.sleep(0)  # let it start waiting
    admin = GatewayAdmin(a)
    await asyncio.to_thread(admin.create_app, "chat")
    await asyncio.wait_for(waiting, 10.0)  # the notice, not the 60 s timeout
    await b.close_notifications()


def test_pushes_and_content_are_readable_from_any_node(
    stores: tuple[RedisGatewayStore, RedisGatewayStore],
) -> None:
    a, b = stores
    p = Push(
        id="3f1b8a52-5d39-4c3c-9a38-5d7f7c2a1e01",
        app_id="app_x",
        device_id="dev_x",
        token="pwt_x",
        priority=5,
        push_type="alert",
        expiration=0,
        collapse_id="c",
        created=1.0,
        updated=2.0,
        seq=7,
        body=b'{"alert": "h\xc3\xa9"}',
    )
    a.apply([p], [])
    got = b.get_push(p.id)
    assert got == p and got is not None and got.body == p.body
    p.state = "delivered"
    p.delivered_at = 3.0
    a.apply([p], [])
    got = b.get_push(p.id)
    assert got is not None and got.state == "delivered" and got.body is None
    a.apply([], [p.id])
    assert b.get_push(p.id) is None

    c = Content("pwc_x", "dev_x", "app_x", "image/png", b"\x00\xff" * 10, 1.0, 4e9)
    a.put_content(c)
    assert b.get_content("pwc_x") == c
    assert b.get_content("pwc_y") is None
