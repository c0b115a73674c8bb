"""Push gateway: device registration, tokens, a push over MQTT, offline storage."""

from __future__ import annotations

import json
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
from helpers.raw import PUBLISH, SUBACK, connected_client, puback, subscribe
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


def _offline_device(srv: ServerProcess, paho_client: Paho) -> tuple[str, str, tuple[str, str], str]:
    app_id, key = create_app(srv)
    device = register_device(srv)
    token = device_token(srv, device, app_id)
    _device_client(paho_client, srv, device).disconnect()
    return app_id, key, device, token


def test_stored_pushes_survive_a_restart_and_a_kill_9(
    server_factory: Callable[..., ServerProcess], paho_client: Paho
) -> None:
    srv = server_factory()
    _app_id, key, device, token = _offline_device(srv, paho_client)
    a = push(srv, key, token, {"alert": "a"}).headers["Pushwire-Id"]
    stale = push(srv, key, token, {"alert": "stale"}, collapse_id="c").headers["Pushwire-Id"]
    b = push(srv, key, token, {"alert": "b"}, collapse_id="c").headers["Pushwire-Id"]
    srv.restart()
    assert wait_state(srv, key, stale, "collapsed")
    back = paho_client(srv, device[0], clean_session=False, auth=device)
    got = [decode(m)["id"] for m in back.get_until(lambda m: decode(m)["id"] == b)]
    assert got == [a, b]
    wait_state(srv, key, b, "delivered")
    back.disconnect()

    # what a 200 acknowledged survives SIGKILL: the pending store commits before replying
    c = push(srv, key, token, {"alert": "c"}).headers["Pushwire-Id"]
    d = push(srv, key, token, {"alert": "d"}, priority="5").headers["Pushwire-Id"]
    srv.kill()
    srv.start()
    assert wait_state(srv, key, c, "queued")
    again = paho_client(srv, device[0], clean_session=False, auth=device)
    got = [decode(m)["id"] for m in again.get_until(lambda m: decode(m)["id"] == d)]
    assert got == [c, d]
    wait_state(srv, key, d, "delivered")
    assert wait_state(srv, key, a, "delivered")["delivered_at"] > 0


def test_quota_drops_the_oldest_lowest_priority_push_visibly(
    server_factory: Callable[..., ServerProcess], paho_client: Paho
) -> None:
    srv = server_factory(extra_args=["--push-queue-quota", "3"])
    _app_id, key, device, token = _offline_device(srv, paho_client)
    high1 = push(srv, key, token, {"alert": "h1"}).headers["Pushwire-Id"]
    low1 = push(srv, key, token, {"alert": "l1"}, priority="5").headers["Pushwire-Id"]
    low2 = push(srv, key, token, {"alert": "l2"}, priority="5").headers["Pushwire-Id"]
    high2 = push(srv, key, token, {"alert": "h2"}).headers["Pushwire-Id"]
    record = wait_state(srv, key, low1, "dropped")
    assert "full" in record["reason"]
    metrics = httpx.get(f"{base_url(srv)}/metrics").text
    assert 'pushwire_pushes_final_total{state="dropped"} 1.0' in metrics
    back = paho_client(srv, device[0], clean_session=False, auth=device)
    got = [decode(m)["id"] for m in back.get_until(lambda m: decode(m)["id"] == high2)]
    assert got == [high1, low2, high2]


def test_a_push_sent_but_not_acknowledged_is_delivered_again_after_a_kill_9(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory()
    app_id, key = create_app(srv)
    device = register_device(srv)
    token = device_token(srv, device, app_id)
    login = {"username": device[0], "password": device[1].encode()}
    raw = connected_client(srv.host, srv.mqtt_port, device[0], clean_session=False, **login)
    try:
        assert raw.subscribe(1, [(f"devices/{device[0]}/#", 1)]).granted == [1]
        push_id = push(srv, key, token, {"alert": "ack me"}).json()["id"]
        first = raw.expect(PUBLISH)
        assert json.loads(first.payload)["id"] == push_id  # received, never acknowledged
    finally:
        raw.close()
    srv.kill()
    srv.start()
    assert wait_state(srv, key, push_id, "queued")
    again = connected_client(srv.host, srv.mqtt_port, device[0], clean_session=False, **login)
    try:
        # Subscribe again, as the SDK's device agent does on every connection: the session
        # journal is written behind (docs/gateway.md, "At least once"), so a kill -9 right
        # after the SUBACK may come back without the session or its subscription. Whichever
        # came back, the push must reach the device: as the session's own redelivery of
        # what it held, or from the gateway, where it waits.
        again.send(subscribe(2, [(f"devices/{device[0]}/#", 1)]))
        assert again.recv_matching(lambda pkt: pkt.type == SUBACK).type == SUBACK
        redelivered = again.recv_matching(lambda pkt: pkt.type == PUBLISH)
        assert json.loads(redelivered.payload)["id"] == push_id
        again.send(puback(redelivered.packet_id))
        assert wait_state(srv, key, push_id, "delivered")
        # the session's restored copy was the delivery: the gateway does not hand the
        # push over a second time (the next message is the marker, not a duplicate)
        marker_id = push(srv, key, token, {"alert": "marker"}).json()["id"]
        following = again.recv_matching(lambda pkt: pkt.type == PUBLISH)
        assert json.loads(following.payload)["id"] == marker_id
        again.send(puback(following.packet_id))
    finally:
        again.close()


def test_a_push_unacknowledged_on_a_clean_session_waits_again(server: ServerProcess) -> None:
    app_id, key = create_app(server)
    device = register_device(server)
    token = device_token(server, device, app_id)
    login = {"username": device[0], "password": device[1].encode()}
    flt: list[tuple[str | bytes, int]] = [(f"devices/{device[0]}/#", 1)]
    raw = connected_client(server.host, server.mqtt_port, device[0], clean_session=True, **login)
    try:
        assert raw.subscribe(1, flt).granted == [1]
        push_id = push(server, key, token, {"alert": "lost?"}).json()["id"]
        assert json.loads(raw.expect(PUBLISH).payload)["id"] == push_id  # never acknowledged
    finally:
        raw.close()  # the clean session ends with the connection, and what it held with it
    assert wait_state(server, key, push_id, "queued")
    again = connected_client(server.host, server.mqtt_port, device[0], clean_session=True, **login)
    try:
        assert again.subscribe(1, flt).granted == [1]
        redelivered = again.recv_matching(lambda pkt: pkt.type == PUBLISH)
        assert json.loads(redelivered.payload)["id"] == push_id
        again.send(puback(redelivered.packet_id))
        wait_state(server, key, push_id, "delivered")
    finally:
        again.close()
