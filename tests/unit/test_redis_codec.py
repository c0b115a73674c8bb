"""engine=redis wire formats: a message through Redis comes back equal, and the batch
entries' framing splits back exactly, whatever bytes the payloads hold."""

from __future__ import annotations

import pytest

from pushwire.engines.redis.batch import (
    fanout_messages,
    frame,
    frame_indexed,
    topic_messages,
    unframe,
)
from pushwire.engines.redis.codec import COMPACT, _encode_json, created_at, decode, encode
from pushwire.model import Message


def _full_message(topic: str = "a/b c/ü", origin: str | None = "client-1") -> Message:
    return Message(
        topic,
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
        origin=origin,
    )


@pytest.mark.parametrize(
    ("topic", "origin"),
    [("a/b c/ü", "client-1"), ("a/b", None), ("a/b", ""), ("nul\0topic", "x"), ("t", "o\0")],
)
def test_a_message_round_trips_with_its_properties_and_times(
    topic: str, origin: str | None
) -> None:
    message = _full_message(topic, origin)
    blob = encode(message)
    assert blob[:1] == (COMPACT if "\0" not in topic + (origin or "") else b"{")
    back = decode(blob)
    assert (back.topic, back.payload, back.qos, back.retain) == (topic, message.payload, 2, True)
    assert back.properties == message.properties
    assert (back.expires_at, back.created_at, back.origin) == (
        message.expires_at,
        message.created_at,
        origin,
    )
    assert created_at(blob) == message.created_at
    assert back.uid != message.uid  # a copy of this process, with its own identity


def test_a_plain_message_round_trips() -> None:
    message = Message("t", b"", qos=1)
    back = decode(encode(message))
    assert (back.topic, back.payload, back.qos, back.retain, back.properties) == (
        "t",
        b"",
        1,
        False,
        {},
    )
    assert back.expires_at is None and back.origin is None


def test_the_json_form_of_earlier_versions_is_still_read() -> None:
    message = _full_message()
    back = decode(_encode_json(message))
    assert (back.topic, back.payload, back.properties, back.origin) == (
        message.topic,
        message.payload,
        message.properties,
        "client-1",
    )


def test_batch_entries_split_back_exactly() -> None:
    blobs = [encode(Message("t", payload)) for payload in (b"", b"a b\nc", b" " * 300)]
    fan = b"".join(frame(b) + b for b in blobs)
    assert list(unframe(fan)) == blobs
    assert list(fanout_messages({b"f": b"7", b"b": fan})) == [
        (i + 7, b) for i, b in enumerate(blobs)
    ]
    # a topic entry holds the messages of one topic with their index in the batch
    indexed = b"".join(frame_indexed(i * 2, b) + b for i, b in enumerate(blobs))
    assert list(topic_messages(b"11-0", {b"f": b"7", b"m": indexed})) == [
        (7 + i * 2, b) for i, b in enumerate(blobs)
    ]


def test_entries_of_earlier_versions_are_still_read() -> None:
    blobs = [encode(Message("t", payload)) for payload in (b"x", b"y y")]
    old_fan = b"".join(f"{i + 3} {len(b)} ".encode() + b for i, b in enumerate(blobs))
    assert list(fanout_messages({b"b": old_fan})) == [(3, blobs[0]), (4, blobs[1])]
    assert list(topic_messages(b"9-0", {b"m": blobs[0]})) == [(9, blobs[0])]
