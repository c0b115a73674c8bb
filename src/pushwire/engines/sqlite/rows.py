"""Row encodings shared by the SQLite engine's stores: a Message to and from its columns,
and the key a log topic is stored under (with the hole statement that uses it)."""

from __future__ import annotations

from typing import Any, Final

from pushwire.core.message import Message
from pushwire.engines.serialize import dump_properties, load_properties

# ids issued but not stored (see schema.LOG_SCHEMA); written by the writer when a
# log_append fails alone
SQL_LOG_HOLE: Final = "INSERT OR IGNORE INTO log_holes (topic, id) VALUES (?, ?)"


def props_text(props: dict[str, Any]) -> str | None:
    # NULL for the common empty case: no JSON work on either side
    return dump_properties(props) if props else None


def message_from_row(
    topic: str,
    payload: bytes,
    qos: int,
    retain: int,
    properties: str | None,
    expires_at: float | None,
    created_at: float,
    uid: int,
    origin: str | None,
) -> Message:
    return Message(
        topic=topic,
        payload=bytes(payload),
        qos=qos,
        retain=bool(retain),
        properties=load_properties(properties) if properties is not None else {},
        expires_at=expires_at,
        created_at=created_at,
        uid=uid,
        origin=origin,
    )


def topic_key(topic: str) -> bytes:
    return topic.encode("utf-8", "surrogatepass")
