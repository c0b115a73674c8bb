"""Access tokens: their format, how they are made and checked, and what listings show.

Tokens look like `pw_<id>_<secret>`: `id` is 12 hex digits (visible in logs and listings,
used for lookups), `secret` is 32 random bytes in urlsafe base64. The store keeps the
SHA-256 of the whole token; verification (core/auth.py) is a constant-time comparison."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final, Literal

from pushwire.model import StoredToken

TOKEN_PREFIX: Final = "pw_"
_TOKEN_PREFIX_BYTES: Final = TOKEN_PREFIX.encode()
TOKEN_ID_BYTES: Final = 6  # 12 hex digits: enough to never collide in one store
TOKEN_SECRET_BYTES: Final = 32
_TOKEN_RE: Final = re.compile(r"pw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listings show it: everything but the secret (and its hash)."""

    id: str
    username: str
    name: str | None
    created: float
    expires: float | None
    scope: tuple[str, ...]
    last_used: float | None
    revoked: float | None

    @classmethod
    def of(cls, token: StoredToken) -> TokenInfo:
        return cls(
            token.id,
            token.username,
            token.name,
            token.created,
            token.expires,
            token.scope,
            token.last_used,
            token.revoked,
        )

    def status(self, now: float | None = None) -> Literal["active", "expired", "revoked"]:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= (time.time() if now is None else now):
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class NewToken:
    token: str  # the secret: shown once, never stored
    info: TokenInfo


def generate_token() -> tuple[str, str]:
    """A new (token, token id)."""
    token_id = secrets.token_hex(TOKEN_ID_BYTES)
    return f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}", token_id


def parse_token(token: str) -> str | None:
    """The id of a well-formed token, None for anything else."""
    m = _TOKEN_RE.fullmatch(token)
    return m.group(1) if m else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def looks_like_token(value: str | bytes) -> bool:
    if isinstance(value, bytes):
        return value.startswith(_TOKEN_PREFIX_BYTES)
    return value.startswith(TOKEN_PREFIX)


def token_subject(secret: str | bytes | None) -> str:
    """The failure-budget subject of a login without username: the token's id (a NUL first,
    so it never equals a username), or one shared subject for what is not a token."""
    if isinstance(secret, bytes):
        secret = secret.decode("ascii", "replace")
    token_id = parse_token(secret) if secret else None
    return f"\0token:{token_id or ''}"
