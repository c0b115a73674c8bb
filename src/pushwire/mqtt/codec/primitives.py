"""Data representation (3.1.1 and 5.0 section 1.5): readers bounded by the end of the packet
or property list, the matching writers, and packet framing."""

from __future__ import annotations

from typing import Final

from pushwire.mqtt.codec import wire
from pushwire.mqtt.codec.errors import PROTOCOL_ERROR, DecodeError
from pushwire.mqtt.codec.wire import (
    _U16_MAX,
    _VBI_CONTINUATION,
    _VBI_MAX,
    _VBI_MAX_BYTES,
    _VBI_SHIFT,
    _VBI_VALUE_MASK,
)

# assigned, not `from`-imported, so calls on it keep LOAD_METHOD (see wire.py `_U16`)
_U16: Final = wire._U16
_U32: Final = wire._U32

# --- primitive readers (bounded by the end of the packet or property list) -----------------


def _read_remaining_length(buf: bytes, pos: int, available: int) -> tuple[int, int]:
    """Remaining length starting at pos; (-1, -1) when its bytes have not all arrived."""
    value = 0
    shift = 0
    for index in range(pos, pos + _VBI_MAX_BYTES):
        if index >= available:
            return -1, -1
        byte = buf[index]
        value |= (byte & _VBI_VALUE_MASK) << shift
        if byte < _VBI_CONTINUATION:
            return value, index + 1
        shift += _VBI_SHIFT
    raise DecodeError("remaining length longer than four bytes")


def _read_vbi(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    value = 0
    shift = 0
    for index in range(pos, pos + _VBI_MAX_BYTES):
        if index >= end:
            raise DecodeError(f"{what} truncated")
        byte = buf[index]
        value |= (byte & _VBI_VALUE_MASK) << shift
        if byte < _VBI_CONTINUATION:
            return value, index + 1
        shift += _VBI_SHIFT
    raise DecodeError(f"{what} longer than four bytes")


def _read_byte(buf: bytes, pos: int, end: int, what: str) -> int:
    if pos >= end:
        raise DecodeError(f"{what} missing")
    return buf[pos]


def _read_u16(buf: bytes, pos: int, end: int, what: str) -> int:
    if pos + 2 > end:
        raise DecodeError(f"{what} truncated")
    return (buf[pos] << 8) | buf[pos + 1]


def _read_u32(buf: bytes, pos: int, end: int, what: str) -> int:
    if pos + 4 > end:
        raise DecodeError(f"{what} truncated")
    value: int = _U32.unpack_from(buf, pos)[0]
    return value


def _read_packet_id(buf: bytes, pos: int, end: int, name: str) -> int:
    if pos + 2 > end:
        raise DecodeError(f"{name} packet identifier truncated")
    packet_id = (buf[pos] << 8) | buf[pos + 1]
    if packet_id == 0:
        raise DecodeError(f"{name} with packet identifier 0")
    return packet_id


def _read_bin(buf: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    length = _read_u16(buf, pos, end, f"{what} length")
    pos += 2
    stop = pos + length
    if stop > end:
        raise DecodeError(f"{what} longer than the packet")
    return buf[pos:stop], stop


def _utf8(raw: bytes, what: str) -> str:
    # Python's strict codec rejects overlong forms and encoded surrogates (MQTT-1.5.4-1).
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not well-formed UTF-8") from None
    if "\x00" in text:
        raise DecodeError(f"{what} contains U+0000")
    return text


def _read_str(buf: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    raw, pos = _read_bin(buf, pos, end, what)
    return _utf8(raw, what), pos


def _expect_end(pos: int, end: int, name: str) -> None:
    if pos != end:
        raise DecodeError(f"{name} has {end - pos} unexpected trailing bytes")


def _check_reason(reason: int, valid: frozenset[int], name: str) -> None:
    if reason not in valid:
        raise DecodeError(f"{name} with undefined reason code {reason:#04x}", PROTOCOL_ERROR)


# --- writers --------------------------------------------------------------------------------

_SMALL_VBI: Final = tuple(bytes((value,)) for value in range(_VBI_CONTINUATION))


def _encode_vbi(value: int) -> bytes:
    if value < _VBI_CONTINUATION:
        if value < 0:
            raise ValueError(f"variable byte integer {value} is negative")
        return _SMALL_VBI[value]
    if value > _VBI_MAX:
        raise ValueError(f"variable byte integer {value} exceeds {_VBI_MAX}")
    out = bytearray()
    while value >= _VBI_CONTINUATION:
        out.append((value & _VBI_VALUE_MASK) | _VBI_CONTINUATION)
        value >>= _VBI_SHIFT
    out.append(value)
    return bytes(out)


def _encode_u16(value: int) -> bytes:
    return _U16.pack(value)


def _encode_bin(data: bytes) -> bytes:
    if len(data) > _U16_MAX:
        raise ValueError(f"field of {len(data)} bytes exceeds {_U16_MAX}")
    return _U16.pack(len(data)) + data


def _encode_str(text: str) -> bytes:
    return _encode_bin(text.encode("utf-8"))


def _frame(byte0: int, *parts: bytes) -> bytes:
    length = sum(len(part) for part in parts)
    return b"".join((bytes((byte0,)), _encode_vbi(length), *parts))


def _check_packet_id(packet_id: int | None, name: str) -> int:
    if packet_id is None or not 0 < packet_id <= _U16_MAX:
        raise ValueError(f"{name} needs a packet identifier in 1..65535, got {packet_id}")
    return packet_id
