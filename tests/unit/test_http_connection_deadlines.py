"""An HTTP connection's head and keep-alive deadlines (http/connection.py `HttpProtocol`) are
entries in the loop's shared deadline buckets (http/longpoll_deadlines.py), not a loop timer
per connection: many connections share one timer; a head that does not complete in time
still gets its 408 and the close, never early; a kept-alive connection still idles out
after its last answer, never before; a closed connection leaves nothing behind. The real
protocol and routes on a plain asyncio loop; transports that keep what is written."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pushwire.config import Settings
from pushwire.core.hub import Hub
from pushwire.core.log import MessageLog
from pushwire.engines.memory import MemoryEngine
from pushwire.http import connection, cycles, longpoll_deadlines
from pushwire.http.connection import HttpProtocol
from pushwire.http.connection_deadlines import _HEAD
from pushwire.http.endpoints import hot_routes
from pushwire.http.server import HttpServer
from pushwire.http.state import HttpState


class Transport:
    """What HttpProtocol uses of an asyncio transport: keeps what is written."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.out: list[bytes] = []
        self.closed = False
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("127.0.0.1", self.port)
        if name == "sockname":
            return ("127.0.0.1", 8080)
        return default

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # as a real transport: connection_lost on a later loop turn
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def get_protocol(self) -> Any:
        return self.protocol


async def _noapp(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("no request here goes to the ASGI app")


def _server(head_timeout: float) -> tuple[HttpServer, Hub]:
    settings = Settings.model_validate({"http_max_listeners": 10**6})
    hub = Hub(MemoryEngine())
    log = MessageLog(hub.engine)
    hub.add_observer(log.observer)
    state = HttpState(hub, log, settings)
    server = HttpServer(
        _noapp,
        hot_routes(state),
        admission=None,
        head_timeout=head_timeout,
        max_request_line=8192,
        max_head=65536,
    )
    return server, hub


def _connect(server: HttpServer, port: int) -> tuple[HttpProtocol, Transport]:
    proto = server.protocol()
    transport = Transport(port)
    transport.protocol = proto
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto, transport


def _scheduled(loop: asyncio.AbstractEventLoop) -> int:
    """Timers scheduled on the (pure Python) asyncio loop, cancelled ones left out."""
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return sum(1 for handle in scheduled if not handle.cancelled())


async def _until(condition: Any, limit: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.005)


def test_many_connections_share_one_timer_and_a_slow_head_gets_its_408_never_early() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        server, _ = _server(head_timeout=0.2)
        started = loop.time()
        conns = [_connect(server, 10000 + i) for i in range(200)]
        # every connection's head deadline is armed, yet one loop timer waits for them all
        assert all(proto.deadline_kind == _HEAD for proto, _ in conns)
        assert _scheduled(loop) == 1
        # half of them send half a head; the other half a whole request (a publish)
        for i, (proto, _) in enumerate(conns):
            if i % 2:
                proto.data_received(b"GET /v1/poll/a HTTP/1.1\r\nhost: x\r\n")
            else:
                proto.data_received(
                    b"POST /v1/publish/a HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi"
                )
        await _until(lambda: all(t.closed for i, (_, t) in enumerate(conns) if i % 2))
        assert loop.time() - started >= 0.2
        for i, (_, transport) in enumerate(conns):
            if i % 2:
                assert transport.out[-1].startswith(b"HTTP/1.1 408 "), transport.out
            else:
                # answered, kept alive (5 s idle): not closed by the head deadline
                assert not transport.closed and transport.out[0].startswith(b"HTTP/1.1 201 ")
        for _, transport in conns:
            transport.close()
        await _until(lambda: not server.connections)
        # closed connections leave no entry (and nothing keeps them) in the buckets
        assert loop not in longpoll_deadlines._per_loop
        assert _scheduled(loop) == 0

    asyncio.run(run())


def test_a_kept_alive_connection_idles_out_after_its_last_answer_never_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection, "KEEP_ALIVE_TIMEOUT", 0.3)
    monkeypatch.setattr(cycles, "KEEP_ALIVE_TIMEOUT", 0.3)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server, _ = _server(head_timeout=10)
        proto, transport = _connect(server, 10000)
        publish = b"POST /v1/publish/a HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi"
        # requests every 0.1 s for 0.6 s: each moves the idle deadline, none closes it.
        # Checked on the loop's clock, so a loaded machine that sleeps past 0.3 s between
        # two requests (then the close is due) cannot fail it
        last = loop.time()
        answered = 0
        for i in range(6):
            if i and loop.time() - last < 0.3:
                assert not transport.closed, "closed before its idle deadline"
            if transport.closed:
                break
            proto.data_received(publish)
            last = loop.time()
            answered += 1
            await asyncio.sleep(0.1)
        assert len(transport.out) == answered
        await _until(lambda: transport.closed)
        assert loop.time() - last >= 0.3
        await _until(lambda: not server.connections)
        assert _scheduled(loop) == 0

    asyncio.run(run())


def test_a_deadline_moved_within_its_slot_stays_filed_and_an_earlier_one_moves() -> None:
    async def run() -> None:
        server, _ = _server(head_timeout=10)
        proto, transport = _connect(server, 10000)
        timers = proto.timers
        assert timers is not None
        slot = proto.slot
        bucket = timers.buckets[slot]
        # another deadline that falls in the same slot (earlier or later): nothing moves
        for when in ((slot - 0.9) * longpoll_deadlines.SLOT, slot * longpoll_deadlines.SLOT):
            proto.file(when)
            assert proto.slot == slot and timers.buckets[slot] is bucket and proto in bucket
        # an earlier slot: filed there (its old bucket would come due too late)
        proto.file((slot - 3) * longpoll_deadlines.SLOT)
        assert proto.slot == slot - 3 and proto not in timers.buckets.get(slot, {})
        transport.close()
        await _until(lambda: not server.connections)

    asyncio.run(run())
