"""Heap per held long-poll connection: the real protocol and routes (http/connection.py,
http/streams.py) on real sockets under uvloop, the clients in a subprocess; tracemalloc over
the server's allocations while N kept-alive long-polls are held, after three rounds of wake
and re-ask (so the re-ask lane and its byte templates are in place, as in a running server).

    .venv/bin/python bench/micro_longpoll_memory.py [N]

Prints the traced bytes per held long-poll and the largest allocation sites (TOP=n for
more). uvloop's own transport and libuv handle are counted (allocated through Python's
allocator); the kernel's socket buffers are not (they are not the process's RSS).
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tracemalloc
from typing import IO

import uvloop

from micro_longpoll import hot_stack
from pushwire.core.message import Message

ROUNDS = 3
REQUEST = b"GET /v1/longpoll/bench/lat?timeout=300%b HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"

CLIENT = r"""
import socket, sys
port, n, rounds, request = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
request = request.encode().decode("unicode_escape").encode("latin-1")
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
for s in socks:
    s.sendall(request % b"")
print("held", flush=True)
for _ in range(rounds):
    sys.stdin.readline()
    for s in socks:
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        fields = dict(
            line.split(b": ", 1) for line in head.lower().split(b"\r\n")[1:] if b": " in line
        )
        while len(rest) < int(fields[b"content-length"]):
            rest += s.recv(65536)
        s.sendall(request % (b"&since=" + fields[b"pushwire-cursor"]))
    print("re-asked", flush=True)
sys.stdin.readline()
"""


async def _line(out: IO[str]) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, out.readline)


async def run(n: int) -> None:
    stack = hot_stack({"longpoll_max_timeout": 3600, "http_max_listeners": 10**6})
    hub, log, server = stack.hub, stack.log, stack.server
    state = stack.state
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server.protocol, "127.0.0.1", 0, backlog=4096)
    port = listener.sockets[0].getsockname()[1]
    hub.publish(Message("bench/lat", b"warm"))
    gc.collect()
    tracemalloc.start(4)
    before = tracemalloc.take_snapshot()
    argv = [sys.executable, "-c", CLIENT, str(port), str(n), str(ROUNDS)]
    argv.append(REQUEST.decode("latin-1").encode("unicode_escape").decode())
    client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert client.stdin is not None and client.stdout is not None
    await _line(client.stdout)
    while log.listener_count < n:
        await asyncio.sleep(0.05)
    for wave in range(ROUNDS):
        client.stdin.write("\n")
        client.stdin.flush()
        await asyncio.sleep(0.05)
        hub.publish(Message("bench/lat", b"PWTS payload %d" % wave))
        await _line(client.stdout)
        while state.stats.connections["longpoll"] < n:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    gc.collect()
    after = tracemalloc.take_snapshot()
    stats = after.compare_to(before, "traceback")
    print(f"N={n}: {sum(s.size_diff for s in stats) / n:.0f} B of traced heap per held long-poll")
    for stat in stats[: int(os.environ.get("TOP", "14"))]:
        if stat.size_diff / n < 8:
            break
        where = " <- ".join(line.strip() for line in stat.traceback.format()[-2:][::-1])
        print(f"{stat.size_diff / n:7.0f} B {stat.count_diff / n:5.2f} obj  {where[:230]}")
    client.stdin.write("\n")
    client.stdin.flush()
    client.wait()
    listener.close()


if __name__ == "__main__":
    uvloop.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
