"""Wire forms of a logged message, encoded once per message and shared by every reader.

Each form is cached on the entry (`LogEntry.wire`, keyed by format) the first time a reader
of that format needs it; every other reader of the format writes the same bytes object:
    "json"   the message JSON (text)           poll pages, and the pieces of the others
    "sse"    one SSE event (bytes)             every SSE stream
    "lp"     a whole one-message long-poll body (bytes): every waiter a publish wakes
    "ws:" + subscription name JSON ("ws!" when redelivered): a WebSocket `message` frame
             (bytes); a few names per entry (`WS_NAMES_CACHED`), past that per reader
    "wf:" / "wf!" + name JSON: the same with its RFC 6455 frame head (the owned protocol)

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
from pushwire.http.websocket_codec import text_frame

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


# subscription names whose WebSocket frames one entry keeps: clients of one application
# mostly use the same few names; a name per client must not grow every entry without bound
WS_NAMES_CACHED = 4


def entry_ws(
    entry: LogEntry, epoch: str, sub_json: str, redelivered: bool, framed: bool = False
) -> bytes:
    """A WebSocket `message` frame: the shared JSON with the subscription name spliced in,
    cached on the entry for the first few names (`WS_NAMES_CACHED`). `framed`: with its
    RFC 6455 frame head (the owned protocol writes it as it is; key "wf:" / "wf!")."""
    wire = entry.wire
    if wire is None:
        wire = entry.wire = {}
    if framed:
        key = ("wf!" if redelivered else "wf:") + sub_json
    else:
        key = ("ws!" if redelivered else "ws:") + sub_json
    frame: bytes | None = wire.get(key)
    if frame is not None:
        return frame
    body = entry_json(entry, epoch)
    tail = ',"redelivered":true}' if redelivered else "}"
    frame = ('{"type":"message","sub":' + sub_json + "," + body[1:-1] + tail).encode()
    if framed:
        frame = text_frame(frame)
    names = wire.get("ws#", 0)
    if names < WS_NAMES_CACHED:
        wire[key] = frame
        wire["ws#"] = names + 1
    return frame


def poll_body(entries: list[LogEntry], epoch: str, next_id: int, gap: bool, more: bool) -> bytes:
    """A poll / long-poll reply body."""
    return (
        '{"messages":['
        + ",".join(entry_json(e, epoch) for e in entries)
        + f'],"cursor":"{format_cursor(epoch, next_id)}","epoch":"{epoch}","id":{next_id},'
        + f'"gap":{"true" if gap else "false"},"more":{"true" if more else "false"}}}'
    ).encode()


def entry_longpoll(entry: LogEntry, epoch: str) -> bytes:
    """The long-poll reply carrying just this message (cursor: its id), cached on the entry:
    a publish that wakes 10,000 waiters encodes it once."""
    wire = entry.wire
    if wire is None:
        wire = entry.wire = {}
    body: bytes | None = wire.get("lp")
    if body is None:
        body = wire["lp"] = poll_body([entry], epoch, entry.id, False, False)
    return body


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
