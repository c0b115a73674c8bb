"""The devices of `pushwire bench gateway`: many MQTT device connections in worker processes.

Each device logs in with its gateway credentials (client id = username = device id,
persistent session), subscribes `devices/{id}/#` at QoS 1 and acknowledges every push at
once. A worker counts what arrives, reads the provider's send stamp (`"t": <ns>` in the
push's `data`) for latency, and counts per-device *bursts*: arrivals after 50 ms of quiet,
i.e. the times a real device's radio would have had to wake.

The worker talks to the orchestrator over a pipe: ("connect",) -> ("connected", n, error),
("reset", collect_latency) -> ("reset",), ("report",) -> ("report", FleetReport), ("stop",).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import re
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, cast

from pushwire.bench.common import own_cpu_seconds
from pushwire.bench.loadgen import (
    CONNACK,
    PUBLISH,
    SUBACK,
    BenchError,
    encode_puback,
    encode_remaining_length,
    encode_subscribe,
    run_loop,
)

CONNECT_BYTE = 0x10
KEEPALIVE_S = 600  # no device needs to ping during a run
CONNECT_CONCURRENCY = 200
HANDSHAKE_TIMEOUT_S = 30.0
BURST_GAP_NS = 50_000_000  # arrivals closer than this to the previous one share a wake-up
STAMP = re.compile(rb'"t":\s*(\d{10,20})')
# fork: the orchestrator starts workers before it opens any event loop or thread
MP_CONTEXT = multiprocessing.get_context("fork")


def encode_connect_auth(client_id: str, username: str, password: str, keepalive: int) -> bytes:
    """MQTT 3.1.1 CONNECT with username and password and clean session OFF."""

    def utf8(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(2, "big") + data

    flags = 0x80 | 0x40  # username, password; clean session 0: a persistent session
    body = utf8("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big")
    body += utf8(client_id) + utf8(username) + utf8(password)
    return bytes([CONNECT_BYTE]) + encode_remaining_length(len(body)) + body


def split_packets(buf: bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """Complete packets at the front of ``buf`` as (first byte, body); and bytes consumed."""
    packets: list[tuple[int, bytes]] = []
    pos, end = 0, len(buf)
    while end - pos >= 2:
        length, mult, i = 0, 1, pos + 1
        while True:
            if i >= end:
                return packets, pos
            byte = buf[i]
            length += (byte & 0x7F) * mult
            i += 1
            if not byte & 0x80:
                break
            mult *= 128
            if mult > 128**3:
                raise BenchError("malformed remaining length from the server")
        if end - i < length:
            break
        packets.append((buf[pos], bytes(buf[i : i + length])))
        pos = i + length
    return packets, pos


def publish_parts(first: int, body: bytes) -> tuple[int | None, bytes]:
    """(packet id or None for QoS 0, payload) of a PUBLISH body."""
    topic_len = int.from_bytes(body[0:2], "big")
    pos = 2 + topic_len
    qos = (first >> 1) & 3
    packet_id = None
    if qos:
        packet_id = int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
    return packet_id, body[pos:]


@dataclass
class FleetReport:
    connected: int = 0
    received: int = 0
    bursts: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    cpu_s: float = 0.0


class Fleet:
    """The counters shared by the devices of one worker."""

    def __init__(self) -> None:
        self.received = 0
        self.bursts = 0
        self.collect_latency = False
        self.latencies_ns: list[int] = []

    def reset(self, collect_latency: bool) -> None:
        self.received = self.bursts = 0
        self.collect_latency = collect_latency
        self.latencies_ns = []


class DeviceProtocol(asyncio.Protocol):
    def __init__(self, fleet: Fleet, device_id: str, secret: str) -> None:
        self.fleet = fleet
        self.device_id = device_id
        self.secret = secret
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_arrival = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(
            encode_connect_auth(self.device_id, self.device_id, self.secret, KEEPALIVE_S)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(BenchError(f"{self.device_id}: connection lost ({exc})"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        packets, used = split_packets(self.buf)
        del self.buf[:used]
        acks = bytearray()
        now = 0
        for first, body in packets:
            kind = first >> 4
            if kind == PUBLISH:
                packet_id, payload = publish_parts(first, body)
                if packet_id is not None:
                    acks += encode_puback(packet_id)
                now = now or time.time_ns()
                self._arrived(payload, now)
            elif kind == CONNACK and not self.connack.done():
                self.connack.set_result(body[1] if len(body) > 1 else 255)
            elif kind == SUBACK and not self.suback.done():
                self.suback.set_result(None)
        if acks and self.transport is not None:
            self.transport.write(bytes(acks))

    def _arrived(self, payload: bytes, now: int) -> None:
        fleet = self.fleet
        fleet.received += 1
        if now - self.last_arrival > BURST_GAP_NS:
            fleet.bursts += 1
        self.last_arrival = now
        if fleet.collect_latency:
            match = STAMP.search(payload)
            if match:
                fleet.latencies_ns.append(now - int(match.group(1)))


async def connect_device(
    fleet: Fleet, host: str, port: int, device_id: str, secret: str
) -> DeviceProtocol:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: DeviceProtocol(fleet, device_id, secret), host, port
    )
    code = await asyncio.wait_for(proto.connack, HANDSHAKE_TIMEOUT_S)
    if code != 0:
        raise BenchError(f"{device_id}: CONNACK return code {code}")
    assert proto.transport is not None
    proto.transport.write(encode_subscribe(1, f"devices/{device_id}/#", 1))
    await asyncio.wait_for(proto.suback, HANDSHAKE_TIMEOUT_S)
    return proto


async def _worker_main(
    host: str, port: int, devices: list[tuple[str, str]], conn: Connection
) -> None:
    loop = asyncio.get_running_loop()
    fleet = Fleet()
    protos: list[DeviceProtocol] = []
    cpu_start = own_cpu_seconds()
    while True:
        message = cast(tuple[Any, ...], await loop.run_in_executor(None, conn.recv))
        if message[0] == "connect":
            gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

            async def one(
                device: tuple[str, str], gate: asyncio.Semaphore = gate
            ) -> DeviceProtocol:
                async with gate:
                    return await connect_device(fleet, host, port, *device)

            results = await asyncio.gather(*(one(d) for d in devices), return_exceptions=True)
            protos = [r for r in results if isinstance(r, DeviceProtocol)]
            errors = [r for r in results if not isinstance(r, DeviceProtocol)]
            conn.send(("connected", len(protos), repr(errors[0]) if errors else None))
        elif message[0] == "reset":
            fleet.reset(bool(message[1]))
            cpu_start = own_cpu_seconds()
            conn.send(("reset",))
        elif message[0] == "report":
            report = FleetReport(
                len(protos),
                fleet.received,
                fleet.bursts,
                fleet.latencies_ns,
                own_cpu_seconds() - cpu_start,
            )
            conn.send(("report", report))
        else:  # "stop"
            for proto in protos:
                if proto.transport is not None:
                    proto.transport.close()
            return


def worker_process_main(
    host: str, port: int, devices: list[tuple[str, str]], conn: Connection
) -> None:
    run_loop(_worker_main(host, port, devices, conn))


class DeviceFleet:
    """Worker processes holding the device connections; ends every one it started."""

    def __init__(self, host: str, port: int, devices: list[tuple[str, str]], processes: int):
        self._members: list[tuple[BaseProcess, Connection]] = []
        processes = max(1, min(processes, len(devices)))
        for index in range(processes):
            share = devices[index::processes]
            parent_end, child_end = MP_CONTEXT.Pipe()
            process = MP_CONTEXT.Process(
                target=worker_process_main,
                args=(host, port, share, child_end),
                name=f"bench-devices-{index}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self._members.append((process, parent_end))

    def _ask(self, message: tuple[Any, ...], timeout: float) -> list[tuple[Any, ...]]:
        for _, conn in self._members:
            conn.send(message)
        replies = []
        for process, conn in self._members:
            if not conn.poll(timeout):
                raise BenchError(f"{process.name}: no reply to {message[0]!r} in {timeout:.0f}s")
            try:
                replies.append(cast(tuple[Any, ...], conn.recv()))
            except EOFError:
                raise BenchError(f"{process.name} exited") from None
        return replies

    def connect(self, timeout: float) -> int:
        replies = self._ask(("connect",), timeout)
        errors = [r[2] for r in replies if r[2]]
        if errors:
            raise BenchError(f"device connections failed: {errors[0]}")
        return sum(int(r[1]) for r in replies)

    def reset(self, collect_latency: bool) -> None:
        self._ask(("reset", collect_latency), 30.0)

    def report(self) -> FleetReport:
        total = FleetReport()
        for reply in self._ask(("report",), 30.0):
            part = cast(FleetReport, reply[1])
            total.connected += part.connected
            total.received += part.received
            total.bursts += part.bursts
            total.latencies_ns += part.latencies_ns
            total.cpu_s += part.cpu_s
        return total

    def close(self) -> None:
        for process, conn in self._members:
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(("stop",))
            conn.close()
            process.join(timeout=5.0)
            if process.is_alive():
                process.kill()
                process.join(timeout=2.0)
        self._members.clear()

    def __enter__(self) -> DeviceFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
