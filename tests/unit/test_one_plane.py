"""One routing plane (issue 8): the log's reader groups are subscribers of the hub's trie.

A topic is matched once per publish, in the hub's tree; its cached route lists the reader
groups the log wakes (`Route.readers`). A group arriving or leaving changes the cached
routes of the topics its filter matches, in place, and no other: the MQTT routes are not
rebuilt for it (core/routes.py `RouteCache.readers_changed`, over `TopicSet`)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pushwire.core.hub import Hub
from pushwire.core.log import LogEntry, MessageLog, Retention
from pushwire.core.message import Message
from pushwire.core.readers import ReaderGroup
from pushwire.core.routes import build_route
from pushwire.core.session import Session, Subscription
from pushwire.core.subscription import SubscriptionOptions
from pushwire.core.topics import SubscriptionTrie, TopicSet, matches
from pushwire.engines.memory import MemoryEngine


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def notify(self, entry: LogEntry) -> None:
        self.seen.append((entry.message.topic, entry.id))

    def close(self) -> None:
        pass


def hub_and_log(keep: int = 1000) -> tuple[Hub, MessageLog]:
    hub = Hub(MemoryEngine())
    log = MessageLog(hub.engine, Retention(keep, 0), plane=hub)
    hub.add_observer(log.observer, log.observe_run)
    return hub, log


def session(hub: Hub, client_id: str, *filters: str) -> Session:
    s, _ = hub.connect(client_id, True, 4, 0, link=None)  # type: ignore[arg-type]
    for flt in filters:
        hub.subscribe(s, Subscription(flt, SubscriptionOptions(qos=0)))
    return s


def test_a_route_lists_the_reader_groups_its_topic_matches() -> None:
    hub, log = hub_and_log()
    readers = [Recorder() for _ in range(3)]
    for r in readers:
        log.listen("a/+", r)
    log.listen("a/b", Recorder())
    log.listen("z/#", Recorder())
    route = hub.route_of("a/b")
    assert sorted(g.filter for g in route.readers) == ["a/+", "a/b"]
    # one group per filter, however many readers it has
    plus = next(g for g in route.readers if g.filter == "a/+")
    assert list(plus.members) == readers
    assert hub.reader_groups == 3 and hub.subscription_count == 0
    assert route.width == 0  # readers are not MQTT deliveries


def test_a_group_arriving_or_leaving_leaves_other_topics_routes_alone() -> None:
    hub, log = hub_and_log()
    session(hub, "s", "a/1", "b/1", "a/#")
    # the first group ever makes the cache index its topics (a server without readers
    # never does): the routes cached before it are rebuilt once
    log.listen("z/1", Recorder())
    a1, b1, a2 = hub.route_of("a/1"), hub.route_of("b/1"), hub.route_of("a/2/x")
    reader = Recorder()
    log.listen("a/+", reader)
    # the unrelated topics keep their very route objects (nothing rebuilt, nothing cleared)
    assert hub.route_of("b/1") is b1 and hub.route_of("a/2/x") is a2
    joined = hub.route_of("a/1")
    assert [g.filter for g in joined.readers] == ["a/+"]
    assert joined.targets is a1.targets  # the MQTT part is the same, not rebuilt
    hub.publish(Message("a/1", b"x"))
    hub.publish(Message("b/1", b"y"))
    assert reader.seen == [("a/1", 1)]
    log.unlisten("a/+", reader)
    assert hub.route_of("b/1") is b1 and hub.route_of("a/2/x") is a2
    left = hub.route_of("a/1")
    assert left.readers == () and left.targets is a1.targets
    assert hub.reader_groups == 1


def test_a_hash_group_rebuilds_the_routes_and_they_list_it() -> None:
    hub, log = hub_and_log()
    session(hub, "s", "a/1")
    hub.route_of("a/1")
    log.listen("#", Recorder())
    assert [g.filter for g in hub.route_of("a/1").readers] == ["#"]
    assert hub.route_of("$SYS/x").readers == ()  # `#` does not match `$` topics


def test_one_publish_matches_its_topic_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session and a reader on the same topic: one walk of one trie (the old design
    walked the hub's trie for the session and the log's own trie for the reader)."""
    walks = 0
    nodes = SubscriptionTrie._nodes

    def counting(self: SubscriptionTrie[Any, Any], topic: str) -> Any:
        nonlocal walks
        walks += 1
        return nodes(self, topic)

    monkeypatch.setattr(SubscriptionTrie, "_nodes", counting)
    hub, log = hub_and_log()
    session(hub, "s", "t/+")
    reader = Recorder()
    log.listen("t/#", reader)
    hub.publish(Message("t/1", b"x"))
    assert walks == 1 and reader.seen == [("t/1", 1)]
    hub.publish(Message("t/1", b"y"))
    assert walks == 1 and reader.seen == [("t/1", 1), ("t/1", 2)]  # the cached route


def test_cached_routes_equal_fresh_ones_through_random_churn() -> None:
    """Reader groups and MQTT subscriptions come and go at random; after every change
    each cached route lists exactly the groups a fresh match of its topic finds."""
    rng = random.Random(8)
    topics = ["a", "a/b", "a/b/c", "a/c", "b/b", "$SYS/a", "$x/b", "a//b", "/a"]
    filters = ["a", "a/+", "a/#", "+/b", "#", "+", "a/b/c", "+/+/c", "$SYS/#", "a//b", "/#"]
    hub, log = hub_and_log()
    sessions = [session(hub, f"s{i}") for i in range(3)]
    readers = [Recorder() for _ in range(6)]
    listening: set[tuple[str, int]] = set()
    for _ in range(400):
        op = rng.random()
        flt = rng.choice(filters)
        if op < 0.5:
            i = rng.randrange(len(readers))
            if (flt, i) in listening:
                log.unlisten(flt, readers[i])
                listening.discard((flt, i))
            else:
                log.listen(flt, readers[i])
                listening.add((flt, i))
        elif op < 0.6:
            s = rng.choice(sessions)
            if flt in s.subscriptions:
                hub.unsubscribe(s, flt)
            else:
                hub.subscribe(s, Subscription(flt, SubscriptionOptions()))
        for topic in rng.sample(topics, 3):
            hub.route_of(topic)  # cache some
        for topic in topics:
            cached = hub._routes.get(topic)
            if cached is None:
                continue
            fresh = build_route(hub.subscriptions.match_values(topic))
            assert len(set(cached.readers)) == len(cached.readers), topic  # none twice
            assert set(cached.readers) == set(fresh.readers), topic
            assert {g.filter for g in cached.readers} == {
                f for f, _ in listening if matches(f, topic)
            }
    assert hub.reader_groups == len({f for f, _ in listening})


def test_topic_set_finds_what_a_filter_matches_and_forgets_what_it_drops() -> None:
    rng = random.Random(3)
    levels = ["a", "b", "", "$s", "c"]
    names = {"/".join(rng.choice(levels) for _ in range(rng.randint(1, 4))) for _ in range(200)}
    names = {n for n in names if not n.startswith("$") or rng.random() < 0.5}
    topics = TopicSet()
    for name in names:
        topics.add(name)
    topics.add(next(iter(names)))  # twice: still one
    assert len(topics) == len(names)
    flts = ["#", "+", "a/#", "+/b", "a/+/#", "$s/#", "+/+/+", "a//b", "/#", "a/b", "+/#"]
    for flt in flts:
        found = topics.matching(flt)
        assert found is not None
        assert sorted(found) == sorted(n for n in names if matches(flt, n)), flt
    # a bounded walk: None once it has visited that many levels
    assert topics.matching("#", budget=3) is None
    assert topics.matching("a/b", budget=len(names) + 10) is not None
    for name in names:
        topics.discard(name)
        topics.discard(name)  # gone already: nothing
    assert len(topics) == 0 and topics._root == {}


def test_a_log_without_a_hub_keeps_its_readers_in_a_hub_of_its_own() -> None:
    log = MessageLog(MemoryEngine())
    reader = Recorder()
    log.listen("x/+", reader)
    log.append(Message("x/1", b"1"))
    log.append(Message("y/1", b"2"))
    assert reader.seen == [("x/1", 1)]
    assert isinstance(log._plane, Hub) and log._plane.reader_groups == 1
    assert isinstance(log._groups["x/+"], ReaderGroup)


def test_a_wildcard_group_over_many_cached_topics_moves_the_cache_on_instead_of_patching() -> None:
    # patching every cached route a wildcard matches costs ~2 us each per group change;
    # past READERS_PATCH_STEPS the cache moves to a new generation (O(1)) instead
    from pushwire.core.routes import READERS_PATCH_STEPS

    hub, log = hub_and_log()
    log.listen("x/#", Recorder())  # the first group: the cache's topic index exists from now
    mqtt = session(hub, "m", "s/+/t")
    for n in range(READERS_PATCH_STEPS + 10):
        hub.route_of(f"s/{n}/t")
    few = hub.route_of("f/1")
    generation = hub._routes.generation
    log.listen("f/+", Recorder())  # a few cached topics: patched in place
    assert hub._routes.generation == generation
    assert [g.filter for g in hub.route_of("f/1").readers] == ["f/+"] and few.readers == ()
    log.listen("s/#", Recorder())  # over a thousand: the cache moves on
    assert hub._routes.generation == generation + 1
    route = hub.route_of("s/7/t")  # rebuilt from the trie: its sessions and readers
    assert [g.filter for g in route.readers] == ["s/#"]
    assert [t.session for t in route.targets] == [mqtt]


def test_the_topic_index_is_charged_to_the_route_cache_budget() -> None:
    # with HTTP readers the cache indexes its topics by level: a dict per level of a topic
    # no other shares, counted in the budget so unique deep topics cannot grow it unbounded
    hub, log = hub_and_log()
    deep = "/".join(f"l{i}" for i in range(100))
    hub.route_of(deep)
    before = hub._routes._used
    log.listen("other", Recorder())  # the first group: the index starts
    hub.route_of(deep + "/x")
    hub.route_of(deep)  # rebuilt once (stale since the index started), now indexed
    charged = hub._routes._used - before
    assert charged >= 2 * 100 * 200  # two indexed topics of 100+ levels
