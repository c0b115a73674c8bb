"""The SSE stream and the WebSocket sender, driven in-process (no sockets): the order of
registering, replaying the backlog and taking live messages loses and repeats nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pushwire.config import Settings
from pushwire.core.hub import Hub
from pushwire.core.log import ALL, MessageLog
from pushwire.core.message import Message
from pushwire.engines.memory import MemoryEngine
from pushwire.http.sse import _stream
from pushwire.http.state import HttpState
from pushwire.http.ws import WsConnection


def make_state(**settings: Any) -> HttpState:
    hub = Hub(MemoryEngine())
    log = MessageLog(hub.engine)
    hub.add_observer(log.observer)
    return HttpState(hub, log, Settings.model_validate(settings))


def payloads(chunk: bytes) -> list[str]:
    return [
        json.loads(line[len(b"data: ") :])["payload"]
        for line in chunk.split(b"\n")
        if line.startswith(b"data: ") and b'"payload"' in line
    ]


async def test_sse_messages_published_during_replay_come_once() -> None:
    state = make_state(sse_heartbeat=5)
    state.hub.publish(Message("t", b"old"))
    gen = _stream(state, "t", ALL, "all")
    hello = await gen.__anext__()  # registered with the log, backlog not read yet
    assert hello.startswith(b": pushwire ")
    state.hub.publish(Message("t", b"during"))  # lands in the live buffer AND the backlog
    backlog = await gen.__anext__()
    assert payloads(backlog) == ["old", "during"]
    state.hub.publish(Message("t", b"live"))
    live = await asyncio.wait_for(gen.__anext__(), 2)
    assert payloads(live) == ["live"]
    await gen.aclose()
    assert state.log.listener_count == 0


async def test_sse_overflow_ends_the_stream_with_a_close_event() -> None:
    state = make_state(sse_heartbeat=5, stream_buffer=2)
    gen = _stream(state, "t", ALL, "all")
    await gen.__anext__()  # hello
    for i in range(5):
        state.hub.publish(Message("t", b"%d" % i))

    async def collect() -> list[bytes]:
        return [f async for f in gen]

    frames = await asyncio.wait_for(collect(), 2)
    # the backlog read still delivers what the log holds, then the overflow is reported
    assert payloads(b"".join(frames)) == ["0", "1", "2", "3", "4"]
    assert frames[-1].startswith(b"event: close\n") and b'"overflow"' in frames[-1]
    assert state.log.listener_count == 0


class FakeWebSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def _until(cond: Any) -> None:
    for _ in range(200):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_ws_live_messages_wait_for_the_backlog_replay() -> None:
    state = make_state(ws_heartbeat=5)
    for i in range(3):
        state.hub.publish(Message("q", b"old%d" % i))
    ws = FakeWebSocket()
    conn = WsConnection(ws, state)  # type: ignore[arg-type]
    conn._subscribe({"type": "subscribe", "sub": "s", "filter": "q", "since": "all"})
    state.hub.publish(Message("q", b"live"))  # buffered before the replay has run
    sender = asyncio.ensure_future(conn._send_loop())
    try:
        await _until(lambda: len(ws.sent) >= 5)
        state.hub.publish(Message("q", b"later"))
        await _until(lambda: len(ws.sent) >= 6)
        await asyncio.sleep(0.02)
    finally:
        sender.cancel()
    assert ws.sent[0]["type"] == "subscribed"
    got = [(f["id"], f["payload"]) for f in ws.sent[1:]]
    assert got == [(1, "old0"), (2, "old1"), (3, "old2"), (4, "live"), (5, "later")]


async def test_ws_overflow_closes_4001() -> None:
    state = make_state(ws_heartbeat=5, stream_buffer=3)
    ws = FakeWebSocket()
    conn = WsConnection(ws, state)  # type: ignore[arg-type]
    conn._subscribe({"type": "subscribe", "sub": "s", "filter": "q"})
    for i in range(5):
        state.hub.publish(Message("q", b"%d" % i))
    run = asyncio.ensure_future(conn.run())
    await asyncio.wait_for(run, 2)
    assert ws.closed is not None and ws.closed[0] == 4001
    assert state.log.listener_count == 0
