"""`pushwire bench http`: HTTP publish and delivery, pushwire side by side with nginx + nchan.

Scenarios (see bench/README.md for the details):

* `publish`: concurrent keep-alive HTTP publishers (one request in flight per connection)
  post small bodies to one channel with no subscribers; requests acknowledged per second.
* `longpoll` / `sse`: N subscribers (1,000 and 10,000 by default) wait on one channel, by
  long-poll (re-asking at once with their cursor) or by SSE; one publisher posts at a low
  fixed rate with its send time in the payload; publish->delivery latency p50/p99 over all
  deliveries, and delivered/expected. Before the first publish, with all N subscribers idle,
  the server's RSS growth per subscriber is read (the memory rows).
* `memory`: only the memory part (no publishing), for when `longpoll`/`sse` are not run.

Every run gets a freshly started server, pushwire first, then the peer. The load generator
is this module's client side: raw sockets on uvloop in 2 processes (issue 10's protocol;
`--subscriber-processes`), pre-encoded requests,
a minimal response parser. A delivery's receive time is the kernel's receive timestamp of
the bytes (SO_TIMESTAMPNS), so the time a busy client process takes to get to a socket is
not charged to the server; the in-process delay is reported next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.client
import math
import os
import re
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

from pushwire.bench.common import other_cpu, own_cpu_seconds, print_busy_note, run_cli, write_json
from pushwire.bench.cpuclock import cpu_seconds_precise as cpu_seconds
from pushwire.bench.loadgen import MP_CONTEXT, STEP_TIMEOUT_S, BenchError, recv_message, run_loop
from pushwire.bench.mqtt import LOADGEN_LIMIT, _format_value, _split, percentile
from pushwire.bench.nchan import HttpServer, nchan_server
from pushwire.bench.peers import (
    _LISTEN_LINE,
    HOST,
    PUSHWIRE_BENCH_ENV,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    _spawn,
    _stop_process,
    _wait_until_accepting,
    machine_busy_seconds,
    pushwire_argv,
    pushwire_available,
    raise_nofile_limit,
    run_queue,
)

Dialect = Literal["pushwire", "nchan"]
Role = Literal["blast-pub", "rate-pub", "longpoll-sub", "sse-sub", "ws-sub"]
Kind = Literal["longpoll", "sse", "ws"]
KINDS: tuple[Kind, ...] = ("longpoll", "sse", "ws")
ROLE_OF_KIND: dict[Kind, Role] = {"longpoll": "longpoll-sub", "sse": "sse-sub", "ws": "ws-sub"}

SCENARIOS = ("publish", "longpoll", "sse", "ws", "memory")
KIND_LABEL: dict[str, str] = {"longpoll": "long-poll", "sse": "SSE", "ws": "WebSocket"}
SUBSCRIBER_NOUN: dict[str, str] = {
    "longpoll": "long-poll waiter",
    "sse": "SSE stream",
    "ws": "WebSocket",
}
# pushwire's JSON WebSocket: one subscription per connection; nchan's websocket subscriber
# needs nothing after the handshake
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # any 16 bytes in base64 will do (RFC 6455 4.1)
WS_PING = b'{"type":"ping"}'


# Payload stamp: MARKER, one flag byte (in the measured window or not), the send time as
# 19 decimal digits of CLOCK_REALTIME ns; the rest of the payload is padding. ASCII, so it
# reaches subscribers unchanged inside pushwire's JSON and as nchan's raw body.
MARKER = b"PWTS"
IN_WINDOW = ord("w")
OUT_OF_WINDOW = ord("o")
STAMP_DIGITS = 19
STAMP_LEN = len(MARKER) + 1 + STAMP_DIGITS

CHANNEL_PUBLISH = "pub"
CHANNEL_LATENCY = "lat"
CHANNEL_WARM = "warm"

# Linux's SO_TIMESTAMPNS (asm-generic; Python's socket module does not name it). Its control
# message carries a struct timespec (two 64-bit fields) of CLOCK_REALTIME.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("qq")
RECV_BYTES = 65536
ANC_BYTES = 64
MAX_HEAD_BYTES = 16384

FD_HEADROOM = 200  # descriptors a server needs besides the benchmark's connections
# Issue 10's side-by-side protocol: the subscribers in 2 client processes, at every N.
# More processes on these 2 cores measure the load generator's scheduling more than the
# server: each write wakes the process owning the socket, and a woken process that lands
# on the server's core preempts it (bench/README.md, "How many client processes").
SUBSCRIBER_PROCESSES = 2
MAX_SUBSCRIBER_PROCESSES = 16
SETUP_TIMEOUT_S = 60.0
OPEN_TIMEOUT_S = 120.0  # opening all of one process's subscribers
CONNECT_TIMEOUT_S = 20.0  # one connection (and, for SSE, its response head)
LISTENER_WAIT_S = 30.0  # for the server to report every subscriber registered
GO_LEAD_S = 0.2
SATURATED_MACHINE = 0.9  # share of all cores busy above which a row is machine-bound
LOAD_TAIL_S = 0.3
RATE_PUBLISHER_CONNECTIONS = 4  # opened up front; more when every one has a publish in flight
RATE_PUBLISHER_MAX_CONNECTIONS = 64
MAX_ERRORS_PER_CONNECTION = 10
ERROR_RETRY_S = 0.5
IDLE_S = 1.0  # the server's idle CPU is read this long, every subscriber held, before the go
LONGPOLL_TIMEOUT_S = 300  # pushwire's long-poll timeout= (nchan's subscriber timeout is off)


class HttpProtocolError(Exception):
    """The server sent bytes that are not an HTTP/1.1 response the benchmark understands."""


# ---------------------------------------------------------------------------------------------
# Wire: payload stamps, response heads, status lines (pure functions, unit-tested)


def stamp_payload(sent_ns: int, in_window: bool, size: int) -> bytes:
    """A payload of `size` bytes (at least STAMP_LEN) carrying the send time."""
    flag = IN_WINDOW if in_window else OUT_OF_WINDOW
    stamp = MARKER + bytes([flag]) + b"%019d" % sent_ns
    return stamp + b"." * max(0, size - len(stamp))


def find_stamps(buf: bytes, start: int = 0, end: int | None = None) -> tuple[list[int], int, int]:
    """Stamps in buf[start:end]: (send times of in-window stamps, count of other stamps, offset
    to keep from). Bytes from that offset on may be the start of a stamp that the next read
    completes; everything before it has been accounted for."""
    stop = len(buf) if end is None else end
    sent: list[int] = []
    outside = 0
    consumed = start
    i = buf.find(MARKER, start, stop)
    while i >= 0:
        after = i + STAMP_LEN
        if after > stop:
            return sent, outside, i
        digits = buf[i + len(MARKER) + 1 : after]
        if digits.isdigit():
            if buf[i + len(MARKER)] == IN_WINDOW:
                sent.append(int(digits))
            else:
                outside += 1
            consumed = after
        else:
            consumed = i + len(MARKER)
        i = buf.find(MARKER, consumed, stop)
    return sent, outside, max(consumed, stop - (len(MARKER) - 1))


def _field(raw: bytes, lowered: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lower-case) in a head whose lines all end in CRLF."""
    key = b"\r\n" + name + b":"
    at = lowered.find(key)
    if at < 0:
        return None
    at += len(key)
    return raw[at : lowered.index(b"\r\n", at)].strip()


class ResponseHead(NamedTuple):
    """An HTTP/1.1 response head. `length` counts the bytes up to and including the blank
    line; `raw` keeps the lines (each ending in CRLF), `lowered` the same lower-cased.
    (A NamedTuple: a long-poll client makes one per response, so construction must be cheap.)"""

    status: int
    length: int
    content_length: int | None
    chunked: bool
    raw: bytes
    lowered: bytes

    def header(self, name: bytes) -> bytes | None:
        """The value of a header; `name` in lower case."""
        return _field(self.raw, self.lowered, name)

    def body_length(self) -> int:
        """Bytes of body that follow the head (no body: 1xx, 204, 304, or none declared)."""
        if self.chunked:
            raise HttpProtocolError("a chunked body where a Content-Length was expected")
        if self.status < 200 or self.status in (204, 304) or self.content_length is None:
            return 0
        return self.content_length


def parse_response_head(buf: bytes, start: int = 0) -> ResponseHead | None:
    """The response head starting at `start`, or None while its blank line has not arrived."""
    end = buf.find(b"\r\n\r\n", start)
    if end < 0:
        if len(buf) - start > MAX_HEAD_BYTES:
            raise HttpProtocolError("response head too long")
        return None
    raw = buf[start : end + 2]
    status = raw[9:12]
    if not raw.startswith(b"HTTP/1.") or not status.isdigit():
        raise HttpProtocolError(f"not an HTTP/1.x status line: {raw[:40]!r}")
    lowered = raw.lower()
    length = _field(raw, lowered, b"content-length")
    encoding = _field(lowered, lowered, b"transfer-encoding")
    return ResponseHead(
        int(status),
        end + 4 - start,
        int(length) if length is not None and length.isdigit() else None,
        encoding is not None and b"chunked" in encoding,
        raw,
        lowered,
    )


STATUS_PREFIX = b"HTTP/1.1 "


class StatusCounter:
    """Counts responses on a keep-alive connection by their status lines (`HTTP/1.1 NNN`),
    in C-speed `find` calls: enough for publish replies, whose bodies never contain one."""

    __slots__ = ("_tail", "ok", "other")

    def __init__(self) -> None:
        self.ok = 0
        self.other = 0
        self._tail = b""

    def feed(self, data: bytes) -> int:
        """Returns how many status lines this chunk completed."""
        buf = self._tail + data if self._tail else data
        seen = 0
        pos = 0
        while True:
            i = buf.find(STATUS_PREFIX, pos)
            if i < 0:
                # keep what may be the start of a status line the next chunk completes
                pos = max(pos, len(buf) - (len(STATUS_PREFIX) - 1))
                break
            code_end = i + len(STATUS_PREFIX) + 3
            if code_end > len(buf):
                pos = i
                break
            seen += 1
            if buf[i + len(STATUS_PREFIX)] == ord("2"):
                self.ok += 1
            else:
                self.other += 1
            pos = code_end
        self._tail = buf[pos:]
        return seen


def kernel_rx_ns(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """CLOCK_REALTIME ns at which the kernel received the bytes (SO_TIMESTAMPNS), if sent."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            return int(seconds) * 1_000_000_000 + int(nanoseconds)
    return None


def prometheus_value(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([-+0-9.eE]+)\s*$", text, re.M)
    return float(match.group(1)) if match else None


def nchan_status_subscribers(text: str) -> int | None:
    match = re.search(r"^subscribers: (\d+)\s*$", text, re.M)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------
# The two dialects: the same operations under different paths and cursor headers


def _get(path: str, headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{headers}\r\n".encode()


def publish_path(dialect: Dialect, channel: str) -> str:
    return f"/v1/publish/bench/{channel}" if dialect == "pushwire" else f"/pub/{channel}"


def publish_head(dialect: Dialect, channel: str, body_size: int) -> bytes:
    """Everything of a publish request before its body."""
    return (
        f"POST {publish_path(dialect, channel)} HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {body_size}\r\n\r\n"
    ).encode()


def sse_request(dialect: Dialect, channel: str) -> bytes:
    path = f"/v1/sse/bench/{channel}" if dialect == "pushwire" else f"/sse/{channel}"
    return _get(path, "Accept: text/event-stream\r\n")


def ws_request(dialect: Dialect, channel: str) -> bytes:
    """The WebSocket handshake (pushwire: /v1/ws with its subprotocol; nchan: /ws/{channel})."""
    path = "/v1/ws" if dialect == "pushwire" else f"/ws/{channel}"
    protocol = "Sec-WebSocket-Protocol: pushwire.v1\r\n" if dialect == "pushwire" else ""
    return _get(
        path,
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{protocol}",
    )


def ws_client_frame(text: bytes) -> bytes:
    """A masked text frame (clients must mask, RFC 6455 5.3); the all-zero mask key leaves
    the payload as it is, which every server accepts."""
    n = len(text)
    short = n < 126
    head = struct.pack("!BB", 0x81, 0x80 | n) if short else struct.pack("!BBH", 0x81, 0xFE, n)
    return head + b"\0\0\0\0" + text


def ws_subscribe_frame(channel: str) -> bytes:
    """pushwire's JSON subscribe request for the bench channel (nchan: none needed)."""
    frame = '{"type":"subscribe","sub":"b","filter":"bench/' + channel + '"}'
    return ws_client_frame(frame.encode())


def longpoll_first_request(dialect: Dialect, channel: str) -> bytes:
    """Without a cursor both servers wait for the next message."""
    if dialect == "pushwire":
        return _get(f"/v1/longpoll/bench/{channel}?timeout={LONGPOLL_TIMEOUT_S}")
    return _get(f"/lp/{channel}")


def longpoll_next_request(
    dialect: Dialect, channel: str, head: ResponseHead, previous: bytes
) -> bytes:
    """The request that asks for what comes after this response: pushwire's cursor header
    as since=, nchan's Last-Modified/Etag as If-Modified-Since/If-None-Match. A response
    without them (an error) leaves the previous request as it was."""
    if dialect == "pushwire":
        cursor = head.header(b"pushwire-cursor")
        if cursor is None:
            return previous
        before, after = _cursor_request_parts(channel)
        return before + cursor + after
    modified, etag = head.header(b"last-modified"), head.header(b"etag")
    if modified is None or etag is None:
        return previous
    before, _ = _conditional_request_parts(channel)
    return before + modified + b"\r\nIf-None-Match: " + etag + b"\r\n\r\n"


@functools.cache
def _cursor_request_parts(channel: str) -> tuple[bytes, bytes]:
    request = _get(f"/v1/longpoll/bench/{channel}?timeout={LONGPOLL_TIMEOUT_S}&since=@")
    before, after = request.split(b"@", 1)
    return before, after


@functools.cache
def _conditional_request_parts(channel: str) -> tuple[bytes, bytes]:
    return _get(f"/lp/{channel}")[:-2] + b"If-Modified-Since: ", b""


def server_listeners(server: HttpServer, dialect: Dialect) -> int:
    """Subscribers the server itself reports registered (held long-polls, open streams)."""
    path = "/metrics" if dialect == "pushwire" else "/nchan_status"
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        connection.request("GET", path)
        text = connection.getresponse().read().decode("utf-8", "replace")
    finally:
        connection.close()
    if dialect == "pushwire":
        value = prometheus_value(text, "pushwire_log_listeners")
        return int(value) if value is not None else 0
    return nchan_status_subscribers(text) or 0


# ---------------------------------------------------------------------------------------------
# Load generator: client processes


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """What one load-generator process does."""

    name: str
    role: Role
    dialect: Dialect
    port: int
    connections: int = 1
    channel: str = CHANNEL_LATENCY
    warm: int = 0  # subscribers on CHANNEL_WARM, opened before the memory baseline
    rate: float = 5.0
    payload_size: int = 64
    open_concurrency: int = 100


@dataclass(slots=True)
class ClientReport:
    name: str
    role: str
    connections: int
    opened: int = 0
    failures: int = 0
    open_s: float = 0.0
    count: int = 0  # publishers: acknowledged in the window; subscribers: deliveries
    window_s: float = 0.0
    cpu_s: float = 0.0  # user + system CPU of this process inside the window
    errors: int = 0  # responses that were not 2xx/304, connections the server closed
    sent_in_window: int = 0  # rate publisher: messages stamped "in window"
    sent: int = 0
    outside: int = 0  # deliveries of messages sent outside the window
    latencies_ns: list[int] = field(default_factory=list)
    sent_ns: list[int] = field(default_factory=list)  # each latency's message (its stamp)
    lag_ns: list[int] = field(default_factory=list)  # kernel receive -> read by the process

    @property
    def rate(self) -> float:
        return self.count / self.window_s if self.window_s > 0 else 0.0

    @property
    def cpu_util(self) -> float:
        return self.cpu_s / self.window_s if self.window_s > 0 else 0.0


def _report(conn: Connection, message: tuple[Any, ...]) -> None:
    """Send to the orchestrator. uvloop's add_reader (in `recv_message`) leaves the pipe
    non-blocking, and a large report (every latency sample) would then fail half-way."""
    os.set_blocking(conn.fileno(), True)
    conn.send(message)


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


class Recorder:
    """Deliveries seen by one process's subscribers."""

    __slots__ = ("errors", "lag_ns", "latencies_ns", "outside", "sent_ns")

    def __init__(self) -> None:
        self.latencies_ns: list[int] = []
        self.sent_ns: list[int] = []
        self.lag_ns: list[int] = []
        self.outside = 0
        self.errors = 0

    def add(self, rx_ns: int, read_ns: int, sent: list[int], outside: int) -> None:
        if sent:
            self.latencies_ns.extend(rx_ns - s for s in sent)
            self.sent_ns.extend(sent)
            self.lag_ns.append(read_ns - rx_ns)
        self.outside += outside


class RawSubscriber:
    """One subscriber connection: a non-blocking socket read with recvmsg (for the kernel's
    receive timestamp) from an event-loop reader callback."""

    __slots__ = ("buf", "closed", "dialect", "errors", "loop", "pending", "rec", "sock")

    def __init__(
        self, sock: socket.socket, loop: asyncio.AbstractEventLoop, rec: Recorder, dialect: Dialect
    ) -> None:
        self.sock = sock
        self.loop = loop
        self.rec = rec
        self.dialect = dialect
        self.buf = b""
        self.pending = b""
        self.closed = False
        self.errors = 0

    def start(self, request: bytes) -> None:
        self.loop.add_reader(self.sock.fileno(), self.on_readable)
        self.send(request)

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self.pending:
            self.pending += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self.pending = data[sent:]
            self.loop.add_writer(self.sock.fileno(), self._flush)

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        self.pending = self.pending[sent:]
        if not self.pending:
            self.loop.remove_writer(self.sock.fileno())

    def read(self) -> tuple[bytes, int, int] | None:
        """(data, kernel receive ns, read ns), or None when there was nothing or it closed."""
        try:
            data, ancillary, _flags, _address = self.sock.recvmsg(RECV_BYTES, ANC_BYTES)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            self.fail()
            return None
        if not data:
            self.fail()
            return None
        read_ns = time.time_ns()
        return data, kernel_rx_ns(ancillary) or read_ns, read_ns

    def on_readable(self) -> None:
        raise NotImplementedError

    def fail(self) -> None:
        """The server closed the connection, or it broke: an error, unless we closed it."""
        if not self.closed:
            self.rec.errors += 1
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.sock.fileno())
            self.loop.remove_writer(self.sock.fileno())
        self.sock.close()


class SseSubscriber(RawSubscriber):
    """Waits for the 200 head, then finds stamps anywhere in the stream: no event or chunk
    parsing (a stamp never spans a chunk: each event is written whole)."""

    __slots__ = ("ready",)

    def __init__(
        self, sock: socket.socket, loop: asyncio.AbstractEventLoop, rec: Recorder, dialect: Dialect
    ) -> None:
        super().__init__(sock, loop, rec, dialect)
        self.ready: asyncio.Future[None] = loop.create_future()

    def on_readable(self) -> None:
        got = self.read()
        if got is None:
            if self.closed and not self.ready.done():
                self.ready.set_exception(HttpProtocolError("closed before the response head"))
            return
        data, rx_ns, read_ns = got
        if not self.ready.done():
            self.buf += data
            try:
                head = parse_response_head(self.buf)
            except HttpProtocolError as exc:
                self.ready.set_exception(exc)
                self.close()
                return
            if head is None:
                return
            if head.status != 200:
                self.ready.set_exception(HttpProtocolError(f"SSE answered {head.status}"))
                self.close()
                return
            self.ready.set_result(None)
            data, self.buf = self.buf[head.length :], b""
        buf = self.buf + data if self.buf else data
        sent, outside, keep = find_stamps(buf)
        self.buf = buf[keep:]
        if sent or outside:
            self.rec.add(rx_ns, read_ns, sent, outside)


class WsSubscriber(SseSubscriber):
    """A WebSocket subscriber: the handshake (101), pushwire's subscribe frame, then stamps
    anywhere in the frames (a stamp never spans frames; each message is one frame). Answers
    pushwire's heartbeat pings so a long run is not closed for silence."""

    __slots__ = ("channel",)

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        rec: Recorder,
        dialect: Dialect,
        channel: str,
    ) -> None:
        super().__init__(sock, loop, rec, dialect)
        self.channel = channel

    def on_readable(self) -> None:
        got = self.read()
        if got is None:
            if self.closed and not self.ready.done():
                self.ready.set_exception(HttpProtocolError("closed before the handshake"))
            return
        data, rx_ns, read_ns = got
        if not self.ready.done():
            self.buf += data
            try:
                head = parse_response_head(self.buf)
            except HttpProtocolError as exc:
                self.ready.set_exception(exc)
                self.close()
                return
            if head is None:
                return
            if head.status != 101:
                self.ready.set_exception(HttpProtocolError(f"WebSocket answered {head.status}"))
                self.close()
                return
            if self.dialect == "pushwire":
                self.send(ws_subscribe_frame(self.channel))
            self.ready.set_result(None)
            data, self.buf = self.buf[head.length :], b""
        if self.dialect == "pushwire" and WS_PING in data:
            self.send(ws_client_frame(b'{"type":"pong"}'))
        buf = self.buf + data if self.buf else data
        sent, outside, keep = find_stamps(buf)
        self.buf = buf[keep:]
        if sent or outside:
            self.rec.add(rx_ns, read_ns, sent, outside)


class LongPollSubscriber(RawSubscriber):
    """Reads each response (head, Content-Length body), records its stamps and re-asks at
    once with the cursor the response carried."""

    __slots__ = ("channel", "request", "running")

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        rec: Recorder,
        dialect: Dialect,
        channel: str,
    ) -> None:
        super().__init__(sock, loop, rec, dialect)
        self.channel = channel
        self.request = longpoll_first_request(dialect, channel)
        self.running = True

    def on_readable(self) -> None:
        got = self.read()
        if got is None:
            return
        data, rx_ns, read_ns = got
        buf = self.buf + data if self.buf else data
        pos = 0
        try:
            while (head := parse_response_head(buf, pos)) is not None:
                body_end = pos + head.length + head.body_length()
                if body_end > len(buf):
                    break
                if 200 <= head.status < 300 or head.status == 304:
                    sent, outside, _ = find_stamps(buf, pos + head.length, body_end)
                    if sent or outside:
                        self.rec.add(rx_ns, read_ns, sent, outside)
                    retry = 0.0
                else:
                    self.rec.errors += 1
                    self.errors += 1
                    retry = ERROR_RETRY_S
                self.request = longpoll_next_request(self.dialect, self.channel, head, self.request)
                pos = body_end
                if self.errors > MAX_ERRORS_PER_CONNECTION:
                    self.close()
                elif self.running and retry:
                    self.loop.call_later(retry, self._ask)
                elif self.running:
                    self.send(self.request)
        except HttpProtocolError:
            self.rec.errors += 1
            self.close()
            return
        self.buf = buf[pos:]

    def _ask(self) -> None:
        if self.running:
            self.send(self.request)


class SubscriberGroup:
    """All subscribers of one process."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.loop = asyncio.get_running_loop()
        self.rec = Recorder()
        self.subscribers: list[RawSubscriber] = []

    async def open(self, count: int, channel: str) -> tuple[int, int]:
        """Open `count` subscribers with bounded concurrency: (opened, failed)."""
        opened = failed = 0
        remaining = count

        async def opener() -> None:
            nonlocal opened, failed, remaining
            while remaining > 0:
                remaining -= 1
                try:
                    await asyncio.wait_for(self._open_one(channel), CONNECT_TIMEOUT_S)
                    opened += 1
                except (OSError, TimeoutError, HttpProtocolError):
                    failed += 1

        workers = min(count, self.spec.open_concurrency)
        await asyncio.wait_for(asyncio.gather(*(opener() for _ in range(workers))), OPEN_TIMEOUT_S)
        return opened, failed

    async def _open_one(self, channel: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        subscriber: RawSubscriber | None = None
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with contextlib.suppress(OSError):  # without it: the time the process reads
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            await self.loop.sock_connect(sock, (HOST, self.spec.port))
            if self.spec.role == "sse-sub":
                sse = SseSubscriber(sock, self.loop, self.rec, self.spec.dialect)
                subscriber = sse
                sse.start(sse_request(self.spec.dialect, channel))
                await sse.ready
            elif self.spec.role == "ws-sub":
                ws = WsSubscriber(sock, self.loop, self.rec, self.spec.dialect, channel)
                subscriber = ws
                ws.start(ws_request(self.spec.dialect, channel))
                await ws.ready
            else:
                subscriber = LongPollSubscriber(
                    sock, self.loop, self.rec, self.spec.dialect, channel
                )
                subscriber.start(subscriber.request)
        except BaseException:
            if subscriber is not None:
                subscriber.close()
            else:
                sock.close()
            raise
        self.subscribers.append(subscriber)

    def stop(self) -> None:
        for subscriber in self.subscribers:
            if isinstance(subscriber, LongPollSubscriber):
                subscriber.running = False

    def close(self) -> None:
        for subscriber in self.subscribers:
            subscriber.close()


class PublishConnection(asyncio.Protocol):
    """A keep-alive connection with at most one publish in flight (blast: the next request
    goes out as soon as the previous one's status line arrives)."""

    def __init__(self, blast_request: bytes | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.counter = StatusCounter()
        self.busy = False
        self.lost = False
        self.dropped = False  # lost with a request in flight
        self.blast_request = blast_request
        self.blasting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.dropped = self.busy

    def data_received(self, data: bytes) -> None:
        done = self.counter.feed(data)
        if not done:
            return
        self.busy = False
        if self.blasting and self.blast_request is not None and self.transport is not None:
            self.busy = True
            self.transport.write(self.blast_request * done)

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.busy = True
        self.transport.write(request)

    def start_blast(self) -> None:
        assert self.blast_request is not None
        self.blasting = True
        self.send(self.blast_request)

    def abort(self) -> None:
        self.blasting = False
        if self.transport is not None:
            self.transport.abort()


async def _open_publishers(
    spec: ClientSpec, count: int, blast_request: bytes | None
) -> list[PublishConnection]:
    loop = asyncio.get_running_loop()

    async def one() -> PublishConnection:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: PublishConnection(blast_request), HOST, spec.port),
            CONNECT_TIMEOUT_S,
        )
        return protocol

    return list(await asyncio.gather(*(one() for _ in range(count))))


def first_send_at(window_start: float, now: float, interval: float) -> float:
    """The rate publisher's first send, at or after `now`, on the schedule window start +
    interval/2 + k * interval: the measured window's edges (where the server's CPU is read)
    fall half an interval from the nearest send, so each in-window message's whole fan-out
    is inside the window and no out-of-window one is, on both servers alike."""
    due = window_start + interval / 2 - math.floor((window_start - now) / interval) * interval
    return due - interval if due - now >= interval else due


async def _rate_publish(
    spec: ClientSpec,
    connections: list[PublishConnection],
    window: tuple[float, float],
    stop_at: float,
    report: ClientReport,
) -> None:
    """Publish at spec.rate with the send time (CLOCK_REALTIME) in each payload, open-loop:
    a publish that is not acknowledged yet does not hold the next one back, which goes out on
    another connection (a new one if need be, up to RATE_PUBLISHER_MAX_CONNECTIONS; beyond
    that it waits, is stamped when it goes, and the schedule restarts from there instead of
    catching up in a burst)."""
    head = publish_head(spec.dialect, spec.channel, spec.payload_size)
    interval = 1.0 / spec.rate
    due = first_send_at(window[0], time.monotonic(), interval)
    while (now := time.monotonic()) < stop_at:
        if now < due:
            await asyncio.sleep(due - now)
            continue
        free = next((c for c in connections if not c.busy and not c.lost), None)
        if free is None and len(connections) < RATE_PUBLISHER_MAX_CONNECTIONS:
            try:
                (free,) = await _open_publishers(spec, 1, None)
            except (OSError, TimeoutError):
                report.errors += 1
                await asyncio.sleep(0.01)
                continue
            connections.append(free)
        if free is None:
            await asyncio.sleep(0.001)
            continue
        now = time.monotonic()
        in_window = window[0] <= now < window[1]
        free.send(head + stamp_payload(time.time_ns(), in_window, spec.payload_size))
        report.sent += 1
        report.sent_in_window += in_window
        due = max(due + interval, now)


async def _publisher_main(spec: ClientSpec, conn: Connection) -> None:
    blast = None
    if spec.role == "blast-pub":
        head = publish_head(spec.dialect, spec.channel, spec.payload_size)
        blast = head + b"p" * spec.payload_size
    count = spec.connections if spec.role == "blast-pub" else RATE_PUBLISHER_CONNECTIONS
    _report(conn, ("warm", 0))
    await recv_message(conn, STEP_TIMEOUT_S)  # open
    started = time.monotonic()
    connections = await _open_publishers(spec, count, blast)
    report = ClientReport(spec.name, spec.role, len(connections), opened=len(connections))
    report.open_s = time.monotonic() - started
    try:
        _report(conn, ("ready", len(connections), 0))
        message = await recv_message(conn, STEP_TIMEOUT_S)
        if message[0] == "go":
            _, window_start, window_end, stop_at = message
            if spec.role == "blast-pub":
                await _blast(connections, (window_start, window_end), stop_at, report)
            else:
                task = asyncio.ensure_future(
                    _rate_publish(spec, connections, (window_start, window_end), stop_at, report)
                )
                await _sample_window(report, (window_start, window_end), lambda: 0)
                await task
                report.count = sum(c.counter.ok for c in connections)
            report.errors += sum(c.counter.other + c.dropped for c in connections)
            report.connections = len(connections)
        _report(conn, ("done", report))
    finally:
        for connection in connections:
            connection.abort()


async def _sample_window(
    report: ClientReport, window: tuple[float, float], progress: Callable[[], int]
) -> None:
    """Count and CPU at both window edges."""
    await _sleep_until(window[0])
    start_count, start_cpu, started = progress(), own_cpu_seconds(), time.monotonic()
    await _sleep_until(window[1])
    report.count = progress() - start_count
    report.cpu_s = own_cpu_seconds() - start_cpu
    report.window_s = time.monotonic() - started


async def _blast(
    connections: list[PublishConnection],
    window: tuple[float, float],
    stop_at: float,
    report: ClientReport,
) -> None:
    for connection in connections:
        connection.start_blast()
    await _sample_window(report, window, lambda: sum(c.counter.ok for c in connections))
    await _sleep_until(stop_at)
    for connection in connections:
        connection.blasting = False


async def _subscriber_main(spec: ClientSpec, conn: Connection) -> None:
    group = SubscriberGroup(spec)
    try:
        warm, _ = await group.open(spec.warm, CHANNEL_WARM)
        _report(conn, ("warm", warm))
        await recv_message(conn, STEP_TIMEOUT_S)  # open
        started = time.monotonic()
        opened, failed = await group.open(spec.connections, spec.channel)
        report = ClientReport(spec.name, spec.role, spec.connections, opened, failed)
        report.open_s = time.monotonic() - started
        _report(conn, ("ready", opened, failed))
        message = await recv_message(conn, STEP_TIMEOUT_S)
        if message[0] == "go":
            _, window_start, window_end, stop_at = message
            await _sample_window(report, (window_start, window_end), lambda: 0)
            await _sleep_until(stop_at)
            group.stop()
            report.latencies_ns = group.rec.latencies_ns
            report.sent_ns = group.rec.sent_ns
            report.lag_ns = group.rec.lag_ns
            report.count = len(report.latencies_ns)
            report.outside = group.rec.outside
        report.errors = group.rec.errors
        _report(conn, ("done", report))
    finally:
        group.close()


async def _client_main(spec: ClientSpec, conn: Connection) -> None:
    if spec.role in ("longpoll-sub", "sse-sub", "ws-sub"):
        await _subscriber_main(spec, conn)
    else:
        await _publisher_main(spec, conn)


# `--batch-clients`, to the client processes (not PUSHWIRE_*: that prefix is for settings)
BATCH_CLIENTS_ENV = "PWBENCH_BATCH_CLIENTS"


def batch_scheduling() -> None:
    """This process as SCHED_BATCH (`--batch-clients`): the scheduler never lets a batch
    task preempt another on wake-up. Each delivery wakes the client that owns the socket;
    on this 2-core machine a client placed on the server's core otherwise preempts the
    server hundreds to thousands of times per wave, by placement luck that holds for a
    whole scenario (bench/README.md, f-sse). The clients still get their CPU share."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def client_process_main(spec: ClientSpec, conn: Connection) -> None:
    """Entry point of one load-generator process; talks to the orchestrator over `conn`.
    Steps: ("warm", n) -> "open" -> ("ready", opened, failed) -> "go"/"stop" -> ("done", r)."""
    if os.environ.get(BATCH_CLIENTS_ENV) == "1":
        batch_scheduling()
    try:
        run_loop(_client_main(spec, conn))
    except KeyboardInterrupt:
        pass  # the orchestrator got it too and cleans up
    except Exception as exc:
        with contextlib.suppress(OSError):
            _report(conn, ("error", f"{spec.name}: {exc!r}"))
    finally:
        conn.close()


class Fleet:
    """The load-generator processes of one scenario run; ends every one it started."""

    def __init__(self) -> None:
        self._members: list[tuple[ClientSpec, BaseProcess, Connection]] = []

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self, specs: list[ClientSpec]) -> None:
        for spec in specs:
            parent_end, child_end = MP_CONTEXT.Pipe()
            process = MP_CONTEXT.Process(
                target=client_process_main, args=(spec, child_end), name=spec.name, daemon=True
            )
            process.start()
            child_end.close()
            self._members.append((spec, process, parent_end))

    def expect(self, kind: str, timeout: float) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        replies = []
        for spec, process, conn in self._members:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise BenchError(f"{spec.name}: no {kind!r} within {timeout:.0f}s")
            try:
                message = cast(tuple[Any, ...], conn.recv())
            except (EOFError, OSError) as exc:
                process.join(1.0)
                raise BenchError(
                    f"{spec.name}: process ended (exit code {process.exitcode}) before "
                    f"{kind!r}: {exc!r}"
                ) from None
            if message[0] != kind:
                raise BenchError(f"{spec.name}: {message[1] if len(message) > 1 else message}")
            replies.append(message)
        return replies

    def reports(self, timeout: float) -> list[ClientReport]:
        return [cast(ClientReport, reply[1]) for reply in self.expect("done", timeout)]

    def send_all(self, message: tuple[Any, ...]) -> None:
        for _, _, conn in self._members:
            conn.send(message)

    def close(self) -> None:
        """A process that reported "done" exits by itself; one that is still opening
        connections (an error or Ctrl-C elsewhere) is terminated, then killed, by its PID."""
        for _, _, conn in self._members:
            conn.close()
        processes = [process for _, process, _ in self._members]
        deadline = time.monotonic() + 3.0
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        alive = [process for process in processes if process.is_alive()]
        for process in alive:
            process.terminate()
        for process in alive:
            process.join(timeout=2.0)
        for process in alive:
            if process.is_alive():
                process.kill()
                process.join(timeout=2.0)
        self._members.clear()


# ---------------------------------------------------------------------------------------------
# Servers: pushwire, nchan (nchan.py), and a stub that checks the load generator


def pushwire_http_argv() -> list[str]:
    # Heartbeats off for the run (nchan sends no EventSource pings by default) and long-polls
    # allowed to wait as long as the benchmark asks; everything else is pushwire's default.
    return [*pushwire_argv(), "--sse-heartbeat", "3600", "--longpoll-max-timeout", "3600"]


@contextlib.contextmanager
def pushwire_http_server(workdir: Path) -> Iterator[HttpServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "pushwire.log"
    process = _spawn(pushwire_http_argv(), workdir, log_path, PUSHWIRE_BENCH_ENV)
    try:
        port = 0
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port:
            if process.poll() is not None:
                raise BenchError(f"pushwire exited with {process.returncode} during start-up")
            if time.monotonic() > deadline:
                raise BenchError("pushwire did not log its HTTP port in time")
            for kind, found in _LISTEN_LINE.findall(log_path.read_text(errors="replace")):
                if kind == "http":
                    port = int(found)
            time.sleep(0.05)
        _wait_until_accepting(port, process, "pushwire")
        yield HttpServer("pushwire", process.pid, port, log_path)
    finally:
        _stop_process(process)


class StubHttp(asyncio.Protocol):
    """The least an HTTP push server can do, in pushwire's dialect: publishes are answered
    with a pre-encoded 201 and copied to every subscriber of the channel (long-poll replies
    with a cursor header, SSE events). `--loadgen-check` measures the client side with it."""

    OK = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"
    SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"

    def __init__(self, hub: StubHub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.forget(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos = 0
        while (end := buf.find(b"\r\n\r\n", pos)) >= 0:
            head = buf[pos:end]
            body_len = 0
            if head.startswith(b"POST"):
                lowered = head.lower()
                at = lowered.find(b"content-length:") + len(b"content-length:")
                line_end = lowered.find(b"\r\n", at)
                body_len = int(head[at : line_end if line_end >= 0 else len(head)])
            if end + 4 + body_len > len(buf):
                break
            target = head.split(b" ", 2)[1]
            self.hub.handle(self, head[:4], target, buf[end + 4 : end + 4 + body_len])
            pos = end + 4 + body_len
        self.buf = buf[pos:]

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class StubHub:
    def __init__(self) -> None:
        self.messages: dict[bytes, list[bytes]] = {}
        self.streams: dict[bytes, set[StubHttp]] = {}
        self.parked: dict[bytes, set[StubHttp]] = {}

    def forget(self, client: StubHttp) -> None:
        for group in (*self.streams.values(), *self.parked.values()):
            group.discard(client)

    def handle(self, client: StubHttp, method: bytes, target: bytes, body: bytes) -> None:
        path, _, query = target.partition(b"?")
        channel = path.rsplit(b"/", 1)[-1]
        if method == b"POST":
            client.write(StubHttp.OK)
            log = self.messages.setdefault(channel, [])
            log.append(body)
            event = b"id: stub:%d\ndata: %s\n\n" % (len(log), body)
            for stream in self.streams.get(channel, ()):
                stream.write(event)
            waiting = self.parked.pop(channel, set())
            for waiter in waiting:
                waiter.write(self._longpoll_reply(log, len(log) - 1))
        elif path.startswith(b"/v1/sse/"):
            client.write(StubHttp.SSE_HEAD)
            self.streams.setdefault(channel, set()).add(client)
        elif path.startswith(b"/v1/longpoll/"):
            log = self.messages.setdefault(channel, [])
            since = re.search(rb"since=stub:(\d+)", query)
            after = int(since.group(1)) if since else len(log)
            if after < len(log):
                client.write(self._longpoll_reply(log, after))
            else:
                self.parked.setdefault(channel, set()).add(client)
        else:  # /metrics
            count = sum(map(len, self.streams.values())) + sum(map(len, self.parked.values()))
            text = b"pushwire_log_listeners %d\n" % count
            client.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(text), text))

    @staticmethod
    def _longpoll_reply(log: list[bytes], after: int) -> bytes:
        body = b'{"messages":[' + b",".join(b'{"payload":"%s"}' % m for m in log[after:]) + b"]}"
        return b"HTTP/1.1 200 OK\r\npushwire-cursor: stub:%d\r\ncontent-length: %d\r\n\r\n%s" % (
            len(log),
            len(body),
            body,
        )


async def _stub_main(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    hub = StubHub()
    server = await loop.create_server(lambda: StubHttp(hub), HOST, 0, backlog=4096)
    try:
        conn.send(("ready", server.sockets[0].getsockname()[1]))
        await recv_message(conn, 3600.0)  # stop
    finally:
        server.close()


def stub_process_main(conn: Connection) -> None:
    try:
        run_loop(_stub_main(conn))
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


@contextlib.contextmanager
def stub_http_server() -> Iterator[HttpServer]:
    parent_end, child_end = MP_CONTEXT.Pipe()
    process = MP_CONTEXT.Process(target=stub_process_main, args=(child_end,), daemon=True)
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(START_TIMEOUT_S):
            raise BenchError("stub server did not start")
        _, port = parent_end.recv()
        assert process.pid is not None
        yield HttpServer("stub", process.pid, int(port), None)
    finally:
        with contextlib.suppress(OSError):
            parent_end.send(("stop",))
        parent_end.close()
        process.join(STOP_TIMEOUT_S)
        for end in (process.terminate, process.kill):
            if process.is_alive():
                end()
                process.join(STOP_TIMEOUT_S)


@contextlib.contextmanager
def start_server(name: str, workdir: Path) -> Iterator[HttpServer]:
    if name == "pushwire":
        with pushwire_http_server(workdir) as server:
            yield server
    elif name == "nchan":
        with nchan_server(workdir) as server:
            yield server
    else:
        with stub_http_server() as server:
            yield server


def dialect_of(server: HttpServer) -> Dialect:
    return "nchan" if server.name == "nchan" else "pushwire"


# ---------------------------------------------------------------------------------------------
# Scenarios (orchestrator side)


@dataclass(frozen=True, slots=True)
class Settings:
    duration: float = 10.0  # 20 messages at 2 msg/s, as in issue 10's own protocol
    warmup: float = 1.0
    drain: float = 2.0  # subscribers keep reading this long after the window
    subscribers: tuple[int, ...] = (1000, 10_000)
    rate: float = 2.0
    payload: int = 64
    publishers: int = 32
    publisher_processes: int = 2
    subscriber_processes: int = SUBSCRIBER_PROCESSES
    warm: int = 20


@dataclass(slots=True)
class Outcome:
    """What one scenario measured on one server."""

    metrics: dict[str, float] = field(default_factory=dict)
    server_cpu: float | None = None  # fraction of one core inside the window
    machine_cpu: float | None = None  # busy cores of the whole machine inside the window
    clients: list[ClientReport] = field(default_factory=list)
    detail: str = ""
    error: str | None = None


def subscriber_processes(n: int, s: Settings) -> int:
    """`s.subscriber_processes`, or fewer when there are fewer subscribers than that."""
    return max(1, min(s.subscriber_processes, n))


def _sleep_until_sync(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


def wait_listeners(server: HttpServer, at_least: int, timeout: float = LISTENER_WAIT_S) -> int:
    """Poll the server's own subscriber count until it reaches `at_least`, stops growing for
    3 s, or `timeout` passes; returns the last count."""
    deadline = time.monotonic() + timeout
    last, changed = -1, time.monotonic()
    while True:
        count = server_listeners(server, dialect_of(server))
        now = time.monotonic()
        if count != last:
            last, changed = count, now
        if count >= at_least or now > deadline or now - changed > 3.0:
            return count
        time.sleep(0.1)


def settled_rss_kb(server: HttpServer, timeout: float = 5.0) -> int:
    """RSS (all the server's processes) once two readings 0.25 s apart agree within 0.5%."""
    deadline = time.monotonic() + timeout
    previous = server.rss_kb()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        current = server.rss_kb()
        if abs(current - previous) <= previous * 0.005:
            return current
        previous = current
    return previous


def _window(s: Settings) -> tuple[float, float]:
    start = time.monotonic() + GO_LEAD_S + s.warmup
    return start, start + s.duration


def _measure(server: HttpServer, window: tuple[float, float], outcome: Outcome) -> None:
    _sleep_until_sync(window[0])
    cpu_start, busy_start, queue_start, started = (
        cpu_seconds(*server.pids),
        machine_busy_seconds(),
        run_queue(*server.pids),
        time.monotonic(),
    )
    _sleep_until_sync(window[1])
    elapsed = time.monotonic() - started
    window_cpu = cpu_seconds(*server.pids) - cpu_start
    queue_end = run_queue(*server.pids)
    outcome.metrics["window_cpu_s"] = window_cpu
    # the server runnable but not running, and how often a woken process took its core
    outcome.metrics["runqueue_wait_ms"] = (queue_end[0] - queue_start[0]) / 1e6
    outcome.metrics["preempted"] = queue_end[1] - queue_start[1]
    outcome.server_cpu = window_cpu / elapsed
    outcome.machine_cpu = (machine_busy_seconds() - busy_start) / elapsed


def _prepare(fleet: Fleet, specs: list[ClientSpec]) -> tuple[int, int]:
    """Start processes, open connections; (opened, failed)."""
    fleet.start(specs)
    fleet.expect("warm", SETUP_TIMEOUT_S)
    fleet.send_all(("open",))
    replies = fleet.expect("ready", OPEN_TIMEOUT_S + SETUP_TIMEOUT_S)
    return sum(r[1] for r in replies), sum(r[2] for r in replies)


def run_publish(server: HttpServer, s: Settings) -> Outcome:
    template = ClientSpec(
        "pub",
        "blast-pub",
        dialect_of(server),
        server.port,
        channel=CHANNEL_PUBLISH,
        payload_size=s.payload,
    )
    specs = [
        replace(template, name=f"pub{n}", connections=count)
        for n, (_, count) in enumerate(_split(s.publishers, s.publisher_processes))
    ]
    outcome = Outcome()
    with Fleet() as fleet:
        opened, _ = _prepare(fleet, specs)
        window = _window(s)
        fleet.send_all(("go", *window, window[1] + LOAD_TAIL_S))
        _measure(server, window, outcome)
        outcome.clients = fleet.reports(LOAD_TAIL_S + SETUP_TIMEOUT_S)
    errors = sum(r.errors for r in outcome.clients)
    if errors:
        raise BenchError(f"{errors} publish requests were refused or connections lost")
    outcome.metrics["publish_rps"] = sum(r.rate for r in outcome.clients)
    outcome.detail = f"{opened} connections, one request in flight each, {s.payload} B bodies"
    return outcome


def _subscriber_specs(server: HttpServer, kind: Kind, n: int, s: Settings) -> list[ClientSpec]:
    role = ROLE_OF_KIND[kind]
    processes = subscriber_processes(n, s)
    warm = _split(s.warm, processes) if s.warm else [(0, 0)] * processes
    return [
        ClientSpec(
            f"sub{i}",
            role,
            dialect_of(server),
            server.port,
            connections=count,
            warm=warm[i][1] if i < len(warm) else 0,
        )
        for i, (_, count) in enumerate(_split(n, processes))
    ]


def delivery_percentile(sorted_ns: list[int], expected: int, fraction: float) -> float:
    """Nearest-rank percentile over every expected delivery: the ones that never came (by
    the end of the drain) count as later than all that did, so a percentile that falls among
    them is infinite (shown as "> drain") rather than a flattering figure over the rest."""
    population = max(expected, len(sorted_ns))
    if population == 0:
        return math.nan
    rank = max(1, min(population, math.ceil(fraction * population)))
    return float(sorted_ns[rank - 1]) if rank <= len(sorted_ns) else math.inf


def per_message(reports: list[ClientReport]) -> list[tuple[float, float]]:
    """(p50, p99) in ms of each message's own deliveries, in the order they were sent: a
    p99 over all deliveries can be one late wave's (the k-th write of every wave leaves at
    about the same time, so the slowest wave owns the top percent)."""
    by_message: dict[int, list[int]] = {}
    for report in reports:
        for sent, ns in zip(report.sent_ns, report.latencies_ns, strict=True):
            by_message.setdefault(sent, []).append(ns)
    out = []
    for sent in sorted(by_message):
        lat = sorted(by_message[sent])
        out.append((percentile(lat, 0.5) / 1e6, percentile(lat, 0.99) / 1e6))
    return out


def per_message_note(reports: list[ClientReport]) -> str:
    """`per_message`, as the detail line says it: each wave's p50/p99."""
    waves = per_message(reports)
    if not waves:
        return ""
    return "; per wave p50/p99 ms: " + " ".join(f"{a:.0f}/{b:.0f}" for a, b in waves)


def run_delivery(
    server: HttpServer, s: Settings, kind: Kind, n: int, publish: bool = True
) -> Outcome:
    """N subscribers of `kind`; RSS per subscriber once all are held; then (with `publish`)
    a rate publisher and the latency of every delivery."""
    outcome = Outcome()
    with Fleet() as subscribers:
        specs = _subscriber_specs(server, kind, n, s)
        subscribers.start(specs)
        warm = sum(r[1] for r in subscribers.expect("warm", SETUP_TIMEOUT_S))
        wait_listeners(server, warm, 10.0)
        rss_before = settled_rss_kb(server)
        cpu_start, started = cpu_seconds(*server.pids), time.monotonic()
        subscribers.send_all(("open",))
        replies = subscribers.expect("ready", OPEN_TIMEOUT_S + SETUP_TIMEOUT_S)
        opened, failed = sum(r[1] for r in replies), sum(r[2] for r in replies)
        reached = wait_listeners(server, warm + opened) - warm
        connect_s = time.monotonic() - started
        connect_cpu = cpu_seconds(*server.pids) - cpu_start
        rss_after = settled_rss_kb(server)
        if reached > 0 and server.name != "stub":
            outcome.metrics["memory"] = (rss_after - rss_before) / reached
        outcome.metrics["reached"] = reached
        outcome.metrics["opened"] = opened
        setup = (
            f"{reached} of {n} held ({failed} failed to open) in {connect_s:.1f} s, server CPU "
            f"{connect_cpu:.1f} s; RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MB"
        )
        if not publish:
            subscribers.send_all(("stop",))
            outcome.clients = subscribers.reports(SETUP_TIMEOUT_S)
            outcome.detail = setup
            return outcome
        publisher = ClientSpec(
            "pub",
            "rate-pub",
            dialect_of(server),
            server.port,
            rate=s.rate,
            payload_size=s.payload,
        )
        with Fleet() as publishers:
            _prepare(publishers, [publisher])
            idle_start, idle_from = cpu_seconds(*server.pids), time.monotonic()
            time.sleep(IDLE_S)
            idle_cpu = (cpu_seconds(*server.pids) - idle_start) / (time.monotonic() - idle_from)
            outcome.metrics["idle_cpu_ms_per_s"] = idle_cpu * 1000
            window = _window(s)
            subscribers.send_all(("go", *window, window[1] + s.drain))
            publishers.send_all(("go", *window, window[1] + LOAD_TAIL_S))
            _measure(server, window, outcome)
            pub_reports = publishers.reports(LOAD_TAIL_S + SETUP_TIMEOUT_S)
        sub_reports = subscribers.reports(s.drain + SETUP_TIMEOUT_S)
    outcome.clients = [*sub_reports, *pub_reports]
    samples = sorted(ns for r in sub_reports for ns in r.latencies_ns)
    lags = sorted(ns for r in sub_reports for ns in r.lag_ns)
    sent = sum(r.sent_in_window for r in pub_reports)
    expected = sent * opened
    if "window_cpu_s" in outcome.metrics and expected:
        # the server's CPU time in the window (its edges half a send interval from the
        # nearest send) over the deliveries due in it
        outcome.metrics["cpu_per_delivery_us"] = outcome.metrics["window_cpu_s"] / expected * 1e6
    outcome.metrics["latency_p50"] = delivery_percentile(samples, expected, 0.50) / 1e6
    outcome.metrics["latency_p99"] = delivery_percentile(samples, expected, 0.99) / 1e6
    outcome.metrics["undelivered_after_ms"] = s.drain * 1000
    outcome.metrics["delivered"] = len(samples)
    outcome.metrics["expected"] = expected
    outcome.metrics["publish_errors"] = sum(r.errors for r in pub_reports)
    outcome.metrics["subscriber_errors"] = sum(r.errors for r in sub_reports)
    maximum = samples[-1] / 1e6 if samples else float("nan")
    outcome.detail = (
        f"{setup}; idle CPU {idle_cpu * 1000:.1f} ms/s; "
        f"{sent} msgs in window, {len(samples)}/{expected} delivered, max "
        f"{maximum:.1f} ms; client read lag p50/p99 {percentile(lags, 0.5) / 1e6:.2f}/"
        f"{percentile(lags, 0.99) / 1e6:.2f} ms{per_message_note(sub_reports)}"
    )
    for report in outcome.clients:
        report.latencies_ns, report.sent_ns, report.lag_ns = [], [], []  # keep the JSON small
    return outcome


# ---------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    scenario: str
    key: str
    higher_is_better: bool


def _n(n: int) -> str:
    return f"{n:,}"


def table_rows(scenarios: list[str], s: Settings) -> list[Row]:
    rows = []
    if "publish" in scenarios:
        label = f"publish, {s.publishers} in flight, {s.payload} B, req/s"
        rows.append(Row(label, "publish", "publish_rps", True))
    for kind in KINDS:
        for n in s.subscribers:
            scenario = f"{kind}-{n}"
            if scenario in scenarios:
                prefix = f"{KIND_LABEL[kind]} N={_n(n)} @ {s.rate:g} msg/s"
                rows.append(Row(f"{prefix}: latency p50, ms", scenario, "latency_p50", False))
                rows.append(Row(f"{prefix}: latency p99, ms", scenario, "latency_p99", False))
                rows.append(Row(f"{prefix}: delivered/expected", scenario, "delivered", True))
                label = f"{prefix}: server CPU per delivery, us"
                rows.append(Row(label, scenario, "cpu_per_delivery_us", False))
    for kind in KINDS:
        for n in s.subscribers:
            scenario = f"{kind}-{n}"
            for candidate in (scenario, f"memory-{scenario}"):
                if candidate in scenarios:
                    label = f"memory: RSS per {SUBSCRIBER_NOUN[kind]} (N={_n(n)}), KB"
                    rows.append(Row(label, candidate, "memory", False))
    return rows


def _cell(row: Row, outcome: Outcome | None) -> tuple[str, float | None, bool]:
    """(text, number for the ratio, whether that number is only a lower bound)."""
    if outcome is None or outcome.error:
        return ("error" if outcome is not None else "-"), None, False
    value = outcome.metrics.get(row.key)
    if row.key == "delivered" and value is not None:
        expected = outcome.metrics.get("expected", 0.0)
        share = value / expected if expected else None
        return f"{value:,.0f}/{expected:,.0f}", share, False
    if value == math.inf:  # the percentile fell among deliveries that never came
        bound = outcome.metrics.get("undelivered_after_ms", 0.0)
        return f"> {_format_value(bound)}", bound, True
    return _format_value(value), value, False


def _ratio(pushwire: tuple[str, float | None, bool], nchan: tuple[str, float | None, bool]) -> str:
    _, pw, pw_bound = pushwire
    _, nc, nc_bound = nchan
    if pw is None or not nc or nc != nc or pw != pw or nc_bound:
        return "-"
    return f"> {pw / nc:.1f}" if pw_bound else f"{pw / nc:.2f}"


def render_table(results: dict[str, dict[str, Outcome]], servers: list[str], s: Settings) -> str:
    ratio = servers[:2] == ["pushwire", "nchan"]
    header = ["scenario", *servers]
    if ratio:
        header.append("pushwire/nchan")
    header.append("better")
    rows = [header]
    for row in table_rows(list(results), s):
        values = [_cell(row, results[row.scenario].get(name)) for name in servers]
        line = [row.label, *(text for text, _, _ in values)]
        if ratio:
            line.append(_ratio(values[0], values[1]))
        line.append("higher" if row.higher_is_better else "lower")
        rows.append(line)
    widths = [max(len(line[i]) for line in rows) for i in range(len(header))]
    lines = []
    for n, line in enumerate(rows):
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def loadgen_saturated(outcome: Outcome) -> bool:
    return any(r.cpu_util > LOADGEN_LIMIT for r in outcome.clients)


def _client_cpu_text(outcome: Outcome) -> str:
    parts = [f"{r.name} {r.cpu_util:.0%}" for r in outcome.clients if r.window_s > 0]
    if not parts:
        return "no window"
    total = sum(r.cpu_util for r in outcome.clients)
    return f"{', '.join(parts)} (sum {total:.0%})"


def render_cpu(results: dict[str, dict[str, Outcome]], servers: list[str]) -> str:
    lines = ["CPU inside the window, % of one core (server | load-generator processes):"]
    for scenario, outcomes in results.items():
        for name in servers:
            outcome = outcomes.get(name)
            if outcome is None:
                continue
            if outcome.error:
                lines.append(f"  {scenario:20} {name:8} error: {outcome.error}")
                continue
            server_cpu = "-" if outcome.server_cpu is None else f"{outcome.server_cpu:.0%}"
            rest = other_cpu(outcome)
            rest_text = "" if rest is None else f" | rest of machine {rest:.0%}"
            flag = "  <- load generator near its limit" if loadgen_saturated(outcome) else ""
            lines.append(
                f"  {scenario:20} {name:8} server {server_cpu:>4} | {_client_cpu_text(outcome)}"
                f"{rest_text}; {outcome.detail}{flag}"
            )
    return "\n".join(lines)


def results_json(
    results: dict[str, dict[str, Outcome]], servers: list[str], s: Settings
) -> dict[str, object]:
    def outcome_json(outcome: Outcome) -> dict[str, object]:
        return {
            "metrics": {k: v if math.isfinite(v) else None for k, v in outcome.metrics.items()},
            "server_cpu": outcome.server_cpu,
            "machine_cpu": outcome.machine_cpu,
            "other_cpu": other_cpu(outcome),
            "detail": outcome.detail,
            "error": outcome.error,
            "clients": [
                {
                    "name": r.name,
                    "role": r.role,
                    "connections": r.connections,
                    "opened": r.opened,
                    "failures": r.failures,
                    "errors": r.errors,
                    "count": r.count,
                    "rate": r.rate,
                    "cpu": r.cpu_util,
                }
                for r in outcome.clients
            ],
        }

    return {
        "settings": asdict(s),
        "servers": servers,
        "cpus": os.cpu_count(),
        "results": {
            scenario: {name: outcome_json(o) for name, o in outcomes.items()}
            for scenario, outcomes in results.items()
        },
    }


# ---------------------------------------------------------------------------------------------
# Command line


def _subscriber_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError("subscriber counts must be >= 1")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pushwire bench http",
        description="HTTP benchmark: pushwire side by side with nginx + nchan on this machine.",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before the window")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds to wait for deliveries")
    parser.add_argument(
        "--subscribers", type=_subscriber_counts, default=(1000, 10_000), help="e.g. 1000,10000"
    )
    parser.add_argument("--rate", type=float, default=2.0, help="latency publisher, msg/s")
    parser.add_argument("--publishers", type=int, default=32, help="publish connections")
    parser.add_argument("--payload", type=int, default=64, help=f"bytes (>= {STAMP_LEN})")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--peer", choices=("nchan", "none"), default="nchan")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--without-pushwire", action="store_true", help="measure only the peer")
    parser.add_argument(
        "--loadgen-check",
        action="store_true",
        help="run the scenarios against a do-nothing stub server: the load generator's ceiling",
    )
    parser.add_argument(
        "--subscriber-processes",
        type=int,
        default=SUBSCRIBER_PROCESSES,
        help="client processes the subscribers are spread over (issue 10's protocol: 2)",
    )
    parser.add_argument(
        "--batch-clients",
        action="store_true",
        help="load-generator processes as SCHED_BATCH: they never preempt a server on wake-up",
    )
    args = parser.parse_args(argv)
    if args.batch_clients:
        os.environ[BATCH_CLIENTS_ENV] = "1"  # the client processes inherit it
    if not 0.5 <= args.duration <= 120 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be 0.5..120 and --warmup 0..60 seconds")
    if not 0 <= args.drain <= 60:
        parser.error("--drain must be 0..60 seconds")
    if not 0.1 <= args.rate <= 1000:
        parser.error("--rate must be 0.1..1000 msg/s")
    if not 1 <= args.subscriber_processes <= MAX_SUBSCRIBER_PROCESSES:
        parser.error(f"--subscriber-processes must be 1..{MAX_SUBSCRIBER_PROCESSES}")
    if args.payload < STAMP_LEN or not 1 <= args.publishers <= 1000:
        parser.error(f"--payload must be >= {STAMP_LEN} and --publishers 1..1000")
    unknown = set(filter(None, args.only.split(","))) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
    return args


def _choose_servers(args: argparse.Namespace) -> list[str]:
    if args.loadgen_check:
        return ["stub"]
    servers = [] if args.without_pushwire else ["pushwire"]
    if args.peer == "nchan":
        servers.append("nchan")
    return servers


def plan(selected: list[str], s: Settings) -> list[tuple[str, Callable[[HttpServer], Outcome]]]:
    """(scenario key, runner) in run order."""
    runs: list[tuple[str, Callable[[HttpServer], Outcome]]] = []
    if "publish" in selected:
        runs.append(("publish", lambda server: run_publish(server, s)))
    for kind in KINDS:
        for n in s.subscribers:
            if kind in selected:
                runs.append((f"{kind}-{n}", _delivery_runner(s, kind, n, True)))
            elif "memory" in selected:
                runs.append((f"memory-{kind}-{n}", _delivery_runner(s, kind, n, False)))
    return runs


def _delivery_runner(
    s: Settings, kind: Kind, n: int, publish: bool
) -> Callable[[HttpServer], Outcome]:
    return lambda server: run_delivery(server, s, kind, n, publish)


def run(args: argparse.Namespace) -> int:
    servers = _choose_servers(args)
    if not servers:
        print("nothing to measure: --without-pushwire with --peer none", file=sys.stderr)
        return 2
    if "pushwire" in servers and not pushwire_available():
        print("`python -m pushwire` is not available", file=sys.stderr)
        return 2
    fd_limit = raise_nofile_limit()
    most = fd_limit - FD_HEADROOM
    counts = tuple(min(n, most) for n in args.subscribers)
    if counts != tuple(args.subscribers):
        print(
            f"open-file limit {fd_limit} per process: a server can hold at most {most} "
            f"subscribers; measuring N={','.join(map(str, counts))}"
        )
    settings = Settings(
        duration=args.duration,
        warmup=args.warmup,
        drain=args.drain,
        subscribers=tuple(dict.fromkeys(counts)),
        rate=args.rate,
        payload=args.payload,
        publishers=args.publishers,
        subscriber_processes=args.subscriber_processes,
    )
    selected = [name for name in SCENARIOS if name in args.only.split(",")] or list(SCENARIOS)
    if args.loadgen_check and selected == ["memory"]:
        print("a stub's memory says nothing about the load generator", file=sys.stderr)
        return 2
    print(
        f"HTTP benchmark on {os.cpu_count()} CPUs: {', '.join(servers)}; payload "
        f"{settings.payload} B; {settings.duration:g} s window after {settings.warmup:g} s "
        f"warm-up; subscribers in {settings.subscriber_processes} client processes; fresh "
        f"server per run; open-file limit {fd_limit}",
        flush=True,
    )
    results: dict[str, dict[str, Outcome]] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="pushwire-bench-http-") as tmp:
        for scenario, runner in plan(selected, settings):
            results[scenario] = {}
            for name in servers:
                workdir = Path(tmp) / f"{scenario}-{name}"
                try:
                    with start_server(name, workdir) as server:
                        try:
                            outcome = runner(server)
                        except BenchError:
                            print(server.log_tail(), file=sys.stderr)
                            raise
                except (BenchError, OSError, http.client.HTTPException) as exc:
                    outcome = Outcome(error=f"{type(exc).__name__}: {exc}")
                    failed = True
                results[scenario][name] = outcome
                shown = ", ".join(f"{k} {_format_value(v)}" for k, v in outcome.metrics.items())
                print(f"  {scenario:20} {name:8} {outcome.error or shown}", flush=True)
    print()
    print(render_table(results, servers, settings))
    print()
    print(render_cpu(results, servers))
    short = [
        f"{scenario}/{name}: {o.metrics['reached']:.0f} of {o.metrics['opened']:.0f}"
        for scenario, outcomes in results.items()
        for name, o in outcomes.items()
        if "reached" in o.metrics and o.metrics["reached"] < o.metrics["opened"]
    ]
    if short:
        print(f"\nnote: the server held fewer subscribers than were opened: {'; '.join(short)}")
    if any(loadgen_saturated(o) for outcomes in results.values() for o in outcomes.values()):
        print("\nwarning: a load-generator process used >90% of a core; that row may be")
        print("limited by the client side, not the server")
    cores = os.cpu_count() or 1
    full = [
        f"{scenario}/{name} {o.machine_cpu:.1f}"
        for scenario, outcomes in results.items()
        for name, o in outcomes.items()
        if o.machine_cpu is not None and o.machine_cpu > SATURATED_MACHINE * cores
    ]
    if full:
        print(f"\nnote: all {cores} cores were busy during {', '.join(full)} (busy cores): the")
        print("server, the load generator, loopback TCP and any other process shared them")
    print_busy_note(results, "the same cores")
    if args.json is not None:
        write_json(args.json, results_json(results, servers, settings))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
