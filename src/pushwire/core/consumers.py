"""Named consumers: server-side cursors of at-least-once readers (WebSocket `ack`
subscriptions), each belonging to one identity.

A consumer is keyed by (owner, name, filter). The owner is a string the transport derives
from the caller (http/ws.py: `user:NAME` for a user and every token of that user,
`anonymous:IP` for anonymous callers), so two users who pick the same consumer name have
two cursors, and one cannot move (or read the position of) the other's.

Bounded: an owner holds at most `max_per_owner` consumers (a new one over that is refused
with `ConsumerLimit`, after the owner's idle ones are expired); a consumer that no live
subscription uses and that nobody used for `idle_timeout` seconds is forgotten (`expire`,
run by the log's periodic sweep). Admins list and delete them (http/admin.py).

Stores written before consumers had owners hold rows with the owner `LEGACY_OWNER` (""):
the first identity that opens a consumer of that name and filter takes it over, with its
position (then it was shared by everyone anyway); unclaimed ones expire like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pushwire.model import StoredConsumer
from pushwire.ports import Engine

# rows from before consumers had owners; also the owner when there is no caller at all
# (an app embedded without authentication)
LEGACY_OWNER = ""


@dataclass(slots=True)
class Consumer:
    """One owner's cursor over `filter`. `acked`: every id up to it was acknowledged.
    `delivered`: the highest id ever sent, so a resend of anything at or below it is flagged
    as a possible duplicate. `attached`: live subscriptions using it (never expires while
    above 0). `last_used`: Unix seconds of the last subscribe, ack or detach."""

    owner: str
    name: str
    filter: str
    acked: int
    delivered: int
    last_used: float
    attached: int = 0
    deleted: bool = False  # removed by an admin: acks of live subscriptions are dropped


class ConsumerLimit(Exception):
    """The owner holds `max_per_owner` consumers already."""


class Consumers:
    def __init__(
        self,
        engine: Engine,
        *,
        max_per_owner: int = 100,
        idle_timeout: float = 7 * 24 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.max_per_owner = max_per_owner
        self.idle_timeout = idle_timeout  # 0: never expire
        self.clock = clock
        self._by_owner: dict[str, dict[tuple[str, str], Consumer]] = {}
        self.expired_total = 0

    def __len__(self) -> int:
        return sum(len(owned) for owned in self._by_owner.values())

    def restore(self, stored: Iterable[StoredConsumer], last_id: int) -> None:
        for c in stored:
            # anything up to the log's last id may have been sent before the restart
            self._add(
                Consumer(c.owner, c.name, c.filter, c.acked, max(c.acked, last_id), c.last_used)
            )

    # -- use by subscriptions ---------------------------------------------------------------

    def get(self, owner: str, name: str, flt: str) -> Consumer | None:
        """The owner's consumer, or a legacy one of that name and filter, which the owner
        takes over (when it has room)."""
        c = self._by_owner.get(owner, {}).get((name, flt))
        if c is not None or owner == LEGACY_OWNER:
            return c
        legacy = self._by_owner.get(LEGACY_OWNER, {}).get((name, flt))
        if legacy is None or not self._room(owner):
            return None
        self._remove(legacy)
        self.engine.log_consumer_delete(LEGACY_OWNER, name, flt)
        legacy.owner = owner
        self._add(legacy)
        self._put(legacy)
        return legacy

    def check_room(self, owner: str) -> None:
        """Raise `ConsumerLimit` when `owner` may not make a new consumer."""
        if not self._room(owner):
            raise ConsumerLimit(
                f"at most {self.max_per_owner} consumers per identity: delete one "
                "(admin API) or let unused ones expire"
            )

    def open(self, owner: str, name: str, flt: str, start_after: int) -> Consumer:
        """Get or create the consumer (new ones start after `start_after`)."""
        c = self.get(owner, name, flt)
        if c is None:
            self.check_room(owner)
            c = Consumer(owner, name, flt, start_after, start_after, self.clock())
            self._add(c)
            self._put(c)
        return c

    def attach(self, c: Consumer) -> None:
        c.attached += 1
        c.last_used = self.clock()

    def detach(self, c: Consumer) -> None:
        c.attached = max(0, c.attached - 1)
        if not c.deleted:
            c.last_used = self.clock()
            self._put(c)  # the idle clock starts now, also after a restart

    def ack(self, c: Consumer, upto: int) -> bool:
        """Acknowledge everything up to `upto` (cumulative); False if it moves nothing."""
        if upto <= c.acked:
            return False
        c.acked = upto
        c.last_used = self.clock()
        if not c.deleted:
            self._put(c)
        return True

    def reset(self, c: Consumer, acked: int) -> None:
        """Move a consumer to another position (a new epoch, or an explicit since=)."""
        c.acked = acked
        c.delivered = max(c.delivered, acked) if acked else 0
        c.last_used = self.clock()
        if not c.deleted:
            self._put(c)

    # -- administration -------------------------------------------------------------------

    def owned_by(self, owner: str | None = None) -> list[Consumer]:
        owners = [owner] if owner is not None else sorted(self._by_owner)
        out: list[Consumer] = []
        for o in owners:
            owned = self._by_owner.get(o, {})
            out += [owned[key] for key in sorted(owned)]
        return out

    def delete(self, owner: str, name: str | None = None, flt: str | None = None) -> list[Consumer]:
        """Remove the owner's consumers (those of `name` and/or `flt` only, when given)."""
        gone = [
            c
            for c in self.owned_by(owner)
            if (name is None or c.name == name) and (flt is None or c.filter == flt)
        ]
        for c in gone:
            self._drop(c)
        return gone

    def expire(self, owner: str | None = None) -> int:
        """Forget consumers idle for `idle_timeout` (of `owner` only, when given)."""
        if self.idle_timeout <= 0:
            return 0
        horizon = self.clock() - self.idle_timeout
        idle = [c for c in self.owned_by(owner) if c.attached == 0 and c.last_used <= horizon]
        for c in idle:
            self._drop(c)
        self.expired_total += len(idle)
        return len(idle)

    # -- internals ------------------------------------------------------------------------

    def _room(self, owner: str) -> bool:
        if len(self._by_owner.get(owner, ())) < self.max_per_owner:
            return True
        self.expire(owner)
        return len(self._by_owner.get(owner, ())) < self.max_per_owner

    def _add(self, c: Consumer) -> None:
        self._by_owner.setdefault(c.owner, {})[(c.name, c.filter)] = c

    def _remove(self, c: Consumer) -> None:
        owned = self._by_owner.get(c.owner)
        if owned is not None and owned.get((c.name, c.filter)) is c:
            del owned[(c.name, c.filter)]
            if not owned:
                del self._by_owner[c.owner]

    def _drop(self, c: Consumer) -> None:
        self._remove(c)
        c.deleted = True
        self.engine.log_consumer_delete(c.owner, c.name, c.filter)

    def _put(self, c: Consumer) -> None:
        self.engine.log_consumer_put(c.owner, c.name, c.filter, c.acked, c.last_used)
