"""CPU per MQTT connect cycle in the Python half, in-process (no sockets): a
`MQTTServerProtocol` of a real server (memory engine) is given CONNECT (3.1.1, clean,
anonymous) then DISCONNECT, in two reads as a client sends them, through an in-memory
transport, and closed.

    .venv/bin/python bench/micro_connect.py [N]        (default N=20000; a few seconds)

It measures process CPU time (not wall time), so other load on the machine matters less
than in `pushwire bench mqtt --only connect`; what it leaves out is the kernel's part of a
connection (accept, the CONNACK write, close(): about 20 us on loopback here). The start-up
heap is frozen first where `pushwire serve` does that (pushwire/heap.py). To compare two versions,
run it with PYTHONPATH pointing at the other tree's src/, interleaved.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import sys
import time
from typing import Any

from pushwire.config import Settings
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.packets import PROTOCOL_V311, Connect, Disconnect
from pushwire.mqtt.protocol import MQTTServerProtocol
from pushwire.server import PushwireServer

CLIENT_IDS = 2000


class MemoryTransport:
    """What the protocol uses of an asyncio transport; written bytes are dropped."""

    def __init__(self) -> None:
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def measure(n: int) -> float:
    settings = Settings.model_validate(
        {"memory": True, "connect_rate_per_client_id": 0, "connection_rate_per_ip": 0}
    )
    server = PushwireServer(settings)
    await server.engine.open()
    await server.auth.start()
    broker = server.mqtt
    connects = [
        encode(Connect(f"c{i}", PROTOCOL_V311, clean_start=True, keepalive=60), PROTOCOL_V311)
        for i in range(CLIENT_IDS)
    ]
    disconnect = encode(Disconnect(), PROTOCOL_V311)

    def cycle(i: int) -> None:
        proto = MQTTServerProtocol(broker)
        proto.connection_made(MemoryTransport())  # type: ignore[arg-type]
        # two reads, as over a socket: the client sends DISCONNECT once it has the CONNACK
        proto.data_received(connects[i % CLIENT_IDS])
        proto.data_received(disconnect)
        proto.connection_lost(None)

    for i in range(CLIENT_IDS):  # warm up: every client id once
        cycle(i)
    await asyncio.sleep(0)
    if importlib.util.find_spec("pushwire.heap") is not None:
        # as `pushwire serve` does after start (versions without pushwire/heap.py do not)
        gc.collect()
        gc.freeze()
    start = time.process_time()
    for i in range(n):
        cycle(i)
        if i % 100 == 0:
            await asyncio.sleep(0)  # let the deferred flushes and closes run
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(f"{asyncio.run(measure(n)):.1f} us of CPU per connect cycle (n={n})")


if __name__ == "__main__":
    main()
