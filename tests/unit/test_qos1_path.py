"""The QoS 1 hot path's shortcuts give the same bytes and the same session state as the
general path: PUBACK runs from the decoder, acknowledging a run at once, a PUBLISH encoded
in one go, and the decoder's cache of topic names."""

from __future__ import annotations

from typing import Any

import pytest

from pushwire.core.hub import Hub
from pushwire.core.message import Message
from pushwire.core.session import Delivery, SessionLimits, Subscription
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.memory import MemoryEngine
from pushwire.mqtt.codec.decoder import Decoder
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.codec.errors import DecodeError
from pushwire.mqtt.codec.publish import encode_publish_plain
from pushwire.mqtt.connection import MQTTConnection
from pushwire.mqtt.events import OutboundAcks
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    Connect,
    PingReq,
    PubAck,
    PubAckRun,
    Publish,
)
from pushwire.mqtt.session import MqttSession

V4 = PROTOCOL_V311
V5 = PROTOCOL_V5


class RecordingLink:
    receive_maximum = 65535

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int, bool, int | None, bool]] = []

    def writable(self) -> bool:
        return True

    def send_message(self, d: Delivery, dup: bool, wire_cache: dict[Any, Any] | None) -> None:
        self.sent.append((d.message.topic, d.message.payload, d.qos, d.retain, d.wire_id, dup))

    def packet_ids(self) -> list[int]:
        """The packet ids of what was sent, every one a QoS > 0 delivery."""
        ids: list[int] = []
        for *_, packet_id, _dup in self.sent:
            assert packet_id is not None
            ids.append(packet_id)
        return ids

    def send_window(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            self.send_message(d, False, None)

    def send_release(self, packet_id: int) -> None:
        pass

    def close_taken_over(self) -> None:
        pass


def acks(*ids: int) -> bytes:
    return b"".join(encode(PubAck(i), V4) for i in ids)


def test_back_to_back_pubacks_come_as_one_run_in_order() -> None:
    dec = Decoder(ack_runs=True)
    data = acks(3, 1, 2) + encode(PingReq(), V4) + acks(9) + acks(7, 8)
    assert dec.feed(data) == [PubAckRun([3, 1, 2]), PingReq(), PubAckRun([9, 7, 8])]


def test_pubacks_runs_split_by_other_packets_and_across_feeds() -> None:
    dec = Decoder(ack_runs=True)
    assert dec.feed(acks(1)) == [PubAck(1)]  # alone in its read: a plain PubAck
    assert dec.feed(acks(2, 3) + encode(PingReq(), V4) + acks(4)) == [
        PubAckRun([2, 3]),
        PingReq(),
        PubAck(4),
    ]
    # a packet cut between reads joins the run when it completes
    data = acks(5, 6, 7)
    assert dec.feed(data[:6]) == [PubAck(5)]
    assert dec.feed(data[6:]) == [PubAckRun([6, 7])]


def test_a_puback_with_a_reason_code_is_not_folded() -> None:
    dec = Decoder(ack_runs=True)
    dec.protocol_level = V5
    data = encode(PubAck(1), V5) + encode(PubAck(2, 0x10), V5) + encode(PubAck(3), V5)
    assert dec.feed(data) == [PubAck(1), PubAck(2, 0x10), PubAck(3)]


def test_without_ack_runs_every_puback_is_its_own_packet() -> None:
    assert Decoder().feed(acks(1, 2)) == [PubAck(1), PubAck(2)]


def test_packet_id_zero_in_a_run_is_malformed_and_keeps_what_came_before() -> None:
    dec = Decoder(ack_runs=True)
    with pytest.raises(DecodeError) as info:
        dec.feed(acks(1, 2) + b"\x40\x02\x00\x00")
    assert info.value.packets == [PubAckRun([1, 2])]


def test_machine_turns_a_run_into_one_outbound_acks_event() -> None:
    conn = MQTTConnection()
    packets = conn.receive_data(encode(Connect("c", V4), V4) + acks(4, 5))
    assert packets[1:] == [PubAckRun([4, 5])]


def test_machine_handles_a_run() -> None:
    from pushwire.mqtt import handle_acks

    assert handle_acks.handle_puback_run(MQTTConnection(), PubAckRun([4, 5]), 0.0) == [
        OutboundAcks([4, 5])
    ]


def _session_with_sent(count: int, max_inflight: int = 4) -> tuple[Hub, RecordingLink, MqttSession]:
    hub = Hub(MemoryEngine(), SessionLimits(max_inflight, 1000))
    hub.session_factory = MqttSession
    link = RecordingLink()
    s, _ = hub.connect("c", True, 4, 0, link)
    assert isinstance(s, MqttSession)
    s.attach(link)
    hub.subscribe(s, Subscription("t", SubscriptionOptions(qos=1)))
    for i in range(count):
        hub.publish(Message("t", str(i).encode(), qos=1))
    return hub, link, s


def test_acknowledge_all_frees_the_window_and_refills_it_once_in_order() -> None:
    hub, link, s = _session_with_sent(10)
    assert [p for _, p, *_ in link.sent] == [b"0", b"1", b"2", b"3"]
    ids = link.packet_ids()
    held = hub.stats.queued_bytes
    s.acknowledge_all([ids[1], ids[0], 999, ids[2]])  # 999: not inflight, ignored
    assert [p for _, p, *_ in link.sent] == [str(i).encode() for i in range(7)]
    assert sorted(d.message.payload for d in s.inflight.values()) == [b"3", b"4", b"5", b"6"]
    assert hub.stats.queued_bytes < held and s.queued_bytes == hub.stats.queued_bytes
    # a second ack of the same id does nothing
    s.acknowledge_all([ids[0]])
    assert len(link.sent) == 7


def test_acknowledge_all_ignores_qos2_deliveries() -> None:
    hub = Hub(MemoryEngine(), SessionLimits(4, 1000))
    hub.session_factory = MqttSession
    link = RecordingLink()
    s, _ = hub.connect("c", True, 4, 0, link)
    assert isinstance(s, MqttSession)
    s.attach(link)
    hub.subscribe(s, Subscription("t", SubscriptionOptions(qos=2)))
    hub.publish(Message("t", b"x", qos=2))
    pid = link.sent[0][4]
    assert pid is not None
    s.acknowledge_all([pid])
    assert pid in s.inflight  # QoS 2 ends with PUBCOMP, never with PUBACK


@pytest.mark.parametrize("level", [V4, V5])
@pytest.mark.parametrize(
    ("qos", "retain", "dup", "packet_id"),
    [
        (0, False, False, None),
        (0, True, False, None),
        (1, False, False, 1),
        (1, True, True, 65535),
        (2, False, True, 300),
    ],
)
@pytest.mark.parametrize("payload", [b"", b"x" * 64, b"y" * 300, b"z" * 20000])
def test_encode_publish_plain_matches_the_codec(
    level: int, qos: int, retain: bool, dup: bool, packet_id: int | None, payload: bytes
) -> None:
    topic = "a/b/\u00e9"
    expected = encode(Publish(topic, payload, qos, retain, dup, packet_id), level)
    assert encode_publish_plain(topic, payload, qos, retain, dup, packet_id, level == V5) == (
        expected
    )


def test_encode_publish_plain_refuses_what_the_codec_refuses() -> None:
    with pytest.raises(ValueError):
        encode_publish_plain("t", b"", 1, False, False, 0, False)
    with pytest.raises(ValueError):
        encode_publish_plain("t", b"", 0, False, True, None, False)
    with pytest.raises(ValueError):
        encode_publish_plain("t" * 65536, b"", 0, False, False, None, False)


def test_topic_cache_never_lets_a_bad_topic_through() -> None:
    good = encode(Publish("a/b", b"1"), V4)
    for _ in range(2):  # the second time from the cache
        assert Decoder().feed(good) == [Publish("a/b", b"1")]
    for bad in (b"a/+", b"a/#", b"a\x00b", b"\xff"):
        packet = b"\x30" + bytes([2 + len(bad)]) + len(bad).to_bytes(2, "big") + bad
        for _ in range(2):
            with pytest.raises(DecodeError):
                Decoder().feed(packet)


def _connected_decoder(level: int = V4) -> Decoder:
    dec = Decoder()
    dec.protocol_level = level
    return dec


@pytest.mark.parametrize(
    ("retain", "dup", "packet_id", "payload"),
    [(False, False, 1, b""), (True, False, 65535, b"x" * 64), (False, True, 300, b"y" * 300)],
)
def test_a_qos1_publish_to_a_cached_topic_decodes_as_the_general_path(
    retain: bool, dup: bool, packet_id: int, payload: bytes
) -> None:
    packet = Publish("q/\u00e9", payload, 1, retain, dup, packet_id)
    data = encode(packet, V4)
    # the first read checks the topic name and caches it, the next ones take the inlined
    # path; three in one read, split reads too
    assert _connected_decoder().feed(data) == [packet]
    assert _connected_decoder().feed(data * 3) == [packet] * 3
    dec = _connected_decoder()
    assert dec.feed(data[:5]) == [] and dec.feed(data[5:]) == [packet]


def test_a_qos1_publish_to_a_cached_topic_is_refused_as_by_the_general_path() -> None:
    ok = encode(Publish("q/c", b"p", 1, False, False, 7), V4)
    assert _connected_decoder().feed(ok) == [Publish("q/c", b"p", 1, False, False, 7)]
    bad = [
        ok[:-3] + b"\x00\x00p",  # packet id 0
        b"\x32\x05" + ok[2:7],  # the packet ends inside the packet id
        b"\x32\x04\x00\x00\x00\x07",  # empty topic name (3.1.1 has no topic aliases)
        b"\x32\x05\x00\x09q/c",  # the topic is longer than the packet
    ]
    # an empty topic name went through the general path once: it must not be cached
    for data in bad:
        for _ in range(2):
            with pytest.raises(DecodeError):
                _connected_decoder().feed(data + ok)


def test_a_qos1_publish_at_level_5_is_not_taken_for_a_311_one() -> None:
    packet = Publish("q/c", b"p", 1, False, False, 9)
    assert _connected_decoder().feed(encode(packet, V4)) == [packet]  # cached
    assert _connected_decoder(V5).feed(encode(packet, V5)) == [packet]
