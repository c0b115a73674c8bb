"""The physical frame of `pushwire bench gateway`: pushes as plain MQTT QoS 1 publishes.

The same JSON the gateway would send, published by one MQTT client straight to the device
topics on the same server: what delivery costs without the gateway's HTTP API, push records,
journal and batching.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast

from pushwire.bench.gateway_devices import encode_connect_auth, split_packets
from pushwire.bench.gateway_setup import BENCH_USER, GatewayServer
from pushwire.bench.loadgen import CONNACK, PUBACK, BenchError, encode_publish
from pushwire.bench.peers import HOST


def stamp() -> dict[str, Any]:
    """The provider's send time, read back by the devices for latency."""
    return {"data": {"t": time.time_ns()}}


class PlainPublisher(asyncio.Protocol):
    """An MQTT 3.1.1 client publishing QoS 1 straight to device topics (no gateway)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acked = 0
        self.inflight = 0
        self.room = asyncio.Event()
        self.next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(encode_connect_auth("bench-plain", *BENCH_USER, 600))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        packets, used = split_packets(self.buf)
        del self.buf[:used]
        for first, body in packets:
            if first >> 4 == PUBACK:
                self.acked += 1
                self.inflight -= 1
                self.room.set()
            elif first >> 4 == CONNACK and not self.connack.done():
                if body[1:2] == b"\x00":
                    self.connack.set_result(None)
                else:
                    self.connack.set_exception(BenchError(f"plain publisher refused: {body!r}"))

    def publish(self, topic: str, payload: bytes) -> None:
        assert self.transport is not None
        self.next_id = self.next_id % 65535 + 1
        self.inflight += 1
        self.transport.write(encode_publish(topic, payload, qos=1, packet_id=self.next_id))


def plain_payload(app_id: str, n: int) -> bytes:
    """The same JSON the gateway would send for a push (its shape, fields and size)."""
    return json.dumps(
        {
            "id": f"00000000-0000-4000-8000-{n:012d}",
            "app": app_id,
            "priority": 10,
            "push_type": "alert",
            "expiration": 0,
            "collapse_id": None,
            "sent_at": time.time(),
            "payload": stamp(),
        }
    ).encode()


async def plain_publisher(server: GatewayServer) -> PlainPublisher:
    loop = asyncio.get_running_loop()
    _, pub = await loop.create_connection(PlainPublisher, HOST, server.mqtt_port)
    await asyncio.wait_for(pub.connack, 10)
    return pub
