"""Parsing the push messages the gateway sends to a device (hostile bytes until parsed).

Each push arrives on ``devices/{device_id}/{app_id}`` as one UTF-8 JSON object
(see docs/gateway.md)::

    {"id": "...", "app": "app_...", "priority": 10, "push_type": "alert", "expiration": 0,
     "collapse_id": null, "sent_at": 1764190000.1, "payload": {...}}

A notify-then-fetch notice has ``"content": {"id", "size", "content_type"}``; the agent fetches
those bytes and puts them in :attr:`Push.content` before the handler sees the push.

Example::

    >>> body = b'{"id": "1", "app": "app_y", "payload": {"alert": "hi"}}'
    >>> p = parse_notice("devices/dev_x/app_y", body)
    >>> p.app, p.payload
    ('app_y', {'alert': 'hi'})
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# a notice is small (the provider payload is <= 4 KiB); refuse anything far larger unparsed
MAX_NOTICE_BYTES = 64 * 1024


class BadNotice(ValueError):
    """The message is not a gateway push notice."""


@dataclass(frozen=True)
class ContentRef:
    """Where the full content of a notify-then-fetch push is (``GET /v1/content/{id}``)."""

    id: str
    size: int | None
    content_type: str | None


@dataclass
class Push:
    """One push as a handler receives it.

    ``payload`` is the provider's JSON body (None for a notify-then-fetch notice without one);
    ``content`` and ``content_type`` hold the fetched bytes of a notify-then-fetch push.
    ``raw`` is the whole notice as parsed.
    """

    id: str
    app: str
    topic: str
    payload: dict[str, Any] | None
    priority: int = 10
    push_type: str = "alert"
    expiration: int = 0
    collapse_id: str | None = None
    sent_at: float | None = None
    content_ref: ContentRef | None = None
    content: bytes | None = None
    content_type: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def json_content(self) -> Any:
        """The fetched content parsed as JSON (raises ValueError when it is not JSON)."""
        if self.content is None:
            raise ValueError("this push carries no fetched content")
        return json.loads(self.content)


def _opt(data: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = data.get(key, default)
    if value is None or value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BadNotice(f"field {key!r} has the wrong type")
    return value


def app_from_topic(topic: str, device_id: str | None = None) -> str:
    """The app id in ``devices/{device_id}/{app_id}``."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "devices" or not parts[2]:
        raise BadNotice(f"not a device push topic: {topic!r}")
    if device_id is not None and parts[1] != device_id:
        raise BadNotice(f"topic {topic!r} is for another device")
    return parts[2]


def parse_notice(topic: str, payload: bytes, device_id: str | None = None) -> Push:
    """Validate one message and build the :class:`Push` (raises :class:`BadNotice`)."""
    topic_app = app_from_topic(topic, device_id)
    if len(payload) > MAX_NOTICE_BYTES:
        raise BadNotice(f"notice of {len(payload)} bytes is larger than {MAX_NOTICE_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadNotice(f"notice is not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadNotice("notice is not a JSON object")
    push_id = data.get("id")
    if not isinstance(push_id, str) or not push_id:
        raise BadNotice("notice has no push id")
    app = data.get("app", topic_app)
    if app != topic_app:
        raise BadNotice(f"notice for app {app!r} arrived on the topic of {topic_app!r}")
    body = data.get("payload")
    if body is not None and not isinstance(body, dict):
        raise BadNotice("notice payload is not a JSON object")
    content_ref = None
    content = data.get("content")
    if content is not None:
        if not isinstance(content, dict) or not isinstance(content.get("id"), str):
            raise BadNotice("notice content reference has no id")
        size = _opt(content, "size", int, None)
        ctype = _opt(content, "content_type", str, None)
        content_ref = ContentRef(content["id"], size, ctype)
    sent_at = _opt(data, "sent_at", (int, float), None)
    return Push(
        id=push_id,
        app=topic_app,
        topic=topic,
        payload=body,
        priority=_opt(data, "priority", int, 10),
        push_type=_opt(data, "push_type", str, "alert"),
        expiration=_opt(data, "expiration", int, 0),
        collapse_id=_opt(data, "collapse_id", str, None),
        sent_at=float(sent_at) if sent_at is not None else None,
        content_ref=content_ref,
        raw=data,
    )
