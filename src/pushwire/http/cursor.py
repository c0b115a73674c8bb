"""Parsing the `since=` cursor (and `ttl=` durations) accepted by every HTTP transport.

    since=123            after message id 123 (a bare integer is always an id)
    since=EPOCH:123      after id 123 of that epoch: another epoch means a gap
    since=all            everything the log still holds
    since=latest         only what is published from now on (also: now)
    since=10m            messages from the last 10 minutes (ms, s, m, h, d; 1h30m)
    since=@1764190000    messages created at or after a Unix time (also 1764190000.5,
                         with a decimal point, or ISO 8601: 2026-11-26T21:00:00Z)

A bare integer cannot also be a Unix time: ids are integers too, and guessing between them
would make one silently read as the other.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

from pushwire.core.log import ALL, LATEST, Cursor

MAX_CURSOR_LEN = 128
_ID = re.compile(r"[0-9]{1,19}")
_EPOCH_ID = re.compile(r"([A-Za-z0-9_-]{1,64}):([0-9]{1,19})")
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DECIMAL = re.compile(r"[0-9]+\.[0-9]*")
MAX_ID = 2**63 - 1
# the last second of year 9999: later (or before 1970) is no time a message was made
MAX_TIME = 253_402_300_799.0


class CursorError(ValueError):
    """A since= value that is none of the accepted forms."""


def parse_duration(text: str) -> float:
    """`90`, `1.5`, `10m`, `1h30m`, `250ms` -> seconds. Raises ValueError."""
    t = text.strip()
    if _DECIMAL.fullmatch(t) or t.isdigit():
        value = float(t)
    elif _DURATION.fullmatch(t):
        value = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(t))
    else:
        raise ValueError(f"not a duration: {text!r} (e.g. 30, 10m, 1h30m)")
    if not math.isfinite(value):
        raise ValueError(f"not a finite duration: {text!r}")
    return value


def parse_cursor(text: str, now: float | None = None) -> Cursor:
    """Parse a since= value (see the module docstring). Raises CursorError."""
    t = text.strip()
    if not t:
        raise CursorError("empty cursor")
    if len(t) > MAX_CURSOR_LEN:
        raise CursorError("cursor too long")
    low = t.lower()
    if low == "all":
        return ALL
    if low in ("latest", "now"):
        return LATEST
    if _ID.fullmatch(t):
        value = int(t)
        if value > MAX_ID:
            raise CursorError(f"cursor id out of range: {t}")
        return Cursor.after(value)
    m = _EPOCH_ID.fullmatch(t)
    if m:
        value = int(m.group(2))
        if value > MAX_ID:
            raise CursorError(f"cursor id out of range: {t}")
        return Cursor.after(value, m.group(1))
    current = time.time() if now is None else now
    if _DURATION.fullmatch(t):
        try:
            since = current - parse_duration(t)
        except ValueError as exc:
            raise CursorError(str(exc)) from None
        if since < 0:
            # it would silently mean "everything": say the number is out of range
            raise CursorError(f"duration out of range in cursor {text!r}: before 1970")
        return Cursor("time", time=since)
    if t.startswith("@"):
        return Cursor("time", time=_unix(t[1:], text))
    if _DECIMAL.fullmatch(t):
        return Cursor("time", time=_unix(t, text))
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise CursorError(
            f"bad cursor {text!r}: use an id, EPOCH:ID, all, latest, a duration (10m), "
            "@UNIXTIME or an ISO 8601 time"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return Cursor("time", time=dt.timestamp())


def _unix(t: str, original: str) -> float:
    try:
        value = float(t)
    except ValueError:
        raise CursorError(f"bad Unix time in cursor {original!r}") from None
    if not math.isfinite(value) or value < 0 or value > MAX_TIME:
        raise CursorError(f"Unix time out of range in cursor {original!r}")
    return value


def parse_etag(header: str) -> str | None:
    """The cursor inside an If-None-Match value (`"E:12"`, `W/"E:12"`; first of a list)."""
    first = header.split(",", 1)[0].strip()
    if first.startswith("W/"):
        first = first[2:]
    first = first.strip().strip('"')
    return first or None
