"""HTTP scale scenario: N long-poll waiters and N SSE streams on one pushwire process.

    .venv/bin/python bench/http_scale.py                 # 10,000 of each (sequential phases)
    .venv/bin/python bench/http_scale.py -n 1000 --together --json

What it does, per phase (long-poll, then SSE; both at once with --together):
  1. starts `pushwire serve --memory` on free ports (or uses --url of a running server);
  2. opens N raw HTTP/1.1 connections from this process, each holding a request
     (GET /v1/longpoll/bench/t?timeout=600, or GET /v1/sse/bench/t);
  3. waits until /metrics shows all N registered, then measures the server's CPU time
     (from /proc/PID/stat) over --idle seconds and its resident memory (VmRSS): waiting
     must cost no CPU;
  4. publishes ONE message over HTTP and measures how long until every client got it.

Prints a small report (or JSON with --json). The file-descriptor limit is raised to the
hard limit (or 65,536 where the process may raise the hard limit, e.g. as root) for this
process and the server it starts; with N=10,000, both kinds at once (--together) need about
20,000 descriptors in each process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TOPIC = "bench/t"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def raise_nofile(wanted: int = 65536) -> int:
    """Lift the fd limit (the server started here inherits it): to `wanted` when allowed
    (root may raise the hard limit), else to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class PhaseResult:
    kind: str
    clients: int
    connect_seconds: float
    idle_seconds: float
    idle_cpu_seconds: float
    idle_cpu_percent: float
    rss_mb: float
    rss_mb_before: float
    fanout_seconds: float
    received: int


class Server:
    def __init__(self, url: str | None, pid: int | None, proc: subprocess.Popen[bytes] | None):
        self.url = url or ""
        self.pid = pid
        self.proc = proc

    @classmethod
    def start(cls, extra: list[str]) -> Server:
        cmd = [
            sys.executable,
            "-m",
            "pushwire",
            "serve",
            "--memory",
            "--mqtt-port",
            "0",
            "--http-port",
            "0",
            "--sys-interval",
            "0",
            "--http-max-listeners",
            "1000000",
            "--longpoll-max-timeout",
            "3600",
            "--sse-heartbeat",
            "600",
            *extra,
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        pattern = re.compile(rb"http listening on ([0-9.]+):(\d+)")
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            m = pattern.search(line)
            if m:
                # keep draining stderr so the server never blocks on a full pipe
                import threading

                threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
                return cls(f"http://{m.group(1).decode()}:{int(m.group(2))}", proc.pid, proc)
        proc.kill()
        raise RuntimeError("pushwire did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def host_port(self) -> tuple[str, int]:
        m = re.match(r"http://([^:/]+):(\d+)", self.url)
        assert m is not None
        return m.group(1), int(m.group(2))

    def cpu_seconds(self) -> float:
        if self.pid is None:
            return float("nan")
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        if self.pid is None:
            return float("nan")
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            return str(r.read().decode())

    def metric(self, name: str) -> float:
        m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", self.metrics(), re.M)
        return float(m.group(1)) if m else 0.0

    def publish(self, payload: bytes) -> None:
        req = urllib.request.Request(self.url + f"/v1/publish/{TOPIC}", data=payload, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status in (200, 201), r.status


def _drain(stream: Any) -> None:
    for _ in iter(stream.readline, b""):
        pass


async def _open(
    host: str, port: int, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    for attempt in range(20):
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 16)
            break
        except OSError:
            if attempt == 19:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def _wait_for(reader: asyncio.StreamReader, marker: bytes) -> bool:
    data = b""
    while marker not in data:
        chunk = await reader.read(65536)
        if not chunk:
            return False
        data = data[-len(marker) :] + chunk if len(data) > 4096 else data + chunk
    return True


async def _connect_all(
    host: str, port: int, path: str, n: int, batch: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for start in range(0, n, batch):
        part = await asyncio.gather(
            *(_open(host, port, path) for _ in range(min(batch, n - start)))
        )
        conns.extend(part)
    return conns


async def _until_metric(server: Server, name: str, at_least: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(server.metric, name)
        if value >= at_least:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{name} never reached {at_least}")


async def run_phase(
    server: Server, kinds: list[str], n: int, idle: float, batch: int
) -> list[PhaseResult]:
    host, port = server.host_port
    rss_before = server.rss_mb()
    listeners_before = await asyncio.to_thread(server.metric, "pushwire_log_listeners")
    all_conns: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
    connect_time: dict[str, float] = {}
    for kind in kinds:
        t0 = time.monotonic()
        all_conns[kind] = await _connect_all(host, port, PATHS[kind], n, batch)
        connect_time[kind] = time.monotonic() - t0
    await _until_metric(server, "pushwire_log_listeners", listeners_before + n * len(kinds), 120)
    await asyncio.sleep(1.0)  # let connection set-up work finish
    cpu0 = server.cpu_seconds()
    t0 = time.monotonic()
    await asyncio.sleep(idle)
    idle_s = time.monotonic() - t0
    idle_cpu = server.cpu_seconds() - cpu0
    rss = server.rss_mb()
    waits = {
        kind: [asyncio.ensure_future(_wait_for(r, MARKER)) for r, _ in conns]
        for kind, conns in all_conns.items()
    }
    t_pub = time.monotonic()
    await asyncio.to_thread(server.publish, b"go")
    results: list[PhaseResult] = []
    done_at: dict[str, float] = {}
    received: dict[str, int] = {}
    for kind, tasks in waits.items():
        oks = await asyncio.gather(*tasks)
        done_at[kind] = time.monotonic() - t_pub
        received[kind] = sum(1 for ok in oks if ok)
    for kind, conns in all_conns.items():
        for _, writer in conns:
            writer.close()
        results.append(
            PhaseResult(
                kind=kind,
                clients=n,
                connect_seconds=round(connect_time[kind], 2),
                idle_seconds=round(idle_s, 2),
                idle_cpu_seconds=round(idle_cpu, 3),
                idle_cpu_percent=round(100 * idle_cpu / idle_s, 2),
                rss_mb=round(rss, 1),
                rss_mb_before=round(rss_before, 1),
                fanout_seconds=round(done_at[kind], 3),
                received=received[kind],
            )
        )
    await _until_metric_below(server, "pushwire_log_listeners", listeners_before + 1, 120)
    return results


async def _until_metric_below(server: Server, name: str, below: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(server.metric, name) < below:
            return
        await asyncio.sleep(0.2)


PATHS = {"longpoll": f"/v1/longpoll/{TOPIC}?timeout=3000", "sse": f"/v1/sse/{TOPIC}"}
MARKER = b'"payload":"go"'


async def worker(url: str, kind: str, n: int, batch: int) -> None:
    """Child process of --together: hold N clients of one kind, report on stdout."""
    server = Server(url, None, None)
    host, port = server.host_port
    t0 = time.monotonic()
    conns = await _connect_all(host, port, PATHS[kind], n, batch)
    print(f"connected {time.monotonic() - t0:.3f}", flush=True)
    oks = await asyncio.gather(*(_wait_for(r, MARKER) for r, _ in conns))
    print(f"received {sum(1 for ok in oks if ok)} {time.time():.6f}", flush=True)
    for _, w in conns:
        w.close()


def run_together(
    server: Server, kinds: list[str], n: int, idle: float, batch: int
) -> list[PhaseResult]:
    """Each kind's clients in their own process (one process may not hold 2N sockets)."""
    rss_before = server.rss_mb()
    children = {
        kind: subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                kind,
                "--url",
                server.url,
                "-n",
                str(n),
                "--batch",
                str(batch),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for kind in kinds
    }
    connect: dict[str, float] = {}
    for kind, child in children.items():
        assert child.stdout is not None
        line = child.stdout.readline().split()
        if not line or line[0] != "connected":
            raise RuntimeError(f"{kind} worker failed")
        connect[kind] = float(line[1])
    asyncio.run(_until_metric(server, "pushwire_log_listeners", n * len(kinds), 300))
    time.sleep(1.0)
    cpu0 = server.cpu_seconds()
    t0 = time.monotonic()
    time.sleep(idle)
    idle_s = time.monotonic() - t0
    idle_cpu = server.cpu_seconds() - cpu0
    rss = server.rss_mb()
    t_pub = time.time()
    server.publish(b"go")
    results = []
    for kind, child in children.items():
        assert child.stdout is not None
        parts = child.stdout.readline().split()
        child.wait(60)
        results.append(
            PhaseResult(
                kind=kind,
                clients=n,
                connect_seconds=round(connect[kind], 2),
                idle_seconds=round(idle_s, 2),
                idle_cpu_seconds=round(idle_cpu, 3),
                idle_cpu_percent=round(100 * idle_cpu / idle_s, 2),
                rss_mb=round(rss, 1),
                rss_mb_before=round(rss_before, 1),
                fanout_seconds=round(float(parts[2]) - t_pub, 3),
                received=int(parts[1]),
            )
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--clients", type=int, default=10_000, help="per kind")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds to measure idle CPU")
    parser.add_argument("--together", action="store_true", help="long-poll and SSE at once")
    parser.add_argument("--only", choices=["longpoll", "sse"], help="one kind only")
    parser.add_argument("--batch", type=int, default=500, help="connections opened at once")
    parser.add_argument("--url", help="use a running server (CPU/RSS need --pid)")
    parser.add_argument("--pid", type=int, help="pid of the server given with --url")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--worker", choices=["longpoll", "sse"], help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    limit = raise_nofile()
    if ns.worker:
        asyncio.run(worker(ns.url, ns.worker, ns.clients, ns.batch))
        return 0
    kinds = [ns.only] if ns.only else ["longpoll", "sse"]
    server = Server(ns.url, ns.pid, None) if ns.url else Server.start([])
    try:
        results: list[PhaseResult] = []
        if ns.together:
            results += run_together(server, kinds, ns.clients, ns.idle, ns.batch)
        else:
            for kind in kinds:
                results += asyncio.run(run_phase(server, [kind], ns.clients, ns.idle, ns.batch))
    finally:
        if ns.url is None:
            server.stop()
    if ns.json:
        print(json.dumps({"nofile": limit, "results": [asdict(r) for r in results]}, indent=2))
    else:
        print(f"fd limit {limit}")
        for r in results:
            print(
                f"{r.kind:8} clients={r.clients} received={r.received} "
                f"connect={r.connect_seconds}s idle_cpu={r.idle_cpu_percent}% "
                f"({r.idle_cpu_seconds}s over {r.idle_seconds}s) rss={r.rss_mb}MB "
                f"(before {r.rss_mb_before}MB) fanout={r.fanout_seconds}s"
            )
    return 0 if all(r.received == r.clients for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
