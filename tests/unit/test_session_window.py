"""core.session.Session without a transport's subclass: the inflight window keyed by seq,
settled by the core's own calls, and core importing nothing of mqtt/ (the MQTT part of a
session is mqtt/session.py)."""

from __future__ import annotations

import subprocess
import sys

from helpers.recording_link import RecordingLink
from pushwire.core.hub import Hub
from pushwire.core.message import Message
from pushwire.core.session import Session, SessionLimits, Subscription
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.memory import MemoryEngine


def plain_session(max_inflight: int = 2) -> tuple[Hub, Session, RecordingLink]:
    hub = Hub(MemoryEngine(), SessionLimits(max_inflight, 1000))
    link = RecordingLink()
    s, _ = hub.connect("c", False, 4, None, link)
    assert type(s) is Session
    s.attach(link)
    hub.subscribe(s, Subscription("t", SubscriptionOptions(qos=2)))
    return hub, s, link


def test_the_plain_window_is_keyed_by_seq_and_settled_by_it() -> None:
    hub, s, link = plain_session()
    for i in range(4):
        hub.publish(Message("t", b"%d" % i, qos=1))
    assert link.sent == [(b"0", 1, False), (b"1", 2, False)]  # wire id: the seq
    assert list(s.inflight) == [1, 2] and len(s.queue) == 2
    s.settle_run([2, 2, 99], 2)  # another QoS: nothing settles
    assert list(s.inflight) == [1, 2]
    s.settle_run([2, 2, 99], 1)  # a repeated or unknown id is ignored; one refill
    assert list(s.inflight) == [1, 3] and link.sent[2] == (b"2", 3, False)
    d1 = s.inflight[1]
    assert s.settle(d1) and not s.settle(d1)
    assert list(s.inflight) == [3, 4] and not s.queue


def test_restate_and_resend_without_a_transport_subclass() -> None:
    hub, s, link = plain_session()
    hub.publish(Message("t", b"x", qos=2))
    (d,) = s.inflight.values()
    s.restate(d, "released")
    assert d.state == "released"
    hub.disconnect(s, link)
    again = RecordingLink()
    hub.connect("c", False, 4, None, again)
    s.attach(again)
    # the base knows no PUBREL: what is inflight goes out again as it was (DUP)
    assert again.sent == [(b"x", d.seq, True)]


def test_core_imports_nothing_from_mqtt() -> None:
    code = (
        "import sys, pushwire.core.hub, pushwire.core.session;"
        "bad = sorted(m for m in sys.modules if m.startswith(('pushwire.mqtt', 'pushwire.http')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
