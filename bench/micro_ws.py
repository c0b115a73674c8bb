"""CPU per WebSocket frame, in-process (no sockets): pushwire's RFC 6455 codec
(http/websocket_codec.py) against wsproto, the sans-I/O library the choice was between.

    .venv/bin/python bench/micro_ws.py [FRAMES]       (default 20000; a few seconds)

Three costs, each the median of several interleaved rounds, microseconds per frame:
- parse: a masked client text frame of a typical request (~90 bytes), fed one per
  `feed` / `receive_data` call, until the whole message comes out;
- encode: a server text frame of a typical message (~200 bytes);
- fan-out: what one more subscriber of a published message costs. pushwire frames it once
  (cached on the log entry) and writes the same bytes to every subscriber; wsproto's
  `Connection.send` builds the frame per connection, so it is called per subscriber.
Then the Python of one delivery on the native path (`deliver`): a publish to 10,000 live
subscriptions, the reader's callback to the sink's `send`, without the kernel's write.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import cast

from wsproto.connection import Connection, ConnectionType
from wsproto.events import Message as WsMessage
from wsproto.events import TextMessage

from pushwire.core.log import LATEST, MessageLog
from pushwire.core.message import Message as LogMessage
from pushwire.engines.memory import MemoryEngine
from pushwire.http.delivery_tally import WalkTally
from pushwire.http.reader import StreamReader
from pushwire.http.state import HttpStats
from pushwire.http.websocket import NativeWebSocket, NativeWsReader
from pushwire.http.websocket_codec import FrameParser, Message, text_frame
from pushwire.http.ws import _Sub, _WsFormat

ROUNDS = 5
REQUEST = b'{"type":"publish","topic":"sensors/kitchen/t","payload":"21.5","ref":"r-000001"}'
MESSAGE = (
    b'{"type":"message","sub":"s","id":123456,"topic":"sensors/kitchen/t",'
    b'"time":1764190000.123,"epoch":"3f2a9c1d","payload":"21.5 degrees, humidity 40 %, '
    b'battery 87 %, signal -67 dBm, firmware 1.4.2"}'
)


def masked(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + body


def per_frame(fn: Callable[[int], None], n: int) -> float:
    t0 = time.process_time()
    fn(n)
    return (time.process_time() - t0) / n * 1e6


def ours_parse(n: int) -> None:
    frame = masked(REQUEST)
    parser = FrameParser(1 << 20)
    for _ in range(n):
        (event,) = parser.feed(frame)
        assert isinstance(event, Message) and event.text is not None


def wsproto_parse(n: int) -> None:
    frame = masked(REQUEST)
    conn = Connection(ConnectionType.SERVER)
    for _ in range(n):
        conn.receive_data(frame)
        for event in conn.events():
            assert isinstance(event, WsMessage)


def ours_encode(n: int) -> None:
    for _ in range(n):
        text_frame(MESSAGE)


def wsproto_encode(n: int) -> None:
    conn = Connection(ConnectionType.SERVER)
    text = MESSAGE.decode()
    for _ in range(n):
        conn.send(TextMessage(data=text))


def ours_fanout(n: int) -> None:
    shared = text_frame(MESSAGE)  # once per message
    out = []
    for _ in range(n):
        out.append(shared)  # what each subscriber's transport.write gets


def wsproto_fanout(n: int) -> None:
    conns = [Connection(ConnectionType.SERVER) for _ in range(64)]
    text = MESSAGE.decode()
    out = []
    for i in range(n):
        out.append(conns[i & 63].send(TextMessage(data=text)))


class _Sink:
    """Stands for the connection: `send` is where `transport.write` would be."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def send(self, data: bytes) -> None:
        self.n += 1

    def close(self, reason: str) -> None:
        pass

    def writable(self) -> bool:
        return True


async def deliver(n: int) -> float:
    """Python per delivery of one publish to `n` live JSON WebSocket subscriptions (the
    reader's callback, the ACL-free visibility check, the framed bytes from the entry's
    cache, the sink call), without the kernel's socket write."""
    log = MessageLog(MemoryEngine())
    stats = HttpStats()
    sinks = []
    for _ in range(n):
        sink = _Sink()
        reader = StreamReader(log, "t", sink, _WsFormat(_Sub("s", "t"), True), stats)
        reader.open(LATEST)
        await reader.replay(100)
        sinks.append(sink)
    t0 = time.process_time()
    for _ in range(10):
        log.append(LogMessage("t", b"hello"))
    dt = time.process_time() - t0
    assert all(s.n == 10 for s in sinks)
    return dt / n / 10 * 1e6


class _Transport:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> None:
        self.n += 1


class _Conn(_Sink):
    """Stands for a `NativeWebSocket` as its `NativeWsReader` sees it: the state, the log,
    the caller, the pause and closing flags and the transport (whose `write` counts)."""

    __slots__ = ("caller", "closing", "door", "log", "paused", "state", "transport")

    def __init__(self, state: SimpleNamespace, log: MessageLog, door: SimpleNamespace) -> None:
        super().__init__()
        self.state, self.log, self.caller, self.door = state, log, None, door
        self.paused = self.closing = False
        self.transport = _Transport()


async def deliver_native(n: int) -> float:
    """`deliver` through the owned protocol's reader (`NativeWsReader`): every subscriber
    after the first takes its one-method path to `transport.write`."""
    log = MessageLog(MemoryEngine())
    settings = SimpleNamespace(stream_buffer=10_000, stream_buffer_bytes=0)
    state = SimpleNamespace(settings=settings, stats=HttpStats())
    door = SimpleNamespace(tally=WalkTally(state.stats, "ws", log))
    conns = []
    for _ in range(n):
        conn = _Conn(state, log, door)
        native = cast(NativeWebSocket, conn)
        reader = NativeWsReader(native, "t", _WsFormat(_Sub("s", "t"), True))
        reader.open(LATEST)
        await reader.replay(100)
        conns.append(conn)
    t0 = time.process_time()
    for _ in range(10):
        log.append(LogMessage("t", b"hello"))
    dt = time.process_time() - t0
    assert all(c.n + c.transport.n == 10 for c in conns)
    return dt / n / 10 * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    pairs = {
        "parse a client frame": (ours_parse, wsproto_parse),
        "encode a server frame": (ours_encode, wsproto_encode),
        "fan-out, per subscriber": (ours_fanout, wsproto_fanout),
    }
    results: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in pairs}
    for _ in range(ROUNDS):
        for name, (ours, theirs) in pairs.items():
            results[name][0].append(per_frame(ours, n))
            results[name][1].append(per_frame(theirs, n))
    title = f"us per frame (median of {ROUNDS})"
    print(f"{title:<28} {'pushwire':>9} {'wsproto':>9} {'ratio':>7}")
    for name, (ours_t, theirs_t) in results.items():
        a, b = statistics.median(ours_t), statistics.median(theirs_t)
        print(f"{name:<28} {a:>9.2f} {b:>9.2f} {b / a:>6.1f}x")
    general: list[float] = []
    native: list[float] = []
    for _ in range(ROUNDS):
        general.append(asyncio.run(deliver(10_000)))
        native.append(asyncio.run(deliver_native(10_000)))
    print(f"deliver, N=10,000, Python   {statistics.median(general):>9.2f} us per delivery")
    print(f"  NativeWsReader            {statistics.median(native):>9.2f} us per delivery")


if __name__ == "__main__":
    main()
