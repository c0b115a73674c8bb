"""The device gateway mode of `pushwire bench modes`: the same stream, pushed to devices.

N devices registered over HTTP, each with a token for one app, connected over MQTT as the
gateway wants them (client id = username = device id, persistent session, `devices/{id}/#`
at QoS 1, every push acknowledged). Device *i* stands for topic *i mod T*: a message on topic
*k* is one push to every device of that group, sent by the provider with the app's API key
as `POST /v1/push/{token}` when the group is one device (T = N) and as one batch
`POST /v1/push` otherwise (T < N: one shared topic is a push to every device). The send time
is stamped in the push's `data`, so latency runs from the push request to the device's
receipt. Bytes are counted at the device sockets like every other mode; the provider's HTTP
requests are the publisher's side (its cost is in the server's CPU, like the MQTT publisher
of the other modes). Empty replies do not apply (n/a).

The server is the gateway benchmark's (bench/gateway_setup.py): a data directory (the app is
made with `pushwire app create`), SQLite without fsync per write, no per-app rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from pushwire.bench.gateway_devices import KEEPALIVE_S, encode_connect_auth
from pushwire.bench.gateway_setup import create_app, gateway_server, register_devices
from pushwire.bench.http import find_stamps, stamp_payload
from pushwire.bench.loadgen import BenchError, encode_puback, encode_subscribe, fixed_header
from pushwire.bench.modes import (
    CONNECT_TIMEOUT_S,
    DRAIN_S,
    Client,
    Options,
    Plan,
    Result,
    Tally,
    _p,
)
from pushwire.bench.peers import HOST, cpu_seconds, rss_kb

PROVIDER_CONNECTIONS = 16  # push requests in flight at once (keep-alive connections)
BATCH_MAX = 1000  # pushes in one POST /v1/push (the server's push_max_batch default)
REGISTER_CONCURRENCY = 20


class DeviceClient(Client):
    """A gateway device over MQTT 3.1.1: its credential, a persistent session, QoS 1."""

    def __init__(self, tally: Tally, device: tuple[str, str], index: int) -> None:
        super().__init__(tally, f"devices/{device[0]}/#", index)
        self.device = device

    def start(self) -> None:
        device_id, secret = self.device
        self.send(encode_connect_auth(device_id, device_id, secret, KEEPALIVE_S))
        self.send(encode_subscribe(1, self.topic, 1))

    def received(self, data: bytes, now_ns: int) -> None:
        self.buf += data
        buf, offset, end = self.buf, 0, len(self.buf)
        sent: list[int] = []
        acks: list[bytes] = []
        while offset < end:
            found = fixed_header(buf, offset, end)
            if found is None or offset + found[1] > end:
                break
            header_len, length = found
            kind = buf[offset] >> 4
            if kind == 2 and buf[offset + length - 1] != 0:  # CONNACK refused
                raise BenchError(f"device {self.device[0]} refused: {buf[offset : offset + 4]!r}")
            if kind == 3:  # PUBLISH
                qos = (buf[offset] >> 1) & 3
                at = offset + header_len
                at += 2 + int.from_bytes(buf[at : at + 2], "big")
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


async def push_stream(
    http: httpx.AsyncClient,
    groups: list[list[str]],
    rate: float,
    size: int,
    in_window: Callable[[], bool],
    sent_per_topic: list[int],
    stop: asyncio.Event,
    errors: list[str],
) -> None:
    """R messages/s round-robin over the groups of tokens; a message is one push to each."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(PROVIDER_CONNECTIONS)
    tasks: set[asyncio.Task[None]] = set()

    async def send(tokens: list[str], data: str) -> None:
        async with gate:
            try:
                if len(tokens) == 1:
                    reply = await http.post(f"/v1/push/{tokens[0]}", json={"data": data})
                    failed = reply.status_code != 200
                else:
                    pushes = [{"token": t, "payload": {"data": data}} for t in tokens]
                    reply = await http.post("/v1/push", json={"pushes": pushes})
                    failed = reply.status_code != 200 or any(
                        r["status"] != 200 for r in reply.json()["results"]
                    )
                if failed:
                    errors.append(f"push: {reply.status_code} {reply.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(f"push: {type(exc).__name__}: {exc}")

    period = 1.0 / rate
    next_at = loop.time()
    n = 0
    while not stop.is_set():
        now = loop.time()
        if now < next_at:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), next_at - now)
            continue
        while next_at <= now:  # catch up without drifting: the rate holds on average
            k = n % len(groups)
            window = in_window()
            data = stamp_payload(time.time_ns(), window, size).decode()
            for first in range(0, len(groups[k]), BATCH_MAX):
                task = asyncio.ensure_future(send(groups[k][first : first + BATCH_MAX], data))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if window:
                sent_per_topic[k] += 1
            n += 1
            next_at += period
    if tasks:
        await asyncio.gather(*tasks)


async def _connect(
    devices: list[tuple[str, str, str]], mqtt_port: int, tally: Tally
) -> list[Client]:
    loop = asyncio.get_running_loop()
    clients: list[Client] = []

    async def one(i: int) -> None:
        device = (devices[i][0], devices[i][1])
        _, client = await loop.create_connection(
            lambda: DeviceClient(tally, device, i), HOST, mqtt_port
        )
        clients.append(client)

    for first in range(0, len(devices), 200):  # in batches: a burst of SYNs overflows backlogs
        await asyncio.gather(*(one(i) for i in range(first, min(len(devices), first + 200))))
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients)), CONNECT_TIMEOUT_S)
    return clients


async def run_gateway_plan(plan: Plan, workdir: Path, o: Options) -> Result:
    with gateway_server(workdir, batch_window=0, plain_publisher=False) as server:
        _app_id, api_key = await asyncio.to_thread(create_app, server, "bench-modes")
        devices = await register_devices(server.url, _app_id, o.clients, REGISTER_CONCURRENCY)
        groups: list[list[str]] = [[] for _ in range(o.topics)]
        for i, (_device_id, _secret, token) in enumerate(devices):
            groups[i % o.topics].append(token)

        tally = Tally()
        rss_before = rss_kb(server.pid)
        clients = await _connect(devices, server.mqtt_port, tally)
        rss_after = rss_kb(server.pid)

        limits = httpx.Limits(
            max_connections=PROVIDER_CONNECTIONS, max_keepalive_connections=PROVIDER_CONNECTIONS
        )
        sent = [0] * o.topics
        in_window = False
        stop = asyncio.Event()
        async with httpx.AsyncClient(
            base_url=server.url,
            headers={"Authorization": f"Bearer {api_key}"},
            limits=limits,
            timeout=30,
        ) as http:
            pump = asyncio.ensure_future(
                push_stream(
                    http, groups, o.rate, o.payload, lambda: in_window, sent, stop, tally.errors
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
                await asyncio.sleep(DRAIN_S)
            finally:
                stop.set()
                await pump
                for client in clients:
                    client.close()
    elapsed = t1 - t0
    expected = sum(s * len(g) for s, g in zip(sent, groups, strict=True))
    latencies = sorted(tally.latencies_ns)
    delivered = len(latencies)
    per_msg = max(delivered, 1)
    return Result(
        label=plan.label,
        mode=plan.mode,
        interval=None,
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
        empty_responses=None,
        errors=tally.errors[:5],
    )
