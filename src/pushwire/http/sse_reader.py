"""The reader of an SSE stream on the owned HTTP protocol: a fan-out's per-stream Python
cut down to one method and one `transport.write` (issue 10, SSE N = 10,000 p50).

A publish wakes every reader of its filter in one walk (core/log.py `_wake`); the k-th
stream's bytes leave after k of these calls, so each microsecond of Python per stream is
~10 ms on the 10,000th. The general `StreamReader` path goes notify -> _deliver ->
_visible -> Caller.can_receive -> SseFormat.message -> entry_sse -> _SseSink.send ->
StreamCycle.send (~1.0 us per stream, bench/micro_sse.py); here a live message whose SSE
event is already on the entry (every stream of a fan-out after the first) takes the same
checks inline: the id against the backlog's, expiry, the caller's ACL (asked of its
`Permissions` once per run of streams sharing them, `WalkTally.may_receive`), then the
write, counted per walk (http/delivery_tally.py).

At N = 10,000 the streams' objects do not fit the CPU's caches, so each per-stream object
a delivery touches is a cache miss: this path reads the reader and its transport only (not
the connection, the cycle or the sink: the transport's buffer stands for the connection's
`write_paused`, and the heartbeat flag is the reader's own), ~0.3 us of Python per
delivery against ~4 us of the kernel's loopback write (bench/README.md, f-sse).

Everything else takes the general path unchanged: held while replaying or while the
transport has bytes waiting (paused: backpressure), the first stream of a message (which
encodes it), a closed stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pushwire.core.log import LogEntry
from pushwire.http.delivery_tally import CLOCK_EVERY, WalkTally
from pushwire.http.reader import _LIVE, Sink, StreamReader
from pushwire.http.sse import SseFormat

if TYPE_CHECKING:
    from pushwire.core.permissions import Permissions
    from pushwire.http.auth import Caller
    from pushwire.http.cycles import StreamCycle
    from pushwire.http.state import HttpState


_LAST_OF_CHUNK = CLOCK_EVERY - 1  # `WalkTally.add` observes at the chunk's last delivery


class StreamSink(Sink, Protocol):
    """`_SseSink` (http/streams.py): a `Sink` and its request's cycle (which holds the
    transport)."""

    cycle: StreamCycle


class SseLiveReader(StreamReader):
    """A `StreamReader` whose live messages go straight to the transport (module docstring)."""

    __slots__ = ("perms", "sent", "tally", "transport")

    def __init__(
        self,
        state: HttpState,
        flt: str,
        sink: Sink,
        fmt: SseFormat,
        caller: Caller | None,
        transport: asyncio.Transport,
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
        self.transport = transport
        self.tally = tally
        self.perms: Permissions | None = caller.permissions if caller is not None else None
        self.sent = False  # wrote a live message since the last heartbeat tick

    def notify(self, entry: LogEntry) -> None:
        transport = self.transport
        # Bytes still in the transport's buffer (a paused transport has some): the general
        # path, which holds the message while paused and appends it otherwise; either way
        # the stream's bytes stay in order. The connection's `write_paused` is not read
        # here: one object less per delivery (each is a cache miss at N = 10,000).
        if self._phase != _LIVE or self.pending is not None or transport.get_write_buffer_size():
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
        tally = self.tally
        perms = self.perms
        if perms is not None and not tally.may_receive(entry, perms):
            return
        self.sent = True
        if not transport.is_closing():
            transport.write(event)
        # the counters, in bulk (http/delivery_tally.py): `tally.add` inlined for a
        # delivery within the walk's current chunk
        if entry is tally.entry and tally.armed and tally.n < _LAST_OF_CHUNK:
            tally.n += 1
        else:
            tally.add(entry)


def live_reader(
    state: HttpState, flt: str, caller: Caller | None, sink: StreamSink, tally: WalkTally
) -> Callable[[SseFormat], StreamReader]:
    """`sse.open_sse`'s `make_reader` for a stream of the owned protocol: `sink` is its
    `_SseSink` (http/streams.py), whose cycle holds the transport; `tally`: the listener's
    SSE delivery counter (one for all its streams)."""
    transport = sink.cycle.transport
    assert transport is not None  # the connection is made: its stream just started

    def make(fmt: SseFormat) -> SseLiveReader:
        return SseLiveReader(state, flt, sink, fmt, caller, transport, tally)

    return make
