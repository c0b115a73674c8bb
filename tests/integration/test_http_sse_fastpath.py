"""The fused SSE reader's own state (http/sse_reader.py `SseLiveReader`): it reads the
transport's buffer instead of the connection's `write_paused`, and keeps the heartbeat
flag on the reader instead of the sink. Each rule it stands for still holds on real
sockets: a stream with bytes waiting in its transport (not paused) gets every message, in
order, without a drain; a stream that got live messages through the fused reader gets
heartbeats again once messages stop."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import connect, publish, until

from .test_http_sse_fanout import Stream, fused_readers

pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")

FILLER = b": filler\n" * 3000  # 27 KB of SSE comment: under the transport's high-water mark


@pytest.fixture
def inproc() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(sse_heartbeat=600, stream_buffer=10_000))


def test_a_stream_with_bytes_waiting_in_its_transport_gets_every_message_in_order(
    inproc: InProcessServer,
) -> None:
    """Bytes wait in the transport (the client reads nothing, the kernel's buffers are
    small) but under the high-water mark, so the transport never pauses and never calls
    back: the fused reader must append its messages behind those bytes (not hold them for
    a drain that never comes, not write them ahead)."""
    slow_sock = socket.socket()
    slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert inproc.server is not None and inproc.server.http_address is not None
    slow_sock.settimeout(10)
    slow_sock.connect(inproc.server.http_address)
    other_socks = [connect(inproc) for _ in range(2)]
    try:
        slow = Stream(slow_sock, "wait/%23", {})
        others = [Stream(s, "wait/%23", {}) for s in other_socks]
        until(lambda: len(fused_readers(inproc)) == 3)
        publish(inproc, "wait/0", b"m0")  # the entry's event is cached from here on
        for stream in [slow, *others]:
            assert stream.message()["payload"] == "m0"

        port = slow_sock.getsockname()[1]
        (reader,) = [
            r for r in fused_readers(inproc) if r.transport.get_extra_info("peername")[1] == port
        ]

        def fill() -> tuple[int, bool]:
            # on the server's loop: the kernel's buffer made small, then bytes written that
            # neither it nor the client (which reads nothing) takes
            transport = reader.transport
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            transport.write(FILLER)
            paused: bool = reader.sink.cycle.proto.write_paused  # type: ignore[attr-defined]
            return transport.get_write_buffer_size(), paused

        waiting, paused = inproc.call(fill)
        assert waiting > 0 and not paused  # bytes wait, and nothing will call back
        for n in range(1, 4):
            publish(inproc, f"wait/{n}", b"m%d" % n)
        for stream in others:  # they got theirs at once
            assert [stream.message()["payload"] for _ in range(3)] == ["m1", "m2", "m3"]
        # the slow one: the filler first (comments), then every message, in order
        assert [slow.message()["payload"] for _ in range(3)] == ["m1", "m2", "m3"]
    finally:
        slow_sock.close()
        for s in other_socks:
            s.close()


@pytest.fixture
def beating() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(sse_heartbeat=0.2))


def test_streams_fed_by_the_fused_reader_get_heartbeats_once_messages_stop(
    beating: InProcessServer,
) -> None:
    """The first stream of a fan-out encodes the event (the general path, the sink's
    flag); the others get it through the fused reader (the reader's flag). A tick clears
    both: afterwards every stream is idle again and gets its heartbeat comments."""
    socks = [connect(beating) for _ in range(3)]
    try:
        streams = [Stream(s, "beat/%23", {}) for s in socks]
        until(lambda: len(fused_readers(beating)) == 3)
        publish(beating, "beat/x", b"live")
        for stream in streams:
            assert stream.message()["payload"] == "live"
            beats = 0
            while beats < 2:  # comments after the message: the flags were cleared
                while b"\n\n" not in stream.buf:
                    stream._more()
                raw, _, stream.buf = stream.buf.partition(b"\n\n")
                assert raw == b": hb", raw
                beats += 1
    finally:
        for s in socks:
            s.close()
