"""Lossless text encoding of MQTT 5 property dicts, shared by the persistent engines.

Plain JSON would turn `correlation_data` (bytes) into an error and `user_property`
(list of (str, str) tuples) into lists of lists, so a restored message would no longer
compare equal to, or encode like, the one that was stored. Values are therefore walked and
the types JSON lacks are wrapped in one-key tag objects:

    bytes -> {"$b": "<base64>"}     tuple -> {"$t": [...]}     dict -> {"$d": [[k, v], ...]}

(bytearray and memoryview are accepted and come back as bytes.)

Any JSON object found in value position is a tag, so no user string can be mistaken for
one (nested dicts are stored as pairs precisely so their keys never need escaping). The top
level stays a readable JSON object keyed by property name. Lists, str, int, float, bool
and None are native JSON. Anything else raises TypeError at dump time: silently storing
`str(value)` would hand a different value back after a restart.
"""

from __future__ import annotations

import base64
import json
from typing import Any

_BYTES = "$b"
_TUPLE = "$t"
_DICT = "$d"


def _encode(value: Any) -> Any:
    # bool is an int subclass and both are native JSON, so the common scalars go first.
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {_BYTES: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        pairs = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"property dict keys must be str, got {type(k).__name__}")
            pairs.append([k, _encode(v)])
        return {_DICT: pairs}
    raise TypeError(f"cannot serialize property value of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) != 1:
            raise ValueError(f"malformed tagged value: {value!r}")
        ((tag, inner),) = value.items()
        if tag == _BYTES:
            return base64.b64decode(inner, validate=True)
        if tag == _TUPLE:
            return tuple(_decode(v) for v in inner)
        if tag == _DICT:
            return {k: _decode(v) for k, v in inner}
        raise ValueError(f"unknown tag {tag!r} in stored properties")
    return value


def dump_properties(props: dict[str, Any]) -> str:
    """Encode a property dict as compact JSON text; `load_properties` restores exact types."""
    encoded = {}
    for key, value in props.items():
        if not isinstance(key, str):
            raise TypeError(f"property names must be str, got {type(key).__name__}")
        encoded[key] = _encode(value)
    # allow_nan stays on (the default) so float("inf") round-trips; ensure_ascii off keeps
    # non-ASCII user properties readable and smaller in the database.
    return json.dumps(encoded, separators=(",", ":"), ensure_ascii=False)


def load_properties(data: str | bytes) -> dict[str, Any]:
    """Inverse of `dump_properties` (accepts the text or its UTF-8 bytes)."""
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise ValueError("stored properties are not a JSON object")
    return {key: _decode(value) for key, value in raw.items()}
