"""A subscriber with a huge retained backlog must not freeze anyone (issue 9, item 8).

With 100,000 retained topics, one SUBSCRIBE to `#` used to be answered in one go on the
event loop: every retained message was encoded before anything else ran, and ten
match-all filters in one SUBSCRIBE held every client for ten seconds. Now the SUBACK goes
first and the backlog follows in slices, only as fast as the subscriber reads.

The proof without a clock: the subscriber reads nothing after its SUBACK, so a sliced,
flow-controlled delivery must stall with most of the backlog not yet sent, while another
client's round trip completes; delivered in one go, all 100,000 would be written before
the other client is even read. Then the subscriber reads, and gets every retained message.
The 100,000 messages go straight into the in-process server's hub (publishing them over
the wire would take longer than the test); subscribers use real sockets.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from helpers import raw
from helpers.inproc import InProcessServer
from pushwire.core.message import Message

pytestmark = pytest.mark.pushwire_only("drives pushwire's hub in-process")

TOTAL = 100_000
PAYLOAD = b"p" * 100  # 11 MB of retained PUBLISH: more than socket buffers hold


@pytest.fixture(scope="module")
def srv() -> Iterator[InProcessServer]:
    """One server with 100,000 retained messages for the module (filling it is the slow
    part); each test uses its own client ids."""
    server = InProcessServer().start()
    try:
        seed(server)
        yield server
    finally:
        server.stop()


def seed(server: InProcessServer) -> None:
    def fill() -> None:
        assert server.server is not None
        retained = server.server.hub.retained
        for i in range(TOTAL):
            retained.set(Message(f"r/{i // 1000}/{i}", PAYLOAD, retain=True))

    server.call(fill)


class Reader:
    """A subscriber socket with a small receive buffer that reads only when told to."""

    def __init__(self, server: InProcessServer, client_id: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect((server.host, server.mqtt_port))
        self.buf = bytearray()
        self.sock.sendall(raw.connect(client_id))
        assert self.next_packet()[0] == raw.CONNACK

    def next_packet(self) -> tuple[int, bytes, int]:
        """(type, first 64 bytes of the body, first byte) of the next packet."""
        while True:
            packet = self._take()
            if packet is not None:
                return packet
            self._recv()

    def retained_topics(self, n: int) -> set[bytes]:
        """Read `n` PUBLISH packets, all with the retain flag; their topics."""
        topics: set[bytes] = set()
        count = 0
        while count < n:
            buf, pos, end = self.buf, 0, len(self.buf)
            while count < n and pos + 5 <= end:
                header = raw.remaining_length_of(bytes(buf[pos : pos + 5]))
                assert header is not None
                size, length = header
                if pos + size + length > end:
                    break
                first = buf[pos]
                assert first >> 4 == raw.PUBLISH and first & 0x01, bytes(buf[pos : pos + 16])
                (tlen,) = struct.unpack_from("!H", buf, pos + size)
                topics.add(bytes(buf[pos + size + 2 : pos + size + 2 + tlen]))
                pos += size + length
                count += 1
            del buf[:pos]
            if count < n:
                self._recv()
        return topics

    def _take(self) -> tuple[int, bytes, int] | None:
        header = raw.remaining_length_of(bytes(self.buf[:5]))
        if header is None or len(self.buf) < header[0] + header[1]:
            return None
        size, length = header
        first = self.buf[0]
        body = bytes(self.buf[size : size + min(length, 64)])
        del self.buf[: size + length]
        return first >> 4, body, first

    def _recv(self) -> None:
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def messages_sent(server: InProcessServer) -> int:
    assert server.server is not None
    hub = server.server.hub
    return server.call(lambda: hub.stats.messages_sent)


def test_huge_retained_backlog_is_sliced_and_blocks_nobody(srv: InProcessServer) -> None:
    before = messages_sent(srv)
    sub = Reader(srv, "backlog")
    try:
        sub.sock.sendall(raw.subscribe(1, [("#", 0)]))
        kind, body, _ = sub.next_packet()
        assert (kind, body) == (raw.SUBACK, b"\x00\x01\x00")  # the SUBACK comes first
        control = raw.connected_client(srv.host, srv.mqtt_port, "control")
        try:
            assert control.is_open()  # a round trip while the backlog is pending
            sent = messages_sent(srv) - before
            assert sent < TOTAL // 2, f"{sent} retained messages written in one go"
            # the subscriber reads: every retained message arrives, each once
            sub.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # read faster
            assert len(sub.retained_topics(TOTAL)) == TOTAL
            assert control.is_open()
        finally:
            control.close()
        # the stream is done and forgotten
        assert srv.server is not None
        hub = srv.server.hub
        assert srv.call(lambda: len(hub._retained_streams)) == 0
    finally:
        sub.close()


def test_ten_match_all_filters_get_their_suback_at_once_and_stop_on_disconnect(
    srv: InProcessServer,
) -> None:
    filters = ["#", "+/#", "r/#", "r/+/#", "+/+/#", "+/+/+", "r/+/+", "+/#", "#", "r/#"]
    before = messages_sent(srv)
    sub = Reader(srv, "ten")
    sub.sock.sendall(raw.subscribe(2, [(f, 0) for f in filters]))
    kind, body, _ = sub.next_packet()
    assert kind == raw.SUBACK and body == b"\x00\x02" + bytes(len(filters))
    control = raw.connected_client(srv.host, srv.mqtt_port, "control")
    try:
        assert control.is_open()
        assert messages_sent(srv) - before < TOTAL // 2
        sub.close()  # gone mid-backlog: its stream ends with it
        assert srv.server is not None
        hub = srv.server.hub
        deadline = time.monotonic() + 10
        while srv.call(lambda: len(hub._retained_streams) + len(hub.sessions)) > 1:
            assert time.monotonic() < deadline, "the stream outlived its connection"
            time.sleep(0.01)
        assert control.is_open()
    finally:
        control.close()
