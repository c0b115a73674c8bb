"""Token scopes: `read:FILTER`, `write:FILTER`, `readwrite:FILTER` or `admin`, which narrow
what an access token may do below its user's rights (core/permissions.py applies them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pushwire.core.topics import TopicError, validate_filter

SCOPE_ADMIN: Final = "admin"
SCOPE_KINDS: Final = ("read", "write", "readwrite")


def parse_scope(entries: Iterable[str]) -> tuple[str, ...]:
    """Validate token scope entries: `read:FILTER`, `write:FILTER`, `readwrite:FILTER` or
    `admin`. Filters may use `+`, `#`, `%u` and `%c`."""
    out: list[str] = []
    for entry in entries:
        entry = entry.strip()
        if entry != SCOPE_ADMIN:
            kind, sep, flt = entry.partition(":")
            if not sep or kind not in SCOPE_KINDS:
                raise ValueError(
                    f"bad scope {entry!r}: use read:FILTER, write:FILTER, readwrite:FILTER or admin"
                )
            if flt.startswith("$share/"):
                raise ValueError(f"bad scope {entry!r}: name the filter without $share/group/")
            try:
                validate_filter(flt)
            except TopicError as exc:
                raise ValueError(f"bad scope {entry!r}: {exc}") from None
        if entry not in out:
            out.append(entry)
    return tuple(out)
