"""How N accepting processes share one port: SO_REUSEPORT sockets vs one inherited socket.

    .venv/bin/python bench/reuseport_balance.py --connections 2000 --workers 2

Why `pushwire serve --workers N` lets each worker bind its own SO_REUSEPORT socket (see
src/pushwire/workers.py). Each mode starts N worker processes on 127.0.0.1 that accept
connections on one port with asyncio (as pushwire's listeners do), answer every connection
with their worker number and close it; one worker is kept busy (a CPU loop between
accepts of `--busy-ms`) to show where connections go when the workers are unequally
loaded. The client opens `--connections` connections, `--concurrency` at a time, and counts
who answered.

* reuseport: every worker binds its own socket with SO_REUSEPORT: the kernel picks the
  socket by a hash of the connection's addresses, whatever each worker is doing;
* shared: the parent binds and listens once, the workers inherit the socket and all wait
  in epoll on it: every worker is woken and whoever accepts first wins.

Starts and stops only its own processes (by PID); everything on 127.0.0.1; a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import Connection

HOST = "127.0.0.1"


def _listening_socket(port: int, reuseport: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((HOST, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def worker(
    index: int, port: int, shared: socket.socket | None, busy_ms: float, ready: Connection
) -> None:
    sock = shared if shared is not None else _listening_socket(port, reuseport=True)

    class Answer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if busy_ms:  # this worker is slow: it spins after each accept
                end = time.perf_counter() + busy_ms / 1000
                while time.perf_counter() < end:
                    pass
            assert isinstance(transport, asyncio.Transport)
            transport.write(bytes([index]))
            transport.close()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Answer, sock=sock)
        ready.send("ready")
        await server.serve_forever()

    asyncio.run(main())


async def _one(port: int) -> int:
    reader, writer = await asyncio.open_connection(HOST, port)
    data = await reader.read(1)
    writer.close()
    return data[0]


async def _client(port: int, connections: int, concurrency: int) -> collections.Counter[int]:
    counts: collections.Counter[int] = collections.Counter()
    for start in range(0, connections, concurrency):
        batch = min(concurrency, connections - start)
        for who in await asyncio.gather(*(_one(port) for _ in range(batch))):
            counts[who] += 1
    return counts


def measure(
    mode: str, workers: int, connections: int, concurrency: int, busy_ms: float
) -> collections.Counter[int]:
    ctx = multiprocessing.get_context("fork")
    shared = _listening_socket(0, reuseport=False) if mode == "shared" else None
    if shared is not None:
        port = shared.getsockname()[1]
    else:  # reserve a port number for the workers' own sockets
        probe = _listening_socket(0, reuseport=True)
        port = probe.getsockname()[1]
        probe.close()
    procs, pipes = [], []
    for index in range(workers):
        parent_end, child_end = ctx.Pipe()
        busy = busy_ms if index == 0 else 0.0
        proc = ctx.Process(target=worker, args=(index, port, shared, busy, child_end), daemon=True)
        proc.start()
        procs.append(proc)
        pipes.append(parent_end)
    try:
        for pipe in pipes:
            if not pipe.poll(20):
                raise RuntimeError("a worker did not start")
            pipe.recv()
        return asyncio.run(_client(port, connections, concurrency))
    finally:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
            proc.join(5)
        if shared is not None:
            shared.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--busy-ms", type=float, default=1.0, help="worker 0's work per accept")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for busy in (0.0, args.busy_ms):
        for mode in ("reuseport", "shared"):
            counts = measure(mode, args.workers, args.connections, args.concurrency, busy)
            shares = ", ".join(
                f"w{i} {counts[i] / args.connections:.0%}" for i in range(args.workers)
            )
            print(f"{mode:9} worker 0 busy {busy:g} ms/accept: {shares}")


if __name__ == "__main__":
    main()
