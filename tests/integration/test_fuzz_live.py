"""Fuzz a live server: random and mutated packets on fresh connections after a valid CONNECT.

Property, per example: the server answers (any packet) or closes that connection, within a
few seconds. After the run a normal client can still connect, subscribe and receive, and the
server process is alive.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import raw
from helpers.clients import PahoClient
from helpers.raw import RawClient
from helpers.server import ServerProcess

PahoFactory = Callable[..., PahoClient]

# How many zero bytes we are willing to append to complete a packet the fuzz started.
PAD_LIMIT = 64 * 1024
ANSWER_TIMEOUT = 3.0

TEMPLATES = [
    raw.connect("again"),
    raw.publish("f/t", b"payload"),
    raw.publish("f/t", b"payload", qos=1, packet_id=1),
    raw.publish("f/t", b"payload", qos=2, packet_id=2, retain=True),
    raw.publish("f/t", b"", retain=True),
    raw.puback(1),
    raw.pubrec(2),
    raw.pubrel(2),
    raw.pubcomp(2),
    raw.subscribe(3, [("f/#", 1), ("f/+/x", 2)]),
    raw.unsubscribe(4, ["f/#"]),
    raw.PINGREQ_BYTES,
    raw.DISCONNECT_BYTES,
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "first"]))
        if not data:
            data.append(draw(st.integers(0, 255)))
            continue
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[i:]
        else:
            data[0] = draw(st.integers(0, 255))
    return bytes(data)


fuzz_bytes = st.lists(
    st.one_of(st.binary(min_size=1, max_size=48), mutated(), st.sampled_from(TEMPLATES)),
    min_size=1,
    max_size=3,
).map(b"".join)


def complete_framing(data: bytes) -> bytes | None:
    """Append bytes so the stream ends on a packet boundary (by its own length fields).

    Returns None when that is impossible cheaply (a declared length above PAD_LIMIT) or
    unnecessary because the stream is malformed (a length field longer than 4 bytes, which
    the server must reject).
    """
    out = bytearray(data)
    pos = 0
    while pos < len(out):
        length = 0
        multiplier = 1
        i = pos + 1
        while True:
            if i >= len(out):
                out.append(0)  # terminate an unfinished length field
            byte = out[i]
            i += 1
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            if not byte & 0x80:
                break
            if i - pos > 4:
                return bytes(out)  # malformed length: the server must close
        missing = i + length - len(out)
        if missing > PAD_LIMIT:
            return None
        if missing > 0:
            out += bytes(missing)
        pos = i + length
    return bytes(out)


def _answers_or_closes(server: ServerProcess, data: bytes) -> None:
    c = RawClient(server.host, server.mqtt_port)
    try:
        ack = c.mqtt_connect("", clean_session=True, keepalive=2)
        assert ack.return_code == 0
        framed = complete_framing(data)
        if framed is None:
            # an enormous declared length: stop sending; the server must close on EOF
            c.try_send(data)
            with contextlib.suppress(OSError):  # the server may have closed already
                c.sock.shutdown(socket.SHUT_WR)
            c.read_until_closed(timeout=ANSWER_TIMEOUT)
            return
        c.try_send(framed + raw.PINGREQ_BYTES)
        try:
            c.recv_packet(timeout=ANSWER_TIMEOUT)
        except raw.ConnectionClosed:
            pass
        except TimeoutError:
            raise AssertionError(
                f"server neither answered nor closed within {ANSWER_TIMEOUT}s after {framed!r}"
            ) from None
    finally:
        c.close()


def test_fuzz_live(server: ServerProcess, paho_client: PahoFactory) -> None:
    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=fuzz_bytes)
    def one(data: bytes) -> None:
        assert server.alive(), f"server died\n{server.output()[-3000:]}"
        _answers_or_closes(server, data)

    one()

    assert server.alive(), f"server died\n{server.output()[-3000:]}"
    sub = paho_client(server, "after-fuzz-sub")
    assert sub.subscribe("after/fuzz", 1) == [1]
    paho_client(server, "after-fuzz-pub").publish("after/fuzz", b"ok", qos=1)
    msg = sub.get()
    assert (msg.topic, msg.payload) == ("after/fuzz", b"ok")
