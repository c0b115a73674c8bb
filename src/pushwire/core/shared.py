"""Shared subscriptions (`$share/{group}/{filter}`): each message goes to one member.

MQTT 5 section 4.8.2; mosquitto and most brokers accept the same syntax from 3.1.1 clients.
A group is one entry in the subscription trie; it picks a member per message, round-robin,
preferring members that are online and not congested so work flows to who can take it.
"""

from __future__ import annotations

from pushwire.core.session import Session, Subscription


class SharedGroup:
    __slots__ = ("_next", "filter", "members", "name")

    def __init__(self, name: str, flt: str) -> None:
        self.name = name
        self.filter = flt
        self.members: dict[Session, Subscription] = {}
        self._next = 0

    def __repr__(self) -> str:
        return f"SharedGroup({self.name!r}, {self.filter!r}, members={len(self.members)})"

    def pick(self) -> tuple[Session, Subscription] | None:
        """The next member, round-robin, skipping offline or congested ones when it can."""
        members = list(self.members.items())
        if not members:
            return None
        n = len(members)
        start = self._next % n
        for i in range(n):
            session, sub = members[(start + i) % n]
            link = session.link
            if link is not None and link.writable():
                self._next = start + i + 1
                return session, sub
        # nobody can take it now: queue it with the next member in turn
        self._next = start + 1
        return members[start]
