"""Memory is bounded in bytes (issue 9, item 10), seen from outside over real sockets:
the message log's in-memory bytes stay under log_memory_bytes (read from /metrics), an
SQLite-backed reader still gets the entries that left memory (no gap), with --memory the
reader gets a gap, and a QoS 1 subscriber that never reads holds at most max_queued_bytes.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import time
from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

from helpers.clients import PahoClient
from helpers.raw import PUBLISH, RawClient, puback, subscribe
from helpers.raw import connect as raw_connect
from helpers.rawws import CLOSE, RawWs
from helpers.server import ServerProcess

from .http_util import StartServer, base, http_server, ws_url

__all__ = ["http_server"]
pytestmark = pytest.mark.pushwire_only("byte bounds and /metrics are pushwire's")
PahoFactory = Callable[..., PahoClient]

KB = 1024
LOG_TOTAL = 1_000_000
LOG_TOPIC = 300_000
TOPICS = 40
PER_TOPIC = 3
PAYLOAD = 60 * KB


def metrics(srv: ServerProcess) -> dict[str, float]:
    """Every sample of GET /metrics, keyed by name plus labels as written."""
    text = httpx.get(f"{base(srv)}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def wait_metric(srv: ServerProcess, name: str, predicate: Callable[[float], bool]) -> float:
    deadline = time.monotonic() + 10
    while True:
        value = metrics(srv).get(name)
        if value is not None and predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} = {value} did not reach the expected value")
        time.sleep(0.05)


def publish_many_topics(srv: ServerProcess, paho_client: PahoFactory) -> dict[str, list[bytes]]:
    """PER_TOPIC messages of PAYLOAD bytes to each of TOPICS topics, QoS 0 like the report,
    then wait until the log has them all (a QoS 0 publish has no ack to wait for)."""
    pub = paho_client(srv, "big-pub")
    sent: dict[str, list[bytes]] = {}
    for round_ in range(PER_TOPIC):
        for t in range(TOPICS):
            topic = f"big/{t}"
            payload = b"%03d-%d:" % (t, round_) + b"x" * (PAYLOAD - 8)
            sent.setdefault(topic, []).append(payload)
            pub.publish(topic, payload, qos=0)
    wait_metric(srv, "pushwire_log_appended_total", lambda v: v >= TOPICS * PER_TOPIC)
    return sent


def poll_all(srv: ServerProcess, flt: str, since: str) -> tuple[list[dict[str, object]], bool]:
    """Every message after `since`, page by page; and whether any page said gap."""
    url = f"{base(srv)}/v1/poll/{flt.replace('#', '%23')}"
    got: list[dict[str, object]] = []
    gap = False
    cursor = since
    for _ in range(1000):
        r = httpx.get(url, params={"since": cursor, "limit": 1000}, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        gap = gap or body["gap"]
        assert (r.headers["Pushwire-Gap"] == "true") == body["gap"]
        got += body["messages"]
        cursor = body["cursor"]
        if not body["more"]:
            return got, gap
    raise AssertionError("poll did not finish")


def test_sqlite_log_memory_stays_under_budget_and_old_entries_are_read_from_disk(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    srv = http_server(
        memory=False,
        durability=False,
        log_memory_bytes=LOG_TOTAL,
        log_topic_memory_bytes=LOG_TOPIC,
    )
    sent = publish_many_topics(srv, paho_client)
    m = metrics(srv)
    # 40 x 3 x 60 KB = 7.2 MB went through; memory holds at most the budget
    assert 0 < m["pushwire_log_memory_bytes"] <= LOG_TOTAL
    assert m['pushwire_log_memory_limit_bytes{scope="total"}'] == LOG_TOTAL
    assert m["pushwire_log_disk_only_messages"] >= TOPICS * PER_TOPIC - LOG_TOTAL // PAYLOAD
    assert m["pushwire_log_spilled_total"] == m["pushwire_log_disk_only_messages"]
    assert m["pushwire_log_memory_evicted_total"] == 0
    assert m["pushwire_log_messages"] == TOPICS * PER_TOPIC  # all kept, most on disk
    health = httpx.get(f"{base(srv)}/v1/health", timeout=10).json()
    assert health["log"]["memory_bytes"] <= LOG_TOTAL
    epoch = health["log"]["epoch"]

    # a reader from the very first id: everything, in order, exact payloads, no gap
    got, gap = poll_all(srv, "big/#", f"{epoch}:0")
    assert not gap
    assert len(got) == TOPICS * PER_TOPIC
    ids = [int(str(msg["id"])) for msg in got]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    by_topic: dict[str, list[bytes]] = {}
    for msg in got:
        by_topic.setdefault(str(msg["topic"]), []).append(str(msg["payload"]).encode())
    assert by_topic == sent
    assert metrics(srv)["pushwire_log_disk_reads_total"] > 0
    # reading back did not grow the log's memory
    assert metrics(srv)["pushwire_log_memory_bytes"] <= LOG_TOTAL


def test_memory_engine_evicts_over_budget_and_the_reader_gets_a_gap(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    srv = http_server(memory=True, log_memory_bytes=LOG_TOTAL, log_topic_memory_bytes=LOG_TOPIC)
    publish_many_topics(srv, paho_client)
    m = metrics(srv)
    assert 0 < m["pushwire_log_memory_bytes"] <= LOG_TOTAL
    evicted = m["pushwire_log_memory_evicted_total"]
    assert evicted >= TOPICS * PER_TOPIC - LOG_TOTAL // PAYLOAD
    assert m["pushwire_log_disk_only_messages"] == 0
    health = httpx.get(f"{base(srv)}/v1/health", timeout=10).json()["log"]
    got, gap = poll_all(srv, "big/#", f"{health['epoch']}:0")
    assert gap  # never silent
    assert len(got) == TOPICS * PER_TOPIC - evicted
    # what is left is the newest (globally oldest shed first)
    last = health["last_id"]
    assert [msg["id"] for msg in got] == list(range(last - len(got) + 1, last + 1))
    assert str(got[-1]["payload"]).startswith(f"{TOPICS - 1:03d}-2:")
    assert metrics(srv)["pushwire_gaps_total"] >= 1


def test_qos1_subscriber_that_never_reads_is_bounded_in_bytes(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    bound = 2_000_000
    # a persistent session on the SQLite store: its queue's own byte bound
    srv = http_server(memory=False, durability=False, max_persistent_queued_bytes=bound)
    # a persistent QoS 1 subscriber that stops reading right after SUBACK
    sub = RawClient(srv.host, srv.mqtt_port)
    try:
        assert sub.mqtt_connect("never-reads", clean_session=False).return_code == 0
        assert sub.subscribe(1, [("slow/t", 1)]).granted == [1]
        pub = paho_client(srv, "slow-pub")
        total = 40
        payload = b"y" * (200 * KB)
        for i in range(total):
            pub.publish("slow/t", b"%02d" % i + payload, qos=1)  # waits for PUBACK
        m = metrics(srv)
        queued = m["pushwire_mqtt_queued_bytes"]
        refused = m['pushwire_mqtt_queue_overflow_total{bound="bytes"}']
        assert 0 < queued <= bound
        assert refused > 0
        assert m['pushwire_mqtt_queue_overflow_total{bound="messages"}'] == 0
    finally:
        sub.close()
    # gone away, session kept: still no more than the bound
    wait_metric(srv, 'pushwire_open_connections{transport="mqtt"}', lambda v: v == 1)
    assert 0 < metrics(srv)["pushwire_mqtt_queued_bytes"] <= bound
    # back, reading: exactly what was kept, in order; kept + refused = published
    back = RawClient(srv.host, srv.mqtt_port)
    try:
        assert back.mqtt_connect("never-reads", clean_session=False).session_present
        received: list[int] = []
        while len(received) + refused < total:
            pkt = back.recv_publish(timeout=10)
            assert pkt.type == PUBLISH
            received.append(int(pkt.payload[:2]))
            back.send(puback(pkt.packet_id))
        assert received == sorted(received) and len(received) + refused == total
        assert received[0] == 0  # the oldest were kept, the overflow was refused
        wait_metric(srv, "pushwire_mqtt_queued_bytes", lambda v: v == 0)
        # a marker proves the pipe is still open and nothing else was waiting
        pub.publish("slow/t", b"marker", qos=1)
        pkt = back.recv_publish(timeout=10)
        assert pkt.payload == b"marker"
        back.send(puback(pkt.packet_id))
    finally:
        back.close()


def test_session_discarded_after_slow_consumer_releases_its_bytes(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    bound = 1_000_000
    srv = http_server(memory=True, max_queued_bytes=bound)
    sub = RawClient(srv.host, srv.mqtt_port)
    try:
        assert sub.mqtt_connect("gone", clean_session=False).return_code == 0
        sub.subscribe(1, [("gone/t", 1)])
        pub = paho_client(srv, "gone-pub")
        for i in range(20):
            pub.publish("gone/t", b"%02d" % i + b"z" * (100 * KB), qos=1)
        assert 0 < metrics(srv)["pushwire_mqtt_queued_bytes"] <= bound
    finally:
        sub.close()
    # the same client id comes back with a clean session: the old queue is freed
    clean = RawClient(srv.host, srv.mqtt_port)
    try:
        assert clean.mqtt_connect("gone", clean_session=True).return_code == 0
        wait_metric(srv, "pushwire_mqtt_queued_bytes", lambda v: v == 0)
    finally:
        clean.close()


async def test_sse_stream_buffer_is_bounded_in_bytes_not_only_in_messages(
    http_server: StartServer,
) -> None:
    """Large messages, far fewer than stream_buffer (the count), overflow the byte bound of
    a stream that does not read: it is closed with reason overflow, and resumes whole.

    The stream writes straight to the socket until the transport pauses it, so the client
    keeps a small receive window and reads nothing until the overflow is counted: the
    kernel and the transport buffer fill first, then the stream's 300 KB."""
    srv = http_server(stream_buffer_bytes=300_000)
    url = base(srv)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((srv.host, srv.http_port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET /v1/sse/wide HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(500):
            if (
                'pushwire_open_connections{transport="sse"} 1.0'
                in (await client.get(f"{url}/metrics")).text
            ):
                break
            await asyncio.sleep(0.01)
        sent = 0
        for _ in range(40):
            batch = [
                {"topic": "wide", "payload": f"{sent + i:04d}" + "w" * (64 * KB)} for i in range(10)
            ]
            assert (await client.post(f"{url}/v1/publish", json=batch)).status_code == 201
            sent += 10
            if "pushwire_stream_overflows_total 1.0" in (await client.get(f"{url}/metrics")).text:
                break
        else:
            raise AssertionError("the stream never overflowed its byte bound")
        # the byte bound, not the count (10,000 by default), closed it
        assert sent < 10_000
        data = b""
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                data += chunk
        writer.close()
        assert b"event: close" in data and b'"reason":"overflow"' in data
        # resumed with a cursor: every message, nothing skipped
        r = await client.get(f"{url}/v1/poll/wide", params={"since": "all", "limit": 1000})
        body = r.json()
        assert [m["payload"][:4] for m in body["messages"]] == [f"{i:04d}" for i in range(sent)]


def burst(prefix: str, n: int) -> list[dict[str, str]]:
    """One batch publish of ~4 MB (QoS 0): the server fans it out in one request."""
    return [
        {"topic": f"{prefix}/{n}-{i}", "payload": f"{i:02d}" + "r" * (200 * KB)} for i in range(19)
    ]


def test_live_burst_to_a_subscriber_that_never_reads_is_not_buffered_whole(
    http_server: StartServer,
) -> None:
    """Batches of 4 MB of QoS 0 messages to a subscriber that does not read: the server hands
    each burst to the socket as it goes and drops (and counts) QoS 0 once the send buffer
    is full, instead of buffering all of it for this one client. (Retained messages on
    subscribe are not the way to show it: they are paced by the subscriber, see
    test_retained_backlog.py, and never dropped.)"""
    srv = http_server(memory=True)
    before = metrics(srv)["pushwire_mqtt_dropped_total"]
    sub = RawClient(srv.host, srv.mqtt_port)
    try:
        sub.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KB)
        assert sub.mqtt_connect("ret-sub").return_code == 0
        assert sub.subscribe(1, [("ret/#", 0)]).granted == [0]  # then never read again
        published = 0
        with httpx.Client(timeout=30) as client:
            for n in range(10):
                batch = burst("ret", n)
                assert client.post(f"{base(srv)}/v1/publish", json=batch).status_code == 201
                published += len(batch)
                if metrics(srv)["pushwire_mqtt_dropped_total"] > before:
                    break
        dropped = metrics(srv)["pushwire_mqtt_dropped_total"] - before
        assert dropped > 0, "nothing was dropped: the bursts were buffered"
        assert dropped < published  # some went out: the socket took what it could
    finally:
        sub.close()


async def test_json_websocket_too_far_behind_in_bytes_is_closed_4001_and_resumes(
    http_server: StartServer,
) -> None:
    """The JSON WebSocket's send buffer is bounded in bytes too: large messages (far below
    stream_buffer, the count) close a client that reads nothing with 4001, and its cursor
    gets them all. Messages go straight to the socket until the transport pauses, so the
    client keeps a small receive window: the kernel and the transport buffer fill first,
    then the readers' 300 KB."""
    srv = http_server(stream_buffer_bytes=300_000)
    url = base(srv)
    assert srv.http_port is not None
    ws = await RawWs.open(srv.host, srv.http_port, rcvbuf=4096)
    try:
        ws.send_json({"type": "subscribe", "sub": "s", "filter": "wsb"})
        subscribed = await ws.json()
        assert subscribed["type"] == "subscribed"
        sent = 0
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(40):
                batch = [
                    {"topic": "wsb", "payload": f"{sent + i:04d}" + "b" * (64 * KB)}
                    for i in range(10)
                ]
                assert (await client.post(f"{url}/v1/publish", json=batch)).status_code == 201
                sent += 10
                if (
                    "pushwire_stream_overflows_total 1.0"
                    in (await client.get(url + "/metrics")).text
                ):
                    break
            else:
                raise AssertionError("the connection never overflowed")
        assert sent * 64 * KB < 10_000 * 64 * KB  # the count bound (10,000) was far away
        got: list[str] = []
        async with asyncio.timeout(10):
            while True:
                opcode, payload = await ws.frame()
                if opcode == CLOSE:
                    assert struct.unpack("!H", payload[:2])[0] == 4001
                    break
                frame = json.loads(payload)
                if frame["type"] == "message":
                    got.append(frame["payload"][:4])
                    last = f"{frame['epoch']}:{frame['id']}"
        assert got == [f"{i:04d}" for i in range(len(got))]  # in order, nothing skipped
    finally:
        ws.close()
    # resumed with the cursor of the last message it got: the rest, in order, no gap
    async with ws_connect(ws_url(srv), max_size=None) as again:
        await again.send(
            json.dumps({"type": "subscribe", "sub": "s", "filter": "wsb", "since": last})
        )
        resumed: list[str] = []
        async with asyncio.timeout(20):
            while len(got) + len(resumed) < sent:
                frame = json.loads(await again.recv())
                assert frame["type"] in ("subscribed", "message", "ping"), frame
                if frame["type"] == "message":
                    resumed.append(frame["payload"][:4])
        assert resumed == [f"{i:04d}" for i in range(len(got), sent)]


async def test_mqtt_over_websocket_subscriber_that_never_reads_is_bounded_in_bytes(
    http_server: StartServer,
) -> None:
    """MQTT over WebSocket (/mqtt): the frames waiting for the socket are bounded in bytes,
    not only in number, so a burst to a client that does not read is dropped and counted
    (QoS 0) instead of being buffered whole."""
    srv = http_server(memory=True)
    before = metrics(srv)["pushwire_mqtt_dropped_total"]
    async with ws_connect(
        ws_url(srv, "/mqtt"), subprotocols=[Subprotocol("mqtt")], max_size=None, max_queue=1
    ) as ws:
        await ws.send(raw_connect("wret-sub"))
        assert (await asyncio.wait_for(ws.recv(), 5))[:1] == b"\x20"  # CONNACK
        await ws.send(subscribe(1, [("wret/#", 0)]))
        assert (await asyncio.wait_for(ws.recv(), 5))[:1] == b"\x90"  # SUBACK; no more reads
        published = 0
        async with httpx.AsyncClient(timeout=30) as client:
            for n in range(10):
                batch = burst("wret", n)
                posted = await client.post(f"{base(srv)}/v1/publish", json=batch)
                assert posted.status_code == 201
                published += len(batch)
                if metrics(srv)["pushwire_mqtt_dropped_total"] > before:
                    break
        dropped = metrics(srv)["pushwire_mqtt_dropped_total"] - before
        assert dropped > 0, "nothing was dropped: the bursts were buffered"
        assert dropped < published  # some went out before the bound
