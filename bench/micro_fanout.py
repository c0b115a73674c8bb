"""CPU per QoS 0 fan-out delivery through the Python half, in-process (no sockets), in the
shape of `pushwire bench cluster --only fanout`: one publisher blasting QoS 0 PUBLISH
(64-byte payload) in full 64 KB reads (~780 packets each) to N subscribers, on a real
server (memory engine). The publisher is fed its next read only while the server reads from
it (the protocol pauses and resumes its transport, as a socket would), one read per loop
turn at most (fed from a callback, as the loop's reads are).

    .venv/bin/python bench/micro_fanout.py [--subscribers N] [--deliveries D]
                                           [--budget B] [--profile]

Prints the server's process CPU time per delivery, and the longest loop turn (CPU time of
the longest stretch between two yields to the loop: what every other client waits for at
worst). `--budget` sets `fanout_deliveries_per_turn` (not given: the code's default; a
version without the setting ignores it). To compare two versions, run it with PYTHONPATH
at the other src/ (and this file from either tree).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import time
from typing import Any

from micro_connect import MemoryTransport
from pushwire.bench.loadgen import encode_publish
from pushwire.config import Settings
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.packets import PROTOCOL_V311, Connect, Subscribe, SubscriptionOptions
from pushwire.mqtt.protocol import READ_CHUNK_BYTES, MQTTServerProtocol
from pushwire.server import PushwireServer

PAYLOAD = 64


class CountingTransport(MemoryTransport):
    """Counts the bytes written and follows pause/resume_reading."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def client(server: PushwireServer, client_id: str) -> tuple[MQTTServerProtocol, CountingTransport]:
    proto = MQTTServerProtocol(server.mqtt)
    transport = CountingTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.data_received(encode(Connect(client_id, PROTOCOL_V311, keepalive=600), PROTOCOL_V311))
    return proto, transport


async def measure(
    subscribers: int, deliveries: int, budget: int | None, profile: cProfile.Profile | None
) -> tuple[float, float, int]:
    """(server CPU µs per delivery, longest loop turn in ms of CPU, loop turns)."""
    options: dict[str, Any] = {
        "memory": True,
        "connect_rate_per_client_id": 0,
        "connection_rate_per_ip": 0,
        "max_connections": subscribers + 10,
    }
    if budget is not None and "fanout_deliveries_per_turn" in Settings.model_fields:
        options["fanout_deliveries_per_turn"] = budget
    server = PushwireServer(Settings.model_validate(options))
    await server.engine.open()
    await server.auth.start()
    subs = [client(server, f"s{i}") for i in range(subscribers)]
    subscribe = encode(Subscribe(1, [("bench/fanout", SubscriptionOptions(qos=0))]), PROTOCOL_V311)
    for proto, _ in subs:
        proto.data_received(subscribe)
    pub, pub_out = client(server, "pub")
    await asyncio.sleep(0.01)
    packet = encode_publish("bench/fanout", bytes(PAYLOAD), 0, 0)
    read = packet * (READ_CHUNK_BYTES // len(packet))
    out_packet = len(packet)  # what a subscriber gets is the same QoS 0 PUBLISH
    base = sum(t.written for _, t in subs)
    gc.collect()
    gc.freeze()
    clock = time.process_time
    if profile is not None:
        profile.enable()
    start = clock()
    longest = 0.0
    turns = 0
    delivered = 0
    loop = asyncio.get_running_loop()
    while delivered < deliveries:
        t = clock()
        if pub_out.reading:
            # a callback of its own, as the loop's read is: what it schedules (flushes,
            # the deferred rest) runs in the next turn, not in this one
            loop.call_soon(pub.data_received, read)
        await asyncio.sleep(0)  # this turn's callbacks: a read, or flushes and a deferred rest
        longest = max(longest, clock() - t)
        turns += 1
        delivered = (sum(tr.written for _, tr in subs) - base) // out_packet
    total = clock() - start
    if profile is not None:
        profile.disable()
    return total / delivered * 1e6, longest * 1e3, turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=4000)
    parser.add_argument("--deliveries", type=int, default=3_000_000)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    us, longest_ms, turns = asyncio.run(
        measure(args.subscribers, args.deliveries, args.budget, profile)
    )
    print(
        f"{us:.3f} us of server CPU per delivery; longest loop turn {longest_ms:.0f} ms CPU; "
        f"{turns} turns (N={args.subscribers}, budget={args.budget or 'default'})"
    )
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
