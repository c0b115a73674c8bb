"""How a message travels through Redis: one bytes value, a JSON header line + the payload.

The header holds what a node needs to route and log the message (topic, QoS, retain,
times, origin, MQTT 5 properties through engines/serialize.py) and who published it (node
id and the message's process-local uid), so the publishing node hands its own Message object
to its subscribers instead of a decoded copy. Payloads stay raw bytes (no base64).
"""

from __future__ import annotations

import json
from typing import Any

from pushwire.engines.serialize import dump_properties, load_properties
from pushwire.model import Message


def encode(message: Message, node_id: str) -> bytes:
    header: dict[str, Any] = {
        "t": message.topic,
        "q": message.qos,
        "r": message.retain,
        "c": message.created_at,
        "n": node_id,
        "u": message.uid,
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
    """The header and the offset of the payload."""
    cut = blob.index(b"\n")
    header = json.loads(blob[:cut])
    if not isinstance(header, dict) or not isinstance(header.get("t"), str):
        raise ValueError("not a pushwire message")
    return header, cut + 1


def decode(blob: bytes) -> Message:
    """A new Message (with a uid of this process) from what `encode` made."""
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


def origin_of(header: dict[str, Any]) -> tuple[str, int]:
    """(node id, uid) of the publishing node's Message object."""
    return str(header.get("n", "")), int(header.get("u", 0))
