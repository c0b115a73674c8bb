"""When each of N=10,000 SSE / JSON WebSocket subscribers' write leaves, after one publish.

pushwire runs in this process (uvloop, `--memory`, the bench's settings); a client process
opens N real subscriber sockets on 127.0.0.1 (SSE: GET /v1/sse/...; WebSocket: the
handshake and a subscribe frame), and one keep-alive publisher socket. Per wave the client
stamps CLOCK_REALTIME into the body of an HTTP publish and sends it; then either

- `idle` (default): it does not read while the server writes (the server's own pacing,
  nothing of the client on the cores), then reads every socket once; or
- `active`: it reads every socket as it becomes readable (an epoll loop, as the bench's
  clients do), so the client competes for the cores as in `pushwire bench http`.

A delivery's time is the kernel's receive timestamp of its bytes (SO_TIMESTAMPNS: on
loopback, the server's write) minus the stamp. Printed per kind, medians over the waves:
the k-th delivery for k = 1, N/2, 0.99 N, N; when the log's walk over the listeners
started and ended (`MessageLog._wake`, timed in this process), and the walk's CPU.

    .venv/bin/python bench/micro_stream10k.py [--n 10000] [--waves 8] [--kinds ws,sse]
                                              [--mode idle|active] [--src DIR]

`--src DIR`: import pushwire from DIR (e.g. /tmp/b-stream10k/before/src) for a before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import select
import socket
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

MODES = ("idle", "active")
TOPIC = "bench/lat"
SO_TIMESTAMPNS = 35
MARK = b"PWTS"


# -- the client process ---------------------------------------------------------------------


def _ws_frame(text: bytes) -> bytes:
    n = len(text)
    assert n < 126
    return bytes((0x81, 0x80 | n)) + b"\0\0\0\0" + text


def _request(kind: str) -> bytes:
    if kind == "sse":
        return (
            b"GET /v1/sse/" + TOPIC.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Accept: text/event-stream\r\n\r\n"
        )
    return (
        b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: pushwire.v1\r\n\r\n"
    )


def _open(port: int, kind: str, n: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    subscribe = _ws_frame(b'{"type":"subscribe","sub":"b","filter":"' + TOPIC.encode() + b'"}')
    for start in range(0, n, 500):
        batch = []
        for _ in range(min(500, n - start)):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.sendall(_request(kind))
            batch.append(s)
        for s in batch:
            s.settimeout(20)
            head = b""
            while b"\r\n\r\n" not in head:
                got = s.recv(4096)
                if not got:
                    raise RuntimeError("closed during the handshake")
                head += got
            if kind == "ws":
                assert head.startswith(b"HTTP/1.1 101"), head[:40]
                s.sendall(subscribe)
            else:
                assert head.startswith(b"HTTP/1.1 200"), head[:40]
            s.setblocking(False)
        socks += batch
    return socks


def _drain(socks: list[socket.socket]) -> None:
    for s in socks:
        try:
            while s.recv(65536):
                pass
        except BlockingIOError:
            pass


def _stamps(data: bytes) -> list[int]:
    out = []
    at = data.find(MARK)
    while at >= 0:
        out.append(int(data[at + 4 : at + 23]))
        at = data.find(MARK, at + 23)
    return out


def _read(s: socket.socket) -> list[int]:
    """Latencies (ns) of the stamps in what is readable now on `s`."""
    out: list[int] = []
    while True:
        try:
            data, anc, _f, _a = s.recvmsg(65536, 64)
        except BlockingIOError:
            return out
        if not data:
            return out
        rx = time.time_ns()
        for level, typ, payload in anc:
            if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                sec = int.from_bytes(payload[:8], "little")
                rx = sec * 1_000_000_000 + int.from_bytes(payload[8:16], "little")
        out += [rx - sent for sent in _stamps(data)]


def client_main(conn: Connection, port: int, kind: str, n: int, mode: str) -> None:
    socks = _open(port, kind, n)
    pub = socket.create_connection(("127.0.0.1", port))
    pub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.send(("opened", len(socks)))
    while True:
        cmd = conn.recv()
        if cmd == "stop":
            break
        if cmd == "drain":
            _drain(socks)
            conn.send(("drained",))
            continue
        # a wave: publish, then collect the N deliveries
        sent = time.time_ns()
        body = MARK + b"%019d" % sent + b"x" * 40
        pub.sendall(
            b"POST /v1/publish/" + TOPIC.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        lat: list[int] = []
        deadline = time.monotonic() + 10
        if mode == "idle":
            time.sleep(float(cmd))
            for s in socks:
                lat += _read(s)
        else:
            ep = select.epoll()
            by_fd = {s.fileno(): s for s in socks}
            for fd in by_fd:
                ep.register(fd, select.EPOLLIN)
            while len(lat) < n and time.monotonic() < deadline:
                for fd, _ev in ep.poll(0.5):
                    lat += _read(by_fd[fd])
            ep.close()
        got = pub.recv(65536)  # the publish's answer (small; one read)
        assert got.startswith(b"HTTP/1.1 20"), got[:40]
        conn.send(("wave", sent, sorted(lat)))
    for s in socks:
        s.close()


# -- the server (this process) --------------------------------------------------------------


class WalkClock:
    """Times `MessageLog._wake` of the server's log: start/end (CLOCK_REALTIME ns) and CPU;
    counts the garbage collections that ran during a walk and in the whole wave."""

    def __init__(self, log: Any) -> None:
        self.walks: list[tuple[int, int, float]] = []
        self.walking = False
        self.gc_in_walks = 0
        self.gc_total = 0
        wake = log._wake

        def timed(topic: str, entry: Any) -> None:
            t0, c0 = time.time_ns(), time.process_time()
            self.walking = True
            try:
                wake(topic, entry)
            finally:
                self.walking = False
            self.walks.append((t0, time.time_ns(), time.process_time() - c0))

        log._wake = timed
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.gc_total += 1
            self.gc_in_walks += self.walking


async def run_kind(kind: str, n: int, waves: int, mode: str) -> dict[str, float]:
    import multiprocessing

    from pushwire.config import Settings
    from pushwire.server import PushwireServer

    settings = Settings.model_validate(
        {
            "bind": "127.0.0.1",
            "mqtt_port": 0,
            "http_port": 0,
            "memory": True,
            "sys_interval": 0,
            "sse_heartbeat": 3600,
            "connection_rate_per_ip": 0,
            "max_connections_per_ip": 0,
            "publish_rate_per_client": 0,
            "http_max_listeners": 10**6,
        }
    )
    server = PushwireServer(settings)
    await server.start()
    assert server.http_address is not None
    clock = WalkClock(server.log)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=client_main, args=(child, server.http_address[1], kind, n, mode))
    proc.start()
    loop = asyncio.get_running_loop()

    async def recv() -> Any:
        while not parent.poll():
            await asyncio.sleep(0.01)
        return parent.recv()

    try:
        opened = await asyncio.wait_for(recv(), 180)
        assert opened == ("opened", n), opened
        deadline = loop.time() + 30
        while server.log.listener_count < n:
            assert loop.time() < deadline, server.log.listener_count
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        parent.send("drain")
        await recv()
        rows: list[list[float]] = []
        clock.gc_in_walks = clock.gc_total = 0  # the waves' only
        for _ in range(waves):
            clock.walks.clear()
            await asyncio.sleep(0.3)
            parent.send("0.5")
            _tag, sent, lat = await asyncio.wait_for(recv(), 30)
            assert len(lat) == n, (len(lat), n)
            (w0, w1, wcpu) = clock.walks[0]
            ks = [lat[0], lat[n // 2 - 1], lat[int(n * 0.99) - 1], lat[-1]]
            rows.append(
                [k / 1e6 for k in ks]
                + [(w0 - sent) / 1e6, (w1 - sent) / 1e6, wcpu * 1e3, wcpu / n * 1e6]
            )
        med = [statistics.median(col) for col in zip(*rows, strict=True)]
        names = ["k1", "k50", "k99", "kN", "walk_start", "walk_end", "walk_cpu_ms", "cpu_us"]
        out = dict(zip(names, med, strict=True))
        out["gc_in_walks"], out["gc_total"] = clock.gc_in_walks, clock.gc_total
        return out
    finally:
        parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        await server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--waves", type=int, default=8)
    ap.add_argument("--kinds", default="ws,sse")
    ap.add_argument("--mode", choices=MODES, default="idle")
    ap.add_argument("--src", default="")
    args = ap.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
        os.environ["PYTHONPATH"] = args.src  # the spawned client imports this file only
    import resource

    import uvloop

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(
        f"N={args.n}, {args.waves} waves, clients {args.mode}; load {os.getloadavg()[0]:.2f}; "
        "ms after the publish was sent (medians)"
    )
    print(
        f"{'kind':<5} {'k=1':>7} {'k=N/2':>7} {'k=.99N':>7} {'k=N':>7} "
        f"{'walk0':>7} {'walk1':>7} {'walkCPU':>8} {'us/sub':>7}"
    )
    for kind in args.kinds.split(","):
        r = uvloop.run(run_kind(kind, args.n, args.waves, args.mode))
        print(
            f"{kind:<5} {r['k1']:>7.1f} {r['k50']:>7.1f} {r['k99']:>7.1f} {r['kN']:>7.1f} "
            f"{r['walk_start']:>7.1f} {r['walk_end']:>7.1f} {r['walk_cpu_ms']:>8.1f} "
            f"{r['cpu_us']:>7.2f}   GC in the walks {r['gc_in_walks']:.0f} of {r['gc_total']:.0f}"
        )


if __name__ == "__main__":
    main()
