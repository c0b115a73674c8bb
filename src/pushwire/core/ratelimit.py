"""Rate limits and concurrency caps: small reusable pieces, no I/O, no asyncio.

- `TokenBucket(rate, burst)`: `burst` tokens at most, refilled at `rate` tokens per second.
  `try_acquire()` takes one if there is one. A bucket that has been idle long enough to be
  full again is indistinguishable from a new one, which is what makes eviction safe.
- `KeyedLimiter(rate, burst)`: one bucket per key (an IP, a client id, ...), with bounded
  memory: full buckets are dropped first and, if that is not enough, the least recently
  used ones (forgetting a key only ever makes the limiter more lenient for that key).
- `ConcurrencyLimiter(limit)`: at most `limit` concurrent holders per key (max connections
  per IP); releasing the last one forgets the key.

Used by the auth service for failed logins per IP, and meant for the transports' per-IP
connection rate, per-IP concurrent connections and per-client publish rate.

Every method takes an optional `now` (seconds, monotonic) so tests drive time by hand.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

Clock = Callable[[], float]

DEFAULT_MAX_KEYS: Final = 100_000


class TokenBucket:
    """`burst` tokens at most, refilled continuously at `rate` tokens per second."""

    __slots__ = ("_stamp", "_tokens", "burst", "clock", "rate")

    def __init__(
        self, rate: float, burst: float, *, clock: Clock = time.monotonic, now: float | None = None
    ) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self._tokens = float(burst)
        self._stamp = clock() if now is None else now

    def _refill(self, now: float | None) -> float:
        t = self.clock() if now is None else now
        elapsed = t - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._stamp = t
        return t

    def tokens(self, now: float | None = None) -> float:
        """Tokens available now."""
        self._refill(now)
        return self._tokens

    def full(self, now: float | None = None) -> bool:
        return self.tokens(now) >= self.burst

    def try_acquire(self, n: float = 1.0, now: float | None = None) -> bool:
        """Take `n` tokens if available; False (and nothing taken) otherwise."""
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def refund(self, n: float = 1.0, now: float | None = None) -> None:
        """Give back tokens taken for an attempt that turned out not to count."""
        self._refill(now)
        self._tokens = min(self.burst, self._tokens + n)

    def retry_after(self, n: float = 1.0, now: float | None = None) -> float:
        """Seconds until `n` tokens are available (0 when they are; inf when rate is 0)."""
        self._refill(now)
        missing = n - self._tokens
        if missing <= 0:
            return 0.0
        if self.rate == 0:
            return float("inf")
        return missing / self.rate


class KeyedLimiter(Generic[K]):
    """One `TokenBucket(rate, burst)` per key, at most `max_keys` buckets kept."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        TokenBucket(rate, burst, clock=clock)  # validates the parameters
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def _bucket(self, key: K, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._evict(now)
            bucket = TokenBucket(self.rate, self.burst, clock=self.clock, now=now)
            self._buckets[key] = bucket
        else:
            self._buckets.move_to_end(key)
        return bucket

    def _evict(self, now: float) -> None:
        # full buckets carry no information: drop them all; then the least recently used
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)

    def try_acquire(self, key: K, n: float = 1.0, now: float | None = None) -> bool:
        """Take `n` tokens from `key`'s bucket if available."""
        t = self.clock() if now is None else now
        return self._bucket(key, t).try_acquire(n, t)

    def allowed(self, key: K, n: float = 1.0, now: float | None = None) -> bool:
        """Would `try_acquire` succeed? Takes nothing and creates no bucket."""
        bucket = self._buckets.get(key)
        return bucket is None or bucket.tokens(now) >= n

    def refund(self, key: K, n: float = 1.0, now: float | None = None) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.refund(n, now)

    def retry_after(self, key: K, n: float = 1.0, now: float | None = None) -> float:
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.retry_after(n, now)

    def forget(self, key: K) -> None:
        self._buckets.pop(key, None)

    def sweep(self, now: float | None = None) -> int:
        """Drop every full bucket (call now and then from a timer); returns how many."""
        t = self.clock() if now is None else now
        idle = [k for k, b in self._buckets.items() if b.full(t)]
        for key in idle:
            del self._buckets[key]
        return len(idle)


class ConcurrencyLimiter(Generic[K]):
    """At most `limit` concurrent holders per key (e.g. open connections per IP)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._counts: dict[K, int] = {}

    def __len__(self) -> int:
        return len(self._counts)

    def count(self, key: K) -> int:
        return self._counts.get(key, 0)

    def try_acquire(self, key: K) -> bool:
        current = self._counts.get(key, 0)
        if current >= self.limit:
            return False
        self._counts[key] = current + 1
        return True

    def release(self, key: K) -> None:
        current = self._counts.get(key, 0)
        if current <= 1:
            self._counts.pop(key, None)
        else:
            self._counts[key] = current - 1
