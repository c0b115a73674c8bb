"""Push gateway: notify-then-fetch. The device gets a small notice and fetches the content
with its own credential; no other device can."""

from __future__ import annotations

import json
import queue
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from helpers.clients import PahoClient
from helpers.gateway import (
    base_url,
    bearer,
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


def _content(srv: ServerProcess, content_id: str, auth: Any = None) -> httpx.Response:
    return httpx.get(f"{base_url(srv)}/v1/content/{content_id}", auth=auth)


def test_fetch_push_sends_a_notice_and_only_its_device_can_fetch(
    server: ServerProcess, paho_client: Paho
) -> None:
    app_id, key = create_app(server)
    mine, theirs = register_device(server), register_device(server)
    token = device_token(server, mine, app_id)
    their_token = device_token(server, theirs, app_id)
    client = paho_client(server, mine[0], clean_session=False, auth=mine)
    assert client.subscribe(f"devices/{mine[0]}/#", qos=1) == [1]

    secret = {"alert": "New mail", "fetch": True, "data": {"body": "the secret text " * 50}}
    r = push(server, key, token, secret)
    assert r.status_code == 200, r.text
    notice = decode(client.get())
    assert notice["id"] == r.json()["id"]
    assert notice["payload"] == {"alert": "New mail"}
    assert "secret text" not in json.dumps(notice)
    ref = notice["content"]
    assert ref["content_type"] == "application/json"
    got = _content(server, ref["id"], mine)
    assert got.status_code == 200
    assert got.json() == secret
    assert ref["size"] == len(got.content)
    # another device, no credential, a wrong secret, an unknown id
    assert _content(server, ref["id"], theirs).status_code == 404
    assert _content(server, ref["id"]).status_code == 401
    assert _content(server, ref["id"], (mine[0], "pwd_" + "x" * 32)).status_code == 401
    assert _content(server, "pwc_" + "a" * 22, mine).status_code == 404
    wait_state(server, key, notice["id"], "delivered")

    # content posted first (up to push_content_max, any type), then a push naming it
    blob = bytes(range(256)) * 400
    r = httpx.post(
        f"{base_url(server)}/v1/content",
        content=blob,
        headers={**bearer(key), "Pushwire-Device-Token": token, "Content-Type": "image/png"},
    )
    assert r.status_code == 201, r.text
    content_id = r.json()["content_id"]
    # it is for this device only: naming it in a push to another device is refused
    r = push(server, key, their_token, {"content_id": content_id})
    assert (r.status_code, r.json()["reason"]) == (400, "BadPayload")
    r = push(server, key, token, {"content_id": content_id, "alert": "Photo"})
    assert r.status_code == 200
    notice = decode(client.get())
    assert notice["content"] == {"id": content_id, "size": len(blob), "content_type": "image/png"}
    got = _content(server, content_id, mine)
    assert got.content == blob
    assert got.headers["content-type"] == "image/png"
    assert _content(server, content_id, theirs).status_code == 404


def test_content_over_the_limit_is_refused(server: ServerProcess) -> None:
    app_id, key = create_app(server)
    device = register_device(server)
    token = device_token(server, device, app_id)
    r = httpx.post(
        f"{base_url(server)}/v1/content",
        content=b"x" * (1_048_576 + 1),
        headers={**bearer(key), "Pushwire-Device-Token": token},
    )
    assert (r.status_code, r.json()["reason"]) == (413, "PayloadTooLarge")


class _V5Device:
    """An MQTT 5 device that declares a Maximum Packet Size."""

    def __init__(self, srv: ServerProcess, device: tuple[str, str], max_packet: int) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=device[0], protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(*device)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subscribed: queue.Queue[int] = queue.Queue()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subscribed.put(mid)
        props = Properties(PacketTypes.CONNECT)
        props.MaximumPacketSize = max_packet
        props.SessionExpiryInterval = 3600
        self.client.connect(srv.host, srv.mqtt_port, clean_start=True, properties=props)
        self.client.loop_start()
        self.client.subscribe(f"devices/{device[0]}/#", qos=1)
        self.subscribed.get(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def v5_devices() -> Iterator[list[_V5Device]]:
    made: list[_V5Device] = []
    yield made
    for d in made:
        d.close()


def test_a_push_too_big_for_the_device_packet_size_arrives_as_a_notice(
    server: ServerProcess, v5_devices: list[_V5Device]
) -> None:
    app_id, key = create_app(server)
    device = register_device(server)
    token = device_token(server, device, app_id)
    dev = _V5Device(server, device, max_packet=512)
    v5_devices.append(dev)
    small = push(server, key, token, {"alert": "small"}).json()["id"]
    big_body = {"alert": "big", "data": "d" * 2000}
    big = push(server, key, token, big_body).json()["id"]
    first = json.loads(dev.messages.get(timeout=5).payload)
    assert first["id"] == small and first["payload"] == {"alert": "small"}
    msg = dev.messages.get(timeout=5)
    assert len(msg.payload) < 512
    notice = json.loads(msg.payload)
    assert notice["id"] == big and notice["payload"] == {"alert": "big"}  # the alert stays
    got = httpx.get(f"{base_url(server)}/v1/content/{notice['content']['id']}", auth=device)
    assert got.json() == big_body
    wait_state(server, key, big, "delivered")
