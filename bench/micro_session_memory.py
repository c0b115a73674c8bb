"""Bytes per idle clean-session MQTT connection, in-process (no sockets): N
`MQTTServerProtocol`s of a real server (memory engine) are each given a CONNECT (3.1.1,
clean, anonymous, keepalive 60) through an in-memory transport and left connected, as
clients of a connect storm that then sit idle (or only publish).

    .venv/bin/python bench/micro_session_memory.py [N] [--rss]   (default N=2000; a second)

Prints the Python heap held per connection, from tracemalloc (what the protocol, the
connection machine and the session allocated; deterministic, so one run is enough), and
the part of it held by `pushwire/core/session.py`. With --rss it prints the growth of the
process's resident set per connection instead (tracemalloc off: it adds its own bytes per
block); noisier, since pymalloc keeps arenas. What it leaves out is the kernel's socket
buffers and the transport of the event loop. To compare two versions, run it with
PYTHONPATH at the other tree's src/.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc

from micro_connect import MemoryTransport
from pushwire.config import Settings
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.packets import PROTOCOL_V311, Connect
from pushwire.mqtt.protocol import MQTTServerProtocol
from pushwire.server import PushwireServer


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def measure(n: int, rss: bool) -> None:
    settings = Settings.model_validate(
        {"memory": True, "connect_rate_per_client_id": 0, "connection_rate_per_ip": 0}
    )
    server = PushwireServer(settings)
    await server.engine.open()
    await server.auth.start()
    broker = server.mqtt
    connects = [
        encode(Connect(f"m{i}", PROTOCOL_V311, clean_start=True, keepalive=60), PROTOCOL_V311)
        for i in range(n)
    ]
    held: list[MQTTServerProtocol] = []

    def connect(i: int) -> None:
        proto = MQTTServerProtocol(broker)
        proto.connection_made(MemoryTransport())  # type: ignore[arg-type]
        proto.data_received(connects[i])
        held.append(proto)

    # warm up: one connection and its disconnect, so lazily built shared state is not counted
    warm = MQTTServerProtocol(broker)
    warm.connection_made(MemoryTransport())  # type: ignore[arg-type]
    warm.data_received(
        encode(Connect("warm", PROTOCOL_V311, clean_start=True, keepalive=60), PROTOCOL_V311)
    )
    warm.connection_lost(None)
    await asyncio.sleep(0)
    gc.collect()
    if rss:
        before = rss_bytes()
        for i in range(n):
            connect(i)
        await asyncio.sleep(0)
        gc.collect()
        grown = rss_bytes() - before
        print(f"{grown / n:.0f} bytes of RSS per idle clean-session connection (n={n})")
    else:
        tracemalloc.start(1)
        start = tracemalloc.take_snapshot()
        for i in range(n):
            connect(i)
        await asyncio.sleep(0)
        gc.collect()
        end = tracemalloc.take_snapshot()
        tracemalloc.stop()
        diff = end.compare_to(start, "filename")
        total = sum(d.size_diff for d in diff)
        session = sum(d.size_diff for d in diff if d.traceback[0].filename.endswith("session.py"))
        print(
            f"{total / n:.0f} bytes of Python heap per idle clean-session connection, "
            f"{session / n:.0f} of them allocated in core/session.py (n={n})"
        )
    assert len(server.hub.sessions) >= n
    for proto in held:
        proto.connection_lost(None)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 2000
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(measure(n, "--rss" in sys.argv))


if __name__ == "__main__":
    main()
