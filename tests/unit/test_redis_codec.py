"""engine=redis wire formats: a message through Redis comes back equal, and the fan-out
entry's records split back exactly, whatever bytes the payloads hold."""

from __future__ import annotations

from pushwire.engines.redis.broker import records
from pushwire.engines.redis.codec import decode, decode_header, encode, origin_of
from pushwire.model import Message


def test_a_message_round_trips_with_its_properties_and_times() -> None:
    message = Message(
        "a/b c/ü",
        b"line1\nline2 \x00\xff",
        qos=2,
        retain=True,
        properties={
            "content_type": "text/plain",
            "correlation_data": b"\x00\x01",
            "user_property": [("k", "v"), ("k", "w")],
        },
        expires_at=1_900_000_000.5,
        created_at=1_800_000_000.25,
        origin="client-1",
    )
    blob = encode(message, "node-a")
    back = decode(blob)
    assert (back.topic, back.payload, back.qos, back.retain) == (
        message.topic,
        message.payload,
        2,
        True,
    )
    assert back.properties == message.properties
    assert (back.expires_at, back.created_at, back.origin) == (
        message.expires_at,
        message.created_at,
        "client-1",
    )
    assert back.uid != message.uid  # a copy of this process, with its own identity
    header, _ = decode_header(blob)
    assert origin_of(header) == ("node-a", message.uid)


def test_fanout_records_split_back_exactly() -> None:
    blobs = [encode(Message("t", payload), "n") for payload in (b"", b"a b\nc", b" " * 300)]
    entry = b"".join(f"{i + 7} {len(b)} ".encode() + b for i, b in enumerate(blobs))
    assert list(records(entry)) == [(i + 7, b) for i, b in enumerate(blobs)]
