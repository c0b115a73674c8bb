"""Who is pushing: an app's API key, or a short-lived ES256 provider JWT (APNs token auth).

`Authorization: Bearer <credential>`. A credential of the API key shape is looked up by its
SHA-256. Anything else must be a JWT with header `{"alg": "ES256", "kid"}` and claims
`{"iss": app id, "iat"}`, signed by an active (not revoked) key of that app; `iat` older
than `max_age` (1 h) is `ExpiredProviderToken`, one in the future beyond the clock skew is
invalid. Verification is PyJWT's (with `cryptography`), never hand-written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import jwt

from pushwire.gateway import ids
from pushwire.gateway.model import App
from pushwire.gateway.registry import RegistryView

JWT_MAX_AGE: Final = 3600.0
CLOCK_SKEW: Final = 300.0
MAX_CREDENTIAL: Final = 8192
VERIFIED_CACHE_SIZE: Final = 10_000


@dataclass(frozen=True, slots=True)
class ProviderAuth:
    app: App | None
    reason: str | None = None  # MissingProviderToken, InvalidProviderToken, Expired...
    kid: str | None = None


def _fail(reason: str) -> ProviderAuth:
    return ProviderAuth(None, reason)


def bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class ProviderAuthenticator:
    def __init__(self, registry: RegistryView, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.clock = clock
        self._verified: dict[str, tuple[str, str, float]] = {}  # JWT -> (app, kid, iat)

    def authenticate(self, authorization: str | None) -> ProviderAuth:
        if authorization is None or not authorization.strip():
            return _fail("MissingProviderToken")
        credential = bearer(authorization)
        if credential is None or len(credential) > MAX_CREDENTIAL:
            return _fail("InvalidProviderToken")
        if ids.API_KEY_RE.fullmatch(credential):
            app = self.registry.app_by_api_key(credential)
            return ProviderAuth(app) if app is not None else _fail("InvalidProviderToken")
        return self._jwt(credential)

    def _jwt(self, token: str) -> ProviderAuth:
        # a provider reuses one JWT for many pushes (APNs asks for up to an hour): remember
        # verified ones, but re-check the key, the app and the age on every use, so a
        # revocation still applies within the registry's refresh
        cached = self._verified.get(token)
        if cached is not None:
            return self._still_valid(*cached)
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return _fail("InvalidProviderToken")
        kid, iss = header.get("kid"), claims.get("iss")
        if header.get("alg") != "ES256" or not isinstance(kid, str) or not isinstance(iss, str):
            return _fail("InvalidProviderToken")
        app = self.registry.app(iss)
        key = self.registry.key(iss, kid)
        if app is None or key is None or key.revoked is not None:
            return _fail("InvalidProviderToken")
        try:
            verified = jwt.decode(
                token,
                key.public_key,
                algorithms=["ES256"],
                issuer=iss,
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
        except jwt.PyJWTError:
            return _fail("InvalidProviderToken")
        issued = verified.get("iat")
        if not isinstance(issued, int | float) or isinstance(issued, bool):
            return _fail("InvalidProviderToken")
        if issued > self.clock() + CLOCK_SKEW:
            return _fail("InvalidProviderToken")
        result = self._still_valid(iss, kid, float(issued))
        if result.app is not None:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)))  # oldest first
            self._verified[token] = (iss, kid, float(issued))
        return result

    def _still_valid(self, app_id: str, kid: str, iat: float) -> ProviderAuth:
        app = self.registry.app(app_id)
        key = self.registry.key(app_id, kid)
        if app is None or key is None or key.revoked is not None:
            return _fail("InvalidProviderToken")
        if self.clock() - iat > JWT_MAX_AGE:
            return _fail("ExpiredProviderToken")
        return ProviderAuth(app, kid=kid)
