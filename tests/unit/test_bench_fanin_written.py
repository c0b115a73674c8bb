"""The fan-in's "publishers wrote" figure (`pushwire bench mqtt` / `bench cluster`): a blast
publisher counts the packets its socket took, not those still waiting in its transport's
buffer, and the detail line says how much of the subscriber's count was a backlog written
before the window (many publishers fill their sockets' buffers during the warm-up and then
write nothing in the window: the figure then read "0 msg/s" with no word why)."""

from __future__ import annotations

import asyncio
import socket

from pushwire.bench.loadgen import BlastPublisher, ClientReport, encode_publish
from pushwire.bench.mqtt import fanin_detail


def _report(role: str, count: int, before: int) -> ClientReport:
    report = ClientReport("x", role, 1, count=count, window_s=2.0)
    report.before = before
    return report


def test_the_detail_names_the_backlog_the_subscriber_drained() -> None:
    reports = [
        _report("count-sub", 200_000, 50_000),
        _report("blast-pub", 0, 400_000),
        _report("blast-pub", 0, 250_000),
    ]
    assert fanin_detail(reports) == (
        "publishers wrote 0 msg/s in the window; 600,000 written before it were not yet"
        " received at its start (up to 100% of what the subscriber got in the window)"
    )


def test_no_backlog_no_clause() -> None:
    reports = [_report("count-sub", 200_000, 9_000), _report("blast-pub", 210_000, 9_000)]
    assert fanin_detail(reports) == "publishers wrote 105,000 msg/s in the window"


async def test_packets_still_in_the_transport_buffer_are_not_counted_written() -> None:
    loop = asyncio.get_running_loop()
    accepted: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        port = listener.getsockname()[1]
        _, client = await loop.create_connection(
            lambda: BlastPublisher("c", "bench/t", b"p" * 64, 4096), "127.0.0.1", port
        )
        accepted.append((await loop.sock_accept(listener))[0])  # and never read from
        client.start()
        assert client.pump is not None and client.transport is not None
        # the sockets' buffers fill (nobody reads), then the transport's own, then it pauses
        for _ in range(20_000):
            await asyncio.sleep(0)
            if client.transport.get_write_buffer_size() > 0 and client.pump._paused:
                break
        buffered = client.transport.get_write_buffer_size()
        assert buffered > 0 and client.pump._paused
        packet = len(encode_publish("bench/t", b"p" * 64))
        assert client.progress() == client.pump.sent - buffered // packet
        client.stop()
        client.transport.abort()
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
