"""What operators and clients type, validated: usernames, roles, token lifetimes; and a
username as logs may show it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from pushwire.core.tokens import TOKEN_PREFIX, looks_like_token

_ROLE_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
USERNAME_MAX: Final = 256
_DURATION_RE: Final = re.compile(r"(\d+)\s*([smhdw]?)")
_DURATION_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def validate_username(name: str) -> str:
    """Usernames: 1..256 characters; no control characters, no `+ # / :`, no leading `$`
    or surrounding whitespace (ACL substitution, HTTP Basic and `$SYS` stay unambiguous)."""
    if not name or len(name) > USERNAME_MAX:
        raise ValueError(f"a username is 1 to {USERNAME_MAX} characters")
    if name != name.strip():
        raise ValueError("a username cannot start or end with whitespace")
    if any(c in "+#/:" or ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError("a username cannot contain '+', '#', '/', ':' or control characters")
    if name.startswith("$"):
        raise ValueError("a username cannot start with '$'")
    if looks_like_token(name):
        raise ValueError(f"a username cannot start with {TOKEN_PREFIX!r}")
    return name


def validate_roles(roles: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for role in roles:
        if not _ROLE_RE.fullmatch(role):
            raise ValueError(f"bad role {role!r}: use 1 to 64 of A-Z a-z 0-9 _ . -")
        if role not in out:
            out.append(role)
    return tuple(out)


def parse_duration(text: str) -> float | None:
    """`30d`, `12h`, `15m`, `45s`, `2w`, `3600` (seconds) -> seconds; `never` -> None."""
    value = text.strip().lower()
    if value in ("never", "none", "0"):
        return None
    m = _DURATION_RE.fullmatch(value)
    if m is None or int(m.group(1)) == 0:
        raise ValueError(f"bad duration {text!r}: use e.g. 30d, 12h, 15m, 45s, 2w or never")
    return float(int(m.group(1)) * _DURATION_UNITS[m.group(2)])


def log_name(username: str | None) -> str:
    """A username as logs may show it (a token pasted as a username is not)."""
    if username is None:
        return "<anonymous>"
    if looks_like_token(username):
        return "<token-like username>"
    return repr(username[:USERNAME_MAX])
