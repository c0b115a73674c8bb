"""Queues that never drop silently (docs/queues.md): a persistent session's queue lives in
the store, far beyond what one session may hold in memory; when a queue does overflow it is
counted per client (/metrics, $SYS), logged, and an MQTT 5 publisher hears 0x97."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from helpers.clients import PahoClient
from helpers.metrics import sample, scrape
from helpers.server import SYS_ADMIN, ServerProcess

pytestmark = pytest.mark.pushwire_only("pushwire's queue policy (mosquitto drops silently)")

PahoFactory = Callable[..., PahoClient]
ServerFactory = Callable[..., ServerProcess]


class AckRecorder:
    """A paho MQTT 5 publisher that sends many QoS 1 messages at once and records the
    reason code of every PUBACK."""

    def __init__(self, srv: ServerProcess, client_id: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.reasons: dict[int, int] = {}
        self._cond = threading.Condition()
        self.client.on_publish = self._on_publish
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect(srv.host, srv.mqtt_port, 60)
        self.client.loop_start()
        assert connected.wait(5), "publisher did not connect"

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._cond:
            self.reasons[mid] = int(rc.value) if hasattr(rc, "value") else int(rc)
            self._cond.notify_all()

    def publish_all(
        self,
        topic: str,
        count: int,
        timeout: float = 60.0,
        *,
        retained: bool = False,
        pad: int = 0,
    ) -> list[int]:
        """Publish payloads b"0".. b"count-1" (each followed by `pad` bytes of b"-") at
        QoS 1; the PUBACK reason codes in order. `retained`: each to its own topic
        `topic/<i>`, retained."""
        mids = [
            self.client.publish(
                f"{topic}/{i}" if retained else topic,
                str(i).encode() + b"-" * pad,
                1,
                retain=retained,
            ).mid
            for i in range(count)
        ]
        with self._cond:
            done = self._cond.wait_for(lambda: all(m in self.reasons for m in mids), timeout)
        assert done, f"{len(self.reasons)} of {count} PUBACKs within {timeout}s"
        return [self.reasons[m] for m in mids]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _offline_subscriber(srv: ServerProcess, paho_client: PahoFactory, cid: str, flt: str) -> None:
    sub = paho_client(srv, cid, clean_session=False)
    sub.subscribe(flt, 1)
    sub.disconnect()


def _collect(client: PahoClient, count: int, timeout: float = 60.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            wait = min(5.0, max(0.1, deadline - time.monotonic()))
            got.append(bytes(client.get(timeout=wait).payload))
        except AssertionError:
            break
    return got


def test_offline_session_gets_3000_acknowledged_messages_in_order(
    server: ServerProcess, paho_client: PahoFactory
) -> None:
    """With the default settings (max_queued_messages 1000), an offline persistent session
    sent 3,000 acknowledged QoS 1 messages gets all 3,000 back, in order, after it
    reconnects: the queue beyond the memory window waits in the store."""
    _offline_subscriber(server, paho_client, "qs-phone", "qs/news")
    pub = AckRecorder(server, "qs-pub")
    try:
        reasons = pub.publish_all("qs/news", 3000)
    finally:
        pub.close()
    assert reasons == [0] * 3000
    # memory holds the window (queue_memory_window, 500); the rest waits in the store
    assert sample(scrape(server), "pushwire_mqtt_stored_queued_messages") == 2500
    sub = paho_client(server, "qs-phone", clean_session=False)
    assert sub.session_present
    got = _collect(sub, 3000)
    assert got == [str(i).encode() for i in range(3000)]


def test_stored_queue_survives_restart_in_order(
    server_factory: ServerFactory, paho_client: PahoFactory
) -> None:
    """The stored queue, most of it never loaded into memory, comes back after a restart."""
    srv = server_factory(extra_args=["--queue-memory-window", "50"])
    _offline_subscriber(srv, paho_client, "qs-restart", "qs/r")
    pub = AckRecorder(srv, "qs-pub-r")
    try:
        assert pub.publish_all("qs/r", 600) == [0] * 600
    finally:
        pub.close()
    srv.restart()
    sub = paho_client(srv, "qs-restart", clean_session=False)
    assert sub.session_present
    assert _collect(sub, 600) == [str(i).encode() for i in range(600)]


def _sys_values(srv: ServerProcess, paho_client: PahoFactory, topic: str) -> Iterator[bytes]:
    """The retained value of a $SYS topic, then each update (published every sys_interval)."""
    reader = paho_client(srv, "qs-sys-reader", auth=SYS_ADMIN)
    reader.subscribe(topic, 0)
    while True:
        yield bytes(reader.get(timeout=10).payload)


def test_overflow_is_counted_logged_and_refused_with_0x97(
    server_factory: ServerFactory, paho_client: PahoFactory
) -> None:
    """A full persistent queue refuses the rest: /metrics and $SYS count it for that client,
    the log says so, and the MQTT 5 publisher gets PUBACK 0x97 (Quota exceeded) for each
    message no subscriber could take."""
    srv = server_factory(
        sys_interval=1,
        admin=SYS_ADMIN,
        extra_args=[
            "--anonymous",
            "on",
            "--max-persistent-queued-messages",
            "5",
            "--queue-memory-window",
            "2",
        ],
    )
    _offline_subscriber(srv, paho_client, "qs-full", "qs/full")
    pub = AckRecorder(srv, "qs-pub-full")
    try:
        reasons = pub.publish_all("qs/full", 8)
    finally:
        pub.close()
    assert reasons == [0] * 5 + [0x97] * 3

    samples = scrape(srv)
    assert sample(samples, "pushwire_mqtt_queue_overflow_client_total", client_id="qs-full") == 3
    # the retained value may predate the overflow: the next update (1 s) carries it
    values = _sys_values(srv, paho_client, "$SYS/broker/queues/overflow")
    assert any(json.loads(v) == {"qs-full": 3} for _, v in zip(range(3), values, strict=False))
    deadline = time.monotonic() + 5
    while "queue of 'qs-full' is full" not in srv.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "queue of 'qs-full' is full" in srv.output()

    # the five queued ones are all there, in order
    sub = paho_client(srv, "qs-full", clean_session=False)
    assert _collect(sub, 5) == [str(i).encode() for i in range(5)]


def test_overflow_is_not_0x97_when_another_subscriber_took_it(
    server_factory: ServerFactory, paho_client: PahoFactory
) -> None:
    """0x97 means nobody could take the message: with one more subscriber that takes it,
    the PUBACK is success (the overflow is still counted for the full session)."""
    srv = server_factory(extra_args=["--max-persistent-queued-messages", "2"])
    _offline_subscriber(srv, paho_client, "qs-full2", "qs/two")
    live = paho_client(srv, "qs-live")
    live.subscribe("qs/two", 1)
    pub = AckRecorder(srv, "qs-pub-two")
    try:
        assert pub.publish_all("qs/two", 4) == [0] * 4
    finally:
        pub.close()
    assert _collect(live, 4) == [b"0", b"1", b"2", b"3"]
    samples = scrape(srv)
    assert sample(samples, "pushwire_mqtt_queue_overflow_client_total", client_id="qs-full2") == 2


def test_new_qos1_subscriber_gets_all_3000_retained_messages(
    server: ServerProcess, paho_client: PahoFactory
) -> None:
    """The retained set reaches a new QoS 1 subscriber as a paced stream, not capped by the
    inflight window plus the queue limit (1,020 of 3,000 before)."""
    pub = AckRecorder(server, "qs-ret-pub")
    try:
        assert pub.publish_all("qs/ret", 3000, retained=True) == [0] * 3000
    finally:
        pub.close()
    sub = paho_client(server, "qs-ret-sub")
    sub.subscribe("qs/ret/#", 1)
    got = _collect(sub, 3000)
    assert sorted(int(p) for p in got) == list(range(3000))


def test_retained_set_is_not_capped_by_the_queue_bounds(
    server_factory: ServerFactory, paho_client: PahoFactory
) -> None:
    """The retained stream waits for room in the inflight window instead of filling the
    queue: with no queue at all (max_queued_messages 0) and a byte bound that holds about
    ten of the messages, a new QoS 1 subscriber still gets all 200 retained messages."""
    srv = server_factory(max_queued_messages=0, extra_args=["--max-queued-bytes", str(10 * 20_000)])
    pub = AckRecorder(srv, "qs-big-pub")
    try:
        assert pub.publish_all("qs/big", 200, retained=True, pad=20_000) == [0] * 200
    finally:
        pub.close()
    sub = paho_client(srv, "qs-big-sub")
    sub.subscribe("qs/big/#", 1)
    got = _collect(sub, 200)
    assert sorted(int(p.rstrip(b"-")) for p in got) == list(range(200))
    samples = scrape(srv)
    assert sample(samples, "pushwire_mqtt_queue_overflow_total", bound="messages") == 0
    assert sample(samples, "pushwire_mqtt_queue_overflow_total", bound="bytes") == 0
