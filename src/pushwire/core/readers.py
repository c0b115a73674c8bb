"""The log's live readers as subscribers of the hub's subscription tree.

HTTP readers (long-poll waiters, SSE/WebSocket streams) register with the message log
under a filter (core/log.py `listen`). Readers of the same filter share one `ReaderGroup`,
and each group (not each reader) is one entry of the hub's subscription trie, next to the
MQTT sessions: a publish matches its topic once, in one tree, and the topic's cached
route (core/routes.py `Route.readers`) carries the groups the log wakes once it has
given the message its id. 10,000 long-polls on one filter are one trie entry, and the
trie changes only when a filter's first reader arrives or its last one leaves.

`ReaderPlane` is what the log needs of that tree (the hub implements it); core imports
nothing from http/ or mqtt/.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pushwire.core.log import LogEntry


class Listener(Hashable, Protocol):
    """A live reader registered under a filter (long-poll waiter, SSE/WS stream)."""

    def notify(self, entry: LogEntry) -> None:
        """Called synchronously on append for every matching message; must not block."""

    def close(self) -> None:
        """The log is shutting down: finish up."""


class ReaderGroup:
    """The readers of one filter: one subscriber of the hub's tree, matched once per
    publish, then each member is told."""

    __slots__ = ("filter", "members")

    def __init__(self, flt: str) -> None:
        self.filter = flt
        # insertion-ordered: readers of a filter are told in the order they came
        self.members: dict[Listener, None] = {}

    def __repr__(self) -> str:
        return f"ReaderGroup({self.filter!r}, {len(self.members)} readers)"


class ReaderPlane(Protocol):
    """The subscription tree the log's reader groups live in (core/hub.py `Hub`). One log
    per plane: a log wakes every group the route lists."""

    def add_readers(self, group: ReaderGroup) -> None:
        """A filter's first reader arrived: `group` joins the tree under `group.filter`."""

    def remove_readers(self, group: ReaderGroup) -> None:
        """A filter's last reader left: `group` leaves the tree."""

    def readers_of(self, topic: str) -> tuple[ReaderGroup, ...]:
        """The groups whose filter matches `topic` (the topic's cached route)."""
