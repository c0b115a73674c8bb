"""An HTTP batch publish (`POST /v1/publish` with a JSON array, up to `http_max_batch`
messages) routes its fan-out over loop turns within `fanout_deliveries_per_turn`, on every
engine the same way: on memory and SQLite the handler routes a turn's share and yields
(http/publish.py `publish_specs`), on Redis the fan-out reader paces what comes back
(core/pacing.py). Other clients are served before the batch's last message is routed;
nothing is lost or reordered, and the reply lists every message.

Real sockets against an in-process server (so a hub observer can look, on the server's own
loop, at what another client has received at the moment a message is routed), as
tests/integration/test_fanout_budget.py does for MQTT."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import raw
from helpers.inproc import InProcessServer
from helpers.raw import RawClient, connected_client
from helpers.rawhttp import Reader
from pushwire.core.message import Message

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")

SUBSCRIBERS = 10
BUDGET = 50  # deliveries per turn: 5 messages to the 10 subscribers
MESSAGES = 400  # one batch: 80 turns at this budget
DEADLINE = 10.0


@pytest.fixture(params=["memory", "sqlite", "redis"])
def srv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis_server")
        server = InProcessServer(
            fanout_deliveries_per_turn=BUDGET,
            memory=False,
            engine="redis",
            redis_url=redis_server.url,
            data_dir=tmp_path,
        )
    elif request.param == "sqlite":
        server = InProcessServer(fanout_deliveries_per_turn=BUDGET, memory=False, data_dir=tmp_path)
    else:
        server = InProcessServer(fanout_deliveries_per_turn=BUDGET)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def subscribers(srv: InProcessServer) -> Iterator[list[RawClient]]:
    yield from raw.subscribed_clients(srv.host, srv.mqtt_port, SUBSCRIBERS, "blast")


def payload(n: int) -> str:
    return f"{n:05d}"


def batch_request() -> bytes:
    body = json.dumps([{"topic": "blast", "payload": payload(n)} for n in range(MESSAGES)])
    return (
        "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def test_other_clients_are_served_before_a_batch_ends(
    srv: InProcessServer, subscribers: list[RawClient]
) -> None:
    """The marker: an MQTT client sends PINGREQ while the batch's first message is routed;
    by the time its last message is routed, the PINGRESP is in that client's socket.
    Without the budget the whole batch is routed in one turn, and the PINGREQ is read
    after it."""
    assert srv.server is not None and srv.server.http_address is not None
    hub = srv.server.hub
    pinger = connected_client(srv.host, srv.mqtt_port, "pinger", keepalive=60)
    seen: dict[str, bool] = {}

    def observe(message: Message) -> bool:
        # on the server's loop, between two of its callbacks: no sleep, no wait
        if message.topic != "blast":
            return False
        if message.payload == payload(0).encode():
            pinger.sock.send(raw.PINGREQ_BYTES)
        elif message.payload == payload(MESSAGES - 1).encode():
            seen["pingresp_before_end"] = raw.has_data(pinger.sock)
        return False

    srv.call(lambda: hub.add_observer(observe))
    try:
        with socket.create_connection(srv.server.http_address, timeout=DEADLINE) as sock:
            sock.sendall(batch_request())
            status, _headers, body = Reader(sock).response()
        assert status == 201, body
        replies = json.loads(body)
        assert [r["topic"] for r in replies] == ["blast"] * MESSAGES
        ids = [r["id"] for r in replies]
        assert ids == sorted(ids) and len(set(ids)) == MESSAGES
        for client in subscribers:
            got = [client.recv_publish(timeout=DEADLINE).payload for _ in range(MESSAGES)]
            assert got == [payload(n).encode() for n in range(MESSAGES)]
        pinger.expect(raw.PINGRESP, timeout=DEADLINE)
        assert seen == {"pingresp_before_end": True}
    finally:
        pinger.close()
