"""$SYS statistics topics, published every --sys-interval seconds."""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Callable

import pytest

from helpers.clients import PahoClient
from helpers.server import SYS_ADMIN, ServerProcess

PahoFactory = Callable[..., PahoClient]
ServerFactory = Callable[..., ServerProcess]

UPTIME = "$SYS/broker/uptime"
CONNECTED = "$SYS/broker/clients/connected"
RECEIVED = "$SYS/broker/messages/received"
SENT = "$SYS/broker/messages/sent"
SYS_TOPICS = [UPTIME, CONNECTED, RECEIVED, SENT]

_LEADING_NUMBER = re.compile(r"\s*(-?\d+(?:\.\d+)?)")


def _number(payload: bytes) -> float:
    """The number a $SYS payload starts with (mosquitto's uptime reads "12 seconds"; the
    strict format is checked by test_sys_payload_is_a_plain_number)."""
    m = _LEADING_NUMBER.match(payload.decode())
    assert m, f"not a number: {payload!r}"
    return float(m.group(1))


class SysWatcher:
    def __init__(self, client: PahoClient) -> None:
        self.client = client
        self.values: dict[str, list[float]] = {t: [] for t in SYS_TOPICS}
        self.raw: dict[str, list[bytes]] = {t: [] for t in SYS_TOPICS}

    def pump(self, timeout: float) -> None:
        try:
            msg = self.client.messages.get(timeout=timeout)
        except queue.Empty:
            return
        if msg.topic in self.values:
            payload = bytes(msg.payload)
            self.raw[msg.topic].append(payload)
            self.values[msg.topic].append(_number(payload))

    def wait_for(
        self, topic: str, predicate: Callable[[float], bool], timeout: float = 5.0
    ) -> float:
        deadline = time.monotonic() + timeout
        while True:
            for v in self.values[topic]:
                if predicate(v):
                    return v
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{topic}: no value satisfying the condition: {self.values[topic]}"
                )
            self.pump(min(remaining, 0.2))


@pytest.fixture
def sys_server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory(sys_interval=1, admin=SYS_ADMIN)


def _watch(server: ServerProcess, paho_client: PahoFactory) -> SysWatcher:
    c = paho_client(server, "sys-watch", auth=SYS_ADMIN)
    assert c.subscribe([(t, 0) for t in SYS_TOPICS] + [("sysload/t", 0)]) == [0] * 5
    return SysWatcher(c)


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param(
            UPTIME,
            marks=pytest.mark.mosquitto_deviation('uptime payload is "<n> seconds"'),
        ),
        CONNECTED,
        RECEIVED,
        SENT,
    ],
)
def test_sys_payload_is_a_plain_number(
    sys_server: ServerProcess, paho_client: PahoFactory, topic: str
) -> None:
    c = paho_client(sys_server, "sys-format", auth=SYS_ADMIN)
    assert c.subscribe(topic, 0) == [0]
    msg = c.get_until(lambda m: m.topic == topic, timeout=5)[-1]
    float(msg.payload.decode("ascii"))  # raises if it is not a plain number


def test_sys_values_change_sensibly(sys_server: ServerProcess, paho_client: PahoFactory) -> None:
    w = _watch(sys_server, paho_client)
    first = {t: w.wait_for(t, lambda v: v >= 0) for t in SYS_TOPICS}
    # the first (possibly retained, older) value may predate us; the watcher itself is
    # connected, so the count must reach 1 at the next interval
    first[CONNECTED] = w.wait_for(CONNECTED, lambda v: v >= 1)

    # uptime goes up
    w.wait_for(UPTIME, lambda v: v > first[UPTIME])

    # three more clients -> connected count goes up by (at least, eventually) three
    for i in range(3):
        paho_client(sys_server, f"sys-extra-{i}", auth=SYS_ADMIN)
    w.wait_for(CONNECTED, lambda v: v >= first[CONNECTED] + 3)

    # ten publishes in, each delivered to the watcher -> both counters grow by >= 10
    pub = paho_client(sys_server, "sys-pub", auth=SYS_ADMIN)
    for i in range(10):
        pub.publish("sysload/t", b"%d" % i, qos=1)
    w.wait_for(RECEIVED, lambda v: v >= first[RECEIVED] + 10)
    w.wait_for(SENT, lambda v: v >= first[SENT] + 10)

    for topic in (UPTIME, RECEIVED, SENT):
        values = w.values[topic]
        assert values == sorted(values), f"{topic} went backwards: {values}"
