"""How `pushwire sub` prints a message: payload only, `-v` (topic and payload), `-F FORMAT`
(mosquitto_sub-style placeholders) or `--json` (one JSON object per line)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import time as _now
from typing import Any

# placeholder -> what it prints (docs/cli.md lists the same)
PLACEHOLDERS = {
    "t": "topic",
    "p": "payload (raw bytes)",
    "i": "message id in the log (empty over MQTT)",
    "C": "cursor EPOCH:ID to resume from (empty over MQTT)",
    "I": "time, ISO 8601 UTC (publish time when the server gives it, else receive time)",
    "U": "time, Unix seconds with fractions",
    "q": "QoS",
    "r": "retain flag: 1 or 0",
    "l": "payload length, bytes",
    "x": "payload as hex",
    "c": "content type (empty when none)",
    "j": "the message as JSON (as --json prints it)",
    "%": "a literal %",
}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "e": "\x1b", "0": "\0"}
_TOKEN = re.compile(r"%(.?)|\\(.?)", re.DOTALL)  # "" at the end: a lone % or \\


@dataclass(slots=True)
class Received:
    """A message as `pushwire sub` got it, from any transport."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    id: int | None = None
    epoch: str | None = None
    time: float | None = None  # publish time, when the transport carries it
    content_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # expires, priority, redelivered
    received_at: float = field(default_factory=_now)

    @property
    def cursor(self) -> str | None:
        if self.id is None or self.epoch is None:
            return None
        return f"{self.epoch}:{self.id}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Received:
        """From the message JSON of poll, long-poll, SSE and the JSON WebSocket."""
        if "payload_base64" in data:
            payload = base64.b64decode(data["payload_base64"])
        else:
            payload = str(data.get("payload", "")).encode()
        extra: dict[str, Any] = {
            k: data[k] for k in ("expires", "priority", "redelivered") if k in data
        }
        return cls(
            topic=str(data["topic"]),
            payload=payload,
            qos=int(data.get("qos", 0)),
            retain=bool(data.get("retain", False)),
            id=data.get("id"),
            epoch=data.get("epoch"),
            time=data.get("time"),
            content_type=data.get("content_type"),
            extra=extra,
        )

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        out["topic"] = self.topic
        out["time"] = self.time if self.time is not None else round(self.received_at, 3)
        if self.epoch is not None:
            out["epoch"] = self.epoch
        try:
            out["payload"] = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            out["payload_base64"] = base64.b64encode(self.payload).decode()
        if self.content_type:
            out["content_type"] = self.content_type
        out["qos"] = self.qos
        out["retain"] = self.retain
        out.update(self.extra)
        return out


class FormatError(ValueError):
    pass


def check_format(fmt: str) -> None:
    """Refuse unknown placeholders up front (a usage error, not a surprise per message)."""
    for m in _TOKEN.finditer(fmt):
        if m.group(1) is not None and m.group(1) not in PLACEHOLDERS:
            raise FormatError(f"unknown placeholder %{m.group(1)} in -F (see docs/cli.md)")
        if m.group(2) is not None and m.group(2) not in _ESCAPES:
            raise FormatError(f"unknown escape \\{m.group(2)} in -F")


def _when(msg: Received) -> float:
    return msg.time if msg.time is not None else msg.received_at


def _placeholder(msg: Received, key: str) -> bytes:
    if key == "p":
        return msg.payload
    text: str
    if key == "t":
        text = msg.topic
    elif key == "i":
        text = "" if msg.id is None else str(msg.id)
    elif key == "C":
        text = msg.cursor or ""
    elif key == "I":
        text = datetime.fromtimestamp(_when(msg), UTC).isoformat(timespec="milliseconds")
        text = text.replace("+00:00", "Z")
    elif key == "U":
        text = f"{_when(msg):.6f}"
    elif key == "q":
        text = str(msg.qos)
    elif key == "r":
        text = "1" if msg.retain else "0"
    elif key == "l":
        text = str(len(msg.payload))
    elif key == "x":
        text = msg.payload.hex()
    elif key == "c":
        text = msg.content_type or ""
    elif key == "j":
        text = json.dumps(msg.as_json(), separators=(",", ":"), ensure_ascii=False)
    else:  # "%"
        text = "%"
    return text.encode()


def render_format(fmt: str, msg: Received) -> bytes:
    """`-F FORMAT` applied to one message."""
    out = bytearray()
    pos = 0
    for m in _TOKEN.finditer(fmt):
        out += fmt[pos : m.start()].encode()
        if m.group(1) is not None:
            out += _placeholder(msg, m.group(1))
        else:
            out += _ESCAPES[m.group(2)].encode()
        pos = m.end()
    out += fmt[pos:].encode()
    return bytes(out)


def render(msg: Received, *, verbose: bool, as_json: bool, fmt: str | None, eol: bool) -> bytes:
    """The bytes printed for one message (`eol`: end with a newline, as mosquitto_sub does
    unless -N)."""
    if fmt is not None:
        out = render_format(fmt, msg)
    elif as_json:
        out = json.dumps(msg.as_json(), separators=(",", ":"), ensure_ascii=False).encode()
    elif verbose:
        out = msg.topic.encode() + b" " + msg.payload
    else:
        out = msg.payload
    return out + b"\n" if eol else out
