"""A read that is exactly one CONNECT takes a shortcut in the decoder (connect storms):
it must give what the framing loop gives for the same bytes, fault for fault."""

from __future__ import annotations

import pytest

from pushwire.mqtt.codec.decoder import Decoder
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.codec.errors import DecodeError
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    Connect,
    Packet,
    Will,
)


def _connects() -> list[bytes]:
    v311 = PROTOCOL_V311
    plain = encode(Connect("dev-1", v311, clean_start=True, keepalive=30), v311)
    forms = [
        plain,
        encode(Connect("dev-1", v311, clean_start=False, keepalive=0), v311),
        encode(Connect("", v311, clean_start=True), v311),
        encode(Connect("x" * 100, v311), v311),  # 114 bytes: still a one-byte length
        encode(Connect("x" * 140, v311), v311),  # a two-byte length: the framing loop's
        encode(Connect("dévice", v311), v311),  # not ASCII
        encode(Connect("u", v311, username="alice", password=b"secret"), v311),
        encode(Connect("w", v311, will=Will("will/t", b"gone", 1, True, {})), v311),
        encode(Connect("five", PROTOCOL_V5, clean_start=True), PROTOCOL_V5),
        encode(
            Connect("five", PROTOCOL_V5, properties={"session_expiry_interval": 60}),
            PROTOCOL_V5,
        ),
    ]
    faulty = [
        plain[:-1] + b"\x00",  # NUL in the client id
        plain[:9] + bytes([plain[9] | 0x01]) + plain[10:],  # reserved flag
        plain[:9] + bytes([plain[9] | 0x18]) + plain[10:],  # will QoS without the will flag
        plain[:8] + b"\x03" + plain[9:],  # level 3 under the name "MQTT"
        plain[:8] + b"\x06" + plain[9:],  # unknown level
        plain[:4] + b"MQTX" + plain[8:],  # unknown protocol name
        plain[:1] + bytes([plain[1] + 1]) + plain[2:] + b"!",  # a trailing byte
        plain[:1] + bytes([plain[1] - 1]) + plain[2:-1],  # client id cut short
        plain[:12] + b"\x00\x09" + plain[14:],  # client id length past the end
        b"\x10\x00",  # no body
        b"\x11" + plain[1:],  # CONNECT with header flags
    ]
    return forms + faulty


def _decode(chunks: list[bytes]) -> tuple[list[Packet] | str, int]:
    decoder = Decoder(server_side=True, ack_runs=True)
    packets: list[Packet] = []
    try:
        for chunk in chunks:
            packets += decoder.feed(chunk)
    except DecodeError as exc:
        return f"{type(exc).__name__}: {exc} ({exc.reason_code})", decoder.protocol_level
    return packets, decoder.protocol_level


@pytest.mark.parametrize("data", _connects(), ids=lambda d: d.hex()[:40])
def test_lone_connect_decodes_as_the_framing_loop_does(data: bytes) -> None:
    # fed as one read: the shortcut; fed byte by byte: the framing loop, always
    assert _decode([data]) == _decode([data[i : i + 1] for i in range(len(data))])


def test_lone_connect_then_the_next_read_is_framed_at_its_level() -> None:
    decoder = Decoder(server_side=True)
    [connect] = decoder.feed(encode(Connect("five", PROTOCOL_V5), PROTOCOL_V5))
    assert isinstance(connect, Connect) and decoder.protocol_level == PROTOCOL_V5
    # an MQTT 5 DISCONNECT with a reason code and properties, readable only at level 5
    assert len(decoder.feed(b"\xe0\x02\x04\x00")) == 1


def test_a_connect_followed_by_more_in_one_read_is_not_cut_short() -> None:
    connect = encode(Connect("dev-1", PROTOCOL_V311), PROTOCOL_V311)
    packets = Decoder(server_side=True).feed(connect + b"\xc0\x00")  # + PINGREQ
    assert [type(p).__name__ for p in packets] == ["Connect", "PingReq"]
