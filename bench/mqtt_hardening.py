"""Worst cases of one MQTT client against everyone else (issue 9, items 8 and 9).

    .venv/bin/python bench/mqtt_hardening.py                      # both, brief
    .venv/bin/python bench/mqtt_hardening.py --only overlap --filters 10000 --duration 5
    .venv/bin/python bench/mqtt_hardening.py --only retained --retained 100000 --match-all 10

overlap:  one client holds --filters overlapping filters (`+`/literal/`#` mixes) that all
          match one 14-level topic; a publisher sends QoS 1 to that topic with
          --window publishes outstanding for --duration seconds. Reported: acked msg/s and
          ack latency p50/p99, first without the heavy client (baseline), then with it.
          More than 1000 filters needs the cap raised: the script sets
          PUSHWIRE_MAX_SUBSCRIPTIONS_PER_CLIENT for the server it starts.
retained: --retained retained topics are published (QoS 0, pipelined), then one client
          subscribes with --match-all match-all filters (`#`, `+/#`, ...) in one SUBSCRIBE
          while a control client does PINGREQ round trips back to back. Reported: time to
          SUBACK, the control client's worst and p99 round trip while the backlog streams,
          and the retained messages the subscriber read per second (it reads for at most
          --duration seconds).

Starts `pushwire serve --memory` on free ports (pushwire.bench.peers, the same harness as
`pushwire bench mqtt`), everything on 127.0.0.1, and stops it by PID. Timings are wall
clock on a shared machine: compare runs made one after the other, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pushwire.bench.loadgen import encode_connect, encode_publish
from pushwire.bench.peers import HOST, pushwire_server

LEVELS = [f"l{i}" for i in range(14)]
TOPIC = "/".join(LEVELS)
PINGREQ = b"\xc0\x00"


def _vbi(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def subscribe_packet(packet_id: int, filters: list[str], qos: int = 0) -> bytes:
    body = packet_id.to_bytes(2, "big") + b"".join(_utf8(f) + bytes([qos]) for f in filters)
    return b"\x82" + _vbi(len(body)) + body


def overlapping_filters(n: int) -> list[str]:
    """`n` distinct filters that all match TOPIC."""
    out: dict[str, None] = {}
    mask = 0
    while len(out) < n and mask < 1 << len(LEVELS):
        parts = ["+" if mask >> i & 1 else level for i, level in enumerate(LEVELS)]
        out["/".join(parts)] = None
        if len(out) < n:
            out["/".join([*parts[:-1], "#"])] = None
        mask += 1
    return list(out)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, client_id: str) -> Client:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        client = cls(reader, writer)
        writer.write(encode_connect(client_id))
        first, body = await client.packet()
        if first >> 4 != 2 or body[1] != 0:
            raise RuntimeError(f"{client_id}: CONNACK refused {body!r}")
        return client

    async def packet(self) -> tuple[int, bytes]:
        first = (await self.reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            byte = (await self.reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


@dataclass
class OverlapResult:
    filters: int
    msgs_per_s: float
    ack_p50_ms: float
    ack_p99_ms: float


async def _publish_qos1(port: int, duration: float, window: int) -> tuple[int, list[float]]:
    pub = await Client.connect(port, "bench-publisher")
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    next_id = 1
    end = time.monotonic() + duration

    def send() -> None:
        nonlocal next_id
        pid = next_id
        next_id = next_id % 65535 + 1
        sent_at[pid] = time.monotonic()
        pub.writer.write(encode_publish(TOPIC, b"x" * 32, qos=1, packet_id=pid))

    for _ in range(window):
        send()
    acked = 0
    while time.monotonic() < end:
        first, body = await pub.packet()
        if first >> 4 != 4:
            continue
        pid = int.from_bytes(body[:2], "big")
        latencies.append(time.monotonic() - sent_at.pop(pid))
        acked += 1
        send()
    pub.close()
    return acked, latencies


async def _drain(client: Client) -> None:
    try:
        while await client.reader.read(1 << 20):
            pass
    except (ConnectionError, asyncio.CancelledError):
        pass


async def overlap(port: int, filters: int, duration: float, window: int) -> OverlapResult:
    heavy: Client | None = None
    drain: asyncio.Task[None] | None = None
    if filters:
        heavy = await Client.connect(port, "bench-heavy")
        heavy.writer.write(subscribe_packet(1, overlapping_filters(filters)))
        first, body = await heavy.packet()
        granted = body[2:]
        if first >> 4 != 9 or any(code >= 0x80 for code in granted):
            raise RuntimeError("the heavy client's filters were refused (raise the cap)")
        drain = asyncio.ensure_future(_drain(heavy))
    acked, latencies = await _publish_qos1(port, duration, window)
    if drain is not None:
        drain.cancel()
    if heavy is not None:
        heavy.close()
    return OverlapResult(filters, acked / duration, _ms(latencies, 50), _ms(latencies, 99))


@dataclass
class RetainedResult:
    retained: int
    match_all_filters: int
    suback_ms: float
    control_rtt_max_ms: float
    control_rtt_p99_ms: float
    control_round_trips: int
    retained_read: int
    retained_per_s: float
    idle_rtt_max_ms: float
    idle_rtt_p99_ms: float
    notes: list[str] = field(default_factory=list)


MATCH_ALL = ["#", "+/#", "bench/#", "bench/+/#", "+/+/#", "+/+/+", "bench/+/+", "#", "+/#", "#"]


async def _seed(port: int, count: int) -> None:
    pub = await Client.connect(port, "bench-seed")
    batch = bytearray()
    for i in range(count):
        # QoS 0, retain flag set
        packet = bytearray(encode_publish(f"bench/{i // 1000}/{i}", b"r" * 32))
        packet[0] |= 0x01
        batch += packet
        if len(batch) > 1 << 16:
            pub.writer.write(bytes(batch))
            batch.clear()
            await pub.writer.drain()
    pub.writer.write(bytes(batch) + PINGREQ)
    while (await pub.packet())[0] >> 4 != 13:  # PINGRESP: everything before it is stored
        pass
    pub.close()


# The control client runs in a process of its own: in this one, reading the backlog would
# delay its round trips as much as the server does.
_PINGER = """
import json, socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(bytes.fromhex(sys.argv[3]))
assert s.recv(4)[:2] == b"\\x20\\x02"
print("ready", flush=True)
rtts = []
end = time.monotonic() + seconds
while time.monotonic() < end:
    t0 = time.monotonic()
    s.sendall(b"\\xc0\\x00")
    got = b""
    while len(got) < 2:
        got += s.recv(2 - len(got))
    rtts.append(time.monotonic() - t0)
print(json.dumps(rtts), flush=True)
"""


async def _start_pinger(port: int, seconds: float, client_id: str) -> asyncio.subprocess.Process:
    pinger = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PINGER,
        str(port),
        str(seconds),
        encode_connect(client_id).hex(),
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 24,  # one line holds every round trip
    )
    assert pinger.stdout is not None
    await pinger.stdout.readline()  # ready
    return pinger


async def _pinger_rtts(pinger: asyncio.subprocess.Process) -> list[float]:
    assert pinger.stdout is not None
    rtts: list[float] = json.loads(await asyncio.wait_for(pinger.stdout.readline(), 60))
    await pinger.wait()
    return rtts


async def retained(port: int, count: int, match_all: int, duration: float) -> RetainedResult:
    await _seed(port, count)
    # the same control round trips with nothing else going on: the machine's own noise
    idle = await _pinger_rtts(await _start_pinger(port, 1.0, "bench-idle"))
    sub = await Client.connect(port, "bench-backlog")
    pinger = await _start_pinger(port, duration + 0.5, "bench-control")
    filters = (MATCH_ALL * (match_all // len(MATCH_ALL) + 1))[:match_all]
    t0 = time.monotonic()
    sub.writer.write(subscribe_packet(1, filters))
    first, _ = await sub.packet()
    suback = time.monotonic() - t0
    if first >> 4 != 9:
        raise RuntimeError("no SUBACK first")
    want = count * match_all
    got = 0
    start = time.monotonic()
    end = start + duration
    while got < want and time.monotonic() < end:
        try:
            first, _ = await asyncio.wait_for(sub.packet(), max(0.01, end - time.monotonic()))
        except TimeoutError:
            break
        if first >> 4 == 3:
            got += 1
    elapsed = time.monotonic() - start
    rtts = await _pinger_rtts(pinger)
    sub.close()
    notes = [] if got == want else [f"read {got} of {want} in the {duration}s allowed"]
    return RetainedResult(
        count,
        match_all,
        suback * 1000,
        max(rtts) * 1000 if rtts else float("nan"),
        _ms(rtts, 99),
        len(rtts),
        got,
        got / elapsed if elapsed > 0 else 0.0,
        max(idle) * 1000 if idle else float("nan"),
        _ms(idle, 99),
        notes,
    )


async def run(args: argparse.Namespace, port: int) -> dict[str, object]:
    out: dict[str, object] = {}
    if "overlap" in args.only:
        base = await overlap(port, 0, args.duration, args.window)
        heavy = await overlap(port, args.filters, args.duration, args.window)
        out["overlap"] = [asdict(base), asdict(heavy)]
    if "retained" in args.only:
        out["retained"] = asdict(await retained(port, args.retained, args.match_all, args.duration))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default="overlap,retained")
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--filters", type=int, default=1000)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--retained", type=int, default=100_000)
    p.add_argument("--match-all", type=int, default=10)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    args.only = set(args.only.split(","))
    os.environ["PUSHWIRE_MAX_SUBSCRIPTIONS_PER_CLIENT"] = str(max(args.filters, 1000))
    with (
        tempfile.TemporaryDirectory(prefix="pushwire-hardening-") as tmp,
        pushwire_server(Path(tmp)) as server,
    ):
        result = asyncio.run(run(args, server.mqtt_port))
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    for row in result.get("overlap", []):  # type: ignore[attr-defined]
        print(
            f"overlap  filters={row['filters']:>6}  {row['msgs_per_s']:>9.0f} msg/s  "
            f"ack p50 {row['ack_p50_ms']:.2f} ms  p99 {row['ack_p99_ms']:.2f} ms"
        )
    r = result.get("retained")
    if isinstance(r, dict):
        print(
            f"retained {r['retained']} topics x {r['match_all_filters']} match-all filters: "
            f"SUBACK {r['suback_ms']:.1f} ms; control RTT max {r['control_rtt_max_ms']:.1f} ms, "
            f"p99 {r['control_rtt_p99_ms']:.1f} ms over {r['control_round_trips']} round trips; "
            f"read {r['retained_read']} retained at {r['retained_per_s']:.0f}/s; "
            f"idle RTT max {r['idle_rtt_max_ms']:.1f} ms, p99 {r['idle_rtt_p99_ms']:.1f} ms"
        )
        for note in r["notes"]:
            print(f"  note: {note}")


if __name__ == "__main__":
    main()
