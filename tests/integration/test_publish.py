"""PUBLISH at QoS 0/1/2 in both directions (MQTT 3.1.1 sections 3.3-3.7, 4.3)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt
import pytest

from helpers import raw
from helpers.clients import PahoClient
from helpers.raw import RawClient
from helpers.server import ServerProcess

RawFactory = Callable[..., RawClient]
PahoFactory = Callable[..., PahoClient]

QOS = [0, 1, 2]


@pytest.mark.parametrize("qos", QOS)
def test_paho_to_paho(server: ServerProcess, paho_client: PahoFactory, qos: int) -> None:
    sub = paho_client(server, "paho-sub")
    assert sub.subscribe("pp/t", 2) == [2]
    pub = paho_client(server, "paho-pub")
    pub.publish("pp/t", b"payload-%d" % qos, qos=qos)
    msg = sub.get()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == ("pp/t", b"payload-%d" % qos, qos, 0)


def _aio(server: ServerProcess, identifier: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        server.host,
        server.mqtt_port,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V311,
        timeout=5,
    )


async def _next_message(client: aiomqtt.Client, timeout: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            return message
    raise AssertionError("message iterator ended")


@pytest.mark.parametrize("qos", QOS)
async def test_aiomqtt_to_aiomqtt(server: ServerProcess, qos: int) -> None:
    async with _aio(server, "aio-sub") as sub, _aio(server, "aio-pub") as pub:
        await sub.subscribe("aa/t", qos=2)
        await pub.publish("aa/t", b"aio-%d" % qos, qos=qos)
        msg = await _next_message(sub)
        assert (str(msg.topic), msg.payload, msg.qos, msg.retain) == (
            "aa/t",
            b"aio-%d" % qos,
            qos,
            False,
        )


@pytest.mark.parametrize("qos", QOS)
async def test_paho_to_aiomqtt(server: ServerProcess, paho_client: PahoFactory, qos: int) -> None:
    async with _aio(server, "aio-sub") as sub:
        await sub.subscribe("pa/t", qos=2)
        pub = await asyncio.to_thread(paho_client, server, "paho-pub")
        await asyncio.to_thread(pub.publish, "pa/t", b"x", qos)
        msg = await _next_message(sub)
        assert (str(msg.topic), msg.payload, msg.qos) == ("pa/t", b"x", qos)


@pytest.mark.parametrize("qos", QOS)
async def test_aiomqtt_to_paho(server: ServerProcess, paho_client: PahoFactory, qos: int) -> None:
    sub = await asyncio.to_thread(paho_client, server, "paho-sub")
    assert await asyncio.to_thread(sub.subscribe, "ap/t", 2) == [2]
    async with _aio(server, "aio-pub") as pub:
        await pub.publish("ap/t", b"y", qos=qos)
    msg = await asyncio.to_thread(sub.get)
    assert (msg.topic, msg.payload, msg.qos) == ("ap/t", b"y", qos)


# --- exact acknowledgement packets, client -> server -----------------------------------------


def test_qos1_publish_gets_exact_puback(server: ServerProcess, raw_client: RawFactory) -> None:
    c = raw_client(server, "raw-pub1")
    c.send(raw.publish("ack/q1", b"one", qos=1, packet_id=0x0111))
    assert c.recv_packet().raw == b"\x40\x02\x01\x11"


def test_qos2_publish_gets_exact_pubrec_pubcomp(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    c = raw_client(server, "raw-pub2")
    c.send(raw.publish("ack/q2", b"two", qos=2, packet_id=0xBEEF))
    assert c.recv_packet().raw == b"\x50\x02\xbe\xef"
    c.send(raw.pubrel(0xBEEF))
    assert c.recv_packet().raw == b"\x70\x02\xbe\xef"


def test_qos0_publish_gets_no_ack(server: ServerProcess, raw_client: RawFactory) -> None:
    c = raw_client(server, "raw-pub0")
    c.send(raw.publish("ack/q0", b"zero"))
    # the next thing we get back is the answer to our PINGREQ, not an ack
    c.send(raw.PINGREQ_BYTES)
    assert c.recv_packet().raw == raw.PINGRESP_BYTES


# --- exact packets, server -> client ----------------------------------------------------------


def test_server_to_client_qos0(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    sub = raw_client(server, "raw-sub0")
    assert sub.subscribe(1, [("down/0", 2)]).raw == b"\x90\x03\x00\x01\x02"
    paho_client(server, "pub").publish("down/0", b"zero", qos=0)
    pkt = sub.recv_publish()
    assert pkt.raw == raw.publish("down/0", b"zero", qos=0)


def test_server_to_client_qos1(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    sub = raw_client(server, "raw-sub1")
    assert sub.subscribe(2, [("down/1", 2)]).granted == [2]
    pub = paho_client(server, "pub")
    pub.publish("down/1", b"first", qos=1)
    pkt = sub.recv_publish()
    assert (pkt.qos, pkt.dup, pkt.retain, pkt.topic, pkt.payload) == (
        1,
        False,
        False,
        "down/1",
        b"first",
    )
    assert pkt.packet_id != 0, "[MQTT-2.3.1-1] packet identifier must be non-zero"
    assert pkt.raw == raw.publish("down/1", b"first", qos=1, packet_id=pkt.packet_id)
    sub.send(raw.puback(pkt.packet_id))
    # acknowledged: the next message is a new one, not a retransmission
    pub.publish("down/1", b"second", qos=1)
    nxt = sub.recv_publish()
    assert (nxt.payload, nxt.dup) == (b"second", False)
    sub.send(raw.puback(nxt.packet_id))


def test_server_to_client_qos2(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    sub = raw_client(server, "raw-sub2")
    assert sub.subscribe(3, [("down/2", 2)]).granted == [2]
    pub = paho_client(server, "pub")
    pub.publish("down/2", b"exactly", qos=2)
    pkt = sub.recv_publish()
    assert (pkt.qos, pkt.dup, pkt.topic, pkt.payload) == (2, False, "down/2", b"exactly")
    assert pkt.packet_id != 0
    sub.send(raw.pubrec(pkt.packet_id))
    rel = sub.recv_packet()
    assert rel.raw == b"\x62\x02" + pkt.packet_id.to_bytes(2, "big"), "PUBREL, flags 0010"
    sub.send(raw.pubcomp(pkt.packet_id))
    assert sub.is_open()
    # the flow is complete: nothing is resent
    pub.publish("down/2", b"next", qos=2)
    nxt = sub.recv_publish()
    assert (nxt.payload, nxt.dup) == (b"next", False)


@pytest.mark.parametrize(
    "resends",
    [
        pytest.param(1, id="one-resend"),
        pytest.param(
            3,
            id="three-resends",
            marks=pytest.mark.mosquitto_deviation(
                "the 2nd duplicate before PUBREL is treated as a protocol error and the "
                "client is disconnected (eclipse-mosquitto/mosquitto#3602)"
            ),
        ),
    ],
)
def test_qos2_duplicate_publish_delivered_once(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory, resends: int
) -> None:
    """[MQTT-4.3.3-2]: a resent QoS 2 PUBLISH (DUP=1) before PUBREL is acknowledged with
    PUBREC again, every time, but not delivered again."""
    sub = paho_client(server, "eo-sub")
    assert sub.subscribe("eo/t", 2) == [2]
    pub = raw_client(server, "eo-pub")
    pid = 77
    pub.send(raw.publish("eo/t", b"once", qos=2, packet_id=pid))
    assert pub.recv_packet().raw == raw.pubrec(pid)
    for _ in range(resends):
        pub.send(raw.publish("eo/t", b"once", qos=2, packet_id=pid, dup=True))
        assert pub.recv_packet().raw == raw.pubrec(pid)
    pub.send(raw.pubrel(pid))
    assert pub.recv_packet().raw == raw.pubcomp(pid)
    # the same packet id is free again: a new message with it is a new delivery
    pub.send(raw.publish("eo/t", b"again", qos=2, packet_id=pid))
    assert pub.recv_packet().raw == raw.pubrec(pid)
    pub.send(raw.pubrel(pid))
    assert pub.recv_packet().raw == raw.pubcomp(pid)
    got = sub.get_until(lambda m: m.payload == b"again")
    assert [m.payload for m in got] == [b"once", b"again"]
