"""engine=redis across nodes: 2-3 pushwire processes on one private redis-server.

A publish on any node reaches subscribers on every node and every transport; a cursor
taken on one node resumes exactly on another; retained messages are shared."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from helpers.redis import RedisServer
from helpers.server import ServerProcess
from helpers.workers import running_supervisor

from .cluster_util import (
    StartNode,
    base,
    cluster_node,
    mqtt_subscriber,
    payloads,
    poll,
    publish_http,
)

__all__ = ["cluster_node"]
pytestmark = pytest.mark.pushwire_only("engine=redis is pushwire's")


def ws_url(srv: ServerProcess) -> str:
    return f"ws://{srv.host}:{srv.http_port}/v1/ws"


async def _ws_messages(srv: ServerProcess, flt: str, n: int, ready: asyncio.Event) -> list[str]:
    async with connect(ws_url(srv), subprotocols=["pushwire.v1"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "subscribe", "sub": "s", "filter": flt}))
        out: list[str] = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
            if frame["type"] == "subscribed":
                ready.set()
            elif frame["type"] == "message":
                out.append(frame["payload"])
                if len(out) == n:
                    return out


async def _sse_messages(srv: ServerProcess, flt: str, n: int, ready: asyncio.Event) -> list[str]:
    out: list[str] = []
    async with (
        httpx.AsyncClient(timeout=15) as client,
        aconnect_sse(client, "GET", f"{base(srv)}/v1/sse/{flt}") as source,
    ):
        ready.set()  # the response head came: the stream is registered
        async for event in source.aiter_sse():
            if event.event == "message":
                out.append(json.loads(event.data)["payload"])
                if len(out) == n:
                    return out
    return out


async def _longpoll(srv: ServerProcess, flt: str, since: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=20) as client:
        r = await client.get(
            f"{base(srv)}/v1/longpoll/{flt}", params={"since": since, "timeout": "15"}
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


async def test_publish_on_any_node_reaches_every_node_on_every_transport(
    cluster_node: StartNode,
) -> None:
    a, b, c = cluster_node(), cluster_node(), cluster_node()
    subs = {n: mqtt_subscriber(n, f"sub-{i}", "x/#") for i, n in enumerate((a, b, c))}
    ready_sse, ready_ws = asyncio.Event(), asyncio.Event()
    sse = asyncio.create_task(_sse_messages(b, "x/%23", 2, ready_sse))
    ws = asyncio.create_task(_ws_messages(c, "x/#", 2, ready_ws))
    latest = poll(a, "x/%23", "latest")["cursor"]
    longpoll = asyncio.create_task(_longpoll(a, "x/%23", latest))
    await asyncio.wait_for(asyncio.gather(ready_sse.wait(), ready_ws.wait()), 15)
    # one message published over MQTT on node A, one over HTTP on node C
    pub = mqtt_subscriber(a, "pub", "unused/topic")
    pub.publish("x/mqtt", b"from-a", qos=1)
    r = await asyncio.to_thread(publish_http, c, "x/http", b"from-c")
    assert r.status_code == 201, r.text
    for node, sub in subs.items():
        got = await asyncio.to_thread(payloads, sub, 2)
        assert sorted(got) == [b"from-a", b"from-c"], node
    assert sorted(await asyncio.wait_for(sse, 15)) == ["from-a", "from-c"]
    assert sorted(await asyncio.wait_for(ws, 15)) == ["from-a", "from-c"]
    held = await asyncio.wait_for(longpoll, 20)
    assert held["messages"][0]["payload"] in ("from-a", "from-c")
    # every node gave the two messages the same positions
    ids = [
        [(m["id"], m["payload"]) for m in poll(n, "x/%23", "all")["messages"]] for n in (a, b, c)
    ]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 2


def test_cursor_from_one_node_resumes_exactly_on_another(cluster_node: StartNode) -> None:
    a, b = cluster_node(), cluster_node()
    answers = [publish_http(a, "c/t", f"m{i}".encode()).json() for i in range(5)]
    assert len({m["epoch"] for m in answers}) == 1
    cursor = answers[1]["cursor"]  # taken on A after the second message
    # B may not have read the last ones yet: a long-poll there waits for them
    got: list[str] = []
    since = cursor
    while len(got) < 3:
        body = poll(b, "c/t", since)
        assert not body["gap"], body
        got += [m["payload"] for m in body["messages"]]
        since = body["cursor"]
    assert got == ["m2", "m3", "m4"]
    # a node started after the fact loads the history from Redis and resumes the same
    late = cluster_node()
    body = poll(late, "c/t", cursor)
    assert [m["payload"] for m in body["messages"]] == ["m2", "m3", "m4"]
    assert not body["gap"]
    assert [m["id"] for m in body["messages"]] == [m["id"] for m in answers[2:]]


def test_retained_messages_are_shared(cluster_node: StartNode) -> None:
    a, b = cluster_node(), cluster_node()
    r = publish_http(a, "r/t", b"v1", retain="true")
    assert r.status_code == 201, r.text
    sub = mqtt_subscriber(b, "rsub", "r/t")
    assert payloads(sub, 1) == [b"v1"]
    publish_http(b, "r/t", b"v2", retain="true")
    late = cluster_node()  # loads the retained hash at start
    late_sub = mqtt_subscriber(late, "late", "r/#")
    assert payloads(late_sub, 1) == [b"v2"]
    # cleared on one node: a new subscriber on another gets nothing retained, and the
    # marker published after it proves the subscription was open
    publish_http(late, "r/t", b"", retain="true")
    assert payloads(sub, 2)[-1] == b""
    fresh = mqtt_subscriber(a, "fresh", "r/#")
    publish_http(b, "r/marker", b"after")
    assert payloads(fresh, 1) == [b"after"]


def _client_on_worker(url: str, avoid: str | None) -> tuple[httpx.Client, str]:
    """A keep-alive HTTP client and the worker its connection landed on (the kernel
    picks per connection: try new connections until one is not on `avoid`)."""
    for _ in range(200):
        client = httpx.Client(base_url=url, timeout=20)
        node = str(client.get("/v1/health").json()["node_id"])
        if node != avoid:
            return client, node
        client.close()
    raise AssertionError("every connection landed on the same worker")


def test_workers_on_redis_fan_out_to_each_other(tmp_path: Path, redis_server: RedisServer) -> None:
    flags = ("--engine", "redis", "--redis-url", redis_server.url)
    with running_supervisor(tmp_path / "data", 2, *flags) as sup:
        reader, reader_node = _client_on_worker(sup.http_url, None)
        writer, writer_node = _client_on_worker(sup.http_url, reader_node)
        try:
            assert reader_node != writer_node
            latest = reader.get("/v1/poll/w/t", params={"since": "latest"}).json()["cursor"]
            r = writer.post("/v1/publish/w/t", content=b"across-workers")
            assert r.status_code == 201, r.text
            body = reader.get("/v1/longpoll/w/t", params={"since": latest, "timeout": "15"}).json()
            assert [m["payload"] for m in body["messages"]] == ["across-workers"]
            assert body["messages"][0]["id"] == r.json()["id"]
        finally:
            reader.close()
            writer.close()


def test_a_burst_arrives_complete_and_in_order_on_another_node(cluster_node: StartNode) -> None:
    """Thousands of QoS 0 publishes in a burst go to Redis in batches (several script
    calls per round trip): every one reaches the other node once, in publish order."""
    a, b = cluster_node(), cluster_node()
    sub = mqtt_subscriber(b, "burst-sub", "burst/t", qos=0)
    pub = mqtt_subscriber(a, "burst-pub", "unused/topic")
    n = 6000
    for i in range(n):
        pub.client.publish("burst/t", str(i).encode(), qos=0)
    got = [int(p) for p in payloads(sub, n, timeout=30)]
    assert got == list(range(n))
    ids = [m["id"] for m in poll(b, "burst/t", "all")["messages"]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
