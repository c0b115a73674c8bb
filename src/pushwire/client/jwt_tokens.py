"""The provider's ES256 JWT: made once, reused for every request, refreshed before it ages out.

The gateway refuses a JWT whose ``iat`` is more than one hour old (``ExpiredProviderToken``)
and, like APNs, does not want a new token per request. :class:`ProviderTokenFactory` makes a
token, hands the same string out until ``refresh_after`` seconds have passed (default 30
minutes, inside the 20-50 minute window), then makes the next one.

Example::

    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    tokens = ProviderTokenFactory(app_id="app_...", key_id="k1", private_key=key)
    headers = {"authorization": f"Bearer {tokens.token()}"}  # same string for 30 minutes
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

DEFAULT_REFRESH_AFTER = 30 * 60.0
# the gateway's limit on token age; a token must be replaced well before it
MAX_TOKEN_AGE = 3600.0


def load_private_key(
    source: str | bytes | Path | EllipticCurvePrivateKey,
) -> EllipticCurvePrivateKey:
    """A P-256 private key from a key object, PEM text/bytes, or a PEM file path."""
    if isinstance(source, EllipticCurvePrivateKey):
        return source
    if isinstance(source, Path):
        data = source.read_bytes()
    elif isinstance(source, str):
        data = source.encode() if "-----BEGIN" in source else Path(source).read_bytes()
    else:
        data = source
    key = load_pem_private_key(data, password=None)
    if not isinstance(key, EllipticCurvePrivateKey):
        raise ValueError("an ES256 provider key must be an EC P-256 private key")
    return key


class ProviderTokenFactory:
    """Makes and caches the provider JWT (``{"alg": "ES256", "kid": key_id}``,
    claims ``{"iss": app_id, "iat": now}``). Thread-safe; ``clock`` returns unix seconds and
    is injectable so tests can move time. ``tokens_made`` counts the distinct tokens signed."""

    def __init__(
        self,
        app_id: str,
        key_id: str,
        private_key: str | bytes | Path | EllipticCurvePrivateKey,
        *,
        refresh_after: float = DEFAULT_REFRESH_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < refresh_after < MAX_TOKEN_AGE:
            raise ValueError(f"refresh_after must be between 0 and {MAX_TOKEN_AGE:.0f} seconds")
        self.app_id = app_id
        self.key_id = key_id
        self._key = load_private_key(private_key)
        self.refresh_after = refresh_after
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._issued_at = 0.0
        self.tokens_made = 0

    def token(self) -> str:
        """The current token; a new one only when the current one is ``refresh_after`` old."""
        with self._lock:
            now = self._clock()
            if self._token is None or now - self._issued_at >= self.refresh_after:
                self._token = self._sign(now)
                self._issued_at = now
                self.tokens_made += 1
            return self._token

    def invalidate(self) -> None:
        """Drop the cached token (e.g. after the gateway said ``ExpiredProviderToken``)."""
        with self._lock:
            self._token = None

    def _sign(self, now: float) -> str:
        claims: dict[str, Any] = {"iss": self.app_id, "iat": int(now)}
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.key_id})
