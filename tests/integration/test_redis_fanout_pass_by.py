"""engine=redis: a node does not decode or route the cluster's messages nobody on it wants,
and its log keeps in memory only what a live reader listens for.

Every node reads every message of the fan-out stream. A message no session of the node
subscribes to and no live HTTP reader listens for (and that is not retained) goes to the
node's message log as a cold entry (its id, time and size; the bytes stay in Redis) without
being decoded (Hub.pass_by, MessageLog.append_cold). With `redis_log_memory` "listened"
(the default) a message routed to an MQTT session is logged cold too unless a live reader
listens for it; "routed" keeps those in memory. The guarantees stay: a read on that node
returns exactly what the publishing node returns, evictions are still gaps, live readers
and retained messages still get the whole message. Real nodes (subprocesses) on a private
redis-server.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from helpers.server import ServerProcess

from .cluster_util import (
    StartNode,
    base,
    cluster_node,
    mqtt_subscriber,
    payloads,
    poll,
    publish_http,
    wait_for,
)

__all__ = ["cluster_node"]
pytestmark = pytest.mark.pushwire_only("engine=redis is pushwire's")

KEEP = 6  # messages each topic keeps: 8 published per topic, so 2 are evicted
PER_TOPIC = 8


def health(srv: ServerProcess) -> dict[str, Any]:
    r = httpx.get(f"{base(srv)}/v1/health", timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()["log"]
    return body


def read_all(srv: ServerProcess, flt: str, since: str, limit: int) -> tuple[list[Any], bool]:
    """Every (id, topic, payload) after `since`, in pages of `limit`, and any gap."""
    got: list[Any] = []
    gap = False
    while True:
        r = httpx.get(
            f"{base(srv)}/v1/poll/{flt}", params={"since": since, "limit": limit}, timeout=10
        )
        assert r.status_code == 200, r.text
        body = r.json()
        gap = gap or body["gap"]
        got += [(m["id"], m["topic"], m["payload"]) for m in body["messages"]]
        if not body["messages"] or since == body["cursor"]:
            return got, gap
        since = body["cursor"]


def test_unrouted_messages_are_logged_cold_and_read_back_exactly(
    cluster_node: StartNode,
) -> None:
    # A keeps what it routes in memory ("routed"): only the unrouted topic is cold there
    a = cluster_node("--log-max-messages", str(KEEP), "--redis-log-memory", "routed")
    b = cluster_node("--log-max-messages", str(KEEP))
    sub = mqtt_subscriber(a, "pb-sub", "pb/sub/#", qos=0)
    begin = poll(b, "pb/%23", "latest")["cursor"]
    sent: list[tuple[int, str, str]] = []
    cursors: dict[tuple[str, int], str] = {}
    for i in range(PER_TOPIC):
        for topic in ("pb/sub/x", "pb/free/y"):
            payload = f"{topic.split('/')[1]}{i}"
            r = publish_http(a, topic, payload.encode())
            assert r.status_code == 201, r.text
            sent.append((r.json()["id"], topic, payload))
            cursors[topic, i] = r.json()["cursor"]
    # A still routes to its subscriber
    assert payloads(sub, PER_TOPIC) == [f"sub{i}".encode() for i in range(PER_TOPIC)]
    last = sent[-1][0]
    wait_for(lambda: health(b)["last_id"] >= last, "node B to read the last position")
    # B routes neither topic: what its log keeps of both is cold; A routes pb/sub/x
    assert health(b)["disk_only"] == 2 * KEEP
    assert health(b)["messages"] == 2 * KEEP
    assert health(a)["disk_only"] == KEEP
    # a read on B answers exactly what A answers: the kept messages in order, and the two
    # evicted of each topic as a gap
    kept = [s for s in sent if int(s[2][-1]) >= PER_TOPIC - KEEP]
    got_b, gap_b = read_all(b, "pb/%23", begin, limit=5)
    got_a, gap_a = read_all(a, "pb/%23", begin, limit=5)
    assert got_b == got_a == kept
    assert gap_b and gap_a
    # from the last evicted message's cursor: no gap, the rest of the topic
    since = cursors["pb/free/y", PER_TOPIC - KEEP - 1]
    body = poll(b, "pb/free/y", since)
    assert not body["gap"]
    assert [m["payload"] for m in body["messages"]] == [
        f"free{i}" for i in range(PER_TOPIC - KEEP, PER_TOPIC)
    ]
    sub.disconnect()


async def test_live_readers_and_retained_messages_still_get_the_message(
    cluster_node: StartNode,
) -> None:
    a, b = cluster_node(), cluster_node()
    latest = poll(b, "pb/live/t", "latest")["cursor"]

    async def longpoll() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=20) as client:
            r = await client.get(
                f"{base(b)}/v1/longpoll/pb/live/t", params={"since": latest, "timeout": "15"}
            )
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

    held = asyncio.create_task(longpoll())
    r = await asyncio.to_thread(publish_http, a, "pb/live/t", b"live")
    assert r.status_code == 201, r.text
    body = await asyncio.wait_for(held, 20)
    assert [(m["id"], m["payload"]) for m in body["messages"]] == [(r.json()["id"], "live")]
    # a retained message nobody on B subscribes to still updates B's retained tree
    kept = await asyncio.to_thread(publish_http, a, "pb/ret/t", b"kept", retain="true")
    assert kept.status_code == 201, kept.text
    position = kept.json()["id"]
    await asyncio.to_thread(
        wait_for, lambda: health(b)["last_id"] >= position, "node B to read the retained one"
    )
    late = await asyncio.to_thread(mqtt_subscriber, b, "pb-late", "pb/ret/t", 0)
    got = await asyncio.to_thread(late.get, 10)
    assert got.payload == b"kept" and got.retain
    late.disconnect()


async def _sse_payloads(srv: ServerProcess, flt: str, n: int, ready: asyncio.Event) -> list[str]:
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


async def test_routed_messages_are_cold_unless_a_live_reader_listens(
    cluster_node: StartNode,
) -> None:
    a = cluster_node("--log-max-messages", str(KEEP))  # redis_log_memory "listened"
    sub = await asyncio.to_thread(mqtt_subscriber, a, "pl-sub", "pl/#", 0)
    sent = []
    for i in range(PER_TOPIC):
        r = await asyncio.to_thread(publish_http, a, "pl/x", f"x{i}".encode())
        assert r.status_code == 201, r.text
        sent.append(r.json())
    got = await asyncio.to_thread(payloads, sub, PER_TOPIC)
    assert got == [f"x{i}".encode() for i in range(PER_TOPIC)]
    # routed to the MQTT subscriber, and kept as id, time and size only
    log = await asyncio.to_thread(health, a)
    assert (log["messages"], log["disk_only"]) == (KEEP, KEEP)
    # a poll reads them back from Redis, exactly
    body = await asyncio.to_thread(poll, a, "pl/x", sent[PER_TOPIC - KEEP - 1]["cursor"])
    assert not body["gap"]
    assert [(m["id"], m["payload"]) for m in body["messages"]] == [
        (m["id"], f"x{i}") for i, m in enumerate(sent) if i >= PER_TOPIC - KEEP
    ]
    # a live reader: its topic's messages stay in memory (and reach it whole)
    ready = asyncio.Event()
    stream = asyncio.create_task(_sse_payloads(a, "pl/y", 1, ready))
    await asyncio.wait_for(ready.wait(), 15)
    r = await asyncio.to_thread(publish_http, a, "pl/y", b"y0")
    assert r.status_code == 201, r.text
    assert await asyncio.wait_for(stream, 15) == ["y0"]
    log = await asyncio.to_thread(health, a)
    assert (log["messages"], log["disk_only"]) == (KEEP + 1, KEEP)
    assert (await asyncio.to_thread(sub.get, 10)).payload == b"y0"
    sub.disconnect()
