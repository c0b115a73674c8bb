"""Who a connection or request is (`Identity`), and the answer to a login (`AuthResult`).

Every transport gets these from the auth service (core/auth.py) and keeps the identity on the
connection; both are immutable, so one value is shared by every anonymous client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pushwire.core.acl import ADMIN_ROLE
from pushwire.core.scope import SCOPE_ADMIN

AuthReason = Literal["ok", "bad_credentials", "not_authorized", "rate_limited"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection or request is. Immutable: decided once, at authentication."""

    username: str | None  # None: anonymous
    roles: frozenset[str] = frozenset()
    token_id: str | None = None  # set when authenticated with an access token
    # token scope: "read:F" / "write:F" / "readwrite:F" / "admin"; empty: the user's full rights
    scope: tuple[str, ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.username is None

    @property
    def is_admin(self) -> bool:
        """Admin rights (admin API, `$SYS`): role `admin`, and a token scope (if any) that
        includes `admin`."""
        return ADMIN_ROLE in self.roles and (not self.scope or SCOPE_ADMIN in self.scope)


ANONYMOUS: Final = Identity(None)


@dataclass(frozen=True, slots=True)
class AuthResult:
    identity: Identity | None
    reason: AuthReason
    message: str  # for the client and the logs; never contains the credential
    retry_after: float | None = None  # seconds, with reason "rate_limited"

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


# immutable, so every admitted anonymous client shares one (connect storms)
ANONYMOUS_OK: Final = AuthResult(ANONYMOUS, "ok", "anonymous")
