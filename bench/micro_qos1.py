"""CPU per QoS 1 message through the Python half, in-process (no sockets), in the shape of
`pushwire bench mqtt --only qos1lat`: 4 publishers (3.1.1, 64-byte payload) each keep 32
QoS 1 PUBLISH unacknowledged, and one subscriber acknowledges every delivery it was given,
on a real server (memory engine). Each round, every publisher refills its window with what
its PUBACKs freed and the subscriber acks what it received, as a socket would hand it over.

    .venv/bin/python bench/micro_qos1.py [N] [--profile] [--set NAME=VALUE ...]
    (default N=50000; a few seconds; --set: a server setting, e.g.
    --set backpressure_publish_burst=1 for the hold right after the packet that engaged it)

Prints the server's process CPU time per delivered message: the load generator's side
(walking the subscriber's bytes, building its PUBACKs, the publishers' refills; the same
code as the bench's load generator) is timed on its own and taken off. To compare two
versions, run it with PYTHONPATH at the other src/ (and this file from either tree).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import pstats
import sys
import time

from micro_connect import MemoryTransport
from pushwire.bench.loadgen import PacketWalker, PublishRing, encode_pubacks
from pushwire.config import Settings
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.packets import PROTOCOL_V311, Connect, Subscribe, SubscriptionOptions
from pushwire.mqtt.protocol import MQTTServerProtocol
from pushwire.server import PushwireServer

PUBLISHERS = 4
WINDOW = 32
PAYLOAD = 64


class CaptureTransport(MemoryTransport):
    pauses = 0  # pause_reading calls on every connection (each costs an epoll_ctl pair)

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def pause_reading(self) -> None:
        CaptureTransport.pauses += 1

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data


def client(server: PushwireServer, client_id: str) -> tuple[MQTTServerProtocol, CaptureTransport]:
    proto = MQTTServerProtocol(server.mqtt)
    transport = CaptureTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.data_received(encode(Connect(client_id, PROTOCOL_V311, keepalive=60), PROTOCOL_V311))
    return proto, transport


class Publisher:
    """The bench's WindowPump without a socket: `window` PUBLISH unacknowledged."""

    def __init__(self, proto: MQTTServerProtocol, out: CaptureTransport, ring: PublishRing):
        self.proto, self.out, self.ring = proto, out, ring
        self.sent = self.acked = self.next = 0

    def refill(self) -> bytes:
        self.acked += len(self.out.take()) // 4  # it only ever gets 4-byte PUBACKs
        room = WINDOW - (self.sent - self.acked)
        self.sent += room
        size = self.ring.packet_size
        chunks = []
        while room > 0:
            take = min(room, self.ring.count - self.next)
            chunks.append(self.ring.data[self.next * size : (self.next + take) * size])
            self.next = (self.next + take) % self.ring.count
            room -= take
        return b"".join(chunks)


EXTRA: dict[str, object] = {}  # server settings over the defaults (--set)
HOLDS: list[float] = []  # publisher holds and socket pauses per 1000 delivered, last run


async def measure(n: int, profile: cProfile.Profile | None = None) -> tuple[float, float]:
    """(server CPU µs per delivered message, load generator CPU µs per message); sets
    HOLDS."""
    settings = Settings.model_validate(
        {"memory": True, "connect_rate_per_client_id": 0, "connection_rate_per_ip": 0} | EXTRA
    )
    server = PushwireServer(settings)
    await server.engine.open()
    await server.auth.start()
    sub, sub_out = client(server, "sub")
    sub.data_received(encode(Subscribe(1, [("t/#", SubscriptionOptions(qos=1))]), PROTOCOL_V311))
    ring = PublishRing.build("t/x", bytes(PAYLOAD))
    pubs = [Publisher(*client(server, f"pub{i}"), ring) for i in range(PUBLISHERS)]
    await asyncio.sleep(0.01)
    for p in pubs:
        p.out.take()
    sub_out.take()
    walker = PacketWalker(collect_ids=True)
    held_before, CaptureTransport.pauses = server.hub.stats.publishers_held, 0
    gc.collect()
    gc.freeze()
    delivered = 0
    client_cpu = 0.0
    clock = time.process_time
    if profile is not None:
        profile.enable()
    start = clock()
    while delivered < n:
        for p in pubs:
            t = clock()
            data = p.refill()
            client_cpu += clock() - t
            if data:
                p.proto.data_received(data)
        await asyncio.sleep(0)  # the server's flushes (call_soon) and held releases run
        t = clock()
        walker.feed(sub_out.take())
        acks = encode_pubacks(walker.publish_ids)
        delivered += len(walker.publish_ids) // 2
        walker.publish_ids.clear()
        client_cpu += clock() - t
        if acks:
            sub.data_received(acks)
        await asyncio.sleep(0)
    total = clock() - start
    if profile is not None:
        profile.disable()
    held = server.hub.stats.publishers_held - held_before
    HOLDS[:] = [held * 1000 / delivered, CaptureTransport.pauses * 1000 / delivered]
    # nothing refused: backpressure held the publishers instead
    assert server.hub.stats.queue_overflow == 0, server.hub.stats.queue_overflow
    return (total - client_cpu) / delivered * 1e6, client_cpu / delivered * 1e6


def main() -> None:
    argv = sys.argv[1:]
    while "--set" in argv:
        at = argv.index("--set")
        name, _, value = argv[at + 1].partition("=")
        EXTRA[name] = value
        del argv[at : at + 2]
    args = [a for a in argv if not a.startswith("--")]
    n = int(args[0]) if args else 50000
    profile = cProfile.Profile() if "--profile" in argv else None
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    server_us, client_us = asyncio.run(measure(n, profile))
    print(
        f"{server_us:.2f} us of server CPU per delivered QoS 1 message "
        f"(load generator {client_us:.2f} us, taken off; n={n}); per 1000 delivered: "
        f"{HOLDS[0]:.1f} publisher holds, {HOLDS[1]:.1f} socket pauses"
    )
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(45)


if __name__ == "__main__":
    main()
