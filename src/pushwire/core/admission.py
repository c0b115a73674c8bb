"""Who may open a connection: per-IP connection rate and concurrency, shared by every door,
and the reconnect rate of one MQTT client id.

One instance serves the MQTT listeners (TCP, TLS) and the HTTP listener, so a client cannot
dodge a limit by switching doors. A refused connection costs one accept and one close.

The per-IP rate is a token bucket with a large burst, not a hard per-second cap: thousands
of phones behind one carrier-grade NAT address reconnect at once after a network blip, and
must all get in within a minute (`burst + 60 * rate` connections; the defaults, 2,000 and
200/s, admit 14,000). What stops one misbehaving device in that crowd is the per-client-id
bucket: a client id that reconnects in a loop is refused at CONNECT (MQTT 5: CONNACK 0x9F
Connection rate exceeded; 3.1.1: 3 Server unavailable) without slowing its neighbours.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pushwire.core.ratelimit import Clock, ConcurrencyLimiter, KeyedLimiter

if TYPE_CHECKING:
    from pushwire.config import Settings


class Admission:
    def __init__(
        self,
        connection_rate_per_ip: float,
        max_connections_per_ip: int,
        *,
        connection_burst_per_ip: float = 0.0,
        connect_rate_per_client_id: float = 0.0,
        connect_burst_per_client_id: float = 0.0,
        clock: Clock = time.monotonic,
    ) -> None:
        rate = connection_rate_per_ip
        # burst 0: twice the per-second rate (the behaviour before the burst was a setting)
        burst = connection_burst_per_ip or 2 * rate
        self.rate: KeyedLimiter[str] | None = (
            KeyedLimiter(rate, max(1.0, burst), clock=clock) if rate > 0 else None
        )
        self.per_ip: ConcurrencyLimiter[str] | None = (
            ConcurrencyLimiter(max_connections_per_ip) if max_connections_per_ip > 0 else None
        )
        client_rate = connect_rate_per_client_id
        self.per_client_id: KeyedLimiter[str] | None = (
            KeyedLimiter(
                client_rate, max(1.0, connect_burst_per_client_id or 2 * client_rate), clock=clock
            )
            if client_rate > 0
            else None
        )
        self.refused = 0
        self.refused_client_ids = 0
        # False: `admit` admits every address and `release` does nothing, so a connection
        # need not call them (connect storms with the per-address limits off)
        self.gates_ip = self.rate is not None or self.per_ip is not None

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

    def admit_client_id(self, client_id: str) -> bool:
        """May this (authenticated) client id connect once more now? Checked after the
        credentials, so nobody can use up another client's budget."""
        if self.per_client_id is None or self.per_client_id.try_acquire(client_id):
            return True
        self.refused_client_ids += 1
        return False

    def release(self, ip: str) -> None:
        if self.per_ip is not None:
            self.per_ip.release(ip)


def admission_from_settings(settings: Settings) -> Admission:
    return Admission(
        settings.connection_rate_per_ip,
        settings.max_connections_per_ip,
        connection_burst_per_ip=settings.connection_burst_per_ip,
        connect_rate_per_client_id=settings.connect_rate_per_client_id,
        connect_burst_per_client_id=settings.connect_burst_per_client_id,
    )
