"""What a device receives: the device message, and notify-then-fetch content.

A push reaches the device as one JSON object (docs/gateway.md). When the content must not
or cannot travel in it (`"fetch": true`, content posted first, too big for the device's
packet size or for `push_notice_threshold`), the content is stored and the device gets a
notice naming it; it fetches the content with its own credential (GET /v1/content/{id}).
"""

from __future__ import annotations

import json
from typing import Any

from pushwire.gateway import ids
from pushwire.gateway.model import Content, Push


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def device_message(p: Push, payload: Any, content: Content | None = None) -> bytes:
    """The message on devices/{device}/{app}: one JSON object per push."""
    msg: dict[str, Any] = {
        "id": p.id,
        "app": p.app_id,
        "priority": p.priority,
        "push_type": p.push_type,
        "expiration": p.expiration,
        "collapse_id": p.collapse_id,
        "sent_at": p.created,
        "payload": payload,
    }
    if content is not None:
        msg["content"] = {
            "id": content.content_id,
            "size": len(content.data),
            "content_type": content.content_type,
        }
    return _dumps(msg)


def new_content(p: Push, data: bytes, content_type: str, now: float, ttl: float) -> Content:
    """Content for the device and app of `p`, readable for `ttl` seconds."""
    return Content(ids.new_content_id(), p.device_id, p.app_id, content_type, data, now, now + ttl)


def body_content(body: dict[str, Any]) -> bytes:
    """A provider's push body as stored content."""
    return _dumps(body)


def notice_payload(body: dict[str, Any]) -> dict[str, Any] | None:
    """What a notice keeps of the body: its alert, so the device can show something."""
    return {"alert": body["alert"]} if "alert" in body else None


def payload_of(message: bytes) -> Any:
    """The provider's payload inside a device message (None if unreadable)."""
    try:
        data = json.loads(message)
        return data.get("payload") if isinstance(data, dict) else None
    except ValueError:
        return None


def as_notice(p: Push, message: bytes, now: float, ttl: float) -> tuple[bytes, Content]:
    """Turn a device message into a notice plus the content it names."""
    payload = payload_of(message)
    content = new_content(p, _dumps(payload), "application/json", now, ttl)
    alert = notice_payload(payload) if isinstance(payload, dict) else None
    return device_message(p, alert, content), content
