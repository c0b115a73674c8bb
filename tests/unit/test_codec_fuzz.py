"""Property tests for the MQTT codec: valid packets round-trip, and no input makes the
decoder fail with anything but DecodeError."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushwire.mqtt.codec.decoder import Decoder
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.codec.errors import DecodeError
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
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VBI_MAX = 268_435_455

# --- value strategies -----------------------------------------------------------------------

# Well-formed UTF-8 without U+0000: the codec rejects surrogates and NUL.
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
topic_names = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00+#"), min_size=1, max_size=12
)
small_bytes = st.binary(max_size=24)
packet_ids = st.integers(1, 0xFFFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
boolean_byte = st.integers(0, 1)
user_properties = st.lists(st.tuples(text, text), min_size=1, max_size=3)

PROPERTY_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "payload_format_indicator": boolean_byte,
    "message_expiry_interval": u32,
    "content_type": text,
    "response_topic": topic_names,
    "correlation_data": small_bytes,
    "subscription_identifier": st.integers(1, VBI_MAX),
    "session_expiry_interval": u32,
    "assigned_client_identifier": text,
    "server_keep_alive": u16,
    "authentication_method": text,
    "authentication_data": small_bytes,
    "request_problem_information": boolean_byte,
    "will_delay_interval": u32,
    "request_response_information": boolean_byte,
    "response_information": text,
    "server_reference": text,
    "reason_string": text,
    "receive_maximum": st.integers(1, 0xFFFF),
    "topic_alias_maximum": u16,
    "topic_alias": st.integers(1, 0xFFFF),
    "maximum_qos": boolean_byte,
    "retain_available": boolean_byte,
    "user_property": user_properties,
    "maximum_packet_size": st.integers(1, 0xFFFF_FFFF),
    "wildcard_subscription_available": boolean_byte,
    "subscription_identifier_available": boolean_byte,
    "shared_subscription_available": boolean_byte,
}

MESSAGE = ["payload_format_indicator", "message_expiry_interval", "content_type"]
MESSAGE += ["response_topic", "correlation_data", "user_property"]
ACK = ["reason_string", "user_property"]


def properties(*names: str, **overrides: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    optional = {name: overrides.get(name, PROPERTY_VALUES[name]) for name in names}
    return st.fixed_dictionaries({}, optional=optional)


CONNECT_PROPS = properties(
    "session_expiry_interval",
    "authentication_method",
    "request_problem_information",
    "request_response_information",
    "receive_maximum",
    "topic_alias_maximum",
    "maximum_packet_size",
    "user_property",
)
WILL_PROPS = properties(*MESSAGE, "will_delay_interval")
CONNACK_PROPS = properties(
    "session_expiry_interval",
    "assigned_client_identifier",
    "server_keep_alive",
    "authentication_method",
    "authentication_data",
    "response_information",
    "server_reference",
    "reason_string",
    "receive_maximum",
    "topic_alias_maximum",
    "maximum_qos",
    "retain_available",
    "maximum_packet_size",
    "wildcard_subscription_available",
    "subscription_identifier_available",
    "shared_subscription_available",
    "user_property",
)
CLIENT_PUBLISH_PROPS = properties(*MESSAGE, "topic_alias")
SERVER_PUBLISH_PROPS = properties(
    *MESSAGE,
    "topic_alias",
    "subscription_identifier",
    subscription_identifier=st.lists(st.integers(1, VBI_MAX), min_size=1, max_size=3),
)
ACK_PROPS = properties(*ACK)
SUBSCRIBE_PROPS = properties("subscription_identifier", "user_property")
UNSUBSCRIBE_PROPS = properties("user_property")
DISCONNECT_PROPS = properties(
    "session_expiry_interval", "server_reference", "reason_string", "user_property"
)
AUTH_PROPS = properties(
    "authentication_method", "authentication_data", "reason_string", "user_property"
)

PUBACK_CODES = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
PUBREL_CODES = [0x00, 0x92]
SUBACK_CODES_V4 = [0x00, 0x01, 0x02, 0x80]
SUBACK_CODES_V5 = [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2]
UNSUBACK_CODES = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]
CONNACK_CODES_V5 = [0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A]
CONNACK_CODES_V5 += [0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F]
DISCONNECT_CODES = [0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F]
DISCONNECT_CODES += [0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D]
DISCONNECT_CODES += [0x9E, 0x9F, 0xA0, 0xA1, 0xA2]
AUTH_CODES = [0x00, 0x18, 0x19]


def v5_only(level: int, strategy: st.SearchStrategy[Any], empty: Any) -> st.SearchStrategy[Any]:
    return strategy if level == V5 else st.just(empty)


# --- packet strategies: (packet, server_side of the decoder that receives it) -----------------


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    username = draw(st.none() | text)
    password = draw(st.none() | small_bytes)
    if level == V4 and username is None:
        password = None  # MQTT-3.1.2-22
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(topic_names),
            draw(small_bytes),
            draw(st.integers(0, 2)),
            draw(st.booleans()),
            draw(v5_only(level, WILL_PROPS, {})),
        )
    return Connect(
        draw(text),
        level,
        "MQTT",
        draw(st.booleans()),
        draw(u16),
        username,
        password,
        will,
        draw(v5_only(level, CONNECT_PROPS, {})),
    )


@st.composite
def publishes(draw: st.DrawFn, level: int, from_server: bool) -> Publish:
    qos = draw(st.integers(0, 2))
    props: dict[str, Any] = {}
    if level == V5:
        props = draw(SERVER_PUBLISH_PROPS if from_server else CLIENT_PUBLISH_PROPS)
    topic = draw(topic_names)
    if "topic_alias" in props and draw(st.booleans()):
        topic = ""
    return Publish(
        topic,
        draw(st.binary(max_size=300)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_ids) if qos else None,
        props,
    )


def acks(level: int) -> st.SearchStrategy[Packet]:
    if level == V4:
        return st.one_of([st.builds(cls, packet_ids) for cls in (PubAck, PubRec, PubRel, PubComp)])
    return st.one_of(
        st.builds(PubAck, packet_ids, st.sampled_from(PUBACK_CODES), ACK_PROPS),
        st.builds(PubRec, packet_ids, st.sampled_from(PUBACK_CODES), ACK_PROPS),
        st.builds(PubRel, packet_ids, st.sampled_from(PUBREL_CODES), ACK_PROPS),
        st.builds(PubComp, packet_ids, st.sampled_from(PUBREL_CODES), ACK_PROPS),
    )


def subscription_options(level: int) -> st.SearchStrategy[SubscriptionOptions]:
    if level == V4:
        return st.builds(SubscriptionOptions, st.integers(0, 2))
    return st.builds(
        SubscriptionOptions, st.integers(0, 2), st.booleans(), st.booleans(), st.integers(0, 2)
    )


def client_packets(level: int) -> st.SearchStrategy[Packet]:
    """What a server-side decoder receives."""
    options: list[st.SearchStrategy[Packet]] = [
        connects(level),
        publishes(level, from_server=False),
        acks(level),
        st.builds(
            Subscribe,
            packet_ids,
            st.lists(st.tuples(text, subscription_options(level)), min_size=1, max_size=4),
            v5_only(level, SUBSCRIBE_PROPS, {}),
        ),
        st.builds(
            Unsubscribe,
            packet_ids,
            st.lists(text, min_size=1, max_size=4),
            v5_only(level, UNSUBSCRIBE_PROPS, {}),
        ),
        st.just(PingReq()),
    ]
    if level == V5:
        options.append(st.builds(Disconnect, st.sampled_from(DISCONNECT_CODES), DISCONNECT_PROPS))
        options.append(st.builds(Auth, st.sampled_from(AUTH_CODES), AUTH_PROPS))
    else:
        options.append(st.just(Disconnect()))
    return st.one_of(options)


def server_packets(level: int) -> st.SearchStrategy[Packet]:
    """What a client-side decoder receives."""
    if level == V5:
        connack = st.builds(
            Connack, st.booleans(), st.sampled_from(CONNACK_CODES_V5), CONNACK_PROPS
        )
        suback_codes = st.lists(st.sampled_from(SUBACK_CODES_V5), min_size=1, max_size=4)
        unsuback = st.builds(
            Unsuback,
            packet_ids,
            st.lists(st.sampled_from(UNSUBACK_CODES), min_size=1, max_size=4),
            ACK_PROPS,
        )
        endings: list[st.SearchStrategy[Packet]] = [
            st.builds(Disconnect, st.sampled_from(DISCONNECT_CODES), DISCONNECT_PROPS),
            st.builds(Auth, st.sampled_from(AUTH_CODES), AUTH_PROPS),
        ]
    else:
        connack = st.builds(Connack, st.booleans(), st.integers(0, 5))
        suback_codes = st.lists(st.sampled_from(SUBACK_CODES_V4), min_size=1, max_size=4)
        unsuback = st.builds(Unsuback, packet_ids)
        endings = []
    return st.one_of(
        connack,
        publishes(level, from_server=True),
        acks(level),
        st.builds(Suback, packet_ids, suback_codes, v5_only(level, ACK_PROPS, {})),
        unsuback,
        st.just(PingResp()),
        *endings,
    )


# Built once: constructing strategies inside each draw dominates the run time otherwise.
CLIENT_PACKETS = {level: client_packets(level) for level in (V4, V5)}
SERVER_PACKETS = {level: server_packets(level) for level in (V4, V5)}


@st.composite
def packets_with_side(draw: st.DrawFn) -> tuple[int, bool, Packet]:
    level = draw(st.sampled_from([V4, V5]))
    server_side = draw(st.booleans())
    packet = draw(CLIENT_PACKETS[level] if server_side else SERVER_PACKETS[level])
    return level, server_side, packet


def make_decoder(level: int, server_side: bool, max_packet_size: int = 1_048_576) -> Decoder:
    dec = Decoder(max_packet_size=max_packet_size, server_side=server_side)
    dec.protocol_level = level
    return dec


# --- (1) valid packets round-trip ---------------------------------------------------------


@EXAMPLES
@given(packets_with_side())
def test_valid_packets_round_trip(case: tuple[int, bool, Packet]) -> None:
    level, server_side, packet = case
    data = encode(packet, level)
    assert make_decoder(level, server_side).feed(data) == [packet]


@EXAMPLES
@given(
    st.sampled_from([V4, V5]).flatmap(
        lambda level: st.tuples(
            st.just(level), st.lists(CLIENT_PACKETS[level], min_size=1, max_size=6)
        )
    ),
    st.data(),
)
def test_any_chunking_yields_the_same_packets(
    case: tuple[int, list[Packet]], data: st.DataObject
) -> None:
    level, packets = case
    # a CONNECT would switch the decoder to its own level; keep the stream at one level
    packets = [p for p in packets if not isinstance(p, Connect) or p.protocol_level == level]
    stream = b"".join(encode(p, level) for p in packets)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=20)))
    bounds = [0, *cuts, len(stream)]
    dec = make_decoder(level, server_side=True)
    out: list[Packet] = []
    for start, stop in itertools.pairwise(bounds):
        out.extend(dec.feed(stream[start:stop]))
    assert out == packets


# --- (2) garbage never escapes as anything but DecodeError ------------------------------------


def feed_in_chunks(dec: Decoder, data: bytes, cuts: list[int]) -> None:
    bounds = [0, *sorted(c for c in cuts if 0 <= c <= len(data)), len(data)]
    try:
        for start, stop in itertools.pairwise(bounds):
            for packet in dec.feed(data[start:stop]):
                assert isinstance(packet, Packet)
    except DecodeError as exc:
        assert 0 <= exc.reason_code <= 0xFF
        return


@EXAMPLES
@given(
    st.binary(max_size=400),
    st.sampled_from([V4, V5]),
    st.booleans(),
    st.lists(st.integers(0, 400), max_size=8),
    st.sampled_from([64, 1_048_576]),
)
def test_random_bytes(
    data: bytes, level: int, server_side: bool, cuts: list[int], max_size: int
) -> None:
    feed_in_chunks(make_decoder(level, server_side, max_size), data, cuts)


@st.composite
def mutated_streams(draw: st.DrawFn) -> tuple[int, bool, bytes]:
    level = draw(st.sampled_from([V4, V5]))
    server_side = draw(st.booleans())
    source = CLIENT_PACKETS[level] if server_side else SERVER_PACKETS[level]
    stream = bytearray(
        b"".join(encode(p, level) for p in draw(st.lists(source, min_size=1, max_size=3)))
    )
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "length"]))
        if not stream:
            break
        index = draw(st.integers(0, len(stream) - 1))
        if op == "flip":
            stream[index] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            stream[index] = draw(st.integers(0, 255))
        elif op == "truncate":
            del stream[index:]
        elif op == "insert":
            stream[index:index] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del stream[index : index + draw(st.integers(1, 4))]
        else:
            # the remaining length byte of the first packet, where most framing lives
            if len(stream) > 1:
                stream[1] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, stream[1] ^ 1]))
    return level, server_side, bytes(stream)


@EXAMPLES
@given(mutated_streams(), st.lists(st.integers(0, 2000), max_size=6))
def test_mutated_packets(case: tuple[int, bool, bytes], cuts: list[int]) -> None:
    level, server_side, data = case
    feed_in_chunks(make_decoder(level, server_side), data, cuts)
