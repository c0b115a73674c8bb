"""The floor under pushwire's connect rate: pushwire, a minimal Python CONNECT/CONNACK
server (uvloop, one `asyncio.Protocol`, the issue's "40 lines") and mosquitto, each under
the C connect generator of `pushwire bench mqtt --only connect` (clean 3.1.1 sessions,
2,000 client ids, 50 in flight, the server closes first after DISCONNECT), in short
windows interleaved round by round.

    .venv/bin/python bench/micro_connect_floor.py [--rounds 3] [--window 2]
        [--other NAME=SRC_DIR ...]       (another pushwire tree, e.g. before=/work/main/src)

For each server it prints connects/s and the server's CPU per connect (user + system from
/proc/PID/stat, so the kernel's share of accept/write/close in that process counts), and
the ratios to mosquitto of the same round. The machine is shared, so read the ratios and
CPU per connect, not absolute rates; the load average is printed with every round.

`--serve-floor PORT` runs only the floor server (what the benchmark starts as a child).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pushwire.bench.mqtt import LOAD_TAIL_S, connect_storm_binary
from pushwire.bench.peers import (
    Server,
    _spawn,
    _stop_process,
    _wait_until_accepting,
    cpu_seconds,
    free_port,
    mosquitto_server,
    pushwire_server,
    raise_nofile_limit,
)

IN_FLIGHT = 50
CLIENT_IDS = 2000
WARMUP_S = 0.5

# -- the floor: CONNECT in, CONNACK out, close after DISCONNECT -------------------------------

CONNACK_ACCEPTED = b"\x20\x02\x00\x00"


class FloorProtocol(asyncio.Protocol):
    """What any MQTT server must do per connect cycle, and nothing more: frame packets,
    answer CONNECT with CONNACK, close after DISCONNECT."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while len(buf) >= 2:
            length, shift, i = 0, 0, 1
            while True:  # remaining length, up to 4 bytes
                if i >= len(buf):
                    self.buf = buf
                    return
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
            if len(buf) < i + length:
                break
            kind = buf[0] >> 4
            buf = buf[i + length :]
            if kind == 1:  # CONNECT
                self.transport.write(CONNACK_ACCEPTED)
            elif kind == 14:  # DISCONNECT
                self.transport.close()
                return
        self.buf = buf


async def serve_floor(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FloorProtocol, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# -- the servers under test --------------------------------------------------------------------


@contextlib.contextmanager
def floor_server(workdir: Path) -> Iterator[Server]:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve-floor", str(port)]
    process = _spawn(argv, workdir, workdir / "floor.log")
    try:
        _wait_until_accepting(port, process, "floor")
        yield Server("floor", process.pid, port, workdir / "floor.log")
    finally:
        _stop_process(process)


@contextlib.contextmanager
def other_pushwire(name: str, src: str, workdir: Path) -> Iterator[Server]:
    """pushwire from another tree (PYTHONPATH=src), for before/after in the same run."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = src
    try:
        with pushwire_server(workdir) as server:
            yield Server(name, server.pid, server.mqtt_port, server.log_path)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def storm(binary: Path, server: Server, window: float) -> tuple[float, float]:
    """(connects/s, server CPU µs per connect) over one window."""
    start = time.monotonic() + WARMUP_S
    end = start + window
    argv = [str(binary), str(server.mqtt_port), str(IN_FLIGHT), str(CLIENT_IDS), "floor-"]
    argv += [f"{t:.6f}" for t in (start, end, end + LOAD_TAIL_S)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as generator:
        time.sleep(max(0.0, start - time.monotonic()))
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(max(0.0, end - time.monotonic()))
        cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
        out, err = generator.communicate(timeout=30)
    if generator.returncode != 0:
        raise RuntimeError(f"connect generator failed: {err.decode(errors='replace')}")
    count, _failures, window_s, _cpu = out.split()
    connects = int(count)
    rate = connects / float(window_s)
    cpu_us = (cpu1 - cpu0) / max(1, round(connects * (t1 - t0) / float(window_s))) * 1e6
    return rate, cpu_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=2.0, help="seconds per server per round")
    parser.add_argument("--other", action="append", default=[], metavar="NAME=SRC")
    parser.add_argument("--serve-floor", type=int, metavar="PORT")
    args = parser.parse_args()
    if args.serve_floor is not None:
        import uvloop

        uvloop.run(serve_floor(args.serve_floor))
        return
    binary = connect_storm_binary()
    if binary is None:
        sys.exit("needs a C compiler for the connect generator")
    raise_nofile_limit()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        servers = [
            stack.enter_context(pushwire_server(work / "pushwire")),
            *(
                stack.enter_context(other_pushwire(name, src, work / name))
                for name, src in (o.split("=", 1) for o in args.other)
            ),
            stack.enter_context(floor_server(work)),
            stack.enter_context(mosquitto_server(work / "mosquitto")),
        ]
        for r in range(args.rounds):
            results = {s.name: storm(binary, s, args.window) for s in servers}
            mosq_rate, mosq_cpu = results["mosquitto"]
            load = os.getloadavg()[0]
            print(f"round {r + 1} (load average {load:.1f})")
            for name, (rate, cpu_us) in results.items():
                print(
                    f"  {name:10} {rate:9,.0f} connects/s ({rate / mosq_rate:.2f}x mosquitto)"
                    f"  {cpu_us:6.1f} us CPU/connect ({cpu_us / mosq_cpu:.2f}x)"
                )


if __name__ == "__main__":
    main()
