"""CPU per QoS 1 message through the Python half, in-process (no sockets): a publisher
`MQTTServerProtocol` is fed batches of 32 QoS 1 PUBLISHes (3.1.1, 64-byte payload) and one
subscriber's protocol acks every delivery it was given, on a real server (memory engine).

    .venv/bin/python bench/micro_qos1.py [N]        (default N=50000; a few seconds)

Process CPU time per message, including this script's own client side (decoding what the
subscriber gets, encoding its PUBACKs). The publisher here is never paused by TCP, so what
backpressure holds grows (a socket would pause reading): long runs show costs that grow
with the held backlog. To compare two versions, run it with PYTHONPATH at the other src/.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time

from micro_connect import MemoryTransport
from pushwire.config import Settings
from pushwire.mqtt.codec import Decoder, encode
from pushwire.mqtt.packets import (
    PROTOCOL_V311,
    Connect,
    PubAck,
    Publish,
    Subscribe,
    SubscriptionOptions,
)
from pushwire.mqtt.protocol import MQTTServerProtocol
from pushwire.server import PushwireServer

BATCH = 32


class CaptureTransport(MemoryTransport):
    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)


def client(server: PushwireServer, client_id: str) -> tuple[MQTTServerProtocol, CaptureTransport]:
    proto = MQTTServerProtocol(server.mqtt)
    transport = CaptureTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.data_received(encode(Connect(client_id, PROTOCOL_V311, keepalive=60), PROTOCOL_V311))
    return proto, transport


async def measure(n: int) -> float:
    settings = Settings.model_validate(
        {"memory": True, "connect_rate_per_client_id": 0, "connection_rate_per_ip": 0}
    )
    server = PushwireServer(settings)
    await server.engine.open()
    await server.auth.start()
    sub, sub_out = client(server, "sub")
    sub.data_received(encode(Subscribe(1, [("t/#", SubscriptionOptions(qos=1))]), PROTOCOL_V311))
    pub, _ = client(server, "pub")
    await asyncio.sleep(0.01)
    decoder = Decoder(server_side=False)
    decoder.protocol_level = PROTOCOL_V311
    sub_out.out.clear()
    batches = [
        b"".join(
            encode(Publish("t/x", b"x" * 64, 1, False, False, (i * BATCH + j) % 65535 + 1), 4)
            for j in range(BATCH)
        )
        for i in range(64)
    ]
    gc.collect()
    gc.freeze()
    start = time.process_time()
    done = 0
    while done < n:
        pub.data_received(batches[(done // BATCH) % 64])
        await asyncio.sleep(0)
        data = b"".join(sub_out.out)
        sub_out.out.clear()
        acks = b"".join(
            encode(PubAck(p.packet_id), PROTOCOL_V311)
            for p in decoder.feed(data)
            if isinstance(p, Publish) and p.packet_id is not None
        )
        if acks:
            sub.data_received(acks)
        done += BATCH
        await asyncio.sleep(0)
    return (time.process_time() - start) / done * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(f"{asyncio.run(measure(n)):.1f} us of CPU per QoS 1 message (n={n})")


if __name__ == "__main__":
    main()
