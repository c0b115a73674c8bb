"""The delivery counters of a fan-out's fused readers, counted per walk instead of per
delivery (issue 10: SSE / JSON WebSocket at N = 10,000).

A publish wakes every live reader of its filter in one walk (core/log.py `_wake`), and the
k-th subscriber's bytes leave after k readers' Python. `HttpStats.delivered_one` per
delivery (two dict lookups, a clock read, a bisect, float sums: ~0.27 us, a third of the
fused SSE reader's Python, bench/micro_sse.py) puts ~2.7 ms before the 10,000th write.
A `WalkTally` counts instead, and hands the counts to the same counters
(`messages_out`, the `delivery_latency` histogram) every `CLOCK_EVERY` deliveries and when
the walk is over (`MessageLog.settle_later`: still inside the publish, before anything else
runs, so /metrics never sees a walk half counted once the publish has returned).

The latency of the deliveries of one chunk is read with one clock read after the chunk's
last write: at most `CLOCK_EVERY` writes (~0.4 ms at ~6 us each) later than each one's own,
under the histogram's finest bucket (0.5 ms).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pushwire.core.log import LogEntry, MessageLog
from pushwire.http.state import HttpStats

if TYPE_CHECKING:
    from pushwire.core.permissions import Permissions

CLOCK_EVERY = 64  # deliveries observed with one clock read


class WalkTally:
    """Live deliveries of one transport (`transport`: "sse", "ws") of one listener,
    counted per walk. `add(entry)` per delivery; the counters catch up every
    `CLOCK_EVERY` deliveries and at the end of the walk (`settle`)."""

    __slots__ = (
        "acl_entry",
        "acl_ok",
        "acl_perms",
        "armed",
        "entry",
        "log",
        "n",
        "stats",
        "transport",
    )

    def __init__(self, stats: HttpStats, transport: str, log: MessageLog) -> None:
        self.stats = stats
        self.transport = transport
        self.log = log
        self.entry: LogEntry | None = None  # the message of the walk under way
        self.n = 0  # its deliveries not counted yet
        self.armed = False  # `settle` is due at the end of the walk
        # the last ACL answer (`may_receive`): for this entry and this `Permissions`
        self.acl_entry: LogEntry | None = None
        self.acl_perms: Permissions | None = None
        self.acl_ok = False

    def may_receive(self, entry: LogEntry, perms: Permissions) -> bool:
        """`perms.can_receive(entry's topic)`, asked once per run of streams that share
        their `Permissions` (one per identity: every anonymous stream shares one) within a
        walk. Every stream is still checked for every message; nothing can change an ACL
        in the middle of a walk (it runs in one go, inside the publish)."""
        if entry is not self.acl_entry or perms is not self.acl_perms:
            self.acl_entry = entry  # held (so never mistaken for a new one) until `settle`
            self.acl_perms = perms
            self.acl_ok = perms.can_receive(entry.message.topic)
            if not self.armed and self.log.waking:
                self.armed = True  # `settle` lets go of the entry, even if none was written
                self.log.settle_later(self)
        return self.acl_ok

    def add(self, entry: LogEntry) -> None:
        """One delivery of `entry` (its bytes were written)."""
        if entry is not self.entry:
            self._begin(entry)
        n = self.n = self.n + 1
        if n >= CLOCK_EVERY or not self.armed:
            self.observe()

    def _begin(self, entry: LogEntry) -> None:
        self.observe()
        self.entry = entry
        log = self.log
        if log.waking and not self.armed:
            self.armed = True
            log.settle_later(self)
        # else: not in a walk (never on the fused paths today): `add` counts at once

    def observe(self) -> None:
        """Count what was added since the last time, with one clock read."""
        n = self.n
        entry = self.entry
        if not n or entry is None:
            return
        self.n = 0
        stats = self.stats
        transport = self.transport
        stats.messages_out[transport] += n
        value = time.time() - entry.message.created_at
        stats.delivery_latency[transport].observe_n(value, n)

    def settle(self) -> None:
        """The walk is over (`MessageLog.settle_later`)."""
        self.armed = False
        self.observe()
        self.entry = None  # the entry may leave the log: hold no reference to it
        self.acl_entry = None
        self.acl_perms = None
