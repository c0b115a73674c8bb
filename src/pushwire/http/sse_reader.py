"""The reader of an SSE stream on the owned HTTP protocol: a fan-out's per-stream Python
cut down to one method and one `transport.write` (issue 10, SSE N = 10,000 p50).

A publish wakes every reader of its filter in one walk (core/log.py `_wake`); the k-th
stream's bytes leave after k of these calls, so each microsecond of Python per stream is
~10 ms on the 10,000th. The general `StreamReader` path goes notify -> _deliver ->
_visible -> Caller.can_receive -> SseFormat.message -> entry_sse -> _SseSink.send ->
StreamCycle.send (~1.0 us per stream, bench/micro_sse.py); here a live message whose SSE
event is already on the entry (every stream of a fan-out after the first) takes the same
checks inline: the id against the backlog's, expiry, the caller's ACL through its
`Permissions` (per-topic cache), then the write, counted per walk (http/delivery_tally.py;
~0.5 us in all).

Everything else takes the general path unchanged: held while replaying or while the
transport is paused (backpressure), the first stream of a message (which encodes it), a
closed stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pushwire.core.log import LogEntry
from pushwire.http.delivery_tally import WalkTally
from pushwire.http.reader import _LIVE, Sink, StreamReader
from pushwire.http.sse import SseFormat

if TYPE_CHECKING:
    from pushwire.core.permissions import Permissions
    from pushwire.http.auth import Caller
    from pushwire.http.cycles import StreamCycle
    from pushwire.http.state import HttpState


class WriteState(Protocol):
    """The connection as the reader sees it: paused by the transport's high-water mark."""

    write_paused: bool


class BeatSink(Protocol):
    """The stream's `Sink`, with the flag its heartbeat timer reads (http/streams.py)."""

    sent: bool


class StreamSink(BeatSink, Sink, Protocol):
    """`_SseSink` (http/streams.py): a `Sink`, its heartbeat flag and its request's cycle."""

    cycle: StreamCycle


class SseLiveReader(StreamReader):
    """A `StreamReader` whose live messages go straight to the transport (module docstring)."""

    __slots__ = ("conn", "perms", "stream_sink", "tally", "transport")

    def __init__(
        self,
        state: HttpState,
        flt: str,
        sink: Sink,
        fmt: SseFormat,
        caller: Caller | None,
        conn: WriteState,
        transport: asyncio.Transport,
        beat: BeatSink,
        tally: WalkTally,
    ) -> None:
        s = state.settings
        super().__init__(
            state.log,
            flt,
            sink,
            fmt,
            state.stats,
            caller=caller,
            limit=s.stream_buffer,
            max_bytes=s.stream_buffer_bytes,
        )
        self.conn = conn
        self.transport = transport
        self.stream_sink = beat
        self.tally = tally
        self.perms: Permissions | None = caller.permissions if caller is not None else None

    def notify(self, entry: LogEntry) -> None:
        if self._phase != _LIVE or self.pending is not None or self.conn.write_paused:
            super().notify(entry)  # held, or dropped once closed
            return
        if entry.id <= self.last:
            return  # the backlog had it
        wire = entry.wire
        event: bytes | None = wire.get("sse") if wire is not None else None
        if event is None:
            self._deliver(entry)  # the first stream of this message: encodes it
            return
        self.last = entry.id
        message = entry.message
        if message.expires_at is not None and message.expired():
            return
        perms = self.perms
        if perms is not None and not perms.can_receive(message.topic):
            return
        self.stream_sink.sent = True
        transport = self.transport
        if not transport.is_closing():
            transport.write(event)
        self.tally.add(entry)  # the counters, in bulk (http/delivery_tally.py)


def live_reader(
    state: HttpState, flt: str, caller: Caller | None, sink: StreamSink, tally: WalkTally
) -> Callable[[SseFormat], StreamReader]:
    """`sse.open_sse`'s `make_reader` for a stream of the owned protocol: `sink` is its
    `_SseSink` (http/streams.py), whose cycle holds the connection and the transport;
    `tally`: the listener's SSE delivery counter (one for all its streams)."""
    cycle = sink.cycle
    transport = cycle.transport
    assert transport is not None  # the connection is made: its stream just started

    def make(fmt: SseFormat) -> StreamReader:
        return SseLiveReader(state, flt, sink, fmt, caller, cycle.proto, transport, sink, tally)

    return make
