"""Checking the gateway's signed webhooks (the wake webhook) on the receiving side.

The gateway signs ``timestamp + "." + body`` with HMAC-SHA256 under the app's wake secret and
sends ``Pushwire-Timestamp`` and ``Pushwire-Signature: sha256=<hex>``.

Example::

    >>> body = b'{"type": "wake"}'
    >>> sig = sign_webhook("s3cret", 1764190000, body)
    >>> verify_webhook("s3cret", "1764190000", body, sig, now=1764190010)
    True
    >>> verify_webhook("other", "1764190000", body, sig, now=1764190010)
    False
"""

from __future__ import annotations

import hashlib
import hmac
import time


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Pushwire-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook(
    secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when the signature matches and the timestamp is within ``tolerance`` seconds
    (a replayed old request is refused). Compares in constant time."""
    if timestamp is None or signature is None:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    return hmac.compare_digest(sign_webhook(secret, ts, body), signature.strip())
