"""A bounded MQTT connect storm against one pushwire node on engine=redis.

    .venv/bin/python bench/redis_connect_storm.py [--n 3000] [--concurrency 500] [--workers 1]

Starts a private redis-server and `pushwire serve --engine redis` (the cluster bench's own
harness, pushwire/bench/cluster.py, so the server runs as it does there), then opens `--n`
MQTT 3.1.1 clean-session connections from raw asyncio sockets, at most `--concurrency`
waiting for CONNACK at a time, and keeps them open until all are in (as the cluster
bench's subscribers do). Reported: connects/s (first CONNECT to last CONNACK), the server
process's CPU per connect, and the Redis commands the storm cost, per connect, from
`INFO commandstats` before and after (commands run inside a Lua script are counted
under their own names as well as the EVALSHA). Everything stops by PID at the end.

To compare with another version, run it with PYTHONPATH pointing at that tree's src/ (the
server subprocess inherits it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from pushwire.bench.cluster import CONFIG_SPECS, Settings, pushwire_cluster

HOST = "127.0.0.1"


def connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


async def storm(port: int, n: int, concurrency: int) -> tuple[float, int]:
    """(seconds from the first CONNECT to the last CONNACK, refusals)."""
    gate = asyncio.Semaphore(concurrency)
    writers: list[asyncio.StreamWriter] = []
    refused = 0

    async def one(i: int) -> None:
        nonlocal refused
        async with gate:
            reader, writer = await asyncio.open_connection(HOST, port)
            writers.append(writer)
            writer.write(connect_packet(f"storm-{i}"))
            ack = await asyncio.wait_for(reader.readexactly(4), 60)
            if ack[0] != 0x20 or ack[3] != 0:
                refused += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    for w in writers:
        w.close()
    return elapsed, refused


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--workers", type=int, default=1, choices=(1, 2))
    parser.add_argument(
        "--py-spy", metavar="OUT", help="record the server with py-spy (raw stacks) into OUT"
    )
    args = parser.parse_args()
    config = CONFIG_SPECS["redis-1" if args.workers == 1 else "redis-w2"]
    with (
        tempfile.TemporaryDirectory(prefix="pushwire-connect-storm-") as tmp,
        pushwire_cluster(config, Path(tmp), Settings()) as running,
    ):
        conf = (Path(tmp) / "redis" / "redis.conf").read_text()
        port = int(next(ln.split()[1] for ln in conf.splitlines() if ln.startswith("port ")))
        client = redis.Redis(host=HOST, port=port)
        server = running.pids[:-1]  # pushwire's processes (the last one is redis-server)
        before = commandstats(client)
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(
                [
                    *("py-spy", "record", "--pid", str(server[0]), "--rate", "250"),
                    *("--format", "raw", "--nonblocking", "-o", args.py_spy),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # attached before the storm starts
        cpu0 = sum(cpu_seconds(p) for p in server)
        elapsed, refused = asyncio.run(storm(running.mqtt_port, args.n, args.concurrency))
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
            spy.wait(30)
        cpu1 = sum(cpu_seconds(p) for p in server)
        after = commandstats(client)
        with contextlib.suppress(redis.RedisError):
            client.close()
    calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    calls = {k: v for k, v in calls.items() if v > 0 and k not in ("info",)}
    total = sum(calls.values())
    print(f"{config.name}: {args.n} connects, {args.concurrency} at a time, {refused} refused")
    print(f"  connects/s        {args.n / elapsed:10.0f}   ({elapsed:.2f} s)")
    print(f"  server CPU/connect {1e6 * (cpu1 - cpu0) / args.n:9.0f} us")
    print(f"  Redis calls/connect {total / args.n:8.2f}")
    for name, count in sorted(calls.items(), key=lambda kv: -kv[1]):
        print(f"    {name:16} {count / args.n:6.2f}")


if __name__ == "__main__":
    main()
