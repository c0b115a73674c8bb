"""CPU per message of engine=redis' publish path, in-process, against a private redis-server.

    .venv/bin/python bench/micro_redis_publish.py [--messages 60000] [--topics 200]

The shape of `pushwire bench cluster`'s QoS 0 fan-in: every loop turn, `--turn` messages
spread over `--topics` topics (one per publisher) go to the engine's PublishBatcher (the
script that writes history, retained hash and fan-out); this node's fan-out reader hands
its own messages back, and a second reader with another node id decodes them all as a
peer node does. Reported per message (median of the rounds):
- Redis CPU (`INFO cpu` used_cpu_user + sys of the redis-server, delta / messages);
- pushwire CPU of publishing plus reading its own messages back (`time.process_time`);
- pushwire CPU of a peer node's reader (decoding every message from the fan-out stream);
- what an acknowledgement waits for, one message at a time (median wall time): the
  script's answer, then this node's fan-out reader passing the message's position.
The redis-server (free 127.0.0.1 port, temporary directory, `appendonly yes`,
`appendfsync everysec` so that a busy disk does not hide CPU) is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from private_redis import private_redis
from pushwire.core.message import Message
from pushwire.engines.redis import keys
from pushwire.engines.redis.broker import FanoutReader
from pushwire.engines.redis.client import connect
from pushwire.engines.redis.history import PublishBatcher

HOST = "127.0.0.1"
ROUNDS = 3
LATENCY_SAMPLES = 200
WAITS: list[tuple[float, float]] = []


async def redis_cpu(client: Any) -> float:
    info: Any = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def one_round(
    url: str, messages: int, topics: int, turn: int, payload: bytes
) -> tuple[float, float, float]:
    client = connect(url, 5.0)
    reader_client = connect(url, 5.0, blocking_reads=1.0)
    peer_client = connect(url, 5.0, blocking_reads=1.0)
    await client.flushall()
    batcher = PublishBatcher(client, "node-a", 10_000, 5.0, lambda t: 1000, 0, 1 << 30)
    own = FanoutReader(reader_client, "node-a", 1.0)
    own.own_batches = batcher.sent
    seen = [0]

    def deliver(m: Message) -> None:
        seen[0] += 1

    own.start(0, deliver)
    names = [f"bench/fanin/{i:03d}" for i in range(topics)]
    redis_before = await redis_cpu(client)
    cpu_before = time.process_time()
    sent = 0
    while sent < messages:
        for i in range(turn):
            batcher.add(Message(names[(sent + i) % topics], payload))
        sent += turn
        if batcher.waiting > 4 * turn:
            await batcher.sync()
        await asyncio.sleep(0)
    await batcher.sync()
    await own.reached(batcher.accepted_position)
    publish_cpu = time.process_time() - cpu_before
    redis_used = await redis_cpu(client) - redis_before
    # what an ack pays for waiting on this node's fan-out read (RedisEngine.sync: the
    # script's answer, then the reader passing the position), one message at a time
    script_wait: list[float] = []
    read_wait: list[float] = []
    for _ in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        batcher.add(Message(names[0], payload))
        await batcher.sync()
        answered = time.perf_counter()
        await own.reached(batcher.accepted_position)
        script_wait.append(answered - started)
        read_wait.append(time.perf_counter() - answered)
    WAITS.append((statistics.median(script_wait), statistics.median(read_wait)))
    await own.stop()
    # a peer node: parses and decodes every message of the fan-out entries (fetched
    # first, so the figure is the parsing alone)
    entries: Any = await client.xrange(keys.FANOUT, "-", "+")
    peer = FanoutReader(peer_client, "node-b", 1.0)
    peer_seen = [0]

    def peer_deliver(m: Message) -> None:
        peer_seen[0] += 1

    cpu_before = time.process_time()
    peer.handle_entries([(keys.FANOUT, entries)], peer_deliver)
    peer_cpu = time.process_time() - cpu_before
    total = sent + LATENCY_SAMPLES
    assert seen[0] == total and peer_seen[0] == total, (seen[0], peer_seen[0], total)
    for c in (client, reader_client, peer_client):
        await c.aclose()
    return redis_used / sent * 1e6, publish_cpu / sent * 1e6, peer_cpu / sent * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--topics", type=int, default=200)
    parser.add_argument("--turn", type=int, default=1000, help="messages added per loop turn")
    parser.add_argument("--payload", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp)) as url:
        rows = [
            uvloop.run(one_round(url, args.messages, args.topics, args.turn, bytes(args.payload)))
            for _ in range(ROUNDS)
        ]
    redis_us, publish_us, peer_us = (statistics.median(col) for col in zip(*rows, strict=True))
    print(
        f"{args.messages} messages over {args.topics} topics, {args.turn} per loop turn,"
        f" median of {ROUNDS}"
    )
    print(f"  redis-server CPU per message:               {redis_us:6.2f} us")
    print(f"  pushwire publish + own read-back per message: {publish_us:6.2f} us")
    script_ms = statistics.median(w[0] for w in WAITS) * 1e3
    read_ms = statistics.median(w[1] for w in WAITS) * 1e3
    print(
        f"  ack wait, one message: script answer {script_ms:.3f} ms, then own read {read_ms:.3f} ms"
    )
    print(f"  pushwire peer node's read per message:       {peer_us:6.2f} us")


if __name__ == "__main__":
    main()
