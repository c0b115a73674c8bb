"""A fan-out to many JSON WebSockets on the owned protocol (http/websocket.py
`NativeWsReader`): every subscriber after the first gets the frame cached on the log entry
in one call, and that shortcut keeps each subscriber's own rules: its ACL per message
(a frame cached for a subscriber allowed to read a topic never reaches one who is not),
its cursor (nothing twice after a replay), its consumer's redelivery marks."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from helpers.inproc import InProcessServer, running
from helpers.jsonws import recv
from helpers.server import ServerProcess
from pushwire.http.websocket import NativeWsReader

from .test_http_auth import basic, start_with_fan_acl

pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")

SUBSCRIBERS = 8  # per user: enough that allowed and denied readers interleave in a fan-out


async def raw_message(ws: ClientConnection, timeout: float = 5.0) -> str:
    """The next `message` frame as the text that came over the wire."""
    while True:
        text = await asyncio.wait_for(ws.recv(), timeout)
        assert isinstance(text, str)
        if json.loads(text)["type"] == "message":
            return text


async def subscribe(ws: ClientConnection, flt: str, **extra: Any) -> None:
    await ws.send(json.dumps({"type": "subscribe", "sub": "all", "filter": flt, **extra}))
    reply = await recv(ws)
    assert reply["type"] == "subscribed", reply


@pytest.fixture
def inproc() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def native_readers(srv: InProcessServer) -> int:
    # `type(o) is`, not isinstance: gc.get_objects() may hold a weak proxy whose referent is
    # gone, and isinstance on it raises ReferenceError
    return srv.call(lambda: sum(type(o) is NativeWsReader for o in gc.get_objects()))


async def test_a_fanout_writes_the_same_frame_to_every_subscriber(inproc: InProcessServer) -> None:
    assert inproc.server is not None and inproc.server.http_address is not None
    port = inproc.server.http_address[1]
    url = f"ws://127.0.0.1:{port}/v1/ws"
    clients = [await connect(url) for _ in range(20)]
    try:
        for ws in clients:
            await subscribe(ws, "fan/#")
        # the owned protocol's subscriptions are read by the fused reader
        assert native_readers(inproc) == 20
        async with httpx.AsyncClient() as http:
            for n in range(3):
                r = await http.post(f"http://127.0.0.1:{port}/v1/publish/fan/{n}", content=b"x")
                assert r.status_code == 201
        for n in range(3):
            texts = {await raw_message(ws) for ws in clients}
            assert len(texts) == 1  # one frame, the same bytes for all
            frame = json.loads(texts.pop())
            assert (frame["sub"], frame["topic"], frame["id"]) == ("all", f"fan/{n}", n + 1)
    finally:
        for ws in clients:
            await ws.close()


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_with_fan_acl(tmp_path_factory.mktemp("ws-fanout"))
    try:
        yield srv
    finally:
        srv.cleanup()


async def test_a_frame_cached_for_allowed_readers_never_reaches_a_denied_one(
    acl_server: ServerProcess,
) -> None:
    srv = acl_server
    url = f"ws://{srv.host}:{srv.http_port}/v1/ws"
    http = f"http://{srv.host}:{srv.http_port}"
    roots = [await connect(url, additional_headers=basic("root")) for _ in range(SUBSCRIBERS)]
    alices = [await connect(url, additional_headers=basic("alice")) for _ in range(SUBSCRIBERS)]
    try:
        # the same subscription name and filter: root's and alice's readers share the
        # entry's cached frame; alice may not read fan/secret/#
        for ws in [*roots, *alices]:
            await subscribe(ws, "fan/#")
        for topic in ("fan/secret/1", "fan/open/1", "fan/secret/2", "fan/open/2"):
            r = httpx.post(f"{http}/v1/publish/{topic}", content=topic, headers=basic("root"))
            assert r.status_code == 201
        for ws in roots:
            got = [(await recv(ws))["topic"] for _ in range(4)]
            assert got == ["fan/secret/1", "fan/open/1", "fan/secret/2", "fan/open/2"]
        for ws in alices:
            # the second open message is the marker: the secret ones were left out, not late
            got = [(await recv(ws))["topic"] for _ in range(2)]
            assert got == ["fan/open/1", "fan/open/2"]
    finally:
        for ws in [*roots, *alices]:
            await ws.close()


async def test_a_consumer_subscription_beside_plain_ones_keeps_its_marks(
    acl_server: ServerProcess,
) -> None:
    srv = acl_server
    url = f"ws://{srv.host}:{srv.http_port}/v1/ws"
    http = f"http://{srv.host}:{srv.http_port}"
    root = basic("root")
    plain = [await connect(url, additional_headers=root) for _ in range(4)]
    try:
        for ws in plain:
            await subscribe(ws, "marks/#")
        async with connect(url, additional_headers=root) as acked:
            await subscribe(acked, "marks/#", consumer="c1", ack=True)
            r = httpx.post(f"{http}/v1/publish/marks/a", content=b"1", headers=root)
            assert r.status_code == 201
            first = await recv(acked)
            assert first["payload"] == "1" and "redelivered" not in first
        # not acknowledged: the consumer's next subscription gets it again, marked, while
        # the plain subscribers (sharing the entry's unmarked frame) get the live one once
        async with connect(url, additional_headers=root) as acked:
            await subscribe(acked, "marks/#", consumer="c1", ack=True)
            again = await recv(acked)
            assert again["payload"] == "1" and again["redelivered"] is True
            r = httpx.post(f"{http}/v1/publish/marks/b", content=b"2", headers=root)
            assert r.status_code == 201
            live = await recv(acked)
            assert live["payload"] == "2" and "redelivered" not in live
        for ws in plain:
            got = [await recv(ws), await recv(ws)]
            assert [(m["payload"], "redelivered" in m) for m in got] == [
                ("1", False),
                ("2", False),
            ]
    finally:
        for ws in plain:
            await ws.close()
