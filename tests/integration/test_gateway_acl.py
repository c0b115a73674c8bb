"""Push gateway: a device reads only its own devices/<id>/# on every transport, and nobody
else reads device topics without an admin role or an explicit rule."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from helpers.clients import PahoClient
from helpers.gateway import (
    base_url,
    create_app,
    device_token,
    push,
    push_state,
    register_device,
    wait_state,
)
from helpers.raw import PUBLISH, connected_client, puback
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("push gateway")

Paho = Callable[..., PahoClient]


def _basic(cred: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(cred).encode()).decode()}


def _q(flt: str) -> str:
    return flt.replace("#", "%23").replace("+", "%2B")


async def _ws_recv(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["type"] == kind:
            return frame


def test_a_device_cannot_read_another_devices_topics_on_any_transport(
    server: ServerProcess, paho_client: Paho
) -> None:
    app_id, key = create_app(server)
    mine, theirs = register_device(server), register_device(server)
    device_token(server, mine, app_id)
    their_token = device_token(server, theirs, app_id)
    their_filter = f"devices/{theirs[0]}/#"
    url = base_url(server)

    # MQTT: subscribing to another device (or to everything) is refused
    client = paho_client(server, mine[0], clean_session=False, auth=mine)
    assert client.subscribe(their_filter, qos=1) == [0x80]
    assert client.subscribe("#", qos=1) == [0x80]
    assert client.subscribe(f"devices/{mine[0]}/#", qos=1) == [1]
    # ... and its client id must be its device id
    with pytest.raises(AssertionError, match="refused"):
        paho_client(server, "someone-else", auth=mine)

    # HTTP poll, long-poll, SSE: 403 for another device's topics
    for path in ("poll", "longpoll", "sse"):
        r = httpx.get(
            f"{url}/v1/{path}/{_q(their_filter)}",
            headers=_basic(mine),
            params={"since": "all", "timeout": "1"},
        )
        assert r.status_code == 403, (path, r.text)
    # a wildcard poll of its own devices subtree is fine; the other device's push is not in it
    r = push(server, key, their_token, {"alert": "for them"})
    assert r.status_code == 200
    r = httpx.get(
        f"{url}/v1/poll/{_q(f'devices/{mine[0]}/#')}",
        headers=_basic(mine),
        params={"since": "all"},
    )
    assert r.status_code == 200 and r.json()["messages"] == []

    # the JSON WebSocket: a forbidden error frame
    async def ws_check() -> None:
        async with connect(
            f"ws://{server.host}:{server.http_port}/v1/ws", additional_headers=_basic(mine)
        ) as ws:
            await ws.send(json.dumps({"type": "subscribe", "sub": "x", "filter": their_filter}))
            err = await _ws_recv(ws, "error")
            assert err["code"] == "forbidden"

    asyncio.run(ws_check())


def test_ordinary_clients_do_not_read_device_topics(
    server: ServerProcess, paho_client: Paho
) -> None:
    app_id, key = create_app(server)
    device = register_device(server)
    token = device_token(server, device, app_id)
    url = base_url(server)
    # anonymous on loopback with no ACL rules: open for ordinary topics, not devices/#
    watcher = paho_client(server, "watcher")
    assert watcher.subscribe("devices/#", qos=1) == [0x80]
    assert watcher.subscribe("#", qos=1) == [1]
    assert push(server, key, token, {"alert": "private"}).status_code == 200
    watcher.publish("news", b"marker", qos=1)
    got = watcher.get_until(lambda m: m.topic == "news")
    assert [m.topic for m in got] == ["news"]  # the push did not reach the '#' subscriber
    r = httpx.get(f"{url}/v1/poll/{_q('devices/#')}", params={"since": "all"})
    assert r.status_code == 403
    r = httpx.get(f"{url}/v1/poll/{_q('#')}", params={"since": "all"})
    assert r.status_code == 200
    assert [m["topic"] for m in r.json()["messages"]] == ["news"]
    # nobody but the gateway writes device topics
    r = httpx.post(f"{url}/v1/publish/devices/{device[0]}/{app_id}", content=b"fake")
    assert r.status_code == 403


def test_websocket_device_receives_and_acks_pushes(server: ServerProcess) -> None:
    app_id, key = create_app(server)
    device = register_device(server)
    token = device_token(server, device, app_id)
    first = push(server, key, token, {"alert": "stored"}).json()["id"]

    async def run() -> None:
        async with connect(
            f"ws://{server.host}:{server.http_port}/v1/ws", additional_headers=_basic(device)
        ) as ws:
            sub = {
                "type": "subscribe",
                "sub": "push",
                "filter": f"devices/{device[0]}/#",
                "ack": True,
                "consumer": "device",
            }
            await ws.send(json.dumps(sub))
            msg = await _ws_recv(ws, "message")
            assert msg["topic"] == f"devices/{device[0]}/{app_id}"
            assert json.loads(msg["payload"])["id"] == first
            await ws.send(json.dumps({"type": "ack", "sub": "push", "id": msg["id"]}))
            await asyncio.to_thread(wait_state, server, key, first, "delivered")
            live = push(server, key, token, {"alert": "live"}).json()["id"]
            msg = await _ws_recv(ws, "message")
            assert json.loads(msg["payload"])["id"] == live
            status = httpx.get(f"{base_url(server)}/v1/devices/{device[0]}", auth=device).json()
            assert status["online"] is True
            await ws.send(json.dumps({"type": "ack", "sub": "push", "id": msg["id"]}))
            record = await asyncio.to_thread(wait_state, server, key, live, "delivered")
            assert record["connection"] == f"ws {device[0]}"

    asyncio.run(run())


def test_an_admin_reading_device_topics_does_not_acknowledge_for_the_device(
    server_factory: Callable[..., ServerProcess], paho_client: Paho
) -> None:
    root = ("root", "root-password")
    srv = server_factory(admin=root)
    app_id, key = create_app(srv)
    device = register_device(srv)
    token = device_token(srv, device, app_id)
    admin = paho_client(srv, "ops-console", auth=root)
    assert admin.subscribe("devices/#", qos=1) == [1]  # the admin role may read them
    login = {"username": device[0], "password": device[1].encode()}
    raw = connected_client(srv.host, srv.mqtt_port, device[0], clean_session=False, **login)
    try:
        assert raw.subscribe(1, [(f"devices/{device[0]}/#", 1)]).granted == [1]
        push_id = push(srv, key, token, {"alert": "hi"}).json()["id"]
        assert json.loads(admin.get().payload)["id"] == push_id  # paho acknowledged it
        delivered = raw.expect(PUBLISH)
        # a round trip on the admin's connection: its PUBACK above has been handled
        admin.publish("ops/marker", b"x", qos=1)
        assert push_state(srv, key, push_id)["state"] == "queued"
        raw.send(puback(delivered.packet_id))
        record = wait_state(srv, key, push_id, "delivered")
        assert record["connection"].startswith(f"mqtt {device[0]}")
    finally:
        raw.close()
