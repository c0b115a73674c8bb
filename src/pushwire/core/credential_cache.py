"""Verified username/password pairs, remembered for a while (`CredentialCache`): HTTP Basic
sends the password with every request, and argon2 costs tens of milliseconds each time.

Entries are HMACs under a per-process key of (username, stored hash, password): nothing in
the cache reveals a password, and a new password (a new hash) misses."""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable

from pushwire.model import StoredUser


class CredentialCache:
    def __init__(self, key: bytes, ttl: float, size: int, monotonic: Callable[[], float]) -> None:
        self._key = key
        self._ttl = ttl  # seconds; 0 disables
        self._size = size
        self._monotonic = monotonic
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def key(self, user: StoredUser, secret: bytes) -> bytes:
        # keyed by the stored hash too: a new password invalidates the entry
        material = b"\0".join((user.username.encode(), user.password_hash.encode(), secret))
        return hmac.new(self._key, material, hashlib.sha256).digest()

    def hit(self, key: bytes) -> bool:
        expires = self._expiry.get(key)
        if expires is None:
            return False
        if expires <= self._monotonic():
            del self._expiry[key]
            return False
        return True

    def put(self, key: bytes) -> None:
        if self._ttl <= 0:
            return
        self._expiry[key] = self._monotonic() + self._ttl
        self._expiry.move_to_end(key)
        while len(self._expiry) > self._size:
            self._expiry.popitem(last=False)

    def clear(self) -> None:
        self._expiry.clear()
