"""CPU per message of engine=redis' receive side: a node handing the cluster's messages
to its hub, in-process, against a private redis-server.

    .venv/bin/python bench/micro_redis_fanin.py [--messages 120000] [--topics 200]

The shape of `pushwire bench cluster --only fanin` on `--workers 2`: another node
published `--messages` QoS 0 messages over `--topics` topics (one per publisher); this
node's fan-out reader hands them to its hub (the code of the running server: Hub, the
message log with the server's settings, MQT sessions on an in-memory transport). Two
nodes are measured:

- `subscriber`: an MQTT subscriber on `bench/fanin/+` is connected here (the worker that
  delivers the fan-in): decode, route, log, encode and write every message;
- `own`: the subscriber's node again, the messages published by its own publishers (read
  back as the node's own Message objects, not decoded);
- `peer`: nobody here subscribes (the other worker): whatever the node still does per
  message it reads.

Reported: pushwire CPU per message (`time.process_time`, the cyclic GC included: the
heap is frozen after set-up as the server's is), median of the rounds. The entries are
read from Redis first, so the figure is the node's work alone. Run the code of another
tree with PYTHONPATH=<tree>/src (settings it does not have are left out).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from private_redis import private_redis
from pushwire.bench.loadgen import PacketWalker
from pushwire.config import Settings
from pushwire.core.message import Message
from pushwire.core.pacing import PacedDelivery
from pushwire.engines.redis import keys
from pushwire.engines.redis.client import connect
from pushwire.engines.redis.history import PublishBatcher
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.packets import PROTOCOL_V311, Connect, Subscribe, SubscriptionOptions
from pushwire.mqtt.protocol import MQTTServerProtocol
from pushwire.server import PushwireServer

sys.path.insert(0, str(Path(__file__).parent))
from micro_connect import MemoryTransport

HOST = "127.0.0.1"
ROUNDS = 3
READ_COUNT = 16  # fan-out entries per handle_entries call, as the reader's XREAD


class CaptureTransport(MemoryTransport):
    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writelines(self, data: Any) -> None:
        self.out.extend(data)

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data


async def publish_elsewhere(
    url: str, messages: int, topics: int, node: str = "node-x"
) -> dict[int, list[Message]]:
    """Another node's messages (or, with this node's id, its own): into the fan-out stream
    through its publish script. Returns the batcher's own chunks by batch key."""
    client = connect(url, 5.0)
    batcher = PublishBatcher(client, node, 1_000_000, 5.0, lambda t: 1000, 0, 1 << 30)
    names = [f"bench/fanin/{i:03d}" for i in range(topics)]
    payload = bytes(64)
    for sent in range(0, messages, 1000):
        for i in range(sent, min(messages, sent + 1000)):
            batcher.add(Message(names[i % topics], payload))
        await batcher.sync()
    await client.aclose()
    return batcher.sent


async def one_round(
    url: str,
    data_dir: Path,
    messages: int,
    topics: int,
    with_sub: bool,
    log_memory: str,
    own: bool = False,
) -> float:
    client = connect(url, 5.0)
    await client.flushall()
    fields = Settings.model_fields
    options: dict[str, Any] = {
        "engine": "redis",
        "redis_url": url,
        "data_dir": str(data_dir),
        "sys_interval": 0,
        "connect_rate_per_client_id": 0,
        "connection_rate_per_ip": 0,
        "redis_log_memory": log_memory,
    }
    options = {k: v for k, v in options.items() if k in fields}
    server = PushwireServer(Settings.model_validate(options))
    engine: Any = server.engine
    await engine.open()
    await server.auth.start()
    await server.log.restore()
    server.hub.broker = engine
    # what the server hands the reader (server.py start_fanout)
    deliver = PacedDelivery(server.hub, server.settings.fanout_deliveries_per_turn)
    bind = getattr(engine, "bind_pass_by", None)
    if bind is not None:
        bind(deliver.pass_by)
    reader = engine.reader
    reader.last_position = await reader.position()
    out: CaptureTransport | None = None
    if with_sub:
        proto = MQTTServerProtocol(server.mqtt)
        out = CaptureTransport()
        proto.connection_made(out)  # type: ignore[arg-type]
        proto.data_received(encode(Connect("sub", PROTOCOL_V311, keepalive=60), PROTOCOL_V311))
        for _ in range(200):  # the client id claim in Redis
            await asyncio.sleep(0.01)
            if out.out:
                break
        proto.data_received(
            encode(Subscribe(1, [("bench/fanin/+", SubscriptionOptions(qos=0))]), PROTOCOL_V311)
        )
        await asyncio.sleep(0.05)
        out.take()
    if own:  # this node's publishers: their Message objects are handed back, not decoded
        reader.own_batches = await publish_elsewhere(url, messages, topics, reader.node_id)
    else:
        await publish_elsewhere(url, messages, topics)
    entries: Any = await client.xrange(keys.FANOUT, keys.stream_id(reader.last_position + 1), "+")
    walker = PacketWalker()
    delivered = 0
    gc.collect()
    gc.freeze()
    clock = time.process_time
    spent = 0.0
    for at in range(0, len(entries), READ_COUNT):
        started = clock()
        reader.handle_entries([(keys.FANOUT, entries[at : at + READ_COUNT])], deliver)
        await deliver.drained()
        await asyncio.sleep(0)  # the connection's flush (call_soon)
        spent += clock() - started
        if out is not None:
            walker.feed(out.take())
            delivered = walker.publishes
    gc.unfreeze()
    if with_sub:
        assert delivered == messages, (delivered, messages)
    await client.aclose()
    return spent / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=120_000)
    parser.add_argument("--topics", type=int, default=200)
    parser.add_argument(
        "--log-memory", choices=("listened", "routed"), default="listened", help="redis_log_memory"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp)) as url:
        figures: dict[str, list[float]] = {"subscriber": [], "own": [], "peer": []}
        for n in range(ROUNDS):
            for name in figures:
                data_dir = Path(tmp) / f"{name}{n}"
                figures[name].append(
                    uvloop.run(
                        one_round(
                            url,
                            data_dir,
                            args.messages,
                            args.topics,
                            name != "peer",
                            args.log_memory,
                            name == "own",
                        )
                    )
                )
    print(f"{args.messages} messages over {args.topics} topics, median of {ROUNDS}")
    for name, values in figures.items():
        print(f"  {name:10} node: {statistics.median(values):6.2f} us per message")


if __name__ == "__main__":
    main()
