"""Push gateway: device registration, tokens, a push over MQTT, offline storage."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from helpers.clients import PahoClient
from helpers.gateway import (
    base_url,
    create_app,
    decode,
    device_token,
    push,
    register_device,
    wait_state,
)
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("push gateway")

Paho = Callable[..., PahoClient]


def _device_client(paho_client: Paho, srv: ServerProcess, device: tuple[str, str]) -> PahoClient:
    client = paho_client(srv, device[0], clean_session=False, auth=device)
    assert client.subscribe(f"devices/{device[0]}/#", qos=1) == [1]
    return client


def test_push_reaches_the_device_over_mqtt_and_is_marked_delivered(
    server: ServerProcess, paho_client: Paho
) -> None:
    app_id, key = create_app(server)
    device = register_device(server)
    token = device_token(server, device, app_id)
    # the same (device, app) keeps its token
    assert device_token(server, device, app_id) == token
    client = _device_client(paho_client, server, device)

    r = push(server, key, token, {"alert": "hello", "data": {"n": 1}})
    assert r.status_code == 200, r.text
    push_id = r.headers["Pushwire-Id"]
    assert r.json() == {"id": push_id}

    msg = client.get()
    assert msg.topic == f"devices/{device[0]}/{app_id}"
    assert msg.qos == 1
    body = decode(msg)
    assert body["id"] == push_id
    assert body["app"] == app_id
    assert body["payload"] == {"alert": "hello", "data": {"n": 1}}
    record = wait_state(server, key, push_id, "delivered")
    assert record["device_id"] == device[0]
    assert record["connection"].startswith(f"mqtt {device[0]}")
    status = httpx.get(f"{base_url(server)}/v1/devices/{device[0]}", auth=device).json()
    assert status["online"] is True
    assert status["apps"] == [app_id]


def test_offline_device_gets_stored_pushes_in_order_minus_expired_and_collapsed(
    server: ServerProcess, paho_client: Paho
) -> None:
    app_id, key = create_app(server)
    device = register_device(server)
    token = device_token(server, device, app_id)
    client = _device_client(paho_client, server, device)
    client.disconnect()  # persistent session, now offline

    first = push(server, key, token, {"alert": "1"}).headers["Pushwire-Id"]
    old = push(server, key, token, {"alert": "old"}, collapse_id="score").headers["Pushwire-Id"]
    expired = push(server, key, token, {"alert": "x"}, expiration="1").headers["Pushwire-Id"]
    now_or_never = push(server, key, token, {"alert": "y"}, expiration="0").headers["Pushwire-Id"]
    new = push(server, key, token, {"alert": "new"}, collapse_id="score").headers["Pushwire-Id"]
    last = push(server, key, token, {"alert": "2"}).headers["Pushwire-Id"]
    assert wait_state(server, key, old, "collapsed")
    assert wait_state(server, key, expired, "expired")
    assert wait_state(server, key, now_or_never, "expired")
    assert wait_state(server, key, first, "queued")

    back = paho_client(server, device[0], clean_session=False, auth=device)
    got = [decode(m)["id"] for m in back.get_until(lambda m: decode(m)["id"] == last)]
    assert got == [first, new, last]
    for push_id in (first, new, last):
        wait_state(server, key, push_id, "delivered")
