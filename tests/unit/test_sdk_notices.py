"""Parsing the push notices a device receives (hostile bytes until parsed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pushwire.client.notices import MAX_NOTICE_BYTES, BadNotice, parse_notice

TOPIC = "devices/dev_a/app_b"


def _bytes(data: Any) -> bytes:
    return json.dumps(data).encode()


def test_full_notice() -> None:
    push = parse_notice(
        TOPIC,
        _bytes(
            {
                "id": "u1",
                "app": "app_b",
                "priority": 5,
                "push_type": "background",
                "expiration": 123,
                "collapse_id": "c",
                "sent_at": 1764190000.5,
                "payload": {"alert": "hi", "badge": 2},
            }
        ),
        "dev_a",
    )
    assert (push.id, push.app, push.priority, push.push_type) == ("u1", "app_b", 5, "background")
    assert (push.expiration, push.collapse_id, push.sent_at) == (123, "c", 1764190000.5)
    assert push.payload == {"alert": "hi", "badge": 2} and push.content_ref is None


def test_notify_then_fetch_notice() -> None:
    push = parse_notice(
        TOPIC,
        _bytes(
            {
                "id": "u2",
                "app": "app_b",
                "payload": None,
                "content": {"id": "c1", "size": 9, "content_type": "text/plain"},
            }
        ),
    )
    assert push.payload is None and push.content_ref is not None
    assert (push.content_ref.id, push.content_ref.size) == ("c1", 9)
    assert push.content_ref.content_type == "text/plain"


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("devices/dev_a", _bytes({"id": "1"})),
        ("other/dev_a/app_b", _bytes({"id": "1"})),
        ("devices/dev_OTHER/app_b", _bytes({"id": "1"})),
        (TOPIC, b"\xff\xfe"),
        (TOPIC, b"not json"),
        (TOPIC, b"[1, 2]"),
        (TOPIC, _bytes({"app": "app_b"})),
        (TOPIC, _bytes({"id": "1", "app": "app_OTHER"})),
        (TOPIC, _bytes({"id": "1", "payload": [1]})),
        (TOPIC, _bytes({"id": "1", "priority": "high"})),
        (TOPIC, _bytes({"id": "1", "priority": True})),
        (TOPIC, _bytes({"id": "1", "content": {"size": 3}})),
        (TOPIC, b" " * (MAX_NOTICE_BYTES + 1)),
    ],
)
def test_bad_notices_refused(topic: str, payload: bytes) -> None:
    with pytest.raises(BadNotice):
        parse_notice(topic, payload, "dev_a")
