"""`pushwire bench modes`: what each way to push costs, for the same stream.

One publisher sends R messages/s round-robin over T topics; N clients each read topic
`i % T` (T = N: every client its own topic; T = 1: one shared topic). The same stream is
delivered by, in turn:

* plain polling every I seconds (`GET /v1/poll`, several values of I);
* long-polling (`GET /v1/longpoll`, re-asked at once with the cursor);
* Server-Sent Events (`GET /v1/sse`);
* the JSON WebSocket (`/v1/ws`);
* MQTT with QoS 0 and with QoS 1 (the client acknowledges every message);
* the device gateway: N devices over MQTT, the stream sent as pushes with an app's API key
  (`POST /v1/push`; bench/modes_gateway.py).

Each mode gets a freshly started pushwire (memory store) and one load-generator process: this
one, on uvloop, with raw sockets (hand-written HTTP/1.1, WebSocket and MQTT 3.1.1 clients), so
every byte each client sends and receives is counted at its socket. Per mode:

* delivery latency p50/p99: publish (send time stamped in the payload) to the arrival of the
  bytes at the client, over every in-window message each client should get;
* requests per second the server handles: HTTP requests (poll, long-poll), MQTT PUBACKs; SSE
  and WebSocket clients send nothing once subscribed;
* bytes on the wire per delivered message, client->server and server->client, counted in the
  client sockets during the window (TCP/IP headers are not included);
* server CPU seconds per 1,000 delivered messages (utime+stime of the server, /proc);
* server RSS per client: growth of the server's RSS when the N clients connect and
  subscribe, before anything is published, divided by N;
* empty responses: polls (and long-polls that timed out) that carried no message.

The publisher's own cost (one MQTT connection, QoS 1 for the MQTT QoS 1 run and QoS 0
otherwise; the provider's push requests in the gateway mode) is in the server CPU figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from pushwire.bench.common import run_cli, write_json
from pushwire.bench.http import (
    HttpProtocolError,
    find_stamps,
    parse_response_head,
    prometheus_value,
    stamp_payload,
)
from pushwire.bench.loadgen import (
    BenchError,
    encode_connect,
    encode_puback,
    encode_publish,
    encode_subscribe,
    fixed_header,
    run_loop,
)
from pushwire.bench.mqtt import percentile
from pushwire.bench.peers import (
    _LISTEN_LINE,
    HOST,
    PUSHWIRE_BENCH_ENV,
    START_TIMEOUT_S,
    _spawn,
    _stop_process,
    _wait_until_accepting,
    cpu_seconds,
    pushwire_argv,
    raise_nofile_limit,
    rss_kb,
)

MODES = ("poll", "longpoll", "sse", "ws", "mqtt0", "mqtt1", "gateway")
MODE_LABEL = {
    "poll": "poll",
    "longpoll": "long-poll",
    "sse": "SSE",
    "ws": "WebSocket",
    "mqtt0": "MQTT QoS 0",
    "mqtt1": "MQTT QoS 1",
    "gateway": "device gateway",
}
# uvicorn closes a keep-alive connection idle for 5 s: a poll interval must stay below it
MAX_POLL_INTERVAL_S = 4.5
CONNECT_TIMEOUT_S = 30.0
# after the window: time for in-window messages still on their way (plus a poll interval)
DRAIN_S = 0.3
TOPIC_PREFIX = "bench/modes/t"  # plain ASCII levels: usable in URL paths as they are
WS_KEY = base64.b64encode(b"pushwire-bench-k").decode()


# ---------------------------------------------------------------------------------------------
# What the clients count


@dataclass(slots=True)
class Tally:
    """Shared by every client of a run. Bytes, requests and empty replies count only while
    `counting`; latencies are of in-window messages (their stamps say so)."""

    counting: bool = False
    rx: int = 0
    tx: int = 0
    requests: int = 0
    empty: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def arrived(self, sent: list[int], now_ns: int) -> None:
        self.latencies_ns.extend(now_ns - s for s in sent)


class Client(asyncio.Protocol):
    """A socket whose bytes are counted; subclasses speak one protocol."""

    def __init__(self, tally: Tally, topic: str, index: int) -> None:
        self.tally = tally
        self.topic = topic
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.start()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(BenchError(f"{type(self).__name__} closed before ready"))

    def send(self, data: bytes, request: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.tally.counting:
            self.tally.tx += len(data)
            if request:
                self.tally.requests += 1
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if self.tally.counting:
            self.tally.rx += len(data)
        try:
            self.received(data, now)
        except (HttpProtocolError, BenchError, ValueError) as exc:
            self.tally.errors.append(f"{type(self).__name__} {self.index}: {exc}")
            if self.transport is not None:
                self.transport.close()

    def set_ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def start(self) -> None:
        raise NotImplementedError

    def received(self, data: bytes, now_ns: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _request(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n".encode()


class PollClient(Client):
    """Plain polling: one keep-alive connection, a request every `interval` seconds."""

    def __init__(self, tally: Tally, topic: str, index: int, interval: float) -> None:
        super().__init__(tally, topic, index)
        self.interval = interval
        self.cursor = "latest"
        self.timer: asyncio.TimerHandle | None = None
        self.next_at = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        # spread the clients over the interval, as independent pollers would be
        self.next_at = loop.time() + random.random() * self.interval
        self.timer = loop.call_at(self.next_at, self.ask)

    def ask(self) -> None:
        self.send(_request(f"/v1/poll/{self.topic}?since={self.cursor}"), True)

    def received(self, data: bytes, now_ns: int) -> None:
        self.buf += data
        while True:
            head = parse_response_head(self.buf)
            if head is None:
                return
            total = head.length + head.body_length()
            if len(self.buf) < total:
                return
            body, self.buf = self.buf[head.length : total], self.buf[total:]
            self.answered(head.status, head.header(b"pushwire-cursor"), body, now_ns)

    def answered(self, status: int, cursor: bytes | None, body: bytes, now_ns: int) -> None:
        if status != 200 or cursor is None:
            raise BenchError(f"poll answered {status}: {body[:200]!r}")
        self.cursor = cursor.decode()
        sent, _, _ = find_stamps(body)
        self.tally.arrived(sent, now_ns)
        if b'"messages":[]' in body and self.tally.counting:
            self.tally.empty += 1
        self.set_ready()
        self.schedule()

    def schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self.next_at = max(self.next_at + self.interval, loop.time())
        self.timer = loop.call_at(self.next_at, self.ask)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        super().close()


class LongPollClient(PollClient):
    """Long-polling: re-ask at once with the cursor; the server holds the request."""

    def __init__(self, tally: Tally, topic: str, index: int) -> None:
        super().__init__(tally, topic, index, 0.0)

    def start(self) -> None:
        self.ask()

    def ask(self) -> None:
        path = f"/v1/longpoll/{self.topic}?timeout=60&since={self.cursor}"
        self.send(_request(path), True)

    def schedule(self) -> None:
        self.ask()


class SseClient(Client):
    def start(self) -> None:
        self.send(_request(f"/v1/sse/{self.topic}", "Accept: text/event-stream\r\n"))

    def received(self, data: bytes, now_ns: int) -> None:
        self.buf += data
        if not self.ready.done():
            if b": pushwire " not in self.buf:
                return
            head = parse_response_head(self.buf)
            if head is None or head.status != 200:
                raise BenchError(f"SSE refused: {self.buf[:200]!r}")
            self.set_ready()
        sent, _, keep = find_stamps(self.buf)
        self.tally.arrived(sent, now_ns)
        self.buf = self.buf[keep:]


def ws_frame(text: bytes) -> bytes:
    """A masked text frame (clients must mask, RFC 6455 5.3)."""
    mask = os.urandom(4)
    n = len(text)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    return head + mask + masked


class WsClient(Client):
    """The JSON WebSocket. Server frames are not masked, so the stamps in the message JSON
    can be found in the raw stream without unframing it."""

    upgraded = False

    def start(self) -> None:
        self.send(
            _request(
                "/v1/ws",
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: pushwire.v1\r\n",
            )
        )

    def received(self, data: bytes, now_ns: int) -> None:
        self.buf += data
        if not self.upgraded:
            head = parse_response_head(self.buf)
            if head is None:
                return
            if head.status != 101:
                raise BenchError(f"WebSocket refused: {self.buf[:200]!r}")
            self.upgraded = True
            self.buf = self.buf[head.length :]
            frame = {"type": "subscribe", "sub": "s", "filter": self.topic}
            self.send(ws_frame(json.dumps(frame).encode()))
        if not self.ready.done():
            if b'"subscribed"' not in self.buf:
                return
            self.set_ready()
        sent, _, keep = find_stamps(self.buf)
        self.tally.arrived(sent, now_ns)
        self.buf = self.buf[keep:]


class MqttClient(Client):
    def __init__(self, tally: Tally, topic: str, index: int, qos: int) -> None:
        super().__init__(tally, topic, index)
        self.qos = qos

    def start(self) -> None:
        self.send(encode_connect(f"modes-{self.index}-{os.getpid()}", keepalive=600))
        self.send(encode_subscribe(1, self.topic, self.qos))

    def received(self, data: bytes, now_ns: int) -> None:
        self.buf += data
        buf = self.buf
        offset = 0
        end = len(buf)
        sent: list[int] = []
        acks: list[bytes] = []
        while offset < end:
            found = fixed_header(buf, offset, end)
            if found is None or offset + found[1] > end:
                break
            header_len, length = found
            kind = buf[offset] >> 4
            if kind == 3:  # PUBLISH
                qos = (buf[offset] >> 1) & 3
                at = offset + header_len
                topic_len = int.from_bytes(buf[at : at + 2], "big")
                at += 2 + topic_len
                if qos:
                    acks.append(encode_puback(int.from_bytes(buf[at : at + 2], "big")))
                    at += 2
                stamps, _, _ = find_stamps(buf, at, offset + length)
                sent.extend(stamps)
            elif kind == 9:  # SUBACK
                if buf[offset + length - 1] == 0x80:
                    raise BenchError(f"subscription to {self.topic} refused")
                self.set_ready()
            offset += length
        self.buf = buf[offset:]
        self.tally.arrived(sent, now_ns)
        for ack in acks:
            self.send(ack, True)


# ---------------------------------------------------------------------------------------------
# The publisher: MQTT QoS 0, R messages/s round-robin over the topics


class Publisher(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.connected = asyncio.get_running_loop().create_future()
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(encode_connect(f"modes-pub-{os.getpid()}", keepalive=600))

    def data_received(self, data: bytes) -> None:
        if self.connected.done():
            return  # PUBACKs of a QoS 1 stream: nothing to do with them
        self.buf += data
        if len(self.buf) >= 4:
            if self.buf[0] != 0x20 or self.buf[3] != 0:
                self.connected.set_exception(BenchError(f"publisher refused: {self.buf[:4]!r}"))
            else:
                self.connected.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(BenchError("publisher connection lost"))


async def publish_stream(
    publisher: Publisher,
    topics: list[str],
    rate: float,
    size: int,
    in_window: Callable[[], bool],
    sent_per_topic: list[int],
    stop: asyncio.Event,
    qos: int = 0,
) -> None:
    """R messages/s; `sent_per_topic` counts the in-window ones per topic. With `qos` 1 the
    server's PUBACKs are read and dropped (a subscriber gets at most the publisher's QoS)."""
    loop = asyncio.get_running_loop()
    assert publisher.transport is not None
    period = 1.0 / rate
    next_at = loop.time()
    n = 0
    while not stop.is_set():
        now = loop.time()
        if now < next_at:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), next_at - now)
            continue
        burst = []
        while next_at <= now:  # catch up without drifting: the rate holds on average
            k = n % len(topics)
            window = in_window()
            payload = stamp_payload(time.time_ns(), window, size)
            packet_id = n % 65535 + 1 if qos else 0
            burst.append(encode_publish(topics[k], payload, qos, packet_id))
            if window:
                sent_per_topic[k] += 1
            n += 1
            next_at += period
        publisher.transport.write(b"".join(burst))


# ---------------------------------------------------------------------------------------------
# The server


@dataclass(frozen=True, slots=True)
class PushwireProcess:
    pid: int
    mqtt_port: int
    http_port: int


def pushwire_modes_argv() -> list[str]:
    # heartbeats and long-poll timeouts out of the way of a short run; the rest is default
    return [
        *pushwire_argv(),
        "--sse-heartbeat",
        "3600",
        "--ws-heartbeat",
        "3600",
        "--longpoll-max-timeout",
        "3600",
    ]


@contextlib.contextmanager
def pushwire_process(workdir: Path) -> Iterator[PushwireProcess]:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "pushwire.log"
    process = _spawn(pushwire_modes_argv(), workdir, log_path, PUSHWIRE_BENCH_ENV)
    try:
        ports: dict[str, int] = {}
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(ports) < 2:
            if process.poll() is not None:
                raise BenchError(f"pushwire exited with {process.returncode} during start-up")
            if time.monotonic() > deadline:
                raise BenchError("pushwire did not log its ports in time")
            ports.update((k, int(p)) for k, p in _LISTEN_LINE.findall(log_path.read_text()))
            time.sleep(0.05)
        _wait_until_accepting(ports["http"], process, "pushwire")
        yield PushwireProcess(process.pid, ports["mqtt"], ports["http"])
    finally:
        _stop_process(process)


def server_gauge(server: PushwireProcess, name: str) -> float:
    url = f"http://{HOST}:{server.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        value = prometheus_value(reply.read().decode(), name)
    return value if value is not None else 0.0


# ---------------------------------------------------------------------------------------------
# One run


@dataclass(frozen=True, slots=True)
class Plan:
    mode: str
    interval: float | None = None  # poll only

    @property
    def label(self) -> str:
        if self.interval is not None:
            return f"poll {self.interval:g}s"
        return MODE_LABEL[self.mode]


@dataclass(slots=True)
class Result:
    label: str
    mode: str
    interval: float | None
    clients: int
    topics: int
    rate: float
    duration: float
    expected: int
    delivered: int
    p50_ms: float
    p99_ms: float
    requests_per_s: float
    rx_bytes_per_msg: float  # server -> client
    tx_bytes_per_msg: float  # client -> server
    cpu_s_per_1000: float
    rss_kb_per_client: float
    empty_responses: int | None  # None: does not apply (the device gateway)
    errors: list[str]


@dataclass(frozen=True, slots=True)
class Options:
    clients: int = 100
    topics: int = 100
    rate: float = 100.0
    duration: float = 5.0
    warmup: float = 1.0
    intervals: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    modes: tuple[str, ...] = MODES
    payload: int = 64
    one_server: bool = False

    def plans(self) -> list[Plan]:
        out: list[Plan] = []
        for mode in self.modes:
            if mode == "poll":
                out.extend(Plan("poll", i) for i in self.intervals)
            else:
                out.append(Plan(mode))
        return out


def make_client(plan: Plan, tally: Tally, topic: str, index: int) -> Client:
    if plan.mode == "poll":
        assert plan.interval is not None
        return PollClient(tally, topic, index, plan.interval)
    if plan.mode == "longpoll":
        return LongPollClient(tally, topic, index)
    if plan.mode == "sse":
        return SseClient(tally, topic, index)
    if plan.mode == "ws":
        return WsClient(tally, topic, index)
    return MqttClient(tally, topic, index, 1 if plan.mode == "mqtt1" else 0)


async def _open(plan: Plan, server: PushwireProcess, tally: Tally, o: Options) -> list[Client]:
    loop = asyncio.get_running_loop()
    port = server.mqtt_port if plan.mode.startswith("mqtt") else server.http_port
    clients: list[Client] = []

    async def one(i: int) -> None:
        topic = f"{TOPIC_PREFIX}{i % o.topics}"
        _, client = await loop.create_connection(
            lambda: make_client(plan, tally, topic, i), HOST, port
        )
        clients.append(client)

    for first in range(0, o.clients, 200):  # in batches: a burst of SYNs overflows backlogs
        await asyncio.gather(*(one(i) for i in range(first, min(o.clients, first + 200))))
    if plan.mode != "longpoll":
        await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients)), CONNECT_TIMEOUT_S)
    return clients


async def _until_held(server: PushwireProcess, count: int) -> None:
    """Long-polls have no reply until a message comes: wait until the server holds them."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while await asyncio.to_thread(server_gauge, server, "pushwire_longpoll_waiters") < count:
        if time.monotonic() > deadline:
            raise BenchError("the long-polls were not all held in time")
        await asyncio.sleep(0.05)


async def run_plan(plan: Plan, server: PushwireProcess, o: Options) -> Result:
    tally = Tally()
    rss_before = rss_kb(server.pid)
    clients = await _open(plan, server, tally, o)
    if plan.mode == "longpoll":
        await _until_held(server, o.clients)
    rss_after = rss_kb(server.pid)

    loop = asyncio.get_running_loop()
    _, publisher = await loop.create_connection(Publisher, HOST, server.mqtt_port)
    await asyncio.wait_for(publisher.connected, CONNECT_TIMEOUT_S)
    topics = [f"{TOPIC_PREFIX}{k}" for k in range(o.topics)]
    readers = [0] * o.topics
    for i in range(o.clients):
        readers[i % o.topics] += 1
    sent = [0] * o.topics
    in_window = False
    stop = asyncio.Event()
    pump = asyncio.ensure_future(
        publish_stream(
            publisher,
            topics,
            o.rate,
            o.payload,
            lambda: in_window,
            sent,
            stop,
            qos=1 if plan.mode == "mqtt1" else 0,
        )
    )
    try:
        await asyncio.sleep(o.warmup)
        tally.counting = True
        in_window = True
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        await asyncio.sleep(o.duration)
        in_window = False
        cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
        tally.counting = False
        # late deliveries of in-window messages: a poller may ask up to an interval later
        await asyncio.sleep((plan.interval or 0.0) + DRAIN_S)
    finally:
        stop.set()
        await pump
        assert publisher.transport is not None
        publisher.transport.close()
        for client in clients:
            client.close()
    elapsed = t1 - t0
    expected = sum(s * r for s, r in zip(sent, readers, strict=True))
    latencies = sorted(tally.latencies_ns)
    delivered = len(latencies)
    per_msg = max(delivered, 1)
    return Result(
        label=plan.label,
        mode=plan.mode,
        interval=plan.interval,
        clients=o.clients,
        topics=o.topics,
        rate=o.rate,
        duration=elapsed,
        expected=expected,
        delivered=delivered,
        p50_ms=_p(latencies, 0.5, expected),
        p99_ms=_p(latencies, 0.99, expected),
        requests_per_s=tally.requests / elapsed,
        rx_bytes_per_msg=tally.rx / per_msg,
        tx_bytes_per_msg=tally.tx / per_msg,
        cpu_s_per_1000=(cpu1 - cpu0) / per_msg * 1000,
        rss_kb_per_client=max(0, rss_after - rss_before) / o.clients,
        empty_responses=tally.empty,
        errors=tally.errors[:5],
    )


def _p(sorted_ns: list[int], fraction: float, expected: int) -> float:
    """Percentile in ms; a message that never came counts as infinitely late."""
    if not sorted_ns:
        return math.inf
    if len(sorted_ns) < expected and fraction * expected > len(sorted_ns):
        return math.inf
    return percentile(sorted_ns, fraction) / 1e6


# ---------------------------------------------------------------------------------------------
# Output


def _num(value: float, digits: int = 1) -> str:
    if math.isinf(value):
        return "lost"
    return f"{value:,.{digits}f}"


def render_table(results: list[Result]) -> str:
    head = (
        "mode",
        "p50 ms",
        "p99 ms",
        "delivered",
        "req/s",
        "B/msg in",
        "B/msg out",
        "CPU s/1k msg",
        "RSS KiB/client",
        "empty replies",
    )
    rows = [
        (
            r.label,
            _num(r.p50_ms),
            _num(r.p99_ms),
            f"{r.delivered}/{r.expected}",
            _num(r.requests_per_s),
            _num(r.rx_bytes_per_msg, 0),
            _num(r.tx_bytes_per_msg, 0),
            _num(r.cpu_s_per_1000, 3),
            _num(r.rss_kb_per_client),
            "n/a" if r.empty_responses is None else str(r.empty_responses),
        )
        for r in results
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(head, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in rows:
        lines.append(
            "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        )
    return "\n".join(lines)


def write_plots(results: list[Result], out: Path, payload: int) -> list[Path]:
    """modes-latency.png, modes-bytes.png and modes-cpu.png in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    polls = [r for r in results if r.mode == "poll" and r.interval is not None]
    pushed = [r for r in results if r.mode != "poll"]

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    if polls:
        xs = [r.interval or 0.0 for r in polls]
        ax.plot(xs, [r.p50_ms for r in polls], "o-", color="#2563eb", label="poll p50")
        ax.plot(xs, [r.p99_ms for r in polls], "o--", color="#2563eb", alpha=0.6, label="poll p99")
    colors = ["#16a34a", "#f59e0b", "#db2777", "#7c3aed", "#0891b2", "#dc2626"]
    for r, color in zip(pushed, colors, strict=False):
        if math.isfinite(r.p50_ms):
            ax.axhline(r.p50_ms, color=color, linewidth=1.2, label=f"{r.label} p50")
    ax.set_xlabel("polling interval (s)")
    ax.set_ylabel("delivery latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Latency against polling interval (push modes: horizontal lines)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    written.append(out / "modes-latency.png")
    fig.savefig(written[-1])
    plt.close(fig)

    labels = [r.label for r in results]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    rx = [r.rx_bytes_per_msg for r in results]
    tx = [r.tx_bytes_per_msg for r in results]
    ax.bar(labels, rx, color="#2563eb", label="server -> client")
    ax.bar(labels, tx, bottom=rx, color="#f59e0b", label="client -> server")
    ax.set_ylabel("bytes per delivered message")
    r0 = results[0]
    ax.set_title(
        f"Bytes on the wire per delivered message ({payload} B payloads, "
        f"{r0.clients} clients, {r0.topics} topics)"
    )
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    written.append(out / "modes-bytes.png")
    fig.savefig(written[-1])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    ax.bar(labels, [r.cpu_s_per_1000 for r in results], color="#7c3aed")
    ax.set_ylabel("server CPU seconds per 1,000 messages")
    ax.set_title("Server CPU per delivered message")
    ax.grid(True, axis="y", alpha=0.3)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    written.append(out / "modes-cpu.png")
    fig.savefig(written[-1])
    plt.close(fig)
    return written


# ---------------------------------------------------------------------------------------------
# Entry point


def _floats(text: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(",") if v.strip())
    if not values or any(v <= 0 or v > MAX_POLL_INTERVAL_S for v in values):
        raise argparse.ArgumentTypeError(f"intervals must be in (0, {MAX_POLL_INTERVAL_S}] s")
    return values


def _modes(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = set(values) - set(MODES)
    if unknown or not values:
        raise argparse.ArgumentTypeError(f"modes are {', '.join(MODES)}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = Options()
    p = argparse.ArgumentParser(
        prog="pushwire bench modes",
        description="The cost of each way to push the same stream: latency, requests, bytes, "
        "CPU and memory per mode (see docs/modes.md).",
    )
    p.add_argument("--clients", type=int, default=d.clients, help="N clients")
    p.add_argument(
        "--topics",
        type=int,
        default=d.topics,
        help="T topics; client i reads topic i %% T (T = N: own topics; 1: one shared)",
    )
    p.add_argument("--rate", type=float, default=d.rate, help="R messages/s published in all")
    p.add_argument("--duration", type=float, default=d.duration, help="measured seconds per mode")
    p.add_argument("--warmup", type=float, default=d.warmup, help="seconds before measuring")
    p.add_argument(
        "--intervals",
        type=_floats,
        default=d.intervals,
        help="polling intervals, seconds, comma-separated",
    )
    p.add_argument("--modes", type=_modes, default=d.modes, help=f"of {','.join(MODES)}")
    p.add_argument("--payload", type=int, default=d.payload, help="payload bytes (>= 24)")
    p.add_argument(
        "--one-server",
        action="store_true",
        help="one server for every mode (quicker; RSS per client then less exact)",
    )
    p.add_argument("--out", type=Path, default=Path("modes-results"), help="plots and JSON")
    p.add_argument("--no-plots", action="store_true", help="table and JSON only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _progress(plans: list[Plan], quiet: bool) -> Any:
    if quiet:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=len(plans), unit="mode", file=sys.stderr, leave=False)


def run(args: argparse.Namespace) -> int:
    if args.clients < 1 or args.topics < 1 or args.topics > args.clients or args.rate <= 0:
        print("need clients >= topics >= 1 and rate > 0", file=sys.stderr)
        return 2
    o = Options(
        clients=args.clients,
        topics=args.topics,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        intervals=args.intervals,
        modes=args.modes,
        payload=max(args.payload, 24),
        one_server=args.one_server,
    )
    raise_nofile_limit()
    plans = o.plans()
    print(
        f"{o.clients} clients, {o.topics} topic(s), {o.rate:g} messages/s, {o.payload} B "
        f"payloads, {o.duration:g} s measured per mode; {len(plans)} runs",
        file=sys.stderr,
    )
    results: list[Result] = []
    bar = _progress(plans, args.quiet)
    workdir = Path(tempfile.mkdtemp(prefix="pushwire-modes-"))  # server logs, removed after
    try:
        broker_plans = [p for p in plans if p.mode != "gateway"]
        if o.one_server and broker_plans:
            with pushwire_process(workdir) as server:
                for plan in broker_plans:
                    results.append(_one(plan, server, o, bar))
        else:
            for plan in broker_plans:
                with pushwire_process(workdir) as server:
                    results.append(_one(plan, server, o, bar))
        for plan in plans:
            if plan.mode == "gateway":  # its own server always: a data directory and an app
                results.append(_one_gateway(plan, workdir / "gateway", o, bar))
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(render_table(results))
    for r in results:
        for err in r.errors:
            print(f"warning: {r.label}: {err}", file=sys.stderr)
    write_json(args.out / "modes.json", {"options": asdict(o), "results": _json(results)})
    if not args.no_plots:
        for path in write_plots(results, args.out, o.payload):
            print(f"plot written to {path}")
    lost = [r.label for r in results if r.delivered < r.expected]
    if lost:
        print(f"note: not every message arrived in {', '.join(lost)}", file=sys.stderr)
    return 0


def _json(results: list[Result]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        d = asdict(r)
        for k, v in d.items():
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = None
        out.append(d)
    return out


def _one(plan: Plan, server: PushwireProcess, o: Options, bar: Any) -> Result:
    if bar is not None:
        bar.set_description(plan.label)
    holder: list[Result] = []

    async def main() -> None:
        holder.append(await run_plan(plan, server, o))

    run_loop(main())
    if bar is not None:
        bar.update(1)
    return holder[0]


def _one_gateway(plan: Plan, workdir: Path, o: Options, bar: Any) -> Result:
    from pushwire.bench.modes_gateway import run_gateway_plan  # it builds on this module

    if bar is not None:
        bar.set_description(plan.label)
    holder: list[Result] = []

    async def main() -> None:
        holder.append(await run_gateway_plan(plan, workdir, o))

    run_loop(main())
    if bar is not None:
        bar.update(1)
    return holder[0]


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, parse_args(argv))
