"""One write the store cannot keep fails alone (issue 9).

A real SQLite trigger in the server's own database makes every log write of one user's
topic fail, while another user publishes normally with 8 requests in flight. The other
user's publishes are all acknowledged (201) and all on disk after a kill -9; the refused
messages are answered 202 `stored: false` (routed, not kept: not an error); no answer
carries another client's data; and a cursor across a refused id reports a gap, before and
after the restart."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from helpers import raw, raw5
from helpers.raw import RawClient

from .http_util import HttpServerProcess, StartServer, base, http_server, ws_url

__all__ = ["http_server"]
pytestmark = pytest.mark.pushwire_only("pushwire's store")

POISON_TRIGGER = (
    "CREATE TRIGGER poison BEFORE INSERT ON log WHEN NEW.topic LIKE 'private/alice/%' "
    "BEGIN SELECT RAISE(ABORT, 'injected store failure'); END"
)
GOOD = 160
BAD = 24
IN_FLIGHT = 8
PUBACK = 4


def inject(srv: HttpServerProcess) -> None:
    """Install the trigger through a connection of our own (WAL lets it in while the
    server runs; the server's connection sees the new schema at its next statement)."""
    conn = sqlite3.connect(srv.data_dir / "pushwire.db", timeout=10)
    try:
        conn.execute(POISON_TRIGGER)
        conn.commit()
    finally:
        conn.close()


def poll(srv: HttpServerProcess, flt: str, since: str) -> dict[str, Any]:
    r = httpx.get(f"{base(srv)}/v1/poll/{flt}", params={"since": since, "limit": 1000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, dict)
    return body


async def publish_all(
    client: httpx.AsyncClient, topics: list[str]
) -> list[tuple[str, httpx.Response]]:
    """Publish to each topic, IN_FLIGHT requests at a time."""
    pending = iter(enumerate(topics))
    out: list[tuple[str, httpx.Response]] = []

    async def worker() -> None:
        for i, topic in pending:
            r = await client.post(f"/v1/publish/{topic}", content=f"m{i}".encode())
            out.append((topic, r))

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return out


async def test_a_write_the_store_refuses_fails_alone(http_server: StartServer) -> None:
    srv = http_server(memory=False)
    # a message before any failure: the cursor the hole check starts from
    r = httpx.post(f"{base(srv)}/v1/publish/private/alice/first", content=b"x")
    assert r.status_code == 201
    before = r.json()["cursor"]
    inject(srv)
    bob = [f"bob/{i}" for i in range(GOOD)]
    alice = [f"private/alice/{i}" for i in range(BAD)]
    # interleaved, so refused and good writes share group commits
    topics = list(bob)
    for i, topic in enumerate(alice):
        topics.insert(i * (GOOD // BAD + 1), topic)
    async with httpx.AsyncClient(base_url=base(srv), timeout=10) as client:
        results = await publish_all(client, topics)

    good = [(t, r) for t, r in results if t.startswith("bob/")]
    bad = [(t, r) for t, r in results if t.startswith("private/alice/")]
    assert len(good) == GOOD and len(bad) == BAD
    statuses = [r.status_code for _, r in good]
    assert statuses == [201] * GOOD, f"{sum(s != 201 for s in statuses)} good publishes failed"
    assert [r.status_code for _, r in bad] == [202] * BAD, bad[0][1].text
    for topic, r in good:
        assert r.status_code == 201, (topic, r.status_code, r.text)
        assert r.json()["stored"] is True
        assert "alice" not in r.text  # never another client's data
    for topic, r in bad:
        # routed (it has an id) but not kept: a documented success, not an error
        assert r.status_code == 202, (topic, r.status_code, r.text)
        body = r.json()
        assert body["stored"] is False and body["topic"] == topic and body["id"] is not None
    acked = {r.json()["id"] for _, r in good}
    refused = {r.json()["id"] for _, r in bad}

    # before the restart: the refused ones are out of the log, and crossing them is a gap
    polled = poll(srv, "bob/%23", "all")
    assert {m["id"] for m in polled["messages"]} == acked
    across = poll(srv, "private/alice/%23", before)
    assert across["gap"] is True and across["messages"] == []
    metrics = httpx.get(f"{base(srv)}/metrics").text
    assert f"pushwire_log_holes_total {BAD}.0" in metrics
    # the WebSocket says the same in its published frame
    async with connect(ws_url(srv)) as ws:
        await ws.send(json.dumps({"type": "publish", "topic": "private/alice/ws", "ref": 1}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (frame["type"], frame["stored"], frame["ref"]) == ("published", False, 1)
        refused.add(frame["id"])
        await ws.send(json.dumps({"type": "publish", "topic": "bob/ws", "ref": 2}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (frame["type"], frame["stored"], frame["ref"]) == ("published", True, 2)
        acked.add(frame["id"])

    srv.kill()  # kill -9: only what was committed survives
    srv.start()
    polled = poll(srv, "bob/%23", "all")
    assert {m["id"] for m in polled["messages"]} == acked  # every acknowledged one
    assert not refused & {m["id"] for m in poll(srv, "%23", "all")["messages"]}
    across = poll(srv, "private/alice/%23", before)
    assert across["gap"] is True
    # a cursor past the last hole is not told of it again
    after = f"{across['epoch']}:{max(refused)}"
    assert poll(srv, "private/alice/%23", after)["gap"] is False


def test_mqtt_a_refused_publish_closes_only_its_own_client(
    http_server: StartServer, raw_client: Callable[..., RawClient]
) -> None:
    srv = http_server(memory=False)
    inject(srv)
    bob = raw_client(srv, "bob")
    alices = [raw_client(srv, f"alice{i}") for i in range(6)]
    per_round = 20
    pid = 0
    # bob's QoS 1 publishes and alice's refused ones interleaved, so they share commits
    for n, alice in enumerate(alices):
        burst = b"".join(
            raw.publish(f"bob/{n}", b"b", qos=1, packet_id=pid + i + 1) for i in range(per_round)
        )
        pid += per_round
        alice.send(raw.publish("private/alice/x", b"a", qos=1, packet_id=1))
        bob.send(burst)
    acked: set[int | None] = set()
    while len(acked) < pid:
        acked.add(bob.expect(PUBACK).packet_id)
    assert acked == set(range(1, pid + 1))
    assert bob.is_open()
    for alice in alices:
        # no PUBACK for a message the store refused; the client resends after reconnect
        assert all(p.type != PUBACK for p in alice.read_until_closed())
    srv.kill()
    srv.start()
    assert len(poll(srv, "bob/%23", "all")["messages"]) == pid


def test_mqtt5_a_refused_publish_gets_puback_0x80_and_keeps_its_connection(
    http_server: StartServer,
) -> None:
    srv = http_server(memory=False)
    inject(srv)
    with RawClient(srv.host, srv.mqtt_port) as alice:
        alice.send(raw5.connect("alice5"))
        assert alice.expect(raw.CONNACK).body[1] == 0
        # the refused publish and a kept one in one burst: the acks keep their order
        alice.send(raw5.publish("private/alice/x", b"a", 1, 1) + raw5.publish("ok/x", b"b", 1, 2))
        first, second = alice.expect(PUBACK, 10), alice.expect(PUBACK, 10)
        assert (first.packet_id, raw5.reason(first)) == (1, 0x80)  # Unspecified error
        assert (second.packet_id, raw5.reason(second)) == (2, 0)
        assert alice.is_open()
    assert [m["payload"] for m in poll(srv, "ok/%23", "all")["messages"]] == ["b"]
