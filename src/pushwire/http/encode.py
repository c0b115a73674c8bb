"""Wire forms of a logged message, encoded once per message and shared by every reader.

JSON (poll, long-poll, WebSocket, SSE data):
    {"id": 42, "topic": "a/b", "time": 1764190000.123, "epoch": "3f2a...",
     "payload": "text"            (UTF-8 payloads)  | "payload_base64": "AAE="  (others)
     "content_type": "...", "qos": 1, "retain": true, "expires": 1764190060.0,
     "priority": 4}               (optional keys only when set)
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pushwire.core.log import LogEntry, format_cursor
from pushwire.core.message import Message

PRIORITY_PROPERTY = "priority"


def message_priority(message: Message) -> int | None:
    for pair in message.properties.get("user_property", ()):
        if pair[0] == PRIORITY_PROPERTY:
            try:
                return int(pair[1])
            except ValueError:
                return None
    return None


def message_dict(entry: LogEntry, epoch: str) -> dict[str, Any]:
    m = entry.message
    d: dict[str, Any] = {
        "id": entry.id,
        "topic": m.topic,
        "time": round(m.created_at, 3),
        "epoch": epoch,
    }
    try:
        d["payload"] = m.payload.decode("utf-8")
    except UnicodeDecodeError:
        d["payload_base64"] = base64.b64encode(m.payload).decode("ascii")
    ct = m.properties.get("content_type")
    if ct:
        d["content_type"] = ct
    if m.qos:
        d["qos"] = m.qos
    if m.retain:
        d["retain"] = True
    if m.expires_at is not None:
        d["expires"] = round(m.expires_at, 3)
    prio = message_priority(m)
    if prio is not None:
        d["priority"] = prio
    return d


def entry_json(entry: LogEntry, epoch: str) -> str:
    """The message as a JSON object (text), cached on the entry."""
    wire = entry.wire
    if wire is None:
        wire = entry.wire = {}
    text: str | None = wire.get("json")
    if text is None:
        text = json.dumps(message_dict(entry, epoch), ensure_ascii=False, separators=(",", ":"))
        wire["json"] = text
    return text


def entry_sse(entry: LogEntry, epoch: str) -> bytes:
    """The message as one SSE event (`id:` is the cursor), cached on the entry."""
    wire = entry.wire
    if wire is None:
        wire = entry.wire = {}
    frame: bytes | None = wire.get("sse")
    if frame is None:
        frame = (
            f"id: {format_cursor(epoch, entry.id)}\ndata: {entry_json(entry, epoch)}\n\n"
        ).encode()
        wire["sse"] = frame
    return frame


def entry_ws(entry: LogEntry, epoch: str, sub_json: str, redelivered: bool) -> str:
    """A WebSocket `message` frame: the shared JSON with the subscription name spliced in."""
    body = entry_json(entry, epoch)
    tail = ',"redelivered":true}' if redelivered else "}"
    return '{"type":"message","sub":' + sub_json + "," + body[1:-1] + tail


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
