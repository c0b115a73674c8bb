"""The retained store's topic tree and the sliced retained delivery (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pushwire.core.hub import Hub
from pushwire.core.message import Message
from pushwire.core.retain import RetainedStore
from pushwire.core.session import Delivery, SessionLimits, Subscription
from pushwire.core.subscription import SubscriptionOptions
from pushwire.core.topics import matches
from pushwire.engines.memory import MemoryEngine
from pushwire.mqtt.session import MqttSession

levels = st.sampled_from(["a", "b", "", "$x"])
topic_st = st.lists(levels, min_size=1, max_size=4).map("/".join).filter(bool)
filter_st = (
    st.lists(st.sampled_from(["a", "b", "", "+", "$x"]), min_size=1, max_size=4)
    .flatmap(lambda ls: st.sampled_from(["/".join(ls), "/".join([*ls, "#"])]))
    .filter(bool)
)


@given(st.lists(topic_st, max_size=8), st.lists(topic_st, max_size=3), filter_st)
def test_tree_walk_agrees_with_matches(topics: list[str], cleared: list[str], flt: str) -> None:
    store = RetainedStore()
    for t in topics:
        store.set(Message(t, t.encode(), retain=True))
    for t in cleared:
        store.clear(t)
    expected = sorted({t for t in topics if t not in cleared and matches(flt, t)})
    assert sorted(m.topic for m in store.matching(flt)) == expected
    assert len(store) == len(set(topics) - set(cleared))


def test_clear_prunes_and_deep_topics_walk_without_recursion() -> None:
    store = RetainedStore()
    deep = "/".join(["d"] * 5000)
    store.set(Message(deep, b"x", retain=True))
    store.set(Message("d", b"top", retain=True))
    assert [m.payload for m in store.matching(deep)] == [b"x"]
    assert sorted(m.payload for m in store.matching("d/#")) == [b"top", b"x"]
    assert store.clear(deep) and not store.clear(deep)
    assert [m.payload for m in store.matching("#")] == [b"top"]
    assert store.get("d") is not None and store.get(deep) is None


def test_walk_visits_only_the_branches_a_filter_can_match() -> None:
    store = RetainedStore()
    for i in range(1000):
        store.set(Message(f"bulk/{i}", b"x", retain=True))
    store.set(Message("one/x", b"y", retain=True))
    steps = list(store.walk("one/+"))
    assert len(steps) <= 3  # root, `one`, `x`: not the 1000 bulk topics
    assert [n.message.payload for n in steps if n is not None and n.message] == [b"y"]


class SlowLink:
    """A link whose send buffer the test fills and drains by hand."""

    def __init__(self) -> None:
        self.receive_maximum = 65535
        self.sent: list[Delivery] = []
        self.open = True

    def writable(self) -> bool:
        return self.open

    def send_message(self, d: Delivery, dup: bool, wire_cache: dict[Any, Any] | None) -> None:
        self.sent.append(d)

    def send_window(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            self.send_message(d, False, None)

    def send_release(self, packet_id: int) -> None:
        pass

    def close_taken_over(self) -> None:
        pass


async def until(predicate: Any, turns: int = 10_000) -> None:
    for _ in range(turns):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_retained_backlog_goes_out_in_slices_as_fast_as_the_link_takes_it() -> None:
    hub = Hub(MemoryEngine(), SessionLimits(), retained_slice=50)
    for i in range(1000):
        hub.publish(Message(f"r/{i}", b"x", retain=True))
    link = SlowLink()
    s, _ = hub.connect("c", True, 4, 0, link)
    s.attach(link)
    sub = Subscription("#", SubscriptionOptions())
    hub.send_retained(s, sub, hub.subscribe(s, sub))
    # the first slice went out at once; the rest waits for later loop turns
    assert 0 < len(link.sent) <= 50
    # a live message published meanwhile is delivered at once, and not again as retained
    hub.publish(Message("r/999", b"new", retain=True))
    assert link.sent[-1].message.payload == b"new"
    await asyncio.sleep(0)
    assert len(link.sent) <= 101
    link.open = False  # send buffer full: the stream waits instead of dropping QoS 0
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    held = len(link.sent)
    assert held < 1000
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(link.sent) == held
    link.open = True
    s.pump()  # what the transport does when its buffer drains
    await until(lambda: len(link.sent) >= 1000)
    await until(lambda: not hub._retained_streams)
    payloads = [(d.message.topic, d.message.payload, d.retain) for d in link.sent]
    assert len(payloads) == 1000  # 999 old retained + r/999 once (retained copy skipped)
    assert ("r/999", b"x", True) not in payloads
    assert payloads.count(("r/999", b"new", False)) == 1


async def test_disconnect_stops_the_stream() -> None:
    hub = Hub(MemoryEngine(), SessionLimits(), retained_slice=10)
    for i in range(100):
        hub.publish(Message(f"r/{i}", b"x", retain=True))
    link = SlowLink()
    s, _ = hub.connect("c", True, 4, 0, link)
    s.attach(link)
    sub = Subscription("r/+", SubscriptionOptions())
    hub.send_retained(s, sub, hub.subscribe(s, sub))
    first = len(link.sent)
    assert 0 < first < 10  # one slice of 10 steps, two of them on the way down
    hub.disconnect(s, link)
    assert not hub._retained_streams
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(link.sent) == first


async def test_qos1_backlog_waits_for_acks_instead_of_overflowing_the_queue() -> None:
    hub = Hub(MemoryEngine(), SessionLimits(max_inflight=5, max_queued_messages=10))
    hub.session_factory = MqttSession
    for i in range(200):
        hub.publish(Message(f"q/{i}", b"x", qos=1, retain=True))
    link = SlowLink()
    s, _ = hub.connect("c", True, 4, 0, link)
    assert isinstance(s, MqttSession)
    s.attach(link)
    sub = Subscription("q/#", SubscriptionOptions(qos=1))
    hub.send_retained(s, sub, hub.subscribe(s, sub))
    acked = 0
    for _ in range(10_000):
        if acked == 200:
            break
        pending = [d.wire_id for d in link.sent[acked:] if d.wire_id is not None]
        for pid in pending:
            assert s.acknowledge(pid)
        acked += len(pending)
        assert len(s.queue) <= 1  # the backlog stays in the store
        await asyncio.sleep(0)
    assert acked == 200 and hub.stats.queue_overflow == 0
    assert sorted(d.message.topic for d in link.sent) == sorted(f"q/{i}" for i in range(200))
