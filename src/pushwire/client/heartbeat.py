"""When to ping, and when to give a silent connection up (the agent's liveness rule).

The device sends a PINGREQ after ``interval`` seconds without hearing from the server (or
without sending anything, so the server's keepalive is kept) and again every ``interval``
seconds while no answer comes; after ``misses`` unanswered pings
(``interval * (misses + 1)`` seconds of silence in all) the connection is declared dead and
the agent reconnects. Pure logic, driven by a clock, so it is tested without sockets.

Example::

    >>> hb = Heartbeat(interval=10, misses=2)
    >>> hb.tick(now=5, last_heard=0), hb.tick(now=10, last_heard=0)
    (None, 'ping')
    >>> hb.tick(now=20, last_heard=0), hb.tick(now=30, last_heard=0)
    ('ping', 'dead')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["ping", "dead"] | None


@dataclass
class Heartbeat:
    interval: float
    misses: int = 2
    _last_ping: float = float("-inf")
    _unanswered: int = 0

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.misses < 1:
            raise ValueError("interval must be > 0 and misses >= 1")

    def reset(self) -> None:
        """A new connection: nothing outstanding."""
        self._last_ping = float("-inf")
        self._unanswered = 0

    def tick(self, now: float, last_heard: float, last_sent: float | None = None) -> Action:
        """Decide, given the times of the last byte from and the last packet to the server
        (``last_sent`` defaults to ``last_heard``)."""
        if last_sent is None:
            last_sent = last_heard
        if last_heard >= self._last_ping:
            self._unanswered = 0  # the server spoke after our last ping
        heard_quiet = now - max(last_heard, self._last_ping) >= self.interval
        # the server drops a client silent for 1.5 x keepalive, even while it sends to us
        sent_quiet = now - max(last_sent, self._last_ping) >= self.interval
        if not (heard_quiet or sent_quiet):
            return None
        if self._unanswered >= self.misses:
            return "dead"
        self._unanswered += 1
        self._last_ping = now
        return "ping"
