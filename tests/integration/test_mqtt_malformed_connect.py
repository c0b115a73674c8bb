"""A faulty CONNECT is answered by the protocol machine at the level it claims: an MQTT 5
client learns why (CONNACK with the fault's reason code), a 3.1.1 client is closed without
a CONNACK (MQTT-3.1.4-1). The rules have machine unit tests; this proves the wiring."""

from __future__ import annotations

from collections.abc import Callable

from helpers import raw
from helpers.raw import RawClient
from helpers.server import ServerProcess

RawFactory = Callable[..., RawClient]


def v5_connect(properties: bytes) -> bytes:
    body = b"\x00\x04MQTT\x05\x02\x00\x3c" + bytes([len(properties)]) + properties + b"\x00\x01c"
    return raw.packet(0x10, body)


def test_malformed_v5_connect_gets_connack_0x81_then_close(
    shared_server: ServerProcess, raw_client: RawFactory
) -> None:
    client = raw_client(shared_server)
    client.send(v5_connect(b"\xff\x00"))  # property id 0xFF does not exist
    got = client.read_until_closed()
    assert [(p.type, p.return_code) for p in got] == [(raw.CONNACK, 0x81)]


def test_v5_connect_over_the_size_limit_gets_connack_0x95(
    shared_server: ServerProcess, raw_client: RawFactory
) -> None:
    client = raw_client(shared_server)
    # announces 16 MiB and sends only its head: refused on the fixed header
    client.send(b"\x10" + raw.encode_remaining_length(16 << 20) + b"\x00\x04MQTT\x05\x02")
    got = client.read_until_closed()
    assert [(p.type, p.return_code) for p in got] == [(raw.CONNACK, 0x95)]


# a malformed 3.1.1 CONNECT closed without CONNACK: tests/integration/test_connect.py
# (test_reserved_connect_flag_closes_without_connack) and the machine's unit tests
