"""Per-topic delivery plans: who gets a message published to a topic, and how.

A session may hold many overlapping subscriptions (`a/#`, `a/+/c`, `+/+/c`, ...). MQTT lets
the server send one copy per session, at the highest QoS granted, listing every matching
subscription identifier (MQTT-3.3.4-2/3). Working that out per message walked every matching
subscription: one client with 10,000 overlapping filters made each publish to a matching
topic cost 10,000 steps. A `Route` folds the matches of one topic once, per session, and the
hub caches it until the subscriptions change, so a publish costs one step per session.

The same tree holds the message log's reader groups (core/readers.py): a route also lists
the groups whose filter matches its topic (`Route.readers`), which the log wakes once it
has given the message its id. A group arriving or leaving changes only the cached routes
of the topics its filter matches, in place (`RouteCache.readers_changed`): long-poll churn
must not make every MQTT publish rebuild its route.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pushwire.core.readers import ReaderGroup
from pushwire.core.session import Session, Subscription
from pushwire.core.shared import SharedGroup
from pushwire.core.subscription import SubscriptionOptions
from pushwire.core.topics import TopicSet

# what the hub's subscription trie maps a filter to: MQTT sessions and shared groups with
# their subscription, the log's reader groups with nothing
Subscriber = Session | SharedGroup | ReaderGroup


@dataclass(slots=True, frozen=True)
class Grant:
    """What a session's matching subscriptions add up to."""

    qos: int  # the highest QoS granted
    retain_as_published: bool  # any of them keeps the retain flag
    ids: list[int]  # every distinct subscription identifier, in match order (never mutated)


@dataclass(slots=True, frozen=True)
class Target:
    session: Session
    every: Grant  # over all its matching subscriptions
    # over those without no_local: what it gets of its own messages (None: nothing)
    own: Grant | None


@dataclass(slots=True)
class Route:
    targets: list[Target]
    # shared groups pick a member per message, so they cannot be folded ahead of time
    groups: list[tuple[SharedGroup, Subscription]]
    # the log's reader groups whose filter matches (woken by the log, not counted in
    # `width`: that counts MQTT deliveries)
    readers: tuple[ReaderGroup, ...] = ()
    # worked out once per route, not per message (Hub.route_along): how many subscribers
    # and shared groups a message reaches, and the target when it is the only one
    width: int = field(init=False)
    single: Target | None = field(init=False)

    def __post_init__(self) -> None:
        self.width = len(self.targets) + len(self.groups)
        self.single = self.targets[0] if self.width == 1 and self.targets else None

    @property
    def size(self) -> int:
        """Roughly the bytes the route holds, for the cache budget."""
        entries = (
            1
            + len(self.groups)
            + len(self.readers)
            + sum(2 + len(t.every.ids) for t in self.targets)
        )
        return _ENTRY_BYTES * entries


# what one entry of a route (a target and its grants, a group, an id) costs in memory,
# roughly, in bytes (objects, list slots, the cache's own bookkeeping)
_ENTRY_BYTES = 300
# a cached topic's level in `RouteCache._topics` (a dict and its key), charged to the budget
_INDEX_LEVEL_BYTES = 250
# steps (index levels visited plus cached topics found) a reader group's arrival or
# departure may spend patching the cached routes its filter matches; past it the cache
# moves to a new generation instead (as an MQTT SUBSCRIBE does). Not a limit on clients:
# it only bounds how long one group change holds the loop (~1,000 x ~2 us).
READERS_PATCH_STEPS = 1000


class _Fold:
    __slots__ = ("ids", "qos", "rap")

    def __init__(self) -> None:
        self.qos = -1
        self.rap = False
        self.ids: list[int] = []

    def add(self, opts: SubscriptionOptions, subscription_id: int | None) -> None:
        if opts.qos > self.qos:
            self.qos = opts.qos
        if opts.retain_as_published:
            self.rap = True
        if subscription_id:
            self.ids.append(subscription_id)

    def grant(self) -> Grant | None:
        # one SUBSCRIBE gives all its filters the same identifier: list each one once
        ids = list(dict.fromkeys(self.ids)) if len(self.ids) > 1 else self.ids
        return None if self.qos < 0 else Grant(self.qos, self.rap, ids)


def build_route(matched: Iterable[tuple[Subscriber, Subscription | None]]) -> Route:
    # keys are Sessions once groups and readers are taken out (typed wider for the trie)
    every: dict[Any, _Fold] = {}
    own: dict[Any, _Fold] = {}
    groups: list[tuple[SharedGroup, Subscription]] = []
    readers: list[Any] = []
    for key, sub in matched:
        if sub is None:
            readers.append(key)  # only the log's reader groups map to no subscription
            continue
        if isinstance(key, SharedGroup):
            groups.append((key, sub))
            continue
        fold = every.get(key)
        if fold is None:
            fold = every[key] = _Fold()
            own[key] = _Fold()
        opts = sub.options
        fold.add(opts, sub.subscription_id)
        if not opts.no_local:
            own[key].add(opts, sub.subscription_id)
    targets = []
    for session, fold in every.items():
        grant = fold.grant()
        assert grant is not None
        targets.append(Target(session, grant, own[session].grant()))
    return Route(targets, groups, tuple(readers))


class RouteCache:
    """Routes by topic, bounded by the bytes they (and their topics, up to 64 KB each) hold
    in total, the oldest evicted first.

    A change of the MQTT subscriptions invalidates every route, but `clear` only moves to a
    new generation (O(1)): freeing 100,000 cached routes at once would stall the loop for
    tens of milliseconds at every SUBSCRIBE. A stale route is rebuilt when its topic is next
    published to, or evicted as the oldest.

    A reader group arriving or leaving (`readers_changed`) changes only the routes of the
    topics its filter matches, found in `_topics` (the cached topics by level), in place:
    their sessions and shared groups are the same, so nothing is rebuilt (a wildcard over
    more cached topics than `READERS_PATCH_STEPS` moves to a new generation instead). A
    server without HTTP readers never pays for that index: it is made when the first group
    arrives (the routes cached until then are rebuilt once, as after a SUBSCRIBE), and its
    levels are charged to the budget."""

    def __init__(self, budget: int = 32 * 1024 * 1024) -> None:
        # topic -> (generation, route, size); read directly by `Hub.readers_of`
        self.entries: OrderedDict[str, tuple[int, Route, int]] = OrderedDict()
        # the keys of `entries` (stale ones may be missing: they are rebuilt before use),
        # from the first reader group on
        self._topics: TopicSet | None = None
        self._budget = budget
        self._used = 0
        self.generation = 0  # an entry of another generation is stale

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, topic: str) -> Route | None:
        entry = self.entries.get(topic)
        if entry is None or entry[0] != self.generation:
            return None
        self.entries.move_to_end(topic)  # least recently used leave first, not oldest
        return entry[1]

    def put(self, topic: str, route: Route) -> None:
        routes = self.entries
        old = routes.pop(topic, None)
        if old is not None:
            self._used -= old[2]
        topics = self._topics
        size = route.size + len(topic)
        if topics is not None:
            # its levels in the index (a dict each for a topic no other shares): a server
            # with HTTP readers and many unique deep topics stays within the budget
            size += (topic.count("/") + 1) * _INDEX_LEVEL_BYTES
        if size > self._budget:
            if topics is not None:
                topics.discard(topic)
            return  # bigger than the whole cache: build it each time
        while self._used + size > self._budget and routes:
            evicted_topic, (_, _, evicted) = routes.popitem(last=False)
            self._used -= evicted
            if topics is not None:
                topics.discard(evicted_topic)
        if topics is not None:
            topics.add(topic)  # (no-op for a topic in it already)
        routes[topic] = (self.generation, route, size)
        self._used += size

    def clear(self) -> None:
        self.generation += 1

    def readers_changed(self, group: ReaderGroup, joined: bool) -> None:
        """`group` joined the subscriptions (or left them): add it to (or take it out of)
        the cached routes of the topics its filter matches; the others stay as they are.
        A filter starting with `#` matches every topic (but `$` ones): then every route
        is rebuilt as for an MQTT subscription, the same cost as walking them all."""
        flt = group.filter
        topics = self._topics
        if topics is None:
            # the first group: index the topics from now on, and rebuild what was cached
            # before (not in the index) when next asked for
            self._topics = TopicSet()
            self.clear()
            return
        if flt.startswith("#"):
            self.clear()
            return
        # a filter without wildcards (a per-user topic) matches its own name only
        if "+" in flt or "#" in flt:
            names = topics.matching(flt, READERS_PATCH_STEPS)
            if names is None:
                # a wildcard over many cached topics: patching them all would hold the loop
                # for ~2 us each, per arrival and departure; rebuilding them lazily is O(1)
                self.clear()
                return
        else:
            names = [flt]
        routes = self.entries
        generation = self.generation
        for topic in names:
            entry = routes.get(topic)
            if entry is None or entry[0] != generation:
                continue  # not cached, or stale: built from the trie when next asked for
            route = entry[1]
            if joined:
                readers = (*route.readers, group)
            else:
                readers = tuple(g for g in route.readers if g is not group)
            # a new Route: a publish walking the old one's readers is not disturbed
            patched = Route(route.targets, route.groups, readers)
            size = entry[2] + (_ENTRY_BYTES if joined else -_ENTRY_BYTES)
            self._used += size - entry[2]
            routes[topic] = (generation, patched, size)
