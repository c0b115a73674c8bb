"""MQTT codec: exact layouts, round trips, stream framing and every rejection rule."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import replace

import pytest

from pushwire.mqtt.codec.decoder import Decoder
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.codec.errors import DecodeError, PacketTooLarge, UnsupportedProtocolVersion
from pushwire.mqtt.codec.publish import encode_publish_template, patch_publish
from pushwire.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Suback,
    Subscribe,
    SubscriptionOptions,
    Unsuback,
    Unsubscribe,
    Will,
)

V4 = 4
V5 = 5
MALFORMED = 0x81
PROTOCOL_ERROR = 0x82
UNSUPPORTED = 0x84
TOPIC_NAME_INVALID = 0x90
TOO_LARGE = 0x95


# --- helpers (independent of the codec, so they can catch its mistakes) -------------------


def vbi(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def raw(byte0: int, body: bytes) -> bytes:
    return bytes([byte0]) + vbi(len(body)) + body


def s(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def decoder(level: int = V4, server_side: bool = True, max_packet_size: int = 1_048_576) -> Decoder:
    dec = Decoder(max_packet_size=max_packet_size, server_side=server_side)
    dec.protocol_level = level
    return dec


def decode(data: bytes, level: int = V4, server_side: bool = True) -> list[Packet]:
    return decoder(level, server_side).feed(data)


def decode_one(data: bytes, level: int = V4, server_side: bool = True) -> Packet:
    packets = decode(data, level, server_side)
    assert len(packets) == 1, packets
    return packets[0]


def reject(
    data: bytes, level: int = V4, server_side: bool = True, reason: int = MALFORMED
) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(data, level, server_side)
    assert info.value.reason_code == reason, str(info.value)
    return info.value


# --- exact layouts from the specs ------------------------------------------------------------

# 3.1.1 section 3.1.2.10 / 5.0 section 3.1.2.12: protocol name, level, flags 0xCE (user name,
# password, will QoS 1, will flag, clean start), keep alive 10.
V311_CONNECT = raw(
    0x10,
    b"\x00\x04MQTT\x04\xce\x00\x0a" + s("cid") + s("w/t") + s(b"bye") + s("user") + s(b"pw"),
)


def test_connect_v311_spec_layout() -> None:
    packet = Connect(
        "cid",
        protocol_level=V4,
        clean_start=True,
        keepalive=10,
        username="user",
        password=b"pw",
        will=Will("w/t", b"bye", qos=1),
    )
    assert encode(packet, V4) == V311_CONNECT
    assert decode_one(V311_CONNECT) == packet


def test_connect_v5_spec_layout() -> None:
    # 5.0 example: properties length 5, Session Expiry Interval (0x11) = 10.
    data = raw(
        0x10,
        b"\x00\x04MQTT\x05\xce\x00\x0a"
        + b"\x05\x11\x00\x00\x00\x0a"
        + s("cid")
        + b"\x00"  # will properties
        + s("w/t")
        + s(b"bye")
        + s("user")
        + s(b"pw"),
    )
    packet = Connect(
        "cid",
        protocol_level=V5,
        keepalive=10,
        username="user",
        password=b"pw",
        will=Will("w/t", b"bye", qos=1),
        properties={"session_expiry_interval": 10},
    )
    assert encode(packet, V5) == data
    assert decode_one(data) == packet


def test_publish_qos1_spec_layout() -> None:
    # 3.1.1 section 3.3.2.3: topic "a/b", packet identifier 10.
    packet = Publish("a/b", b"hi", qos=1, packet_id=10)
    v4 = bytes.fromhex("3209 0003 612f62 000a 6869")
    v5 = bytes.fromhex("320a 0003 612f62 000a 00 6869")
    assert encode(packet, V4) == v4
    assert encode(packet, V5) == v5
    assert decode_one(v4, V4) == packet
    assert decode_one(v5, V5) == packet


def test_subscribe_spec_layout() -> None:
    # 3.1.1 section 3.8.3: "a/b" QoS 1 and "c/d" QoS 2, packet identifier 10.
    data = bytes.fromhex("820e 000a 0003 612f62 01 0003 632f64 02")
    packet = Subscribe(
        10, [("a/b", SubscriptionOptions(qos=1)), ("c/d", SubscriptionOptions(qos=2))]
    )
    assert encode(packet, V4) == data
    assert decode_one(data, V4) == packet


def test_subscribe_v5_options_byte() -> None:
    # 5.0 section 3.8.3.1: QoS bits 0-1, No Local bit 2, RAP bit 3, Retain Handling bits 4-5.
    opts = SubscriptionOptions(qos=2, no_local=True, retain_as_published=True, retain_handling=2)
    data = bytes.fromhex("8209 0001 00 0003 612f62 2e")
    packet = Subscribe(1, [("a/b", opts)])
    assert encode(packet, V5) == data
    assert decode_one(data, V5) == packet


def test_suback_spec_layout() -> None:
    # 3.1.1 section 3.9.3: granted QoS 0, granted QoS 2, failure.
    data = bytes.fromhex("9005 000a 000280")
    packet = Suback(10, [0x00, 0x02, 0x80])
    assert encode(packet, V4) == data
    assert decode_one(data, V4, server_side=False) == packet


def test_connack_v311_layout() -> None:
    # 3.1.1 section 3.2: session present flag, return code; remaining length 2.
    assert encode(Connack(session_present=True, reason_code=0), V4) == b"\x20\x02\x01\x00"
    assert encode(Connack(reason_code=5), V4) == b"\x20\x02\x00\x05"
    assert decode_one(b"\x20\x02\x01\x00", V4, server_side=False) == Connack(True, 0)


def test_connack_v5_with_properties_layout() -> None:
    props = {
        "receive_maximum": 10,
        "topic_alias_maximum": 5,
        "maximum_qos": 1,
        "assigned_client_identifier": "auto",
    }
    data = bytes.fromhex("2012 00 00 0f 21000a 220005 2401 1200046175746f")
    assert encode(Connack(False, 0, props), V5) == data
    assert decode_one(data, V5, server_side=False) == Connack(False, 0, props)


def test_unsuback_v311_has_no_payload() -> None:
    assert encode(Unsuback(5, [0x00, 0x11]), V4) == b"\xb0\x02\x00\x05"
    assert decode_one(b"\xb0\x02\x00\x05", V4, server_side=False) == Unsuback(5)


def test_unsuback_v5_layout() -> None:
    data = bytes.fromhex("b005 0005 00 0011")
    assert encode(Unsuback(5, [0x00, 0x11]), V5) == data
    assert decode_one(data, V5, server_side=False) == Unsuback(5, [0x00, 0x11])


def test_unsubscribe_layout() -> None:
    assert encode(Unsubscribe(3, ["a/+"]), V4) == bytes.fromhex("a207 0003 0003 612f2b")
    assert encode(Unsubscribe(3, ["a/+"]), V5) == bytes.fromhex("a208 0003 00 0003 612f2b")


def test_ping_layouts() -> None:
    assert encode(PingReq(), V4) == b"\xc0\x00"
    assert encode(PingResp(), V5) == b"\xd0\x00"


@pytest.mark.parametrize(
    ("cls", "byte0"), [(PubAck, 0x40), (PubRec, 0x50), (PubRel, 0x62), (PubComp, 0x70)]
)
def test_ack_shortest_forms(cls: Callable[..., Packet], byte0: int) -> None:
    header = bytes([byte0])
    reason = 0x92 if cls in (PubRel, PubComp) else 0x10
    assert encode(cls(7), V4) == header + b"\x02\x00\x07"
    # 3.1.1 has no reason codes or properties: they are dropped.
    assert encode(cls(7, reason, {"reason_string": "x"}), V4) == header + b"\x02\x00\x07"
    assert encode(cls(7), V5) == header + b"\x02\x00\x07"
    assert encode(cls(7, reason), V5) == header + bytes([3, 0, 7, reason])
    assert encode(cls(7, 0, {"reason_string": "x"}), V5) == header + bytes.fromhex(
        "08 0007 00 04 1f000178"
    )
    assert decode_one(header + b"\x02\x00\x07", V5) == cls(7)
    assert decode_one(header + bytes([3, 0, 7, reason]), V5) == cls(7, reason)
    # reason code present, property length 0
    assert decode_one(header + bytes([4, 0, 7, reason, 0]), V5) == cls(7, reason)


def test_disconnect_and_auth_short_forms() -> None:
    assert encode(Disconnect(), V5) == b"\xe0\x00"
    assert encode(Disconnect(0x04), V5) == b"\xe0\x01\x04"
    assert encode(Disconnect(0x8E), V4) == b"\xe0\x00"
    assert encode(Auth(), V5) == b"\xf0\x00"
    assert encode(Auth(0x18, {"authentication_method": "m"}), V5) == bytes.fromhex(
        "f006 18 04 1500016d"
    )
    assert decode_one(b"\xe0\x00", V5) == Disconnect(0)
    assert decode_one(b"\xe0\x01\x04", V5) == Disconnect(4)
    assert decode_one(b"\xe0\x02\x04\x00", V5) == Disconnect(4)
    assert decode_one(b"\xf0\x00", V5) == Auth(0)
    assert decode_one(b"\xe0\x00", V4) == Disconnect()


def test_remaining_length_multi_byte() -> None:
    payload = b"x" * 200
    packet = Publish("t", payload)
    data = encode(packet, V4)
    # 3 (topic) + 200 = 203 = 0xCB -> 0xCB 0x01
    assert data[:3] == b"\x30\xcb\x01"
    assert decode_one(data) == packet


# --- round trips ------------------------------------------------------------------------------

FULL_PUBLISH_PROPS = {
    "payload_format_indicator": 1,
    "message_expiry_interval": 3600,
    "content_type": "text/plain",
    "response_topic": "r/t",
    "correlation_data": b"\x00\x01",
    "topic_alias": 4,
    "user_property": [("k", "v"), ("k", "v2"), ("a", "")],
}

ROUND_TRIPS: list[tuple[str, Packet, int, bool]] = [
    ("connect-minimal", Connect(""), V4, True),
    (
        "connect-full",
        Connect(
            "client-1",
            protocol_level=V4,
            clean_start=False,
            keepalive=0,
            username="ü",
            password=b"\xff\x00",
            will=Will("last/will", b"\x00gone", qos=2, retain=True),
        ),
        V4,
        True,
    ),
    ("connect-user-only", Connect("c", username="u"), V4, True),
    (
        "connect-v5-full",
        Connect(
            "c5",
            protocol_level=V5,
            keepalive=65535,
            username="u",
            password=b"p",
            will=Will(
                "w",
                b"bye",
                qos=1,
                properties={
                    "will_delay_interval": 30,
                    "payload_format_indicator": 0,
                    "message_expiry_interval": 9,
                    "content_type": "c",
                    "response_topic": "r",
                    "correlation_data": b"cd",
                    "user_property": [("w", "1")],
                },
            ),
            properties={
                "session_expiry_interval": 0xFFFFFFFF,
                "receive_maximum": 100,
                "maximum_packet_size": 65536,
                "topic_alias_maximum": 10,
                "request_response_information": 1,
                "request_problem_information": 0,
                "authentication_method": "SCRAM",
                "authentication_data": b"\x01",
                "user_property": [("x", "y")],
            },
        ),
        V5,
        True,
    ),
    ("connect-v5-password-only", Connect("c", protocol_level=V5, password=b"tok"), V5, True),
    ("connack", Connack(True, 0), V4, False),
    ("connack-refused", Connack(False, 4), V4, False),
    (
        "connack-v5-full",
        Connack(
            False,
            0,
            {
                "session_expiry_interval": 10,
                "assigned_client_identifier": "auto-1",
                "server_keep_alive": 30,
                "authentication_method": "m",
                "authentication_data": b"d",
                "response_information": "ri",
                "server_reference": "other:1883",
                "reason_string": "ok",
                "receive_maximum": 20,
                "topic_alias_maximum": 8,
                "maximum_qos": 1,
                "retain_available": 0,
                "maximum_packet_size": 1000,
                "wildcard_subscription_available": 1,
                "subscription_identifier_available": 1,
                "shared_subscription_available": 0,
                "user_property": [("a", "b")],
            },
        ),
        V5,
        False,
    ),
    ("connack-v5-refused", Connack(False, 0x84), V5, False),
    ("publish-qos0", Publish("a/b", b""), V4, True),
    ("publish-qos1-retain", Publish("a", b"x", qos=1, retain=True, packet_id=1), V4, True),
    ("publish-qos2-dup", Publish("a", b"x", qos=2, dup=True, packet_id=65535), V4, False),
    (
        "publish-v5-props",
        Publish("t/ü", b"\x00" * 10, 1, packet_id=9, properties=FULL_PUBLISH_PROPS),
        V5,
        True,
    ),
    (
        "publish-v5-alias-only",
        Publish("", b"p", properties={"topic_alias": 2}),
        V5,
        True,
    ),
    (
        "publish-v5-subscription-ids",
        Publish("t", b"p", properties={"subscription_identifier": [1, 268_435_455, 300]}),
        V5,
        False,
    ),
    ("puback", PubAck(1), V4, True),
    ("pubrec", PubRec(2), V4, False),
    ("pubrel", PubRel(3), V4, True),
    ("pubcomp", PubComp(4), V4, False),
    (
        "puback-v5",
        PubAck(1, 0x10, {"reason_string": "none", "user_property": [("a", "b")]}),
        V5,
        True,
    ),
    ("pubrec-v5", PubRec(2, 0x80), V5, False),
    ("pubrel-v5", PubRel(3, 0x92, {"reason_string": "?"}), V5, True),
    ("pubcomp-v5", PubComp(4, 0, {"user_property": [("k", "v")]}), V5, False),
    (
        "subscribe",
        Subscribe(5, [("a/#", SubscriptionOptions(0)), ("+/b", SubscriptionOptions(2))]),
        V4,
        True,
    ),
    (
        "subscribe-v5",
        Subscribe(
            6,
            [
                ("a", SubscriptionOptions(1, True, False, 1)),
                ("$share/g/b", SubscriptionOptions(0, False, True, 2)),
            ],
            {"subscription_identifier": 77, "user_property": [("u", "p")]},
        ),
        V5,
        True,
    ),
    ("suback", Suback(5, [0, 1, 2, 0x80]), V4, False),
    ("suback-v5", Suback(6, [0, 0x87, 0xA2], {"reason_string": "r"}), V5, False),
    ("unsubscribe", Unsubscribe(7, ["a", "b/#"]), V4, True),
    ("unsubscribe-v5", Unsubscribe(8, ["a"], {"user_property": [("u", "p")]}), V5, True),
    ("unsuback", Unsuback(7), V4, False),
    ("unsuback-v5", Unsuback(8, [0, 0x11], {"reason_string": "r"}), V5, False),
    ("pingreq", PingReq(), V4, True),
    ("pingresp", PingResp(), V4, False),
    ("pingreq-v5", PingReq(), V5, True),
    ("pingresp-v5", PingResp(), V5, False),
    ("disconnect", Disconnect(), V4, True),
    (
        "disconnect-v5",
        Disconnect(
            0x8B,
            {
                "session_expiry_interval": 0,
                "server_reference": "s",
                "reason_string": "bye",
                "user_property": [("a", "b")],
            },
        ),
        V5,
        False,
    ),
    ("disconnect-v5-will", Disconnect(0x04), V5, True),
    (
        "auth-v5",
        Auth(
            0x18,
            {
                "authentication_method": "m",
                "authentication_data": b"\x00",
                "reason_string": "r",
                "user_property": [("a", "b")],
            },
        ),
        V5,
        True,
    ),
    ("auth-v5-empty", Auth(), V5, False),
]


BOTH_WAYS = (Publish, PubAck, PubRec, PubRel, PubComp, Disconnect, Auth)


@pytest.mark.parametrize(
    ("packet", "level", "server_side"),
    [case[1:] for case in ROUND_TRIPS],
    ids=[case[0] for case in ROUND_TRIPS],
)
def test_round_trip(packet: Packet, level: int, server_side: bool) -> None:
    data = encode(packet, level)
    assert decode_one(data, level, server_side) == packet
    # packets that travel both ways decode the same on either side
    if isinstance(packet, BOTH_WAYS) and "subscription_identifier" not in packet.properties:
        assert decode_one(data, level, not server_side) == packet


def test_user_properties_keep_order_and_duplicates() -> None:
    props = bytes.fromhex("26 0001 61 0001 31  26 0001 62 0001 32  26 0001 61 0001 33")
    body = b"\x00\x01" + bytes([0x10]) + bytes([len(props)]) + props
    packet = decode_one(raw(0x40, body), V5)
    assert isinstance(packet, PubAck)
    assert packet.properties["user_property"] == [("a", "1"), ("b", "2"), ("a", "3")]


def test_v5_connect_switches_decoder_level() -> None:
    dec = Decoder()
    assert dec.protocol_level == V4
    stream = encode(Connect("c", protocol_level=V5), V5) + encode(
        Publish("t", b"x", properties={"message_expiry_interval": 5}), V5
    )
    packets = dec.feed(stream)
    assert dec.protocol_level == V5
    assert packets[1] == Publish("t", b"x", properties={"message_expiry_interval": 5})


def test_v311_connect_keeps_level_4() -> None:
    dec = Decoder()
    dec.feed(encode(Connect("c"), V4))
    assert dec.protocol_level == V4
    with pytest.raises(DecodeError):
        dec.feed(b"\xf0\x00")  # AUTH does not exist at level 4


def test_client_side_decoder_does_not_change_level_on_its_own() -> None:
    dec = Decoder(server_side=False)
    dec.protocol_level = V5
    assert dec.feed(encode(Connack(False, 0, {"maximum_qos": 1}), V5)) == [
        Connack(False, 0, {"maximum_qos": 1})
    ]
    assert dec.protocol_level == V5


def test_empty_client_id_and_empty_payload() -> None:
    assert decode_one(encode(Connect(""), V4)) == Connect("")
    assert decode_one(encode(Publish("t", b""), V4)) == Publish("t", b"")


def test_subscribe_filter_syntax_is_not_validated() -> None:
    # bad filters are answered with a SUBACK failure code by the connection, not a close
    packet = Subscribe(1, [("a/#/b", SubscriptionOptions()), ("x+", SubscriptionOptions())])
    assert decode_one(encode(packet, V4)) == packet


def test_password_without_username_allowed_at_v5() -> None:
    packet = Connect("c", protocol_level=V5, password=b"secret")
    assert decode_one(encode(packet, V5)) == packet


# --- stream framing -----------------------------------------------------------------------

STREAM_PACKETS: list[Packet] = [
    Connect("c", protocol_level=V5, properties={"receive_maximum": 5}),
    Publish("a/b", b"x" * 300, qos=1, packet_id=1, properties={"user_property": [("a", "b")]}),
    PubAck(2),
    PubRec(3, 0x10),
    PingReq(),
    Subscribe(4, [("a/+", SubscriptionOptions(qos=1, no_local=True))]),
    Publish("", b"", properties={"topic_alias": 1}),
    Unsubscribe(5, ["a/+"]),
    PubRel(6),
    Publish("big", bytes(range(256)) * 80, qos=2, packet_id=7),
    Auth(0x18, {"authentication_method": "m"}),
    Disconnect(0x04, {"reason_string": "bye"}),
]
STREAM = b"".join(encode(p, V5) for p in STREAM_PACKETS)


def feed_chunks(chunks: list[bytes]) -> list[Packet]:
    dec = Decoder()
    out: list[Packet] = []
    for chunk in chunks:
        out.extend(dec.feed(chunk))
    return out


def test_stream_whole() -> None:
    assert feed_chunks([STREAM]) == STREAM_PACKETS


def test_stream_one_byte_at_a_time() -> None:
    assert feed_chunks([STREAM[i : i + 1] for i in range(len(STREAM))]) == STREAM_PACKETS


@pytest.mark.parametrize("seed", range(20))
def test_stream_random_splits(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 60)))
    bounds = [0, *cuts, len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert feed_chunks(chunks) == STREAM_PACKETS


def test_feed_accepts_bytearray_and_memoryview() -> None:
    data = encode(PingReq(), V4) + encode(PubAck(1), V4)
    assert Decoder().feed(bytearray(data)) == [PingReq(), PubAck(1)]
    assert Decoder().feed(memoryview(data)) == [PingReq(), PubAck(1)]


def test_partial_packet_returns_nothing_until_complete() -> None:
    data = encode(Publish("t", b"payload", qos=1, packet_id=3), V4)
    dec = Decoder()
    assert dec.feed(data[:1]) == []
    assert dec.feed(data[1:5]) == []
    assert dec.feed(data[5:] + data[:2]) == [Publish("t", b"payload", qos=1, packet_id=3)]
    assert dec.feed(data[2:]) == [Publish("t", b"payload", qos=1, packet_id=3)]


# --- rejections: fixed header -------------------------------------------------------------


@pytest.mark.parametrize("level", [V4, V5])
def test_packet_type_0_is_malformed(level: int) -> None:
    reject(b"\x00\x00", level)


def test_auth_is_malformed_at_level_4() -> None:
    reject(b"\xf0\x00", V4, server_side=True)
    reject(b"\xf0\x00", V4, server_side=False)


@pytest.mark.parametrize(
    "data",
    [
        b"\x60\x02\x00\x01",  # PUBREL needs 0b0010
        b"\x80\x06\x00\x01\x00\x01a\x00",  # SUBSCRIBE needs 0b0010
        b"\xa0\x05\x00\x01\x00\x01a",  # UNSUBSCRIBE needs 0b0010
        b"\x42\x02\x00\x01",  # PUBACK needs 0
        b"\x51\x02\x00\x01",  # PUBREC needs 0
        b"\x78\x02\x00\x01",  # PUBCOMP needs 0
        b"\xc1\x00",  # PINGREQ needs 0
        b"\xe2\x00",  # DISCONNECT needs 0
        b"\x11\x00",  # CONNECT needs 0
    ],
)
@pytest.mark.parametrize("level", [V4, V5])
def test_reserved_flag_bits(data: bytes, level: int) -> None:
    reject(data, level)


@pytest.mark.parametrize("data", [b"\x22\x02\x00\x00", b"\x98\x03\x00\x01\x00", b"\xd4\x00"])
def test_reserved_flag_bits_client_side(data: bytes) -> None:
    reject(data, V4, server_side=False)


@pytest.mark.parametrize("level", [V4, V5])
def test_publish_qos3_is_malformed(level: int) -> None:
    reject(b"\x36\x05\x00\x01t\x00\x01", level)


def test_publish_qos0_dup() -> None:
    data = b"\x38\x03\x00\x01t"
    reject(data, V4, reason=MALFORMED)
    reject(data, V5, reason=PROTOCOL_ERROR)


def test_header_checked_before_the_rest_arrives() -> None:
    with pytest.raises(DecodeError):
        Decoder().feed(b"\x00")
    with pytest.raises(DecodeError):
        Decoder().feed(b"\x36")


# --- rejections: remaining length and framing -----------------------------------------------


def test_remaining_length_five_bytes_is_malformed() -> None:
    reject(b"\x30\xff\xff\xff\xff\x01")
    # known bad as soon as the fourth byte still has its continuation bit
    reject(b"\x30\x80\x80\x80\x80")


def test_remaining_length_four_bytes_is_fine() -> None:
    # 0xFF 0xFF 0xFF 0x7F = 268,435,455: too large for the limit, but well formed
    with pytest.raises(PacketTooLarge):
        Decoder().feed(b"\x30\xff\xff\xff\x7f")


@pytest.mark.parametrize(
    ("data", "level"),
    [
        (b"\x40\x03\x00\x01\x00", V4),  # PUBACK with a trailing byte at 3.1.1
        (b"\xc0\x01\x00", V4),  # PINGREQ with a body
        (b"\xc0\x01\x00", V5),
        (b"\xe0\x01\x00", V4),  # DISCONNECT with a body at 3.1.1
        (b"\x40\x01\x00", V4),  # PUBACK missing half its packet id
        (b"\x40\x01\x00", V5),
        (b"\x40\x05\x00\x01\x00\x00\x00", V5),  # PUBACK v5 trailing after properties
        (b"\xe0\x03\x00\x00\x00", V5),  # DISCONNECT v5 trailing after properties
        (b"\x30\x04\x00\x05ab", V4),  # topic longer than the packet
        (b"\x30\x01\x00", V4),  # topic length truncated
        (b"\x32\x04\x00\x01t\x00", V4),  # packet id truncated
        (b"\x30\x03\x00\x01t", V5),  # v5 property length missing
        (raw(0x82, b"\x00\x01\x00\x01a"), V4),  # filter without options byte
        (raw(0x10, V311_CONNECT[2:] + b"\x00"), V4),  # CONNECT with trailing byte
        (raw(0x10, V311_CONNECT[2:-1]), V4),  # CONNECT missing a byte
    ],
)
def test_body_must_be_consumed_exactly(data: bytes, level: int) -> None:
    dec = decoder(level)
    with pytest.raises(DecodeError) as info:
        dec.feed(data)
        # a framing shortfall only shows once more bytes arrive
        dec.feed(b"\xc0\x00")
    assert info.value.reason_code == MALFORMED


# --- rejections: direction ----------------------------------------------------------------


@pytest.mark.parametrize(
    "packet", [Connack(), Suback(1, [0]), Unsuback(1), PingResp()], ids=lambda p: type(p).__name__
)
@pytest.mark.parametrize("level", [V4, V5])
def test_server_only_packets_rejected_by_server(packet: Packet, level: int) -> None:
    reject(encode(packet, level), level, server_side=True, reason=PROTOCOL_ERROR)


@pytest.mark.parametrize(
    "packet",
    [Connect("c"), Subscribe(1, [("a", SubscriptionOptions())]), Unsubscribe(1, ["a"]), PingReq()],
    ids=lambda p: type(p).__name__,
)
@pytest.mark.parametrize("level", [V4, V5])
def test_client_only_packets_rejected_by_client(packet: Packet, level: int) -> None:
    reject(encode(packet, level), level, server_side=False, reason=PROTOCOL_ERROR)


# --- rejections: strings ------------------------------------------------------------------

BAD_UTF8 = [
    b"\xff",  # never valid
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # encoded surrogate U+D800
    b"a\xe2\x82",  # truncated sequence
    b"a\x00b",  # U+0000
]


@pytest.mark.parametrize("bad", BAD_UTF8)
@pytest.mark.parametrize("level", [V4, V5])
def test_bad_topic_name(bad: bytes, level: int) -> None:
    props = b"\x00" if level == V5 else b""
    reject(raw(0x30, s(bad) + props), level)


@pytest.mark.parametrize("bad", BAD_UTF8)
def test_bad_client_id(bad: bytes) -> None:
    reject(raw(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c" + s(bad)))


@pytest.mark.parametrize("bad", BAD_UTF8)
def test_bad_username(bad: bytes) -> None:
    reject(raw(0x10, b"\x00\x04MQTT\x04\x82\x00\x3c" + s("c") + s(bad)))


@pytest.mark.parametrize("bad", BAD_UTF8)
def test_bad_filter(bad: bytes) -> None:
    reject(raw(0x82, b"\x00\x01" + s(bad) + b"\x00"))
    reject(raw(0xA2, b"\x00\x01" + s(bad)))


@pytest.mark.parametrize("bad", BAD_UTF8)
def test_bad_user_property(bad: bytes) -> None:
    props = b"\x26" + s(bad) + s("v")
    reject(raw(0x40, b"\x00\x01\x00" + vbi(len(props)) + props), V5)
    props = b"\x26" + s("k") + s(bad)
    reject(raw(0x40, b"\x00\x01\x00" + vbi(len(props)) + props), V5)


def test_string_length_beyond_packet() -> None:
    reject(raw(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x09abc"))


# --- rejections: CONNECT ------------------------------------------------------------------


def connect_body(name: bytes = b"MQTT", level: int = 4, flags: int = 0x02) -> bytes:
    body = s(name) + bytes([level, flags]) + b"\x00\x3c"
    if level == V5:
        body += b"\x00"
    return body + s("c")


@pytest.mark.parametrize("level", [0, 1, 2, 3, 6, 255])
def test_mqtt_with_unsupported_level(level: int) -> None:
    with pytest.raises(UnsupportedProtocolVersion) as info:
        decode(raw(0x10, connect_body(level=level)))
    assert info.value.reason_code == UNSUPPORTED
    assert info.value.protocol_level == level


def test_mqisdp_is_unsupported() -> None:
    with pytest.raises(UnsupportedProtocolVersion) as info:
        decode(raw(0x10, connect_body(b"MQIsdp", 3)))
    assert info.value.reason_code == UNSUPPORTED
    assert info.value.protocol_level == 3


@pytest.mark.parametrize("name", [b"MQTX", b"mqtt", b"", b"HTTP"])
def test_unknown_protocol_name(name: bytes) -> None:
    err = reject(raw(0x10, connect_body(name)), reason=PROTOCOL_ERROR)
    assert not isinstance(err, UnsupportedProtocolVersion)


@pytest.mark.parametrize("level", [V4, V5])
def test_connect_reserved_flag(level: int) -> None:
    reject(raw(0x10, connect_body(level=level, flags=0x03)))


@pytest.mark.parametrize(
    "flags",
    [
        0x08,  # will QoS 1 without will flag
        0x10,  # will QoS 2 without will flag
        0x20,  # will retain without will flag
    ],
)
@pytest.mark.parametrize("level", [V4, V5])
def test_will_fields_without_will_flag(flags: int, level: int) -> None:
    reject(raw(0x10, connect_body(level=level, flags=0x02 | flags)))


@pytest.mark.parametrize("level", [V4, V5])
def test_will_qos_3(level: int) -> None:
    will_props = b"\x00" if level == V5 else b""
    body = connect_body(level=level, flags=0x1E) + will_props + s("w") + s(b"p")
    reject(raw(0x10, body), level)


def test_password_without_username_at_v311() -> None:
    reject(raw(0x10, connect_body(flags=0x42) + s(b"pw")))


def test_v5_connect_auth_data_without_method() -> None:
    props = b"\x16" + s(b"data")
    body = s("MQTT") + b"\x05\x02\x00\x3c" + vbi(len(props)) + props + s("c")
    reject(raw(0x10, body), reason=PROTOCOL_ERROR)


def test_v5_connect_property_not_allowed() -> None:
    props = b"\x23\x00\x01"  # topic alias is PUBLISH-only
    body = s("MQTT") + b"\x05\x02\x00\x3c" + vbi(len(props)) + props + s("c")
    reject(raw(0x10, body), reason=PROTOCOL_ERROR)


def test_v5_will_property_not_allowed() -> None:
    will_props = b"\x11\x00\x00\x00\x01"  # session expiry is not a will property
    body = (
        s("MQTT")
        + b"\x05\x06\x00\x3c\x00"
        + s("c")
        + vbi(len(will_props))
        + will_props
        + s("w")
        + s(b"p")
    )
    reject(raw(0x10, body), reason=PROTOCOL_ERROR)


# --- rejections: PUBLISH ------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["a/+", "#", "a/#", "+"])
def test_publish_topic_with_wildcard(topic: str) -> None:
    reject(raw(0x30, s(topic) + b"x"), V4, reason=PROTOCOL_ERROR)
    reject(raw(0x30, s(topic) + b"\x00x"), V5, reason=TOPIC_NAME_INVALID)


def test_publish_empty_topic() -> None:
    reject(raw(0x30, s("") + b"x"), V4, reason=MALFORMED)
    reject(raw(0x30, s("") + b"\x00x"), V5, reason=PROTOCOL_ERROR)
    packet = decode_one(raw(0x30, s("") + b"\x03\x23\x00\x07x"), V5)
    assert packet == Publish("", b"x", properties={"topic_alias": 7})


@pytest.mark.parametrize("qos", [1, 2])
@pytest.mark.parametrize("level", [V4, V5])
def test_publish_packet_id_zero(qos: int, level: int) -> None:
    props = b"\x00" if level == V5 else b""
    reject(raw(0x30 | qos << 1, s("t") + b"\x00\x00" + props), level)


def test_publish_subscription_identifier_from_client() -> None:
    data = raw(0x30, s("t") + b"\x02\x0b\x01")
    reject(data, V5, server_side=True, reason=PROTOCOL_ERROR)
    assert decode_one(data, V5, server_side=False) == Publish(
        "t", b"", properties={"subscription_identifier": [1]}
    )


# --- rejections: SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------


@pytest.mark.parametrize("level", [V4, V5])
def test_subscribe_packet_id_zero(level: int) -> None:
    props = b"\x00" if level == V5 else b""
    reject(raw(0x82, b"\x00\x00" + props + s("a") + b"\x00"), level)


@pytest.mark.parametrize("level", [V4, V5])
def test_subscribe_without_filters(level: int) -> None:
    props = b"\x00" if level == V5 else b""
    reject(raw(0x82, b"\x00\x01" + props), level, reason=PROTOCOL_ERROR)


@pytest.mark.parametrize("options", [0x03, 0x04, 0x80, 0xFF, 0x21])
def test_subscribe_v311_bad_qos_byte(options: int) -> None:
    reject(raw(0x82, b"\x00\x01" + s("a") + bytes([options])), V4)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (0x40, MALFORMED),  # reserved bit 6
        (0x80, MALFORMED),  # reserved bit 7
        (0x03, PROTOCOL_ERROR),  # QoS 3
        (0x30, PROTOCOL_ERROR),  # retain handling 3
    ],
)
def test_subscribe_v5_bad_options(options: int, reason: int) -> None:
    reject(raw(0x82, b"\x00\x01\x00" + s("a") + bytes([options])), V5, reason=reason)


@pytest.mark.parametrize("level", [V4, V5])
def test_unsubscribe_rules(level: int) -> None:
    props = b"\x00" if level == V5 else b""
    reject(raw(0xA2, b"\x00\x00" + props + s("a")), level)
    reject(raw(0xA2, b"\x00\x01" + props), level, reason=PROTOCOL_ERROR)


# --- rejections: acks -----------------------------------------------------------------------


@pytest.mark.parametrize("byte0", [0x40, 0x50, 0x62, 0x70])
@pytest.mark.parametrize("level", [V4, V5])
def test_ack_packet_id_zero(byte0: int, level: int) -> None:
    reject(bytes([byte0, 2, 0, 0]), level, server_side=True)
    reject(bytes([byte0, 2, 0, 0]), level, server_side=False)


def test_suback_unsuback_packet_id_zero() -> None:
    reject(b"\x90\x03\x00\x00\x00", V4, server_side=False)
    reject(b"\xb0\x02\x00\x00", V4, server_side=False)


@pytest.mark.parametrize(
    ("data", "level"),
    [
        (b"\x40\x03\x00\x01\x01", V5),  # PUBACK 0x01 undefined
        (b"\x62\x03\x00\x01\x10", V5),  # PUBREL 0x10 is a PUBACK code
        (b"\xe0\x01\x01", V5),  # DISCONNECT 0x01
        (b"\xf0\x01\x01", V5),  # AUTH 0x01
        (b"\x90\x03\x00\x01\x03", V4),  # SUBACK 0x03 at 3.1.1
        (b"\x90\x04\x00\x01\x00\x11", V5),  # SUBACK 0x11 is an UNSUBACK code
        (b"\xb0\x04\x00\x01\x00\x01", V5),  # UNSUBACK 0x01
        (b"\x20\x02\x00\x06", V4),  # CONNACK return code 6
        (b"\x20\x03\x00\x01\x00", V5),  # CONNACK v5 0x01
    ],
)
def test_undefined_reason_codes(data: bytes, level: int) -> None:
    reject(data, level, server_side=False, reason=PROTOCOL_ERROR)


def test_connack_reserved_flags() -> None:
    reject(b"\x20\x02\x02\x00", V4, server_side=False)
    reject(b"\x20\x03\x80\x00\x00", V5, server_side=False)


def test_suback_and_unsuback_need_codes() -> None:
    reject(b"\x90\x02\x00\x01", V4, server_side=False, reason=PROTOCOL_ERROR)
    reject(b"\xb0\x03\x00\x01\x00", V5, server_side=False, reason=PROTOCOL_ERROR)


# --- rejections: properties -----------------------------------------------------------------


def puback_with(props: bytes) -> bytes:
    return raw(0x40, b"\x00\x01\x00" + vbi(len(props)) + props)


def publish_with(props: bytes) -> bytes:
    return raw(0x30, s("t") + vbi(len(props)) + props + b"payload")


@pytest.mark.parametrize("pid", [0x00, 0x04, 0x0A, 0x10, 0x2B, 0x7F, 0x80, 0xFF])
def test_unknown_property_identifier(pid: int) -> None:
    reject(puback_with(bytes([pid, 0])), V5, reason=MALFORMED)


@pytest.mark.parametrize(
    "prop",
    [
        b"\x11\x00\x00\x00\x01",  # session expiry
        b"\x21\x00\x01",  # receive maximum
        b"\x0b\x01",  # subscription identifier
        b"\x03" + s("c"),  # content type
    ],
)
def test_property_not_allowed_in_puback(prop: bytes) -> None:
    reject(puback_with(prop), V5, reason=PROTOCOL_ERROR)


def test_property_not_allowed_in_publish() -> None:
    reject(publish_with(b"\x1f" + s("reason")), V5, reason=PROTOCOL_ERROR)


def test_property_not_allowed_in_unsubscribe() -> None:
    props = b"\x0b\x01"
    reject(raw(0xA2, b"\x00\x01" + vbi(len(props)) + props + s("a")), V5, reason=PROTOCOL_ERROR)


@pytest.mark.parametrize(
    "prop",
    [
        b"\x02\x00\x00\x00\x01",  # message expiry
        b"\x01\x01",  # payload format indicator
        b"\x23\x00\x01",  # topic alias
        b"\x03" + s("c"),  # content type
        b"\x09" + s(b"d"),  # correlation data
    ],
)
def test_duplicate_property(prop: bytes) -> None:
    assert decode(publish_with(prop), V5)  # once is fine
    reject(publish_with(prop + prop), V5, reason=PROTOCOL_ERROR)


def test_duplicate_reason_string() -> None:
    prop = b"\x1f" + s("r")
    reject(puback_with(prop + prop), V5, reason=PROTOCOL_ERROR)


def test_subscription_identifier_repeats_on_publish_only() -> None:
    packet = decode_one(publish_with(b"\x0b\x05\x0b\x80\x01"), V5, server_side=False)
    assert isinstance(packet, Publish)
    assert packet.properties["subscription_identifier"] == [5, 128]
    sub = raw(0x82, b"\x00\x01\x04\x0b\x05\x0b\x06" + s("a") + b"\x00")
    reject(sub, V5, reason=PROTOCOL_ERROR)
    one = decode_one(raw(0x82, b"\x00\x01\x02\x0b\x05" + s("a") + b"\x00"), V5)
    assert isinstance(one, Subscribe)
    assert one.properties == {"subscription_identifier": 5}


def test_subscription_identifier_zero() -> None:
    reject(publish_with(b"\x0b\x00"), V5, server_side=False, reason=PROTOCOL_ERROR)
    reject(raw(0x82, b"\x00\x01\x02\x0b\x00" + s("a") + b"\x00"), V5, reason=PROTOCOL_ERROR)


def test_subscription_identifier_too_long() -> None:
    reject(publish_with(b"\x0b\x80\x80\x80\x80\x01"), V5, server_side=False, reason=MALFORMED)


def test_property_length_vbi_too_long() -> None:
    reject(raw(0x40, b"\x00\x01\x00\x80\x80\x80\x80\x01"), V5)


@pytest.mark.parametrize(
    ("prop", "reason"),
    [
        (b"\x01\x02", PROTOCOL_ERROR),  # payload format indicator 2
        (b"\x23\x00\x00", None),  # topic alias 0: left to the connection
    ],
)
def test_publish_property_values(prop: bytes, reason: int | None) -> None:
    if reason is None:
        assert decode(publish_with(prop), V5)
    else:
        reject(publish_with(prop), V5, reason=reason)


@pytest.mark.parametrize(
    "prop",
    [
        b"\x21\x00\x00",  # receive maximum 0
        b"\x27\x00\x00\x00\x00",  # maximum packet size 0
        b"\x17\x02",  # request problem information 2
        b"\x19\x02",  # request response information 2
    ],
)
def test_connect_property_values(prop: bytes) -> None:
    body = s("MQTT") + b"\x05\x02\x00\x3c" + vbi(len(prop)) + prop + s("c")
    reject(raw(0x10, body), reason=PROTOCOL_ERROR)


@pytest.mark.parametrize("pid", [0x24, 0x25, 0x28, 0x29, 0x2A])
def test_connack_boolean_property_values(pid: int) -> None:
    prop = bytes([pid, 2])
    data = raw(0x20, b"\x00\x00" + vbi(len(prop)) + prop)
    reject(data, V5, server_side=False, reason=PROTOCOL_ERROR)


@pytest.mark.parametrize(
    "props",
    [
        b"\x05\x1f\x00\x01r",  # property length 5 but only 4 bytes follow in the packet
        b"\x04\x26\x00\x02k",  # length 4 cuts the user property name short
        b"\x04\x26\x00\x01k",  # user property value missing inside the list
    ],
)
def test_property_length_must_match(props: bytes) -> None:
    reject(raw(0x40, b"\x00\x01\x00" + props), V5, reason=MALFORMED)
    reject(raw(0x30, s("t") + props), V5, reason=MALFORMED)


def test_property_value_cut_short_by_property_length() -> None:
    # the topic alias needs two bytes; the property list ends after one
    reject(raw(0x30, s("t") + b"\x02\x23\x00\x01payload"), V5, reason=MALFORMED)


# --- packet too large ---------------------------------------------------------------------


def test_packet_too_large_raised_from_the_header() -> None:
    dec = Decoder(max_packet_size=100)
    with pytest.raises(PacketTooLarge) as info:
        dec.feed(b"\x30" + vbi(99))  # 2 + 99 = 101 > 100, no body yet
    assert info.value.reason_code == TOO_LARGE


def test_packet_at_the_limit_is_fine() -> None:
    packet = Publish("t", b"x" * 95)  # 2 header + 3 topic + 95 = 100
    data = encode(packet, V4)
    assert len(data) == 100
    assert Decoder(max_packet_size=100).feed(data) == [packet]
    with pytest.raises(PacketTooLarge):
        Decoder(max_packet_size=99).feed(data[:2])


# --- decoder after an error ---------------------------------------------------------------


def test_decoder_unusable_after_error_and_keeps_earlier_packets() -> None:
    dec = Decoder()
    good = encode(PingReq(), V4) + encode(PubAck(1), V4)
    with pytest.raises(DecodeError) as info:
        dec.feed(good + b"\x00\x00")
    assert info.value.packets == [PingReq(), PubAck(1)]
    with pytest.raises(DecodeError):
        dec.feed(encode(PingReq(), V4))


# --- encoding edge cases --------------------------------------------------------------------


def test_encode_rejects_unencodable_values() -> None:
    with pytest.raises(ValueError):
        encode(Publish("t", b"", qos=1), V4)  # no packet id
    with pytest.raises(ValueError):
        encode(Publish("t", b"", qos=0, dup=True), V4)
    with pytest.raises(ValueError):
        encode(Auth(), V4)
    with pytest.raises(ValueError):
        encode(Publish("t" * 70000, b""), V4)
    with pytest.raises(ValueError):
        encode(Publish("t", b"", properties={"no_such_property": 1}), V5)
    with pytest.raises(ValueError):
        encode(Connect("c", keepalive=70000), V4)
    with pytest.raises(ValueError):
        encode(Publish("t", b"", properties={"message_expiry_interval": -1}), V5)
    with pytest.raises(TypeError):
        encode("not a packet", V4)  # type: ignore[arg-type]


# --- publish templates --------------------------------------------------------------------


@pytest.mark.parametrize("level", [V4, V5])
@pytest.mark.parametrize("qos", [1, 2])
@pytest.mark.parametrize("payload_size", [0, 10, 200, 20000])
def test_template_patch_matches_encode(level: int, qos: int, payload_size: int) -> None:
    props = {"message_expiry_interval": 60} if level == V5 else {}
    base = Publish("fan/out", b"p" * payload_size, qos=qos, retain=True, properties=props)
    template, offset = encode_publish_template(base, level)
    assert offset > 0
    assert template[offset : offset + 2] == b"\x00\x00"
    for packet_id in (1, 258, 65535):
        for dup in (False, True):
            expected = encode(replace(base, packet_id=packet_id, dup=dup), level)
            assert patch_publish(template, offset, packet_id, dup) == expected
    # the template itself is not modified
    assert template[offset : offset + 2] == b"\x00\x00"


def test_template_patch_clears_dup_from_a_dup_template() -> None:
    base = Publish("t", b"x", qos=1, dup=True)
    template, offset = encode_publish_template(base, V4)
    expected = encode(replace(base, packet_id=9, dup=False), V4)
    assert patch_publish(template, offset, 9) == expected


@pytest.mark.parametrize("level", [V4, V5])
def test_template_qos0(level: int) -> None:
    base = Publish("t", b"x", retain=True)
    template, offset = encode_publish_template(base, level)
    assert offset == -1
    assert template == encode(base, level)
    assert patch_publish(template, offset, 5) == template
    with pytest.raises(ValueError):
        patch_publish(template, offset, 5, dup=True)


def test_patch_rejects_bad_packet_id() -> None:
    template, offset = encode_publish_template(Publish("t", b"x", qos=1), V4)
    for bad in (0, 65536, -1):
        with pytest.raises(ValueError):
            patch_publish(template, offset, bad)


def test_faulty_v5_connect_still_reports_its_level() -> None:
    dec = Decoder()
    with pytest.raises(DecodeError):
        dec.feed(raw(0x10, connect_body(level=V5, flags=0x03)))  # reserved flag set
    assert dec.protocol_level == V5
    dec = Decoder()
    with pytest.raises(DecodeError):
        dec.feed(raw(0x10, connect_body(level=V4, flags=0x03)))
    assert dec.protocol_level == V4
    dec = Decoder()
    with pytest.raises(UnsupportedProtocolVersion):
        dec.feed(raw(0x10, connect_body(level=6)))
    assert dec.protocol_level == V4
