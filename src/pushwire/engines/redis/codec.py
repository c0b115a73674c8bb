"""How a message travels through Redis: one bytes value, a header + the payload.

The header holds what a node needs to route and log the message (topic, QoS, retain,
times, origin, MQTT 5 properties through engines/serialize.py). Payloads stay raw bytes
(no base64).

Two header forms, told apart by the first byte:
- compact (b"\\x01"): the fields joined by NUL bytes, then the payload after the last NUL
  (`bytes.split(b"\\0", FIELDS)` takes it apart in one C call: a peer node decodes every
  message it reads, so this is the fan-out's per-message parsing cost). Used whenever no
  text field holds a NUL (MQTT forbids U+0000 in topics and client ids).
- JSON (b"{"): a JSON object line ended by b"\\n", then the payload. The fallback for text
  with NULs, and what earlier versions wrote: both are read.
"""

from __future__ import annotations

import json
from typing import Any

from pushwire.engines.serialize import dump_properties, load_properties
from pushwire.model import Message

COMPACT = b"\x01"
# marker, topic, qos+retain, created, expires, origin, properties: the payload follows
FIELDS = 6


def encode(message: Message, node_id: str = "") -> bytes:
    """The bytes of `message` (`node_id` is no longer part of them: a fan-out entry says
    which node published its batch)."""
    topic = message.topic
    origin = message.origin
    if "\0" in topic or (origin is not None and "\0" in origin):
        return _encode_json(message)
    expires = message.expires_at
    props = message.properties
    return b"\0".join(
        (
            COMPACT,
            topic.encode(),
            b"%d" % (message.qos * 2 + (1 if message.retain else 0)),
            repr(message.created_at).encode(),
            b"" if expires is None else repr(expires).encode(),
            b"" if origin is None else b"+" + origin.encode(),
            json.dumps(dump_properties(props), separators=(",", ":")).encode() if props else b"",
            message.payload,
        )
    )


def _encode_json(message: Message) -> bytes:
    header: dict[str, Any] = {
        "t": message.topic,
        "q": message.qos,
        "r": message.retain,
        "c": message.created_at,
    }
    if message.expires_at is not None:
        header["x"] = message.expires_at
    if message.origin is not None:
        header["o"] = message.origin
    if message.properties:
        header["p"] = dump_properties(message.properties)
    # json.dumps escapes newlines inside strings: the first b"\n" ends the header
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + message.payload


def decode_header(blob: bytes) -> tuple[dict[str, Any], int]:
    """The JSON form's header and the offset of the payload."""
    cut = blob.index(b"\n")
    header = json.loads(blob[:cut])
    if not isinstance(header, dict) or not isinstance(header.get("t"), str):
        raise ValueError("not a pushwire message")
    return header, cut + 1


def created_at(blob: bytes) -> float:
    """When the message was published (for the start-up load, without decoding it)."""
    if blob[:1] == COMPACT:
        return float(blob.split(b"\0", 4)[3])
    header, _ = decode_header(blob)
    return float(header.get("c", 0.0))


def header_size(blob: bytes) -> int:
    """Bytes before the payload."""
    if blob[:1] == COMPACT:
        return len(blob) - len(blob.split(b"\0", FIELDS + 1)[FIELDS + 1])
    return blob.index(b"\n") + 1


# topic bytes -> str of the messages a node read last (a fan-in reads the same topics
# over and over); cleared when full
_TOPICS: dict[bytes, str] = {}
_TOPICS_MAX = 4096
_TOPIC_CACHED_BYTES = 256


def split(blob: bytes) -> list[bytes] | None:
    """The fields of a compact message, split once (the fan-out reader looks at the topic
    and flags before it builds anything: `topic_of`, `from_fields`); None for the JSON
    form (`decode` it)."""
    if blob[:1] != COMPACT:
        return None
    parts = blob.split(b"\0", FIELDS + 1)
    if len(parts) != FIELDS + 2:
        raise ValueError("not a pushwire message")
    return parts


def topic_of(parts: list[bytes]) -> str:
    raw = parts[1]
    topic = _TOPICS.get(raw)
    if topic is None:
        topic = raw.decode()
        if len(raw) <= _TOPIC_CACHED_BYTES:
            if len(_TOPICS) >= _TOPICS_MAX:
                _TOPICS.clear()
            _TOPICS[raw] = topic
    return topic


def from_fields(parts: list[bytes], topic: str) -> Message:
    """A new Message from `split`'s fields (`topic`: `topic_of` them)."""
    _, _, flags, created, expires, origin, props, payload = parts
    mode = int(flags)
    return Message(
        topic,
        payload,
        mode >> 1,
        bool(mode & 1),
        load_properties(json.loads(props)) if props else {},
        expires_at=float(expires) if expires else None,
        created_at=float(created),
        origin=origin[1:].decode() if origin else None,
    )


def decode(blob: bytes) -> Message:
    """A new Message (with a uid of this process) from what `encode` made."""
    parts = split(blob)
    if parts is None:
        return _decode_json(blob)
    return from_fields(parts, topic_of(parts))


def _decode_json(blob: bytes) -> Message:
    header, start = decode_header(blob)
    props = header.get("p")
    return Message(
        header["t"],
        blob[start:],
        int(header.get("q", 0)),
        bool(header.get("r", False)),
        load_properties(props) if props else {},
        expires_at=header.get("x"),
        created_at=float(header.get("c", 0.0)),
        origin=header.get("o"),
    )
