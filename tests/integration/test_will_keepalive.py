"""Will messages (MQTT 3.1.1 section 3.1.2.5) and Keep Alive (section 3.1.2.10)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from helpers import raw
from helpers.clients import PahoClient
from helpers.raw import RawClient
from helpers.server import ServerProcess

RawFactory = Callable[..., RawClient]
PahoFactory = Callable[..., PahoClient]

# How late after 1.5 x keepalive the server may close a silent connection.
KEEPALIVE_GRACE = 1.0
# Upper bound for "the will is published eventually" tests, which do not check timing.
WILL_TIMEOUT = 10.0


def _watcher(server: ServerProcess, paho_client: PahoFactory) -> PahoClient:
    w = paho_client(server, "will-watcher")
    assert w.subscribe([("will/#", 1)]) == [1]
    return w


def _will_client(
    server: ServerProcess, raw_client: RawFactory, name: str, **kw: object
) -> RawClient:
    return raw_client(
        server,
        f"will-{name}",
        will_topic=f"will/{name}",
        will_payload=f"{name} is gone".encode(),
        will_qos=1,
        **kw,
    )


def test_will_on_keepalive_timeout(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    watcher = _watcher(server, paho_client)
    c = _will_client(server, raw_client, "silent", keepalive=1)
    # go silent; the server must drop us and publish the will
    c.read_until_closed(timeout=WILL_TIMEOUT)
    msg = watcher.get(timeout=5)
    assert (msg.topic, msg.payload, msg.qos) == ("will/silent", b"silent is gone", 1)


@pytest.mark.parametrize("how", ["close", "shutdown-rdwr", "reset"])
def test_will_on_close_without_disconnect(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory, how: str
) -> None:
    watcher = _watcher(server, paho_client)
    c = _will_client(server, raw_client, "dropped")
    assert c.is_open()
    if how == "shutdown-rdwr":
        c.sock.shutdown(socket.SHUT_RDWR)
    elif how == "reset":
        # SO_LINGER with zero timeout: close() sends RST instead of FIN
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    msg = watcher.get(timeout=WILL_TIMEOUT)
    assert (msg.topic, msg.payload) == ("will/dropped", b"dropped is gone")


# The rules (a protocol error keeps the will, 1.5 x Keep Alive, any packet resets it) are
# machine unit tests with every variant (tests/unit/test_mqtt_machine_conformance.py); the
# cases here prove the wiring: the close, the timer, the will reaching a subscriber.


@pytest.mark.parametrize(
    "violation",
    [
        pytest.param(raw.publish("x", b"", qos=1, packet_id=1)[:1] + b"\x00", id="truncated"),
        pytest.param(
            raw.connect("again"),
            id="second-connect",
            marks=pytest.mark.mosquitto_deviation(
                "closes the connection on a second CONNECT but does not publish the will"
            ),
        ),
    ],
)
def test_will_on_protocol_error(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory, violation: bytes
) -> None:
    """Section 3.1.2.5: the will is published when the server closes the connection because
    of a protocol error."""
    watcher = _watcher(server, paho_client)
    c = _will_client(server, raw_client, "violator")
    c.send(violation)
    c.read_until_closed(timeout=5)
    msg = watcher.get(timeout=5)
    assert (msg.topic, msg.payload) == ("will/violator", b"violator is gone")


def test_will_not_published_after_disconnect(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    """[MQTT-3.1.2-10], [MQTT-3.14.4-3]: DISCONNECT discards the will."""
    watcher = _watcher(server, paho_client)
    c = _will_client(server, raw_client, "polite")
    c.send(raw.DISCONNECT_BYTES)
    assert c.read_until_closed(timeout=5) == []
    paho_client(server, "will-pub").publish("will/sentinel", b"end", qos=1)
    got = watcher.get_until(lambda m: m.topic == "will/sentinel")
    assert [m.topic for m in got] == ["will/sentinel"]


def test_retained_will(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    """A will with Will Retain=1 is published as a retained message."""
    watcher = paho_client(server, "willret-watcher")
    assert watcher.subscribe("willret/t", 1) == [1]
    c = raw_client(
        server, "will-ret", will_topic="willret/t", will_payload=b"last words", will_retain=True
    )
    c.close()
    live = watcher.get(timeout=WILL_TIMEOUT)
    assert (live.payload, live.retain) == (b"last words", 0)
    # a subscriber that arrives afterwards gets the will as a retained message
    late = paho_client(server, "willret-late")
    assert late.subscribe("willret/t", 1) == [1]
    msg = late.get()
    assert (msg.payload, msg.retain) == (b"last words", 1)


# --- keepalive ------------------------------------------------------------------------------


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0 scans keepalives only every 5 s, so short keepalives expire late"
)
def test_silent_client_disconnected_after_one_and_a_half_keepalives(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    """[MQTT-3.1.2-24]: no packet within 1.5 x Keep Alive -> disconnect. Not earlier (the
    client is within its allowance) and not much later (we allow KEEPALIVE_GRACE)."""
    keepalive = 1
    c = raw_client(server)
    sent = time.monotonic()
    c.send(raw.connect("ka-silent", keepalive=keepalive))
    limit = 1.5 * keepalive
    got = c.read_until_closed(timeout=limit + KEEPALIVE_GRACE)
    elapsed = time.monotonic() - sent
    assert [p.type for p in got] == [raw.CONNACK]
    assert elapsed >= limit - 0.05, f"closed after {elapsed:.2f}s, before 1.5 x keepalive"


def test_active_client_stays_connected(server: ServerProcess, raw_client: RawFactory) -> None:
    """Any control packet within the keepalive resets the timer (section 3.1.2.10)."""
    c = raw_client(server, "ka-active", keepalive=1)
    end = time.monotonic() + 3.5
    while time.monotonic() < end:
        time.sleep(0.5)
        c.send(raw.PINGREQ_BYTES)
        assert c.recv_packet(timeout=1).raw == raw.PINGRESP_BYTES
    assert c.is_open()
