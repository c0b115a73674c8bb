"""mqtt/session.py: the MQTT part of a session (packet ids, the QoS 2 states, the inbound
QoS 2 ids) on top of core.session.Session, whose inflight window is keyed by seq. Driven
through the hub and a recording Link, in memory (no sockets, no engine I/O)."""

from __future__ import annotations

from helpers.recording_link import RecordingLink
from pushwire.core.hub import Hub
from pushwire.core.message import Message
from pushwire.core.session import Session, SessionLimits, Subscription
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.memory import MemoryEngine
from pushwire.model import StoredQueueEntry, StoredSession
from pushwire.mqtt.session import MAX_PACKET_ID, MqttSession, MqttState


def mqtt_hub(max_inflight: int = 20) -> Hub:
    hub = Hub(MemoryEngine(), SessionLimits(max_inflight, 1000))
    hub.session_factory = MqttSession
    return hub


def subscribed(hub: Hub, qos: int, client_id: str = "c") -> tuple[MqttSession, RecordingLink]:
    link = RecordingLink()
    s, _ = hub.connect(client_id, False, 4, None, link)
    assert isinstance(s, MqttSession)
    s.attach(link)
    hub.subscribe(s, Subscription("t", SubscriptionOptions(qos=qos)))
    return s, link


def in_step(s: MqttSession) -> bool:
    """The window is keyed by packet id: each delivery's wire id, 1..65535."""
    return all(0 < k <= MAX_PACKET_ID and d.wire_id == k for k, d in s.inflight.items())


def test_the_hub_makes_plain_sessions_unless_given_the_mqtt_factory() -> None:
    plain, _ = Hub(MemoryEngine()).connect("c", True, 4, 0, RecordingLink())
    assert type(plain) is Session and not hasattr(plain, "acknowledge")
    s, _ = mqtt_hub().connect("c", True, 4, 0, RecordingLink())
    assert isinstance(s, MqttSession) and s.transport_state is None  # made when needed


def test_packet_ids_wrap_after_65535_and_skip_ids_still_inflight() -> None:
    hub = mqtt_hub(max_inflight=4)
    s, link = subscribed(hub, 1)
    hub.publish(Message("t", b"held", qos=1))  # id 1 stays inflight throughout
    assert link.sent == [(b"held", 1, False)]
    state = s.transport_state
    assert isinstance(state, MqttState)
    state.next_packet_id = MAX_PACKET_ID - 1
    for payload in (b"a", b"b", b"c"):
        hub.publish(Message("t", payload, qos=1))
    # 65534, 65535, then 1 is taken: 2
    assert [pid for _, pid, _ in link.sent[1:]] == [65534, 65535, 2]
    s.acknowledge_all([65534, 65535, 2])
    for payload in (b"d", b"e"):
        hub.publish(Message("t", payload, qos=1))
    assert [pid for _, pid, _ in link.sent[4:]] == [3, 4]
    assert in_step(s)


def test_packet_ids_given_by_the_pump_skip_ids_still_inflight() -> None:
    hub = mqtt_hub(max_inflight=2)
    s, link = subscribed(hub, 1)
    for i in range(5):
        hub.publish(Message("t", b"%d" % i, qos=1))
    assert [pid for _, pid, _ in link.sent] == [1, 2]
    state = s.transport_state
    assert isinstance(state, MqttState)
    state.next_packet_id = 2  # the pump's next id is in use (1 is acked below, 2 is not)
    assert s.acknowledge(1)
    assert [pid for _, pid, _ in link.sent] == [1, 2, 3]
    s.acknowledge_all([2, 3])  # one refill for both
    assert [(p, pid) for p, pid, _ in link.sent[3:]] == [(b"3", 4), (b"4", 5)]
    assert in_step(s) and not s.queue


def test_acks_of_the_wrong_kind_or_unknown_ids_are_ignored() -> None:
    hub = mqtt_hub()
    s, link = subscribed(hub, 2)
    assert not s.acknowledge(1) and not s.completed(1) and not s.received(1)  # no state
    s.acknowledge_all([1])
    hub.publish(Message("t", b"x", qos=2))
    ((_, pid, _),) = link.sent
    assert pid is not None
    s.acknowledge_all([pid, 999])  # a PUBACK does not end a QoS 2 flow
    assert not s.acknowledge(pid)
    assert not s.completed(pid)  # PUBCOMP before PUBREC
    assert len(s.inflight) == 1 and in_step(s)


def test_qos2_released_state_then_pubrel_on_resume_then_pubcomp() -> None:
    hub = mqtt_hub()
    s, link = subscribed(hub, 2)
    hub.publish(Message("t", b"x", qos=2))
    hub.publish(Message("t", b"y", qos=2))
    (_, x, _), (_, y, _) = link.sent
    assert x is not None and y is not None
    assert s.received(x) and s.received(x)  # PUBREC twice: still released
    (dx,) = [d for d in s.inflight.values() if d.wire_id == x]
    assert dx.state == "released"
    hub.disconnect(s, link)
    again = RecordingLink()
    hub.connect("c", False, 4, None, again)
    s.attach(again)
    # in the order first sent: PUBREL for the one received, the PUBLISH (DUP) for the other
    assert again.released == [x] and again.sent == [(b"y", y, True)]
    assert s.completed(x) and not s.completed(x)
    assert [d.wire_id for d in s.inflight.values()] == [y] and in_step(s)


def test_inbound_qos2_ids_held_until_released() -> None:
    s, _ = mqtt_hub().connect("p", True, 4, 0, RecordingLink())
    assert isinstance(s, MqttSession)
    assert not s.inbound_qos2_seen(7) and not s.inbound_qos2_release(7)
    assert s.transport_state is None  # asking builds nothing
    s.inbound_qos2_add(7)
    assert s.inbound_qos2_seen(7) and s.inbound_qos2 == {7}
    assert s.inbound_qos2_release(7) and not s.inbound_qos2_seen(7)
    assert not s.inbound_qos2_release(7)


def test_restore_puts_back_packet_ids_states_and_inbound_ids() -> None:
    hub = mqtt_hub()
    m = Message("t", b"m", qos=2)
    stored = StoredSession(
        "r",
        4,
        None,
        1.0,
        [],
        [
            StoredQueueEntry(3, m, 1, False, 1, "sent"),
            StoredQueueEntry(4, m, 2, False, 9, "released"),
            StoredQueueEntry(5, m, 2, False, None, "queued"),
        ],
        [5, 6],
    )
    hub._restore_session(stored)
    s = hub.sessions["r"]
    assert isinstance(s, MqttSession)
    assert sorted(s.inflight) == [1, 9] and in_step(s) and len(s.queue) == 1
    assert s.inbound_qos2 == {5, 6}
    link = RecordingLink()
    hub.connect("r", False, 4, None, link)
    s.attach(link)
    # the same packet ids as before the restart (MQTT-4.4.0-1); the queued one gets a
    # new id, never one still inflight
    assert link.sent[0] == (b"m", 1, True) and link.released == [9]
    assert link.sent[1][1] == 2
    assert s.inbound_qos2_seen(5) and s.inbound_qos2_release(6)
