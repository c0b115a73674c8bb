"""Malformed input closes only the offending connection (MQTT 3.1.1 sections 1.5.3, 2.2, 4.8).

All cases run against one server while one healthy subscriber stays connected throughout;
after each case that subscriber still receives a message, a bystander connection is still
open, and the server process is still alive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from helpers import raw
from helpers.clients import PahoClient
from helpers.raw import RawClient
from helpers.server import ServerProcess

RawFactory = Callable[..., RawClient]
PahoFactory = Callable[..., PahoClient]

# (send CONNECT first?, bytes)
CASES: dict[str, tuple[bool, bytes]] = {
    # before CONNECT
    "garbage-first": (False, b"\x00\x01\x02 this is not mqtt \xff\xfe"),
    "http-request": (False, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "connect-bad-protocol-name": (False, raw.connect("x", protocol_name="HTTP")),
    "connect-truncated-body": (False, b"\x10\x07\x00\x04MQTT\x04"),
    # after CONNECT
    "reserved-type-0": (True, b"\x00\x00"),
    "pingresp-from-client": (True, b"\xde\xad\xbe\xef" * 8),
    "remaining-length-5-bytes": (True, b"\x30\xff\xff\xff\xff\x01"),
    "remaining-length-too-short": (True, b"\x30\x03\x00\x0aab"),
    "topic-invalid-utf8": (True, raw.publish(b"a/\xff\xfe", b"p")),
    "topic-utf8-surrogate": (True, raw.publish(b"a/\xed\xa0\x80", b"p")),
    "topic-nul-char": (True, raw.publish(b"a\x00b", b"p")),
    "topic-wildcard": (True, raw.publish("a/+", b"p")),
    "publish-qos3": (True, b"\x36" + raw.publish("a/b", b"p", qos=1, packet_id=1)[1:]),
    "publish-qos1-packet-id-0": (True, raw.publish("a/b", b"p", qos=1, packet_id=0)),
    "subscribe-bad-flags": (True, b"\x80" + raw.subscribe(1, [("a/b", 0)])[1:]),
    "subscribe-no-filters": (True, b"\x82\x02\x00\x01"),
    "subscribe-qos3": (True, raw.subscribe(1, [("a/b", 3)])),
    "subscribe-filter-overruns": (True, b"\x82\x06\x00\x01\x00\x10ab"),
    "unsubscribe-bad-flags": (True, b"\xa0" + raw.unsubscribe(1, ["a/b"])[1:]),
    "pubrel-bad-flags": (True, b"\x60\x02\x00\x01"),
    "pingreq-with-body": (True, b"\xc0\x01\x00"),
}


DEVIATIONS = {
    "pingreq-with-body": "answers PINGRESP to a PINGREQ with a non-zero remaining length",
}


@pytest.fixture(scope="module")
def healthy(shared_server: ServerProcess) -> Iterator[PahoClient]:
    """A subscriber connected to the shared server during every case of this module."""
    c = PahoClient(shared_server.host, shared_server.mqtt_port, "healthy")
    c.connect()
    assert c.subscribe("iso/t", 1) == [1]
    yield c
    c.close()


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(name, marks=pytest.mark.mosquitto_deviation(DEVIATIONS[name]))
        if name in DEVIATIONS
        else name
        for name in CASES
    ],
)
def test_bad_input_closes_only_that_connection(
    shared_server: ServerProcess,
    healthy: PahoClient,
    raw_client: RawFactory,
    paho_client: PahoFactory,
    case: str,
) -> None:
    server = shared_server
    bystander = raw_client(server, f"bystander-{case}")

    send_connect, data = CASES[case]
    bad = raw_client(server, f"bad-{case}") if send_connect else raw_client(server)
    bad.try_send(data)
    got = bad.read_until_closed(timeout=3)
    assert all(p.type not in (raw.CONNACK, raw.PUBACK, raw.SUBACK, raw.UNSUBACK) for p in got), got

    assert server.alive(), "server process died"
    assert bystander.is_open(), "a bystander connection was closed too"
    assert not healthy.disconnected.is_set(), "the healthy subscriber was disconnected"
    marker = f"after {case}".encode()
    paho_client(server, f"pub-{case}").publish("iso/t", marker, qos=1)
    healthy.get_until(lambda m: m.payload == marker)


def test_server_survived_all_bad_input(
    shared_server: ServerProcess, healthy: PahoClient, paho_client: PahoFactory
) -> None:
    """Runs after every case above, on the same server and healthy subscriber."""
    assert shared_server.alive()
    assert not healthy.disconnected.is_set()
    paho_client(shared_server, "final-pub").publish("iso/t", b"final", qos=1)
    healthy.get_until(lambda m: m.payload == b"final")
    fresh = paho_client(shared_server, "fresh")
    assert fresh.subscribe("fresh/t", 2) == [2]
    paho_client(shared_server, "fresh-pub").publish("fresh/t", b"hello", qos=2)
    assert fresh.get().payload == b"hello"
