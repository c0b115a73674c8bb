"""RFC 6455 for the server side, sans-I/O: the handshake's accept key, a frame parser for
what clients send, and frame encoders for what the server sends.

The parser (`FrameParser.feed`) takes bytes as they arrive and returns complete events:
a whole message (fragments joined), a ping, a pong, or a close, or raises `ProtocolError`
with the close code the server answers with:
- 1002: unmasked client frame, reserved bits (no extension is negotiated), an unknown
  opcode, a fragmented or oversized control frame, a continuation with nothing to
  continue or a new message in the middle of a fragmented one, a bad close payload;
- 1007: a text message (or close reason) that is not UTF-8;
- 1009: a message larger than `max_message` bytes (counted before it is buffered whole).

Buffers are allocated lazily: an idle parser holds no bytes (`buffer` is empty, and a
fragmented message's parts exist only while it is being received).

Why not wsproto: `bench/micro_ws.py` measures both, CPU per frame, parse and encode; see
bench/README.md (issue 10, JSON WebSocket).
"""

from __future__ import annotations

import base64
import hashlib
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005  # received without a code (never sent)
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

_DATA_OPS = (OP_TEXT, OP_BINARY)
_CONTROL_OPS = (OP_CLOSE, OP_PING, OP_PONG)
_SHORT = struct.Struct("!H")
_LONG = struct.Struct("!Q")


class ProtocolError(Exception):
    """The client broke RFC 6455: close with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_key(key: bytes) -> bytes:
    """`Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def valid_key(key: bytes) -> bool:
    """A `Sec-WebSocket-Key` is 16 random bytes, base64-encoded (RFC 6455 4.1)."""
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def unmask(data: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, as one big-integer operation (no per-byte loop)."""
    n = len(data)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def frame(opcode: int, payload: bytes) -> bytes:
    """One unfragmented, unmasked server frame."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + _SHORT.pack(n) + payload
    return bytes((first, 127)) + _LONG.pack(n) + payload


def text_frame(payload: bytes) -> bytes:
    """A text frame of UTF-8 `payload` (JSON: the server's every message)."""
    return frame(OP_TEXT, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to the 123 bytes a control frame has room for,
    at a character boundary."""
    raw = reason.encode()[:123].decode("utf-8", "ignore").encode()
    return frame(OP_CLOSE, _SHORT.pack(code) + raw)


def valid_close_code(code: int) -> bool:
    """Codes a peer may send (RFC 6455 7.4; 1004-1006 and 1015 are never on the wire)."""
    if 1000 <= code <= 1014:
        return code not in (1004, 1005, 1006)
    return 3000 <= code <= 4999


class Message:
    """A whole data message: `text` is the decoded text of a text message (UTF-8 checked),
    None for a binary one."""

    __slots__ = ("data", "text")

    def __init__(self, text: str | None, data: bytes) -> None:
        self.text = text
        self.data = data


class Control:
    """A ping, pong or close frame (close: `code` and `reason` parsed)."""

    __slots__ = ("code", "opcode", "payload", "reason")

    def __init__(self, opcode: int, payload: bytes) -> None:
        self.opcode = opcode
        self.payload = payload
        self.code = CLOSE_NO_STATUS
        self.reason = ""


Event = Message | Control


class FrameParser:
    """Client frames in, events out (see the module docstring)."""

    __slots__ = ("buffer", "fragments", "fragments_size", "fragments_text", "max_message")

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self.buffer = b""
        self.fragments: list[bytes] | None = None  # a fragmented message under way
        self.fragments_size = 0
        self.fragments_text = False

    def feed(self, data: bytes) -> list[Event]:
        buf = self.buffer + data if self.buffer else data
        events: list[Event] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if b0 & 0x70:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not b1 & 0x80:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = _SHORT.unpack_from(buf, pos + 2)[0]
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = _LONG.unpack_from(buf, pos + 2)[0]
                head = 10
            control = opcode >= 0x8
            if control:
                if opcode not in _CONTROL_OPS:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
                if not fin or n > 125:
                    raise ProtocolError(
                        CLOSE_PROTOCOL_ERROR, "control frames are unfragmented, <= 125 bytes"
                    )
            else:
                if opcode != OP_CONT and opcode not in _DATA_OPS:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
                if (opcode == OP_CONT) != (self.fragments is not None):
                    raise ProtocolError(
                        CLOSE_PROTOCOL_ERROR,
                        "continuation frame without a message"
                        if opcode == OP_CONT
                        else "new message inside a fragmented one",
                    )
                if self.fragments_size + n > self.max_message:
                    raise ProtocolError(CLOSE_TOO_BIG, "message too big")
            frame_end = pos + head + 4 + n
            if frame_end > end:
                break
            mask = buf[pos + head : pos + head + 4]
            payload = unmask(buf[pos + head + 4 : frame_end], mask)
            pos = frame_end
            if control:
                events.append(_control(opcode, payload))
                if opcode == OP_CLOSE:
                    pos = end  # nothing after a close frame is read (RFC 6455 5.5.1)
                    break
                continue
            if opcode != OP_CONT and fin:
                events.append(_message(opcode == OP_TEXT, payload))
                continue
            if opcode != OP_CONT:
                self.fragments = []
                self.fragments_text = opcode == OP_TEXT
            assert self.fragments is not None
            self.fragments.append(payload)
            self.fragments_size += n
            if fin:
                whole = b"".join(self.fragments)
                self.fragments, self.fragments_size = None, 0
                events.append(_message(self.fragments_text, whole))
        self.buffer = buf[pos:] if pos < end else b""
        if self.buffer and len(self.buffer) > self.max_message + 14:
            # a frame's head announced a size within the limit but the bytes keep coming:
            # cannot happen with a well-formed frame; bound the buffer anyway
            raise ProtocolError(CLOSE_TOO_BIG, "message too big")
        return events


def _message(text: bool, data: bytes) -> Message:
    if not text:
        return Message(None, data)
    try:
        return Message(data.decode("utf-8"), data)
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "text frame is not UTF-8") from None


def _control(opcode: int, payload: bytes) -> Control:
    event = Control(opcode, payload)
    if opcode != OP_CLOSE or not payload:
        return event
    if len(payload) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close payload of one byte")
    code = _SHORT.unpack_from(payload)[0]
    if not valid_close_code(code):
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"close code {code} is not allowed")
    try:
        event.reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    event.code = code
    return event
