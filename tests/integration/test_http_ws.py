"""The JSON WebSocket (/v1/ws) and MQTT over WebSocket, against MQTT and HTTP publishers."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from helpers.clients import PahoClient
from helpers.jsonws import messages, recv, request
from helpers.rawws import CLOSE, RawWs

from .http_util import PahoWS, StartServer, base, http_server, ws_url

__all__ = ["http_server"]
pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")
PahoFactory = Callable[..., PahoClient]


async def test_mqtt_publish_reaches_several_ws_subscriptions(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    srv = http_server()
    pub = paho_client(srv, "pub")
    async with connect(ws_url(srv), subprotocols=["pushwire.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "pushwire.v1"
        r = await request(ws, {"type": "subscribe", "sub": "all", "filter": "w/#", "ref": 7})
        assert r["type"] == "subscribed" and r["ref"] == 7 and r["sub"] == "all"
        r = await request(ws, {"type": "subscribe", "sub": "one", "filter": "w/+/t"})
        assert r["type"] == "subscribed"
        pub.publish("w/1/t", b"both", qos=1)
        pub.publish("w/x", b"only-all", qos=0)
        got = await messages(ws, 3)
        assert sorted((m["sub"], m["payload"]) for m in got) == [
            ("all", "both"),
            ("all", "only-all"),
            ("one", "both"),
        ]
        assert {m["id"] for m in got if m["payload"] == "both"} == {1}
        r = await request(ws, {"type": "unsubscribe", "sub": "all", "ref": "u"})
        assert r == {"type": "unsubscribed", "sub": "all", "ref": "u"}
        pub.publish("w/x", b"nobody", qos=1)
        pub.publish("w/2/t", b"one-only", qos=1)
        (m,) = await messages(ws, 1)
        assert (m["sub"], m["payload"]) == ("one", "one-only")


async def test_ws_publish_reaches_mqtt_and_http(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    srv = http_server()
    sub = paho_client(srv, "sub")
    sub.subscribe("from/ws", 1)
    async with connect(ws_url(srv)) as ws:
        r = await request(
            ws,
            {"type": "publish", "ref": "p1", "topic": "from/ws", "payload": "hi", "qos": 1},
        )
        assert r["type"] == "published" and r["ref"] == "p1" and r["id"] == 1
        r = await request(ws, {"type": "publish", "ref": "p2", "topic": "bad/#"})
        assert r["type"] == "error" and r["code"] == "bad_topic" and r["ref"] == "p2"
    msg = sub.get()
    assert (msg.topic, msg.payload, msg.qos) == ("from/ws", b"hi", 1)
    polled = httpx.get(f"{base(srv)}/v1/poll/from/ws").json()["messages"]
    assert [m["payload"] for m in polled] == ["hi"]


async def test_reconnect_with_cursor_gets_exactly_the_missed(http_server: StartServer) -> None:
    srv = http_server()
    url = base(srv)
    async with connect(ws_url(srv)) as ws:
        await request(ws, {"type": "subscribe", "sub": "s", "filter": "r/#"})
        for i in range(3):
            httpx.post(f"{url}/v1/publish/r/a", content=b"%d" % i)
        got = await messages(ws, 3)
        cursor = f"{got[-1]['epoch']}:{got[-1]['id']}"
    for i in range(3, 6):
        httpx.post(f"{url}/v1/publish/r/b", content=b"%d" % i)
    async with connect(ws_url(srv)) as ws:
        r = await request(ws, {"type": "subscribe", "sub": "s", "filter": "r/#", "since": cursor})
        assert r["cursor"] == cursor
        got = await messages(ws, 3)
        assert [m["payload"] for m in got] == ["3", "4", "5"]
        httpx.post(f"{url}/v1/publish/r/c", content=b"6")
        (live,) = await messages(ws, 1)
        assert live["payload"] == "6"
        assert all("redelivered" not in m for m in [*got, live])


async def test_ack_subscription_redelivers_unacknowledged_after_reconnect(
    http_server: StartServer,
) -> None:
    srv = http_server()
    url = base(srv)
    sub = {"type": "subscribe", "sub": "q", "filter": "jobs/#", "ack": True, "consumer": "w1"}
    async with connect(ws_url(srv)) as ws:
        assert (await request(ws, sub))["type"] == "subscribed"
        for i in range(3):
            httpx.post(f"{url}/v1/publish/jobs/x", content=b"job%d" % i)
        got = await messages(ws, 3)
        assert [m["payload"] for m in got] == ["job0", "job1", "job2"]
        await ws.send(json.dumps({"type": "ack", "sub": "q", "id": got[0]["id"]}))
        r = await request(ws, {"type": "ping", "ref": "sync"})  # acks are in order
        assert r == {"type": "pong", "ref": "sync"}
    httpx.post(f"{url}/v1/publish/jobs/x", content=b"job3")
    async with connect(ws_url(srv)) as ws:
        r = await request(ws, sub)
        assert r["cursor"].endswith(f":{got[0]['id']}")
        again = await messages(ws, 3)
        assert [(m["payload"], m.get("redelivered", False)) for m in again] == [
            ("job1", True),
            ("job2", True),
            ("job3", False),
        ]
        await ws.send(json.dumps({"type": "ack", "sub": "q", "id": again[-1]["id"]}))
        await request(ws, {"type": "ping"})
    async with connect(ws_url(srv)) as ws:
        await request(ws, sub)
        httpx.post(f"{url}/v1/publish/jobs/x", content=b"job4")
        (m,) = await messages(ws, 1)
        assert m["payload"] == "job4" and "redelivered" not in m


async def test_gap_frame_when_cursor_is_too_old(http_server: StartServer) -> None:
    srv = http_server(log_max_messages=2)
    url = base(srv)
    for i in range(4):
        httpx.post(f"{url}/v1/publish/g", content=b"%d" % i)
    async with connect(ws_url(srv)) as ws:
        await request(ws, {"type": "subscribe", "sub": "s", "filter": "g", "since": 1})
        gap = await recv(ws)
        assert gap["type"] == "gap" and gap["sub"] == "s"
        assert [m["payload"] for m in await messages(ws, 2)] == ["2", "3"]


async def test_server_pings_and_closes_a_silent_client_with_4000(
    http_server: StartServer,
) -> None:
    srv = http_server(ws_heartbeat=0.2, ws_missed_heartbeats=2)
    async with connect(ws_url(srv)) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ping"}
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4000


async def test_a_client_that_answers_pings_stays(http_server: StartServer) -> None:
    srv = http_server(ws_heartbeat=0.1, ws_missed_heartbeats=2)
    async with connect(ws_url(srv)) as ws:
        pings = 0
        while pings < 8:  # 0.8 s: four times the allowed silence
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if frame["type"] == "ping":
                pings += 1
                await ws.send('{"type":"pong"}')
        r = await request(ws, {"type": "ping", "ref": 1})
        assert r["type"] == "pong"


async def test_protocol_errors(http_server: StartServer) -> None:
    srv = http_server()
    async with connect(ws_url(srv)) as ws:
        r = await request(ws, {"type": "dance", "ref": 1})
        assert (r["type"], r["code"], r["ref"]) == ("error", "unknown_type", 1)
        r = await request(ws, {"type": "subscribe", "sub": "s", "filter": "a/#/b"})
        assert r["code"] == "bad_topic"
        r = await request(ws, {"type": "subscribe", "sub": "s", "filter": "a", "since": "soon"})
        assert r["code"] == "bad_cursor"
        r = await request(ws, {"type": "subscribe", "sub": "s", "filter": "a", "ack": True})
        assert r["code"] == "bad_request"
        r = await request(ws, {"type": "unsubscribe", "sub": "nope"})
        assert r["code"] == "unknown_sub"
        await request(ws, {"type": "subscribe", "sub": "s", "filter": "a"})
        r = await request(ws, {"type": "subscribe", "sub": "s", "filter": "b"})
        assert r["code"] == "duplicate_sub"
        r = await request(ws, {"type": "ack", "sub": "s", "id": 1})
        assert r["code"] == "bad_request"
        await ws.send("not json")
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4400


async def test_mqtt_over_websocket_receives_mqtt_and_http_publishes(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    srv = http_server()
    sub = PahoWS(srv, "ws-sub")
    try:
        sub.subscribe("mw/#", 1)
        pub = paho_client(srv, "tcp-pub")
        pub.publish("mw/tcp", b"from tcp", qos=1)
        httpx.post(f"{base(srv)}/v1/publish/mw/http?qos=1", content=b"from http")
        got = [sub.get(), sub.get()]
        assert [(m.topic, m.payload, m.qos) for m in got] == [
            ("mw/tcp", b"from tcp", 1),
            ("mw/http", b"from http", 1),
        ]
    finally:
        sub.close()


async def test_a_client_too_far_behind_is_closed_4001_and_resumes_without_loss(
    http_server: StartServer,
) -> None:
    """Messages go straight to the socket; a client that reads nothing fills the kernel's
    buffers, then the transport's, then its readers' `stream_buffer`: closed with 4001,
    and its cursor from before gets every message, in order."""
    srv = http_server(stream_buffer=5)
    url = base(srv)
    assert srv.http_port is not None
    ws = await RawWs.open(srv.host, srv.http_port, rcvbuf=4096)
    try:
        ws.send_json({"type": "subscribe", "sub": "s", "filter": "slow"})
        start = (await ws.json())["cursor"]
        pad = "x" * 16384
        sent = 0
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(100):
                batch = [{"topic": "slow", "payload": f"{sent + i}:{pad}"} for i in range(50)]
                assert (await client.post(f"{url}/v1/publish", json=batch)).status_code == 201
                sent += 50
                if (
                    "pushwire_stream_overflows_total 1.0"
                    in (await client.get(url + "/metrics")).text
                ):
                    break
            else:
                raise AssertionError("the connection never overflowed")
        got: list[int] = []
        last = start
        while True:
            opcode, payload = await ws.frame()
            if opcode == CLOSE:
                assert struct.unpack("!H", payload[:2])[0] == 4001
                break
            frame = json.loads(payload)
            if frame["type"] == "message":
                got.append(int(frame["payload"].split(":")[0]))
                last = f"{frame['epoch']}:{frame['id']}"
        assert got == list(range(len(got)))  # in order, nothing skipped before the close
    finally:
        ws.close()
    # resumed with the cursor of the last message it got: the rest, in order, no gap
    async with connect(ws_url(srv), max_size=None) as again:
        await again.send(
            json.dumps({"type": "subscribe", "sub": "s", "filter": "slow", "since": last})
        )
        resumed: list[int] = []
        async with asyncio.timeout(20):
            while len(got) + len(resumed) < sent:
                frame = json.loads(await again.recv())
                assert frame["type"] in ("subscribed", "message", "ping"), frame
                if frame["type"] == "message":
                    resumed.append(int(frame["payload"].split(":")[0]))
        assert resumed == list(range(len(got), sent))
