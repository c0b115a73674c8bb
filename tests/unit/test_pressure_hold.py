"""A publisher held back for a subscriber that keeps up (core/pressure.py), on the real
server's MQTT glue in process: its socket is paused only when it sends more while held (a
publisher keeping a window of unacknowledged QoS 1 PUBLISHes sends nothing more, and a
pause/resume pair costs two epoll_ctl per hold), and nothing it sent is dropped or
reordered either way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pushwire.config import Settings
from pushwire.mqtt.codec import Decoder, encode
from pushwire.mqtt.packets import (
    PROTOCOL_V311,
    Connect,
    PubAck,
    Publish,
    Subscribe,
    SubscriptionOptions,
)
from pushwire.mqtt.protocol import MQTTServerProtocol
from pushwire.server import PushwireServer

V4 = PROTOCOL_V311


class Transport:
    """What MQTTServerProtocol uses of an asyncio transport: keeps what is written and
    counts pauses and resumes of reading."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.pauses = 0
        self.resumes = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        self.resumes += 1


@pytest.fixture
async def server() -> AsyncIterator[PushwireServer]:
    settings = Settings.model_validate(
        {
            "memory": True,
            "connect_rate_per_client_id": 0,
            "connection_rate_per_ip": 0,
            "max_inflight": 2,
            "backpressure_queue_messages": 4,
            # generous: on a loaded machine the subscriber must still count as keeping up
            "backpressure_progress_window": 30,
        }
    )
    srv = PushwireServer(settings)
    await srv.engine.open()
    await srv.auth.start()
    yield srv
    await srv.engine.close()


async def turn() -> None:
    """Let the loop run what the glue scheduled (flushes, releases)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def connect(server: PushwireServer, client_id: str) -> tuple[MQTTServerProtocol, Transport]:
    proto = MQTTServerProtocol(server.mqtt)
    transport = Transport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.data_received(encode(Connect(client_id, V4, keepalive=60), V4))
    await turn()
    assert transport.take()[:1] == b"\x20"  # CONNACK
    return proto, transport


def publishes(first: int, count: int) -> bytes:
    return b"".join(
        encode(Publish("t/x", b"%d" % i, 1, False, False, i + 1), V4)
        for i in range(first, first + count)
    )


async def drain(
    sub: MQTTServerProtocol, sub_out: Transport, want: int, decoder: Decoder
) -> list[int]:
    """The subscriber acknowledges everything it is sent until it has `want` messages."""
    got: list[int] = []
    for _ in range(10 * want):
        await turn()
        packets = decoder.feed(sub_out.take())
        got += [int(p.payload) for p in packets if isinstance(p, Publish)]
        acks = b"".join(
            encode(PubAck(p.packet_id), V4)
            for p in packets
            if isinstance(p, Publish) and p.packet_id is not None
        )
        if acks:
            sub.data_received(acks)
        if len(got) >= want:
            break
    return got


async def subscriber(server: PushwireServer) -> tuple[MQTTServerProtocol, Transport, Decoder]:
    sub, sub_out = await connect(server, "sub")
    sub.data_received(encode(Subscribe(1, [("t/#", SubscriptionOptions(qos=1))]), V4))
    await turn()
    decoder = Decoder(server_side=False)
    decoder.protocol_level = V4
    decoder.feed(sub_out.take())  # SUBACK
    return sub, sub_out, decoder


async def warm_up(
    pub: MQTTServerProtocol,
    pub_out: Transport,
    sub: MQTTServerProtocol,
    sub_out: Transport,
    decoder: Decoder,
) -> None:
    """One message through and acknowledged: the subscriber now keeps up (it made progress
    within the progress window), so it holds publishers back instead of refusing."""
    pub.data_received(encode(Publish("t/x", b"-1", 1, False, False, 1000), V4))
    assert await drain(sub, sub_out, 1, decoder) == [-1]
    pub_out.take()


async def test_a_windowed_publisher_is_held_without_pausing_its_socket(
    server: PushwireServer,
) -> None:
    sub, sub_out, decoder = await subscriber(server)
    pub, pub_out = await connect(server, "pub")
    await warm_up(pub, pub_out, sub, sub_out, decoder)
    pub.data_received(publishes(0, 12))  # its whole window, far more than 2 + 4
    await turn()
    assert server.hub.stats.publishers_held == 1  # held: the rest of the read waits
    got = await drain(sub, sub_out, 12, decoder)
    assert got == list(range(12))  # every one, in order
    assert len(pub_out.take()) == 12 * 4  # and every one acknowledged
    assert server.hub.stats.queue_overflow == 0
    assert pub_out.pauses == 0 and pub_out.resumes == 0  # never paused: it sent no more


async def test_a_publisher_sending_more_while_held_is_paused_then_resumed(
    server: PushwireServer,
) -> None:
    sub, sub_out, decoder = await subscriber(server)
    pub, pub_out = await connect(server, "pub")
    await warm_up(pub, pub_out, sub, sub_out, decoder)
    pub.data_received(publishes(0, 12))
    await turn()
    assert server.hub.stats.publishers_held == 1
    assert pub_out.pauses == 0
    pub.data_received(publishes(12, 12))  # more while held: TCP must push back now
    assert pub_out.pauses == 1
    got = await drain(sub, sub_out, 24, decoder)
    assert got == list(range(24))  # nothing dropped or reordered
    assert len(pub_out.take()) == 24 * 4
    assert pub_out.resumes == pub_out.pauses  # reading again once let go
    assert server.hub.stats.queue_overflow == 0
