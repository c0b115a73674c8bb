"""pushwire and nginx + nchan at N = 10,000 SSE / WebSocket subscribers, interleaved wave
by wave (issue 10), so that both see the same load from the rest of a shared machine.

`pushwire bench http` runs pushwire, then nchan: on a machine where other work comes and
goes, the two halves of a ratio are taken under different loads (its per-wave figures
show runs where one server's waves are all slower). Here both servers run at once, each
with N subscribers held by 2 client processes (as `pushwire bench http`: raw sockets, the
kernel's receive timestamp, read as the bytes come); the waves alternate: a publish to
pushwire, its N deliveries, a publish to nchan, its N deliveries, and so on. An idle
server costs nothing meanwhile (no heartbeats: pushwire's SSE heartbeat is off as in the
bench, its WebSocket ping is 20 s away).

    .venv/bin/python bench/stream10k_sidebyside.py [--n 10000] [--waves 10] [--kinds ws,sse]
    setsid .venv/bin/python bench/stream10k_sidebyside.py --autogroup-nice -10 ...

Prints per kind and server p50 / p99 over all deliveries of all waves (as the bench does)
and the ratios; then per server each wave's p50 and how often the server thread was
preempted in it, and medians over the waves of the k-th delivery, the server thread's CPU,
run-queue wait and preemptions (/proc schedstat, status) and the client processes' CPU: the
bench's latency is the server's write time, so these say where a slow wave's time went
(bench/README.md, f-sse). `--autogroup-nice`: see `_autogroup_nice`; `--batch-clients`: the
client processes as SCHED_BATCH (`pushwire bench http --batch-clients`). Needs nginx and the
nchan module (`make deps-bench`, as `pushwire bench http`).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import select
import socket
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from multiprocessing.connection import Connection
from pathlib import Path

from pushwire.bench.http import (
    Dialect,
    publish_head,
    pushwire_http_server,
    sse_request,
    ws_request,
    ws_subscribe_frame,
)
from pushwire.bench.nchan import nchan_server
from pushwire.bench.peers import raise_nofile_limit, thread_schedstat

CHANNEL = "lat"
SO_TIMESTAMPNS = 35
MARK = b"PWTS"
CLIENTS = 2  # client processes per server


def _open(port: int, kind: str, dialect: Dialect, n: int) -> list[socket.socket]:
    request = sse_request(dialect, CHANNEL) if kind == "sse" else ws_request(dialect, CHANNEL)
    socks: list[socket.socket] = []
    for start in range(0, n, 500):
        batch = []
        for _ in range(min(500, n - start)):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.sendall(request)
            batch.append(s)
        for s in batch:
            s.settimeout(20)
            head = b""
            while b"\r\n\r\n" not in head:
                got = s.recv(4096)
                if not got:
                    raise RuntimeError("closed during the handshake")
                head += got
            want = b"HTTP/1.1 101" if kind == "ws" else b"HTTP/1.1 200"
            assert head.startswith(want), head[:40]
            if kind == "ws" and dialect == "pushwire":
                s.sendall(ws_subscribe_frame(CHANNEL))
            s.setblocking(False)
        socks += batch
    return socks


def _read(s: socket.socket, out: list[int]) -> None:
    """Latencies (ns) of the stamps in what is readable now on `s`, into `out`."""
    while True:
        try:
            data, anc, _f, _a = s.recvmsg(65536, 64)
        except BlockingIOError:
            return
        if not data:
            return
        rx = time.time_ns()
        for level, typ, payload in anc:
            if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                sec = int.from_bytes(payload[:8], "little")
                rx = sec * 1_000_000_000 + int.from_bytes(payload[8:16], "little")
        at = data.find(MARK)
        while at >= 0:
            out.append(rx - int(data[at + 4 : at + 23]))
            at = data.find(MARK, at + 23)


def client_main(
    conn: Connection, port: int, kind: str, dialect: Dialect, n: int, batch: bool = False
) -> None:
    if batch:
        # a batch task never preempts another on wake-up (the scheduler's rule for
        # SCHED_BATCH): the load generator stops taking the server's core at each write
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    socks = _open(port, kind, dialect, n)
    time.sleep(0.5)
    for s in socks:  # what came before the waves (pushwire's hello, subscribed)
        try:
            while s.recv(65536):
                pass
        except BlockingIOError:
            pass
    ep = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    conn.send("opened")
    while (cmd := conn.recv()) != "stop":
        assert cmd == "wave"
        lat: list[int] = []
        deadline = time.monotonic() + 10
        cpu0 = time.process_time()
        polls = 0
        while len(lat) < n and time.monotonic() < deadline:
            polls += 1
            for fd, _ev in ep.poll(0.2):
                _read(by_fd[fd], lat)
        conn.send((lat, time.process_time() - cpu0, polls))
    for s in socks:
        s.close()


class Side:
    """One server, its client processes and its publisher connection."""

    def __init__(
        self, dialect: Dialect, port: int, kind: str, n: int, pid: int, batch: bool = False
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.dialect = dialect
        self.pipes: list[Connection] = []
        self.procs = []
        for i in range(CLIENTS):
            share = n // CLIENTS + (1 if i < n % CLIENTS else 0)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_main, args=(child, port, kind, dialect, share, batch))
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.pid = pid
        self.sched: list[tuple[int, ...]] = []  # per wave: CPU, run delay (ns), slices, preempted
        self.clients: list[tuple[float, int]] = []  # per wave: the clients' CPU (s), polls
        self.pub = socket.create_connection(("127.0.0.1", port))
        self.pub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.latencies: list[int] = []

    def ready(self) -> None:
        for pipe in self.pipes:
            assert pipe.poll(300), "clients did not open in time"
            assert pipe.recv() == "opened"

    def wave(self) -> None:
        for pipe in self.pipes:
            pipe.send("wave")
        time.sleep(0.05)  # the clients are in their read loops
        # the stamp: MARK, then 19 digits (the flag byte of the bench's stamp is left out)
        before = thread_schedstat(self.pid)
        body = MARK + b"%019d" % time.time_ns() + b"x" * 40
        self.pub.sendall(publish_head(self.dialect, CHANNEL, len(body)) + body)
        ccpu = 0.0
        cpolls = 0
        for pipe in self.pipes:
            assert pipe.poll(30), "a wave was not delivered in time"
            lat, cpu, polls = pipe.recv()
            self.latencies += lat
            ccpu += cpu
            cpolls += polls
        self.clients.append((ccpu, cpolls))
        after = thread_schedstat(self.pid)
        self.sched.append(tuple(a - b for a, b in zip(after, before, strict=True)))
        answer = self.pub.recv(65536)
        assert answer.startswith(b"HTTP/1.1 20"), answer[:60]

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send("stop")
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        self.pub.close()


def _curve(side: Side, n: int, waves: int) -> str:
    """Per server, medians over the waves: the k-th delivery (ms after the publish was
    sent) and the server thread's CPU, run-queue wait and slices during a wave."""
    points = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    rows = []
    for i in range(waves):
        lat = sorted(side.latencies[i * n : (i + 1) * n])
        rows.append([lat[min(n - 1, int(f * n))] / 1e6 for f in points])
    med = [statistics.median(r[j] for r in rows) for j in range(len(points))]
    cpu, delay, slices, preempted = (statistics.median(s[j] for s in side.sched) for j in range(4))
    per_wave = " ".join(f"{r[3]:.0f}/{st[3]}" for r, st in zip(rows, side.sched, strict=True))
    return (
        f"{side.dialect:<8} per wave p50 ms/times preempted: {per_wave}\n     "
        f"{side.dialect:<8} k-th delivery, ms: "
        + " ".join(f"{int(f * 100)}%={m:.1f}" for f, m in zip(points, med, strict=True))
        + f" | server CPU {cpu / 1e6:.1f} ms, run-queue wait {delay / 1e6:.1f} ms,"
        f" {slices:.0f} slices ({preempted:.0f} preempted) per wave; clients' CPU"
        f" {statistics.median(c for c, _ in side.clients) * 1e3:.1f} ms in"
        f" {statistics.median(p for _, p in side.clients):.0f} polls"
    )


def pct(values: list[int], fraction: float) -> float:
    return values[max(0, min(len(values) - 1, round(fraction * len(values) + 0.5) - 1))] / 1e6


def _autogroup_nice(pids: list[int], nice: int | None) -> None:
    """An experiment on a shared machine (kernel.sched_autogroup_enabled = 1): the CPU is
    shared between sessions first, and `nice` only orders processes within one, so other
    sessions' niced hogs still take their session's share. Raising the autogroup priority
    of the sessions of this run (the harness with its clients, each server) approximates a
    quiet machine. Only for processes this run started."""
    if nice is None:
        return
    for pid in pids:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def run(kind: str, n: int, waves: int, nice: int | None = None, batch: bool = False) -> None:
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        pw = stack.enter_context(pushwire_http_server(work / "pushwire"))
        nc = stack.enter_context(nchan_server(work / "nchan"))
        sides = [
            Side("pushwire", pw.port, kind, n, pw.pid, batch),
            Side("nchan", nc.port, kind, n, nc.extra_pids[0], batch),
        ]
        try:
            for side in sides:
                side.ready()
            _autogroup_nice([os.getpid(), pw.pid, nc.pid], nice)
            print(f"waves: pushwire pid {pw.pid}, nginx worker pid {nc.extra_pids[0]}", flush=True)
            load = os.getloadavg()[0]
            for _ in range(waves):
                for side in sides:
                    side.wave()
                    time.sleep(0.25)
            rows = []
            for side in sides:
                lat = sorted(side.latencies)
                assert len(lat) == n * waves, (side.dialect, len(lat), n * waves)
                rows.append((pct(lat, 0.5), pct(lat, 0.99)))
            (p50, p99), (n50, n99) = rows
            print(
                f"{kind:<4} N={n} {waves} waves each, load {load:.2f}: pushwire {p50:.1f} / "
                f"{p99:.1f} ms, nchan {n50:.1f} / {n99:.1f} ms: p50 {p50 / n50:.2f}x, "
                f"p99 {p99 / n99:.2f}x"
            )
            waves_p99 = [
                statistics.median(
                    pct(sorted(s.latencies[i * n : (i + 1) * n]), 0.99) for i in range(waves)
                )
                for s in sides
            ]
            print(f"     median of the waves' own p99: {waves_p99[0]:.1f} vs {waves_p99[1]:.1f} ms")
            for side in sides:
                print("     " + _curve(side, n, waves))
        finally:
            for side in sides:
                side.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--waves", type=int, default=10)
    ap.add_argument("--kinds", default="ws,sse")
    ap.add_argument("--autogroup-nice", type=int, default=None, help="see _autogroup_nice")
    ap.add_argument("--batch-clients", action="store_true", help="client processes as SCHED_BATCH")
    args = ap.parse_args()
    raise_nofile_limit()
    if args.autogroup_nice is not None and os.getsid(0) != os.getpid():
        sys.exit("--autogroup-nice: run under setsid (an autogroup of this run's own)")
    for kind in args.kinds.split(","):
        run(kind, args.n, args.waves, args.autogroup_nice, args.batch_clients)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
