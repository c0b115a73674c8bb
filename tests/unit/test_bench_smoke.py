"""The benchmark's own encoder and packet counter, on hand-made bytes (no sockets)."""

from __future__ import annotations

import itertools

import pytest

from pushwire.bench.loadgen import (
    CONNACK,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    PacketWalker,
    ProtocolViolation,
    encode_connect,
    encode_pubacks,
    encode_publish,
    encode_publish_batch,
    encode_remaining_length,
    encode_subscribe,
    publish_payload,
)

CONNACK_OK = b"\x20\x02\x00\x00"
SUBACK_QOS0 = b"\x90\x03\x00\x01\x00"
PINGRESP_BYTES = b"\xd0\x00"


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length(length: int, encoded: bytes) -> None:
    assert encode_remaining_length(length) == encoded


def test_encoder_matches_hand_made_packets() -> None:
    assert encode_connect("c", keepalive=600) == (b"\x10\x0d\x00\x04MQTT\x04\x02\x02\x58\x00\x01c")
    assert encode_subscribe(1, "a/+", 1) == b"\x82\x08\x00\x01\x00\x03a/+\x01"
    assert encode_publish("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert encode_publish("a/b", b"hi", qos=1, packet_id=10) == b"\x32\x09\x00\x03a/b\x00\x0ahi"
    assert encode_pubacks(b"\x00\x01\x01\x02") == b"\x40\x02\x00\x01\x40\x02\x01\x02"


def _walk(
    stream: bytes, chunks: list[int], collect_ids: bool = False
) -> tuple[PacketWalker, list[int]]:
    """Feed `stream` split at the `chunks` offsets; returns the walker and control types."""
    seen: list[int] = []
    walker = PacketWalker(
        collect_ids=collect_ids, on_control=lambda kind, _packet: seen.append(kind)
    )
    edges = [0, *chunks, len(stream)]
    for start, end in itertools.pairwise(edges):
        walker.feed(stream[start:end])
    return walker, seen


def test_counts_publish_runs_and_passes_control_packets_at_every_split() -> None:
    same = encode_publish("t/1", b"x" * 5)
    longer_topic = encode_publish("t/22", b"x" * 4)  # same size, other topic length
    big = encode_publish("t/1", b"y" * 200)  # two-byte remaining length
    stream = CONNACK_OK + same * 5 + PINGRESP_BYTES + longer_topic * 3 + big * 2 + SUBACK_QOS0
    for split in range(len(stream) + 1):
        walker, seen = _walk(stream, [split])
        assert walker.counts[PUBLISH] == 10, split
        assert seen == [CONNACK, PINGRESP, SUBACK], split


def test_counts_byte_by_byte_and_in_one_big_chunk() -> None:
    stream = encode_publish_batch("bench/t", b"p" * 64, min_bytes=200_000)
    packets = len(stream) // len(encode_publish("bench/t", b"p" * 64))
    walker, _ = _walk(stream, [])
    assert walker.publishes == packets
    walker, _ = _walk(stream[:3000], list(range(1, 3000)))
    assert walker.publishes == 3000 // len(encode_publish("bench/t", b"p" * 64))


def test_same_size_packets_of_other_types_are_not_counted_as_publish() -> None:
    puback = b"\x40\x02\x00\x07"
    tiny_publish = encode_publish("", b"")  # also 4 bytes long: 30 02 00 00
    assert len(tiny_publish) == len(puback)
    walker, _ = _walk(puback * 3 + tiny_publish * 2 + puback, [])
    assert walker.counts[PUBACK] == 4
    assert walker.counts[PUBLISH] == 2


def test_collects_qos1_packet_ids_for_pubacks() -> None:
    stream = b"".join(encode_publish("q", b"abc", qos=1, packet_id=i) for i in (1, 2, 3, 258))
    stream += encode_publish("q", b"abc")  # QoS 0: no id
    stream += encode_publish("qq", b"ab", qos=1, packet_id=9)  # same size, other layout
    for split in (0, 5, 11, len(stream) - 1):
        walker, _ = _walk(stream, [split], collect_ids=True)
        assert walker.publishes == 6
        assert bytes(walker.publish_ids) == b"\x00\x01\x00\x02\x00\x03\x01\x02\x00\x09"


def test_payload_callback_sees_each_publish() -> None:
    payloads: list[bytes] = []
    walker = PacketWalker(
        on_publish=lambda packet, hl: payloads.append(publish_payload(packet, hl))
    )
    walker.feed(encode_publish("a", b"one") + encode_publish("a", b"two", qos=1, packet_id=5))
    assert payloads == [b"one", b"two"]
    assert walker.publishes == 2


def test_malformed_remaining_length_is_rejected() -> None:
    with pytest.raises(ProtocolViolation):
        PacketWalker().feed(b"\x30\xff\xff\xff\xff\x01")


def test_send_times_stamped_into_a_qos1_run_are_read_back_at_every_split() -> None:
    # qos1lat: publishers stamp a whole window of packets with one send time (strided
    # slices), the subscriber gathers the stamps of a run the same way
    from pushwire.bench.loadgen import TIMESTAMP, PublishRing, stamp_packets

    ring = PublishRing.build("bench/qos1lat", bytes(64), qos=1)
    size = ring.packet_size
    first = stamp_packets(ring.data[: 5 * size], size, size - 64, 111)
    second = stamp_packets(ring.data[5 * size : 12 * size], size, size - 64, 222)
    stream = first + second
    for split in (1, 7, size, 3 * size + 5, len(stream) - 1):
        walker = PacketWalker(collect_ids=True, collect_stamps=True)
        walker.feed(stream[:split])
        walker.feed(stream[split:])
        stamps = [
            TIMESTAMP.unpack_from(walker.publish_stamps, 8 * i)[0]
            for i in range(len(walker.publish_stamps) // 8)
        ]
        assert stamps == [111] * 5 + [222] * 7, split
        assert walker.publish_ids == b"".join(i.to_bytes(2, "big") for i in range(1, 13))
