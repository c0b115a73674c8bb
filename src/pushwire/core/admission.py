"""Who may open a connection: per-IP connection rate and concurrency, shared by every door.

One instance serves the MQTT listeners (TCP, TLS) and the HTTP listener, so a client cannot
dodge a limit by switching doors. A refused connection costs one accept and one close.
"""

from __future__ import annotations

from pushwire.core.ratelimit import ConcurrencyLimiter, KeyedLimiter


class Admission:
    def __init__(self, connection_rate_per_ip: float, max_connections_per_ip: int) -> None:
        rate = connection_rate_per_ip
        # burst: twice the per-second rate, so a client reconnecting a few sockets at once
        # is not refused
        self.rate: KeyedLimiter[str] | None = (
            KeyedLimiter(rate, max(1.0, 2 * rate)) if rate > 0 else None
        )
        self.per_ip: ConcurrencyLimiter[str] | None = (
            ConcurrencyLimiter(max_connections_per_ip) if max_connections_per_ip > 0 else None
        )
        self.refused = 0

    def admit(self, ip: str) -> str | None:
        """None to admit (the caller must `release(ip)` when the connection ends), else why
        not."""
        if self.rate is not None and not self.rate.try_acquire(ip):
            self.refused += 1
            return "connection rate limit"
        if self.per_ip is not None and not self.per_ip.try_acquire(ip):
            self.refused += 1
            return "too many connections from this address"
        return None

    def release(self, ip: str) -> None:
        if self.per_ip is not None:
            self.per_ip.release(ip)
