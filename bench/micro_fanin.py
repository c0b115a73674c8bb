"""CPU per QoS 0 fan-in message through the Python half, in-process (no sockets), in the
shape of `pushwire bench mqtt --only fanin`: 8 publishers (3.1.1, 64-byte payload), each
blasting QoS 0 PUBLISH to its own topic `bench/fanin/NNN` in full reads, and one subscriber
of `bench/fanin/+` (QoS 0), on a real server (memory engine, the message log observing
every message as in `pushwire serve`). A publisher is fed its next read only while the
server reads from it (the protocol pauses and resumes its transport, as a socket would),
one read per publisher per loop turn at most, each from a callback of its own.

    .venv/bin/python bench/micro_fanin.py [--messages N] [--read BYTES] [--profile]

Prints the server's process CPU time per message delivered to the subscriber. To compare
two versions, run it with PYTHONPATH at the other src/ (and this file from either tree).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import time

from micro_fanout import client
from pushwire.bench.loadgen import encode_publish
from pushwire.config import Settings
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.packets import PROTOCOL_V311, Subscribe, SubscriptionOptions
from pushwire.mqtt.protocol import READ_CHUNK_BYTES
from pushwire.server import PushwireServer

PUBLISHERS = 8
PAYLOAD = 64


async def measure(messages: int, read_bytes: int, profile: cProfile.Profile | None) -> float:
    """Server CPU µs per message delivered to the subscriber."""
    server = PushwireServer(
        Settings.model_validate(
            {"memory": True, "connect_rate_per_client_id": 0, "connection_rate_per_ip": 0}
        )
    )
    await server.engine.open()
    await server.auth.start()
    sub, sub_out = client(server, "sub")
    sub.data_received(
        encode(Subscribe(1, [("bench/fanin/+", SubscriptionOptions(qos=0))]), PROTOCOL_V311)
    )
    pubs = []
    for i in range(PUBLISHERS):
        packet = encode_publish(f"bench/fanin/{i:03d}", bytes(PAYLOAD), 0, 0)
        pubs.append((*client(server, f"pub{i}"), packet * (read_bytes // len(packet))))
    out_packet = len(packet)  # every topic has the same length: the same packet size out
    await asyncio.sleep(0.01)
    base = sub_out.written
    gc.collect()
    gc.freeze()
    clock = time.process_time
    loop = asyncio.get_running_loop()
    if profile is not None:
        profile.enable()
    start = clock()
    delivered = 0
    while delivered < messages:
        for proto, transport, read in pubs:
            if transport.reading:
                loop.call_soon(proto.data_received, read)
        await asyncio.sleep(0)  # the reads run
        await asyncio.sleep(0)  # their flushes and deferred rests
        delivered = (sub_out.written - base) // out_packet
    total = clock() - start
    if profile is not None:
        profile.disable()
    return total / delivered * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400_000)
    parser.add_argument("--read", type=int, default=READ_CHUNK_BYTES)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    us = asyncio.run(measure(args.messages, args.read, profile))
    print(
        f"{us:.3f} us of server CPU per fan-in message ({PUBLISHERS} publishers -> 1 "
        f"subscriber, reads of {args.read} bytes, n={args.messages})"
    )
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(35)


if __name__ == "__main__":
    main()
