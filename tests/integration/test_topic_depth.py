"""Topic depth (issue 9, item 11): a topic 1,500 levels deep once raised RecursionError in
the trie walk, failing the publish for everyone and, as a will, leaking the session. Now
every door refuses more than `max_topic_levels` (128) levels with a clear error, and the
walks are loops (tests/unit/test_topics.py)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import connect

from helpers import raw
from helpers.raw import RawClient
from helpers.server import ServerProcess

from .http_util import StartServer, base, http_server, ws_url

__all__ = ["http_server"]  # the fixture

pytestmark = pytest.mark.pushwire_only("max_topic_levels is a pushwire setting")
RawFactory = Callable[..., RawClient]

DEEP = "/".join(["d"] * 1500)  # 3 KB, far over 128 levels
DEEP_FILTER = "/".join(["d"] * 1499) + "/#"
LIMIT = "/".join(["d"] * 128)  # exactly the default maximum: allowed


def v5_connect(client_id: str) -> bytes:
    body = raw.encode_str("MQTT") + bytes([5, 0x02]) + struct.pack("!H", 60) + b"\x00"
    return raw.packet(0x10, body + raw.encode_str(client_id))


def v5_publish(topic: str, payload: bytes, qos: int, packet_id: int = 0) -> bytes:
    body = raw.encode_str(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    return raw.packet(0x30 | (qos << 1), body + b"\x00" + payload)


def v5_subscribe(packet_id: int, flt: str) -> bytes:
    return raw.packet(0x82, struct.pack("!H", packet_id) + b"\x00" + raw.encode_str(flt) + b"\x01")


def v5_client(server: ServerProcess, raw_client: RawFactory, client_id: str) -> RawClient:
    c = raw_client(server)
    c.send(v5_connect(client_id))
    connack = c.expect(raw.CONNACK)
    assert connack.body[1] == 0
    return c


def test_mqtt311_deep_subscription_refused_and_deep_publish_closes_only_its_sender(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    healthy = raw_client(server, "healthy")
    assert healthy.subscribe(1, [("#", 1)]).granted == [1]
    sub = raw_client(server, "deep-sub")
    assert sub.subscribe(1, [(DEEP_FILTER, 1), (LIMIT, 1)]).granted == [0x80, 1]
    pub = raw_client(server, "deep-pub")
    pub.send(raw.publish(DEEP, b"deep", qos=1, packet_id=1))
    assert pub.read_until_closed() == []  # 3.1.1 has no reason code: closed, nothing acked
    # everyone else is untouched: a publish at the limit still reaches both subscribers
    other = raw_client(server, "other-pub")
    other.publish_complete(LIMIT, b"at-limit", qos=1, packet_id=2)
    for client in (healthy, sub):
        got = client.recv_publish()
        assert (got.topic, got.payload) == (LIMIT, b"at-limit")


def test_mqtt5_deep_topic_gets_reason_codes(server: ServerProcess, raw_client: RawFactory) -> None:
    c = v5_client(server, raw_client, "v5-deep")
    c.send(v5_subscribe(7, DEEP_FILTER))
    suback = c.expect(raw.SUBACK)
    assert suback.body[-1] == 0x8F  # Topic Filter invalid
    c.send(v5_publish(DEEP, b"x", qos=1, packet_id=8))
    puback = c.expect(raw.PUBACK)
    assert puback.body[:3] == struct.pack("!H", 8) + b"\x90"  # Topic Name invalid
    c.send(v5_publish(DEEP, b"x", qos=2, packet_id=9))
    pubrec = c.expect(raw.PUBREC)
    assert pubrec.body[:3] == struct.pack("!H", 9) + b"\x90"
    assert c.is_open()  # acked refusals keep the connection
    c.send(v5_publish(DEEP, b"x", qos=0))
    closing = c.read_until_closed()
    assert [(p.type, p.body[:1]) for p in closing] == [(raw.DISCONNECT, b"\x90")]


def test_deep_will_topic_refused_at_connect(server: ServerProcess, raw_client: RawFactory) -> None:
    c = raw_client(server)
    c.send(raw.connect("deep-will", will_topic=DEEP, will_payload=b"w"))
    assert c.read_until_closed() == []  # 3.1.1: closed without CONNACK, no session made
    healthy = raw_client(server, "after-will")
    assert healthy.is_open()


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", f"/v1/publish/{DEEP}", {"content": b"x"}),
        ("POST", "/v1/publish", {"json": {"topic": DEEP, "payload": "x"}}),
        ("GET", f"/v1/poll/{DEEP}", {}),
        ("GET", f"/v1/longpoll/{DEEP}?timeout=0", {}),
        ("GET", f"/v1/sse/{DEEP}", {}),
    ],
    ids=["publish-raw", "publish-json", "poll", "longpoll", "sse"],
)
def test_http_deep_topic_is_400_bad_topic(
    http_server: StartServer, method: str, path: str, kwargs: dict[str, object]
) -> None:
    srv = http_server()
    r = httpx.request(method, base(srv) + path, timeout=10, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 400, r.text[:300]
    error = r.json()["error"]
    assert error["code"] == "bad_topic" and "levels" in error["message"]
    ok = httpx.post(base(srv) + f"/v1/publish/{LIMIT}", content=b"x", timeout=10)
    assert ok.status_code == 201


async def test_websocket_deep_topic_is_bad_topic(http_server: StartServer) -> None:
    srv = http_server()
    async with connect(ws_url(srv), max_size=None) as ws:
        for frame in (
            {"type": "subscribe", "ref": "s", "sub": "s", "filter": DEEP},
            {"type": "publish", "ref": "p", "topic": DEEP, "payload": "x"},
        ):
            await ws.send(json.dumps(frame))
            while True:
                reply = json.loads(await ws.recv())
                if reply["type"] != "ping":
                    break
            assert (reply["type"], reply["code"], reply["ref"]) == (
                "error",
                "bad_topic",
                frame["ref"],
            )
