"""Every string field an MQTT client sends is well-formed UTF-8 or the packet is malformed
(issue 9: no text that cannot be encoded may reach the hub). Checked field by field: a valid
packet is encoded with a 3-byte marker in one string, and the marker is swapped for an
encoded UTF-16 surrogate (ED A0 80) or bytes that are not UTF-8 at all (same length, so
every length prefix stays right and only the text is wrong)."""

from __future__ import annotations

import pytest

from pushwire.mqtt.codec.decoder import Decoder
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.codec.errors import DecodeError
from pushwire.mqtt.packets import (
    Connect,
    Packet,
    Publish,
    Subscribe,
    SubscriptionOptions,
    Unsubscribe,
    Will,
)

MARK = "QZQ"
BAD_TEXT = {"surrogate": b"\xed\xa0\x80", "not-utf8": b"\xff\xfe\xfd", "overlong": b"\xc0\xaf!"}
V5 = 5

CONNECT_V5 = encode(Connect("c", protocol_level=V5), V5)

PACKETS: dict[str, tuple[Packet, bool]] = {
    # (packet, needs a CONNECT v5 first)
    "client id": (Connect(f"c{MARK}", protocol_level=V5), False),
    "username": (Connect("c", protocol_level=V5, username=MARK, password=b"pw"), False),
    "will topic": (Connect("c", protocol_level=V5, will=Will(f"w/{MARK}", b"")), False),
    "will content type": (
        Connect("c", protocol_level=V5, will=Will("w", b"", properties={"content_type": MARK})),
        False,
    ),
    "auth method": (
        Connect("c", protocol_level=V5, properties={"authentication_method": MARK}),
        False,
    ),
    "topic": (Publish(f"t/{MARK}", b"p"), True),
    "content type": (Publish("t", b"p", properties={"content_type": MARK}), True),
    "response topic": (Publish("t", b"p", properties={"response_topic": MARK}), True),
    "user property name": (Publish("t", b"p", properties={"user_property": [(MARK, "v")]}), True),
    "user property value": (
        Publish("t", b"p", properties={"user_property": [("k", MARK)]}),
        True,
    ),
    "subscribe filter": (Subscribe(1, [(f"f/{MARK}", SubscriptionOptions())]), True),
    "subscribe user property": (
        Subscribe(1, [("f", SubscriptionOptions())], {"user_property": [("k", MARK)]}),
        True,
    ),
    "unsubscribe filter": (Unsubscribe(1, [f"f/{MARK}"]), True),
}


@pytest.mark.parametrize("bad", sorted(BAD_TEXT))
@pytest.mark.parametrize("field", sorted(PACKETS))
def test_every_string_field_must_be_utf8(field: str, bad: str) -> None:
    packet, after_connect = PACKETS[field]
    data = encode(packet, V5)
    assert data.count(MARK.encode()) == 1
    decoder = Decoder()
    if after_connect:
        decoder.feed(CONNECT_V5)
    # the marker, as sent, is fine
    assert len(Decoder().feed((CONNECT_V5 if after_connect else b"") + data)) == (
        2 if after_connect else 1
    )
    with pytest.raises(DecodeError) as info:
        decoder.feed(data.replace(MARK.encode(), BAD_TEXT[bad]))
    assert info.value.reason_code in (0x81, 0x82)  # malformed packet / protocol error
