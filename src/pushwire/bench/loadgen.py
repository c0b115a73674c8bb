"""MQTT 3.1.1 load generator: pre-encoded packets, header-walking counters, client processes.

The benchmark machine has two cores: the server under test takes one, so the whole client
side has to fit in the other. Hence:

* Publishers write one pre-encoded batch of many PUBLISH packets per `write()` call and stop
  writing while the transport is paused (TCP back-pressure), so they cost a few syscalls per
  hundred packets.
* Subscribers never decode a PUBLISH unless they need its payload (latency). `PacketWalker`
  walks fixed headers, and a run of back-to-back packets with identical fixed headers is
  counted with strided byte slices, so per-packet work happens in C, not in the interpreter.
* Each group of clients runs in its own process (`client_process_main`), on uvloop when it
  is installed, and reports the CPU it used inside the measurement window.

The encoder covers only the packets the benchmark needs and does not depend on
`pushwire.mqtt`, so the harness measures pushwire without sharing its code paths.
`stub_process_main` is a do-nothing broker used to check the load generator's own ceiling.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import functools
import math
import multiprocessing
import os
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal, cast

from pushwire.bench.common import own_cpu_seconds

# Packet types, MQTT 3.1.1 section 2.2.1.
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBSCRIBE = 8
SUBACK = 9
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

PINGREQ_PACKET = b"\xc0\x00"
PINGRESP_PACKET = b"\xd0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

MAX_PACKET_ID = 65535
# Long enough that no benchmark connection ever needs a PINGREQ (runs are capped well below).
KEEPALIVE_S = 600
# Size of one pre-encoded batch of QoS 0 PUBLISH packets: one write() call.
BATCH_BYTES = 64 * 1024
# Transport buffer limits for blasting publishers: large enough that a resume_writing()
# refills many batches, small enough that "sent" stays close to "accepted by the kernel".
WRITE_HIGH_WATER = 512 * 1024
WRITE_LOW_WATER = 128 * 1024
# How long a client process waits for the orchestrator between steps before giving up.
STEP_TIMEOUT_S = 120.0
HANDSHAKE_TIMEOUT_S = 30.0
TIMESTAMP = struct.Struct(">Q")


class ProtocolViolation(Exception):
    """The peer sent bytes that are not a well-formed MQTT packet stream."""


class BenchError(Exception):
    """A load-generator process could not do its part (connect, subscribe, report)."""


# ---------------------------------------------------------------------------------------------
# Encoding: only the MQTT 3.1.1 packets the benchmark sends.


def encode_remaining_length(length: int) -> bytes:
    if not 0 <= length <= 268_435_455:
        raise ValueError(f"remaining length out of range: {length}")
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_remaining_length(len(body)) + body


def encode_connect(client_id: str, keepalive: int = KEEPALIVE_S) -> bytes:
    # protocol name, level 4 (3.1.1), flags: clean session only, keepalive
    variable = _utf8("MQTT") + b"\x04\x02" + keepalive.to_bytes(2, "big")
    return _packet(0x10, variable + _utf8(client_id))


def encode_connack(return_code: int = 0) -> bytes:
    return bytes([0x20, 0x02, 0x00, return_code])


def encode_subscribe(packet_id: int, topic_filter: str, qos: int) -> bytes:
    return _packet(0x82, packet_id.to_bytes(2, "big") + _utf8(topic_filter) + bytes([qos]))


def encode_suback(packet_id: int, granted_qos: int) -> bytes:
    return bytes([0x90, 0x03]) + packet_id.to_bytes(2, "big") + bytes([granted_qos])


def encode_publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0) -> bytes:
    packet_id_bytes = packet_id.to_bytes(2, "big") if qos else b""
    return _packet(0x30 | qos << 1, _utf8(topic) + packet_id_bytes + payload)


def encode_puback(packet_id: int) -> bytes:
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def encode_pubacks(packet_ids: bytes | bytearray) -> bytes:
    """PUBACKs for packet ids given as 2 big-endian bytes each, built with slice assignment."""
    count = len(packet_ids) // 2
    out = bytearray(4 * count)
    out[0::4] = b"\x40" * count
    out[1::4] = b"\x02" * count
    out[2::4] = packet_ids[0::2]
    out[3::4] = packet_ids[1::2]
    return bytes(out)


def bench_payload(size: int) -> bytes:
    return bytes(i & 0xFF for i in range(size))


def encode_publish_batch(topic: str, payload: bytes, min_bytes: int = BATCH_BYTES) -> bytes:
    """Identical QoS 0 PUBLISH packets back to back, at least `min_bytes` long."""
    packet = encode_publish(topic, payload)
    return packet * max(1, math.ceil(min_bytes / len(packet)))


@dataclass(frozen=True, slots=True)
class PublishRing:
    """QoS 1 PUBLISH packets for packet ids 1..65535 in order, all the same size."""

    data: bytes
    packet_size: int
    count: int

    @classmethod
    def build(cls, topic: str, payload: bytes, qos: int = 1) -> PublishRing:
        packets = [encode_publish(topic, payload, qos, i) for i in range(1, MAX_PACKET_ID + 1)]
        return cls(b"".join(packets), len(packets[0]), len(packets))


# ---------------------------------------------------------------------------------------------
# Counting: walk fixed headers, count runs of identical packets without a Python-level loop.


def fixed_header(buf: bytes, offset: int, end: int) -> tuple[int, int] | None:
    """(fixed header length, packet length) of the packet at `offset`; None if incomplete."""
    remaining = 0
    shift = 0
    index = offset + 1
    while index < end:
        byte = buf[index]
        remaining |= (byte & 0x7F) << shift
        index += 1
        if byte < 0x80:
            return index - offset, index - offset + remaining
        shift += 7
        if shift > 21:
            raise ProtocolViolation("remaining length longer than 4 bytes")
    return None


PublishCallback = Callable[[bytes, int], None]  # (whole packet, fixed header length)
ControlCallback = Callable[[int, bytes], None]  # (packet type, whole packet)


class PacketWalker:
    """Splits an MQTT byte stream into packets and counts them per packet type.

    PUBLISH (unless `on_publish` wants each one) and PUBACK packets are counted in runs: a
    run is a sequence of back-to-back packets whose first bytes (the fixed header and, for
    PUBLISH, the topic length) are identical, so they all have the same size. The run's
    length is found by comparing one byte column per signature byte with strided slices
    (`buf[start::packet_size]`), which runs in C. Every packet's header is still checked.
    With `collect_ids`, the packet ids of QoS 1/2 PUBLISH packets are appended to
    `publish_ids` (2 bytes each) for the caller to acknowledge. Other packets go to
    `on_control`.
    """

    # The probe (how many packets a run is tested for) grows while runs are long and shrinks
    # when they are short, so a stream of alternating sizes does not cost O(n^2).
    MIN_PROBE = 8
    MAX_PROBE = 4096

    def __init__(
        self,
        *,
        collect_ids: bool = False,
        collect_stamps: bool = False,
        on_publish: PublishCallback | None = None,
        on_control: ControlCallback | None = None,
    ) -> None:
        self.counts = [0] * 16
        self.publish_ids = bytearray()
        # with collect_stamps: the first 8 payload bytes (a send time) of every QoS 1/2
        # PUBLISH, 8 bytes each, gathered like the packet ids
        self.publish_stamps = bytearray()
        self._collect_ids = collect_ids
        self._collect_stamps = collect_stamps
        self._on_publish = on_publish
        self._on_control = on_control
        self._tail = b""
        self._probe = self.MIN_PROBE

    @property
    def publishes(self) -> int:
        return self.counts[PUBLISH]

    def feed(self, data: bytes) -> None:
        buf = self._tail + data if self._tail else bytes(data)
        end = len(buf)
        offset = 0
        while offset < end:
            header = fixed_header(buf, offset, end)
            if header is None:
                break
            header_len, size = header
            if offset + size > end:
                break
            packet_type = buf[offset] >> 4
            if packet_type == PUBACK or (packet_type == PUBLISH and self._on_publish is None):
                offset += self._count_run(buf, offset, end, header_len, size, packet_type)
                continue
            packet = buf[offset : offset + size]
            offset += size
            self.counts[packet_type] += 1
            if packet_type == PUBLISH:
                self._publish_one(packet, header_len)
            elif self._on_control is not None:
                self._on_control(packet_type, packet)
        self._tail = buf[offset:]

    def _count_run(
        self, buf: bytes, offset: int, end: int, header_len: int, size: int, packet_type: int
    ) -> int:
        signature_len = header_len + 2 if packet_type == PUBLISH else header_len
        if signature_len > size:
            raise ProtocolViolation("PUBLISH too short for a topic length")
        probe = min((end - offset) // size, self._probe)
        run = probe
        if probe > 1:
            stop = offset + probe * size
            for column_start in range(offset, offset + signature_len):
                column = buf[column_start:stop:size]
                same = len(column) - len(column.lstrip(column[:1]))
                if same < run:
                    run = same
                    if run == 1:
                        break
        self._probe = min(self.MAX_PROBE, max(self.MIN_PROBE, 2 * run))
        self.counts[packet_type] += run
        qos = (buf[offset] >> 1) & 0x03
        if packet_type == PUBLISH and qos and self._collect_ids:
            topic_len = int.from_bytes(buf[offset + header_len : offset + signature_len], "big")
            id_at = offset + signature_len + topic_len
            if id_at + 2 > offset + size:
                raise ProtocolViolation("PUBLISH too short for its packet id")
            run_stop = offset + run * size
            ids = bytearray(2 * run)
            ids[0::2] = buf[id_at:run_stop:size]
            ids[1::2] = buf[id_at + 1 : run_stop : size]
            self.publish_ids += ids
            if self._collect_stamps:
                stamp_at = id_at + 2
                if stamp_at + TIMESTAMP.size > offset + size:
                    raise ProtocolViolation("PUBLISH too short for a send time")
                stamps = bytearray(TIMESTAMP.size * run)
                for k in range(TIMESTAMP.size):
                    stamps[k :: TIMESTAMP.size] = buf[stamp_at + k : run_stop : size]
                self.publish_stamps += stamps
        return run * size

    def _publish_one(self, packet: bytes, header_len: int) -> None:
        if self._collect_ids and (packet[0] >> 1) & 0x03:
            topic_len = int.from_bytes(packet[header_len : header_len + 2], "big")
            id_at = header_len + 2 + topic_len
            self.publish_ids += packet[id_at : id_at + 2]
            if self._collect_stamps:
                self.publish_stamps += packet[id_at + 2 : id_at + 2 + TIMESTAMP.size]
        if self._on_publish is not None:
            self._on_publish(packet, header_len)


def publish_payload(packet: bytes, header_len: int) -> bytes:
    topic_len = int.from_bytes(packet[header_len : header_len + 2], "big")
    payload_at = header_len + 2 + topic_len + (2 if (packet[0] >> 1) & 0x03 else 0)
    return packet[payload_at:]


# ---------------------------------------------------------------------------------------------
# Sending: keep the socket busy with as few Python-level operations as possible.


class BlastPump:
    """Keeps a transport's send buffer full with one pre-encoded batch of QoS 0 PUBLISH."""

    BATCHES_PER_TURN = 16  # then yield to the loop so timers and other connections run

    def __init__(self, transport: asyncio.Transport, batch: bytes, packets_per_batch: int):
        self.sent = 0
        self._transport = transport
        self._batch = batch
        self._packets_per_batch = packets_per_batch
        self._running = False
        self._paused = False
        self._scheduled = False
        # a small batch (many publishers in one process) gets a proportionally small buffer
        high = min(WRITE_HIGH_WATER, 8 * len(batch))
        transport.set_write_buffer_limits(high=high, low=min(WRITE_LOW_WATER, high // 4))

    def start(self) -> None:
        self._running = True
        self._schedule()

    def stop(self) -> None:
        self._running = False

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._schedule()

    def _schedule(self) -> None:
        if self._running and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._scheduled = False
        for _ in range(self.BATCHES_PER_TURN):
            if not self._running or self._paused or self._transport.is_closing():
                return
            self._transport.write(self._batch)
            self.sent += self._packets_per_batch
        self._schedule()


class WindowPump:
    """Keeps `window` QoS 1 PUBLISH packets unacknowledged, taken in order from a ring.

    Packet ids come from the ring (1..65535 in order), so an id is reused only 65535 sends
    later, far beyond any window.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        ring: PublishRing,
        window: int,
        stamp_offset: int | None = None,
    ) -> None:
        self.sent = 0
        self.acked = 0
        self._transport = transport
        self._ring = ring
        self._window = window
        # where in each packet the send time goes (monotonic_ns, 8 bytes); None: no stamps
        self._stamp_offset = stamp_offset
        self._next = 0
        self._running = False

    def start(self) -> None:
        self._running = True
        self.fill()

    def stop(self) -> None:
        self._running = False

    def on_acks(self, count: int) -> None:
        self.acked += count
        self.fill()

    def fill(self) -> None:
        if not self._running or self._transport.is_closing():
            return
        room = self._window - (self.sent - self.acked)
        self.sent += max(0, room)
        size = self._ring.packet_size
        while room > 0:
            take = min(room, self._ring.count - self._next)
            chunk = self._ring.data[self._next * size : (self._next + take) * size]
            if self._stamp_offset is not None:
                chunk = stamp_packets(chunk, size, self._stamp_offset, time.monotonic_ns())
            self._transport.write(chunk)
            self._next = (self._next + take) % self._ring.count
            room -= take


def stamp_packets(chunk: bytes, packet_size: int, offset: int, stamp_ns: int) -> bytes:
    """A copy of back-to-back equal-size packets with `stamp_ns` at `offset` in each one,
    written one byte column at a time (strided slice assignment, i.e. in C)."""
    count = len(chunk) // packet_size
    out = bytearray(chunk)
    stamp = TIMESTAMP.pack(stamp_ns)
    for k in range(TIMESTAMP.size):
        out[offset + k :: packet_size] = stamp[k : k + 1] * count
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Client connections.


class BenchClient(asyncio.Protocol):
    """One MQTT 3.1.1 connection: CONNECT when connected, futures for CONNACK and SUBACK,
    every incoming packet through a PacketWalker. `progress()` is what the role counts."""

    def __init__(
        self,
        client_id: str,
        *,
        collect_ids: bool = False,
        on_publish: PublishCallback | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.client_id = client_id
        self.connack: asyncio.Future[int] = loop.create_future()
        self.suback: asyncio.Future[int] = loop.create_future()
        self.walker = PacketWalker(
            collect_ids=collect_ids, on_publish=on_publish, on_control=self._on_control
        )
        self.transport: asyncio.Transport | None = None
        self._subscribing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(encode_connect(self.client_id))

    def data_received(self, data: bytes) -> None:
        self.walker.feed(data)
        self.after_feed()

    def after_feed(self) -> None:
        """Hook for roles that answer what they received."""

    def connection_lost(self, exc: Exception | None) -> None:
        # Only futures someone awaits get the error (an unawaited one would log a warning).
        awaited = [self.connack, self.suback] if self._subscribing else [self.connack]
        for future in awaited:
            if not future.done():
                future.set_exception(ConnectionError(f"{self.client_id}: connection closed"))

    def _on_control(self, packet_type: int, packet: bytes) -> None:
        if packet_type == CONNACK and not self.connack.done():
            self.connack.set_result(packet[3])
        elif packet_type == SUBACK and not self.suback.done():
            self.suback.set_result(packet[-1])

    def subscribe(self, topic_filter: str, qos: int) -> None:
        assert self.transport is not None
        self._subscribing = True
        self.transport.write(encode_subscribe(1, topic_filter, qos))

    def progress(self) -> int:
        return self.walker.publishes

    def start(self) -> None:
        """Begin the role's load (publishers)."""

    def stop(self) -> None:
        """End the role's load (publishers)."""

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class AckingSubscriber(BenchClient):
    """Counts PUBLISH packets and acknowledges every QoS 1 one, one write per chunk read.

    With `timed`, every payload starts with its send time (see `stamp_packets`): the
    latencies of messages sent inside the window are kept, one receive time per read."""

    def __init__(self, client_id: str, *, timed: bool = False) -> None:
        super().__init__(client_id, collect_ids=True)
        self.walker._collect_stamps = timed
        self.latencies_ns = array.array("q")
        self.window_ns = (0, -1)  # empty until the orchestrator says go

    def after_feed(self) -> None:
        ids = self.walker.publish_ids
        if ids and self.transport is not None:
            self.transport.write(encode_pubacks(ids))
            ids.clear()
        stamps = self.walker.publish_stamps
        if stamps:
            received_ns = time.monotonic_ns()
            sent = array.array("Q")
            sent.frombytes(stamps)
            if sys.byteorder == "little":
                sent.byteswap()  # the stamps are big-endian on the wire
            first, last = self.window_ns
            self.latencies_ns.extend(received_ns - t for t in sent if first <= t < last)
            stamps.clear()


class LatencySubscriber(BenchClient):
    """Reads the send timestamp from each payload; keeps latencies of messages sent in window."""

    def __init__(self, client_id: str) -> None:
        super().__init__(client_id, on_publish=self._on_publish)
        self.latencies_ns: list[int] = []
        self.window_ns = (0, -1)  # empty until the orchestrator says go
        self._received_ns = 0

    def data_received(self, data: bytes) -> None:
        # One receive time for the chunk: the moment the bytes reached this process.
        self._received_ns = time.monotonic_ns()
        super().data_received(data)

    def _on_publish(self, packet: bytes, header_len: int) -> None:
        (sent_ns,) = TIMESTAMP.unpack_from(publish_payload(packet, header_len))
        if self.window_ns[0] <= sent_ns < self.window_ns[1]:
            self.latencies_ns.append(self._received_ns - sent_ns)

    def progress(self) -> int:
        return len(self.latencies_ns)


class BlastPublisher(BenchClient):
    """Publishes QoS 0 as fast as the server reads; `progress()` is packets written to the
    socket (handed to the transport, less what still waits in its buffer)."""

    def __init__(
        self, client_id: str, topic: str, payload: bytes, batch_bytes: int = BATCH_BYTES
    ) -> None:
        super().__init__(client_id)
        self._packet_size = len(encode_publish(topic, payload))
        self._batch = encode_publish_batch(topic, payload, batch_bytes)
        self._per_batch = len(self._batch) // self._packet_size
        self.pump: BlastPump | None = None

    def start(self) -> None:
        assert self.transport is not None
        self.pump = BlastPump(self.transport, self._batch, self._per_batch)
        self.pump.start()

    def stop(self) -> None:
        if self.pump is not None:
            self.pump.stop()

    def pause_writing(self) -> None:
        if self.pump is not None:
            self.pump.pause()

    def resume_writing(self) -> None:
        if self.pump is not None:
            self.pump.resume()

    def progress(self) -> int:
        pump, transport = self.pump, self.transport
        if pump is None:
            return 0
        # a paused pump's transport holds up to its high-water mark: not written yet
        waiting = transport.get_write_buffer_size() if transport is not None else 0
        return pump.sent - waiting // self._packet_size


class WindowPublisher(BenchClient):
    """Publishes QoS 1 keeping `window` PUBACKs outstanding; `progress()` is PUBACKs received.

    With `stamp_offset`, each packet carries its send time at that offset."""

    def __init__(
        self, client_id: str, ring: PublishRing, window: int, stamp_offset: int | None = None
    ) -> None:
        super().__init__(client_id)
        self._ring = ring
        self._window = window
        self._stamp_offset = stamp_offset
        self._acks_seen = 0
        self.pump: WindowPump | None = None

    def start(self) -> None:
        assert self.transport is not None
        self.pump = WindowPump(self.transport, self._ring, self._window, self._stamp_offset)
        self.pump.start()

    def outstanding(self) -> int:
        return 0 if self.pump is None else self.pump.sent - self.pump.acked

    def stop(self) -> None:
        if self.pump is not None:
            self.pump.stop()

    def after_feed(self) -> None:
        acks = self.walker.counts[PUBACK]
        if self.pump is not None and acks > self._acks_seen:
            self.pump.on_acks(acks - self._acks_seen)
        self._acks_seen = acks

    def progress(self) -> int:
        return self.pump.acked if self.pump is not None else 0


class RatePublisher(BenchClient):
    """Publishes QoS 0 at a fixed rate, each payload starting with its send time (ns)."""

    MAX_CATCH_UP = 100  # after a stall, send at most this many late messages at once

    def __init__(self, client_id: str, topic: str, payload_size: int, rate: float) -> None:
        super().__init__(client_id)
        pad_len = max(0, payload_size - TIMESTAMP.size)
        packet = encode_publish(topic, bytes(TIMESTAMP.size + pad_len))
        self._prefix = packet[: len(packet) - TIMESTAMP.size - pad_len]
        self._pad = bytes(pad_len)
        self._rate = rate
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        assert self.transport is not None
        started = time.monotonic()
        while not self.transport.is_closing():
            due = min(
                int((time.monotonic() - started) * self._rate) + 1,
                self.sent + self.MAX_CATCH_UP,
            )
            while self.sent < due:
                stamp = TIMESTAMP.pack(time.monotonic_ns())
                self.transport.write(self._prefix + stamp + self._pad)
                self.sent += 1
            # Event-loop timers have 1 ms resolution: a shorter sleep would spin, not sleep.
            next_due = started + self.sent / self._rate
            await asyncio.sleep(max(0.001, next_due - time.monotonic()))

    def progress(self) -> int:
        return self.sent


async def open_client(
    factory: Callable[[], BenchClient], host: str, port: int, timeout: float
) -> BenchClient:
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(loop.create_connection(factory, host, port), timeout)
    try:
        return_code = await asyncio.wait_for(client.connack, timeout)
        if return_code != 0:
            raise BenchError(f"{client.client_id}: CONNACK return code {return_code}")
    except BaseException:
        client.abort()
        raise
    return client


async def subscribe(client: BenchClient, topic_filter: str, qos: int, timeout: float) -> None:
    client.subscribe(topic_filter, qos)
    granted = await asyncio.wait_for(client.suback, timeout)
    if granted != qos:
        raise BenchError(f"{client.client_id}: SUBACK granted {granted:#x}, wanted QoS {qos}")


# ---------------------------------------------------------------------------------------------
# Client processes and what they report.

Role = Literal[
    "blast-pub", "window-pub", "rate-pub", "count-sub", "latency-sub", "idle", "connect-cycle"
]


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """What one load-generator process does. `topic` may contain `{i}`: the connection's
    global index (`first_index` + its index in this process)."""

    name: str
    role: Role
    host: str
    port: int
    connections: int = 1
    topic: str = "bench/t"
    first_index: int = 0
    qos: int = 0
    payload_size: int = 64
    window: int = 100
    rate: float = 1000.0
    # idle role: connections opened before "go" (the RSS baseline); open concurrency: every
    # role's handshakes in flight at once per process
    warm_connections: int = 0
    open_concurrency: int = 64
    # window-pub / count-sub (QoS 1): payloads carry their send time, the subscriber keeps
    # latencies; after the load stops, publishers wait for their last PUBACKs and the
    # subscriber for the last messages, so `total` of both sides can be compared (lost)
    timed: bool = False
    # connect-cycle: distinct client ids this process cycles through
    client_ids: int = 1000


@dataclass(slots=True)
class ClientReport:
    name: str
    role: str
    connections: int
    count: int = 0  # received (subscribers), written (QoS 0) or acknowledged (QoS 1) in window
    # the same count from the load's start to the window's start (what was written before
    # the window and received in it: a backlog the server drained)
    before: int = 0
    window_s: float = 0.0
    cpu_s: float = 0.0  # user + system CPU of this process inside the window
    latencies_ns: list[int] = field(default_factory=list)
    failures: int = 0
    total: int = 0  # timed QoS 1: acknowledged (publishers) or received (subscriber) in all

    @property
    def rate(self) -> float:
        return self.count / self.window_s if self.window_s > 0 else 0.0

    @property
    def cpu_util(self) -> float:
        return self.cpu_s / self.window_s if self.window_s > 0 else 0.0


def _client_factory(spec: ClientSpec, index: int) -> Callable[[], BenchClient]:
    client_id = f"pwbench-{spec.role}-{os.getpid()}-{index}"
    topic = spec.topic.format(i=index)
    payload = bench_payload(spec.payload_size)
    if spec.role == "blast-pub":
        # 64 KB batches and 512 KB write buffers per connection are fine for a few
        # publishers, but at 5,000 per process (fan-in N=10,000) they hold ~3 GB and one
        # loop turn writes gigabytes, so the window samples come late and count 0: keep a
        # process's blast buffers near the same total however many connections it has.
        batch_bytes = max(1024, BATCH_BYTES * 64 // max(64, spec.connections))
        return lambda: BlastPublisher(client_id, topic, payload, batch_bytes)
    if spec.role == "window-pub":
        ring = _ring_for(topic, payload, spec.qos)
        stamp_at = ring.packet_size - len(payload) if spec.timed else None
        return lambda: WindowPublisher(client_id, ring, spec.window, stamp_at)
    if spec.role == "rate-pub":
        return lambda: RatePublisher(client_id, topic, spec.payload_size, spec.rate)
    if spec.role == "count-sub" and spec.qos:
        return lambda: AckingSubscriber(client_id, timed=spec.timed)
    if spec.role == "latency-sub":
        return lambda: LatencySubscriber(client_id)
    return lambda: BenchClient(client_id)


_rings: dict[tuple[str, int, int], PublishRing] = {}


def _ring_for(topic: str, payload: bytes, qos: int) -> PublishRing:
    # Publishers of one process on the same topic share one 5 MB ring.
    key = (topic, len(payload), qos)
    if key not in _rings:
        _rings[key] = PublishRing.build(topic, payload, qos)
    return _rings[key]


async def recv_message(conn: Connection, timeout: float) -> tuple[Any, ...]:
    """Next message from the orchestrator, without blocking the event loop."""
    if not conn.poll():
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(conn.fileno(), on_readable)
        try:
            await asyncio.wait_for(readable, timeout)
        finally:
            loop.remove_reader(conn.fileno())
            # uvloop leaves a watched fd non-blocking; a large report would then be cut off
            os.set_blocking(conn.fileno(), True)
    return cast(tuple[Any, ...], conn.recv())


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


async def _open_role_clients(spec: ClientSpec) -> list[BenchClient]:
    # At most `open_concurrency` handshakes in flight: 5,000 at once per process (N=10,000)
    # made the Redis engine's session claims time out (CONNACK 3, "not handed over") and
    # overran the listen backlog; the connect storm is the `connect` scenario's subject.
    gate = asyncio.Semaphore(spec.open_concurrency)

    async def opened(index: int) -> BenchClient:
        async with gate:
            return await open_client(
                _client_factory(spec, spec.first_index + index),
                spec.host,
                spec.port,
                HANDSHAKE_TIMEOUT_S,
            )

    clients = await asyncio.gather(*(opened(i) for i in range(spec.connections)))
    if spec.role in ("count-sub", "latency-sub"):
        await asyncio.gather(
            *(subscribe(c, spec.topic, spec.qos, HANDSHAKE_TIMEOUT_S) for c in clients)
        )
    return list(clients)


async def _drive(
    spec: ClientSpec,
    clients: list[BenchClient],
    window: tuple[float, float],
    stop_at: float,
    expected: Callable[[], Awaitable[int]] | None = None,
) -> ClientReport:
    """Run the load, sample progress and CPU at the window's edges, stop at `stop_at`.
    `expected` (timed subscribers): how many messages the publishers had acknowledged in
    all, asked once they drained; the subscriber then drains until it has that many."""
    window_start, window_end = window
    for client in clients:
        if isinstance(client, (LatencySubscriber, AckingSubscriber)):
            # time.monotonic() and monotonic_ns() read the same clock in every process
            client.window_ns = (int(window_start * 1e9), int(window_end * 1e9))
        client.start()
    await _sleep_until(window_start)
    start_count = sum(c.progress() for c in clients)
    start_cpu, started = own_cpu_seconds(), time.monotonic()
    await _sleep_until(window_end)
    end_count = sum(c.progress() for c in clients)
    end_cpu, ended = own_cpu_seconds(), time.monotonic()
    # Keep the load on past the window so its last moments are as loaded as the rest.
    await _sleep_until(stop_at)
    for client in clients:
        client.stop()
    report = ClientReport(spec.name, spec.role, len(clients))
    report.count = end_count - start_count
    report.before = start_count
    report.window_s = ended - started
    report.cpu_s = end_cpu - start_cpu
    if spec.timed:
        await _drain(clients, expected)
        report.total = sum(c.progress() for c in clients)
    for client in clients:
        if isinstance(client, LatencySubscriber):
            report.count = len(client.latencies_ns)
            report.latencies_ns.extend(client.latencies_ns)
        elif isinstance(client, AckingSubscriber):
            report.latencies_ns.extend(client.latencies_ns)
    return report


DRAIN_TIMEOUT_S = 10.0


async def _drain(
    clients: list[BenchClient], expected: Callable[[], Awaitable[int]] | None = None
) -> None:
    """After the load stopped: publishers wait for their outstanding PUBACKs; subscribers
    wait until they have received what the publishers had acknowledged in all (`expected`,
    known once the publishers drained), so "lost" (acknowledged minus delivered) is never
    an artefact of stopping early. Each wait is bounded by DRAIN_TIMEOUT_S: what is still
    missing then is reported as lost."""
    publishers = [c for c in clients if isinstance(c, WindowPublisher)]
    if publishers:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline and any(p.outstanding() for p in publishers):
            await asyncio.sleep(0.02)
        return
    if expected is None:
        return
    want = await expected()
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline and sum(c.progress() for c in clients) < want:
        await asyncio.sleep(0.02)


async def _open_idle(spec: ClientSpec, count: int, first: int, into: list[BenchClient]) -> int:
    """Open `count` connections with bounded concurrency; returns how many failed."""
    failures = 0
    next_index = first

    async def opener() -> None:
        nonlocal failures, next_index
        while next_index < first + count:
            index = next_index
            next_index += 1
            try:
                factory = _client_factory(spec, index)
                into.append(await open_client(factory, spec.host, spec.port, HANDSHAKE_TIMEOUT_S))
            except (OSError, TimeoutError, BenchError):
                failures += 1

    await asyncio.gather(*(opener() for _ in range(min(count, spec.open_concurrency))))
    return failures


async def _idle_main(spec: ClientSpec, conn: Connection) -> None:
    clients: list[BenchClient] = []
    try:
        failures = await _open_idle(spec, spec.warm_connections, 0, clients)
        conn.send(("ready", len(clients)))
        await recv_message(conn, STEP_TIMEOUT_S)  # go: open the measured connections
        warm = len(clients)
        started, start_cpu = time.monotonic(), own_cpu_seconds()
        failures += await _open_idle(spec, spec.connections, warm, clients)
        report = ClientReport(spec.name, spec.role, len(clients) - warm, failures=failures)
        report.count = len(clients) - warm
        report.window_s = time.monotonic() - started
        report.cpu_s = own_cpu_seconds() - start_cpu
        conn.send(("done", report))
        await recv_message(conn, STEP_TIMEOUT_S)  # close: the server's RSS has been read
    finally:
        for client in clients:
            client.abort()


class _ConnectClient(asyncio.Protocol):
    """CONNECT on connect, DISCONNECT and close on CONNACK; `done` says how it went."""

    def __init__(self, connect_packet: bytes, done: asyncio.Future[int]) -> None:
        self._connect = connect_packet
        self._done = done
        self._buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._connect)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= 4 and not self._done.done():
            assert self.transport is not None
            code = self._buf[3] if self._buf[0] >> 4 == CONNACK else -1
            if code == 0:
                # the server closes after DISCONNECT, so the TIME_WAIT is on its side
                self.transport.write(DISCONNECT_PACKET)
            else:
                self.transport.close()
            self._done.set_result(code)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(-1)


class ConnectCycler:
    """`concurrency` workers, each opening a connection, CONNECT, CONNACK, DISCONNECT, close,
    again, until stopped; client ids cycle through `client_ids` names. The CONNECT packets are
    encoded once. `progress()` is connections that got CONNACK 0."""

    def __init__(self, spec: ClientSpec) -> None:
        prefix = f"pwbench-conn-{os.getpid()}-"
        self._packets = [encode_connect(f"{prefix}{i}") for i in range(spec.client_ids)]
        self._spec = spec
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self.connected = 0
        self.failures = 0
        self._next = 0

    def start(self) -> None:
        self._running = True
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker()) for _ in range(self._spec.open_concurrency)]

    def stop(self) -> None:
        self._running = False

    def progress(self) -> int:
        return self.connected

    async def wait_stopped(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._spec.host, self._spec.port
        while self._running:
            packet = self._packets[self._next]
            self._next = (self._next + 1) % len(self._packets)
            done: asyncio.Future[int] = loop.create_future()
            try:
                await loop.create_connection(
                    functools.partial(_ConnectClient, packet, done), host, port
                )
                code = await asyncio.wait_for(done, HANDSHAKE_TIMEOUT_S)
            except (OSError, TimeoutError):
                code = -1
            if code == 0:
                self.connected += 1
            else:
                self.failures += 1


async def _connect_cycle_main(spec: ClientSpec, conn: Connection) -> None:
    cycler = ConnectCycler(spec)
    conn.send(("ready", 0))
    _, window_start, window_end, stop_at = await recv_message(conn, STEP_TIMEOUT_S)
    cycler.start()
    await _sleep_until(window_start)
    start_count, start_failures = cycler.connected, cycler.failures
    start_cpu, started = own_cpu_seconds(), time.monotonic()
    await _sleep_until(window_end)
    end_count, end_failures = cycler.connected, cycler.failures
    end_cpu, ended = own_cpu_seconds(), time.monotonic()
    await _sleep_until(stop_at)
    cycler.stop()
    await cycler.wait_stopped()
    report = ClientReport(spec.name, spec.role, spec.open_concurrency)
    report.count = end_count - start_count
    report.failures = end_failures - start_failures
    report.window_s = ended - started
    report.cpu_s = end_cpu - start_cpu
    conn.send(("done", report))


async def _client_main(spec: ClientSpec, conn: Connection) -> None:
    if spec.role == "idle":
        await _idle_main(spec, conn)
        return
    if spec.role == "connect-cycle":
        await _connect_cycle_main(spec, conn)
        return
    clients = await _open_role_clients(spec)
    try:
        conn.send(("ready", len(clients)))
        _, window_start, window_end, stop_at = await recv_message(conn, STEP_TIMEOUT_S)

        async def expected() -> int:
            # the orchestrator sends it once every publisher drained (measure_window)
            return int((await recv_message(conn, STEP_TIMEOUT_S))[1])

        timed_sub = spec.timed and spec.role == "count-sub"
        report = await _drive(
            spec, clients, (window_start, window_end), stop_at, expected if timed_sub else None
        )
        conn.send(("done", report))
    finally:
        for client in clients:
            client.abort()


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop when available (it is markedly cheaper per socket operation)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


def client_process_main(spec: ClientSpec, conn: Connection) -> None:
    """Entry point of one load-generator process; talks to the orchestrator over `conn`."""
    try:
        run_loop(_client_main(spec, conn))
    except KeyboardInterrupt:
        pass  # the orchestrator got it too and cleans up
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", f"{spec.name}: {exc!r}"))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# The orchestrator's side: start processes, step them together, always end them.

# fork: the orchestrator has no threads or event loop, and fork starts a worker in ~ms.
MP_CONTEXT = multiprocessing.get_context("fork")


class ClientFleet:
    """The load-generator processes of one scenario run; ends every one it started."""

    def __init__(self) -> None:
        self._members: list[tuple[ClientSpec, BaseProcess, Connection]] = []

    def __enter__(self) -> ClientFleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self, specs: list[ClientSpec], timeout: float) -> None:
        """Start one process per spec and wait until each has connected (and subscribed)."""
        started: list[tuple[ClientSpec, BaseProcess, Connection]] = []
        for spec in specs:
            parent_end, child_end = MP_CONTEXT.Pipe()
            process = MP_CONTEXT.Process(
                target=client_process_main, args=(spec, child_end), name=spec.name, daemon=True
            )
            process.start()
            child_end.close()
            member = (spec, process, parent_end)
            self._members.append(member)
            started.append(member)
        for spec, _, conn in started:
            self._expect(spec, conn, "ready", timeout)

    def go(self, window_start: float, window_end: float, stop_at: float) -> None:
        for _, _, conn in self._members:
            conn.send(("go", window_start, window_end, stop_at))

    def collect(self, timeout: float, specs: list[ClientSpec] | None = None) -> list[ClientReport]:
        """The reports of every process, or of those started for `specs`."""
        return [
            cast(ClientReport, self._expect(spec, conn, "done", timeout)[1])
            for spec, _, conn in self._members
            if specs is None or spec in specs
        ]

    def send_all(self, message: tuple[Any, ...], specs: list[ClientSpec] | None = None) -> None:
        """To every process, or to those started for `specs`."""
        for spec, _, conn in self._members:
            if specs is None or spec in specs:
                conn.send(message)

    def close(self) -> None:
        for _, process, conn in self._members:
            conn.close()
            process.join(timeout=2.0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
                process.join(timeout=2.0)
        self._members.clear()

    @staticmethod
    def _expect(spec: ClientSpec, conn: Connection, kind: str, timeout: float) -> tuple[Any, ...]:
        if not conn.poll(timeout):
            raise BenchError(f"{spec.name}: no {kind!r} within {timeout:.0f}s")
        try:
            message = cast(tuple[Any, ...], conn.recv())
        except EOFError:
            raise BenchError(f"{spec.name}: process exited before {kind!r}") from None
        if message[0] != kind:
            raise BenchError(f"{spec.name}: {message[1] if len(message) > 1 else message}")
        return message


# ---------------------------------------------------------------------------------------------
# Stub broker: the least work a broker can do, to measure the load generator's own ceiling.

StubMode = Literal["source", "relay"]


@dataclass(frozen=True, slots=True)
class StubSpec:
    """`source`: accept and drop what publishers send (PUBACK QoS 1), and feed every
    subscriber its own endless stream (QoS 1 kept `window` unacknowledged, like a broker's
    inflight limit). `relay`: forward each QoS 0 PUBLISH to every subscriber (latency floor)."""

    mode: StubMode
    payload_size: int = 64
    window: int = 20


class StubBroker(asyncio.Protocol):
    def __init__(self, spec: StubSpec, subscribers: list[StubBroker]) -> None:
        self._spec = spec
        self._subscribers = subscribers
        relay = self._relay if spec.mode == "relay" else None
        self.walker = PacketWalker(collect_ids=True, on_publish=relay, on_control=self._on_control)
        self.transport: asyncio.Transport | None = None
        self._blast: BlastPump | None = None
        self._window: WindowPump | None = None
        self._acks_seen = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self._subscribers:
            self._subscribers.remove(self)
        for pump in (self._blast, self._window):
            if pump is not None:
                pump.stop()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.walker.feed(data)
        if self.walker.publish_ids:
            self.transport.write(encode_pubacks(self.walker.publish_ids))
            self.walker.publish_ids.clear()
        acks = self.walker.counts[PUBACK]
        if self._window is not None and acks > self._acks_seen:
            self._window.on_acks(acks - self._acks_seen)
        self._acks_seen = acks

    def pause_writing(self) -> None:
        if self._blast is not None:
            self._blast.pause()

    def resume_writing(self) -> None:
        if self._blast is not None:
            self._blast.resume()

    def _on_control(self, packet_type: int, packet: bytes) -> None:
        assert self.transport is not None
        if packet_type == CONNECT:
            self.transport.write(encode_connack(0))
        elif packet_type == PINGREQ:
            self.transport.write(PINGRESP_PACKET)
        elif packet_type == DISCONNECT:
            self.transport.close()
        elif packet_type == SUBSCRIBE:
            self._on_subscribe(packet)

    def _on_subscribe(self, packet: bytes) -> None:
        assert self.transport is not None
        header_len, _ = fixed_header(packet, 0, len(packet)) or (2, 0)
        packet_id = int.from_bytes(packet[header_len : header_len + 2], "big")
        filter_len = int.from_bytes(packet[header_len + 2 : header_len + 4], "big")
        topic_filter = packet[header_len + 4 : header_len + 4 + filter_len].decode()
        qos = packet[header_len + 4 + filter_len] & 0x03
        self.transport.write(encode_suback(packet_id, qos))
        if self._spec.mode == "relay":
            self._subscribers.append(self)
            return
        topic = topic_filter.replace("+", "x").replace("#", "x")
        payload = bench_payload(self._spec.payload_size)
        if qos:
            self._window = WindowPump(
                self.transport, PublishRing.build(topic, payload, qos), self._spec.window
            )
            self._window.start()
        else:
            batch = encode_publish_batch(topic, payload)
            per_batch = len(batch) // len(encode_publish(topic, payload))
            self._blast = BlastPump(self.transport, batch, per_batch)
            self._blast.start()

    def _relay(self, packet: bytes, header_len: int) -> None:
        for subscriber in self._subscribers:
            if subscriber.transport is not None:
                subscriber.transport.write(packet)


async def _stub_main(spec: StubSpec, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    subscribers: list[StubBroker] = []
    server = await loop.create_server(lambda: StubBroker(spec, subscribers), "127.0.0.1", 0)
    try:
        conn.send(("ready", server.sockets[0].getsockname()[1]))
        await recv_message(conn, 3600.0)  # stop
    finally:
        server.close()  # open connections end with the process


def stub_process_main(spec: StubSpec, conn: Connection) -> None:
    try:
        run_loop(_stub_main(spec, conn))
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()
