"""The servers a benchmark runs against: pushwire, mosquitto, or the load generator's stub.

Each listens on 127.0.0.1 only, on a free port, with its output going to a log file (a pipe
nobody drains would stall a chatty server), and is stopped by the PID this module started,
also when the benchmark fails or is interrupted. Servers run in their own session so a
Ctrl-C in the terminal reaches the benchmark, which then stops them in order.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pushwire.bench.loadgen import MP_CONTEXT, BenchError, StubSpec, stub_process_main

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
# pushwire's defaults, mirrored in mosquitto.conf so both queue and window the same way
MAX_QUEUED_MESSAGES = 1000
MAX_INFLIGHT_MESSAGES = 20

PeerName = Literal["pushwire", "mosquitto", "stub"]


@dataclass(frozen=True, slots=True)
class Server:
    """A running server: subscribers (and idle clients) connect to `mqtt_port`, publishers to
    `publish_port`; `pids` are the processes whose CPU counts as the server's. Only the stub
    uses two processes and ports (see `stub_server`)."""

    name: str
    pid: int
    mqtt_port: int
    log_path: Path | None
    publish_port: int = 0
    extra_pids: tuple[int, ...] = ()
    http_port: int = 0  # pushwire's HTTP listener (its /metrics), when known

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.pid, *self.extra_pids)

    @property
    def publisher_port(self) -> int:
        return self.publish_port or self.mqtt_port

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def raise_nofile_limit() -> int:
    """Raise this process's open-file soft limit to the hard limit; returns the new limit.
    Children (load-generator processes, servers) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _raise_nofile_in_child() -> None:
    # preexec_fn: runs in the forked child before exec; the orchestrator has no threads.
    raise_nofile_limit()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def thread_schedstat(pid: int) -> tuple[int, int, int, int]:
    """The scheduler's counters of a process's main thread (the serving thread of pushwire
    and of nginx's worker): CPU ns, ns waiting on a run queue, slices, and involuntary
    switches (times preempted). OSError when the process is gone."""
    cpu, waited, slices = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    status = Path(f"/proc/{pid}/task/{pid}/status").read_text()
    at = status.index("nonvoluntary_ctxt_switches:")
    return int(cpu), int(waited), int(slices), int(status[at:].split()[1])


def run_queue(*pids: int) -> tuple[int, int]:
    """(ns waiting on a run queue, times preempted) of each process's main thread, summed.
    At N = 10,000 on 2 cores a woken client process that lands on the server's core
    preempts it (bench/README.md, "How many client processes"); these two counters show
    how often that happened."""
    waited = preempted = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            _cpu, wait_ns, _slices, switches = thread_schedstat(pid)
            waited += wait_ns
            preempted += switches
    return waited, preempted


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time of processes (all their threads), from /proc/PID/stat."""
    ticks = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle, from /proc/stat (includes kernel softirq work,
    such as loopback TCP, that is not charged to any process)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def settled_rss_kb(pid: int, timeout: float = 5.0) -> int:
    """RSS once two readings 0.25 s apart agree within 0.5% (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    previous = rss_kb(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        current = rss_kb(pid)
        if abs(current - previous) <= previous * 0.005:
            return current
        previous = current
    return previous


def _wait_until_accepting(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with {process.returncode} during start-up")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1.0):
            return
        time.sleep(0.05)
    raise BenchError(f"{name} did not accept connections on {HOST}:{port} in time")


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)


def _spawn(
    argv: list[str], workdir: Path, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_nofile_in_child,
            start_new_session=True,
        )


_LISTEN_LINE = re.compile(r"(mqtt|http) listening on 127\.0\.0\.1:(\d+)")


def pushwire_argv() -> list[str]:
    return [
        sys.executable,
        "-m",
        "pushwire",
        "serve",
        "--bind",
        HOST,
        "--mqtt-port",
        "0",
        "--http-port",
        "0",
        "--memory",
        "--sys-interval",
        "0",
    ]


# Every benchmark client comes from 127.0.0.1, so pushwire's per-IP abuse limits (new
# connections per second, connections per IP) and per-client publish throttling would
# measure the limits, not the server; mosquitto has none of them. Environment variables
# rather than flags, so a pushwire without one of these settings still starts.
PUSHWIRE_BENCH_ENV = {
    "PUSHWIRE_CONNECTION_RATE_PER_IP": "0",
    "PUSHWIRE_MAX_CONNECTIONS_PER_IP": "0",
    "PUSHWIRE_PUBLISH_RATE_PER_CLIENT": "0",
    # the connect scenario cycles 2,000 client ids at thousands of CONNECTs per second
    "PUSHWIRE_CONNECT_RATE_PER_CLIENT_ID": "0",
}


def pushwire_available() -> bool:
    """Whether `python -m pushwire` can run at all (its `serve` command may still fail)."""
    return importlib.util.find_spec("pushwire.__main__") is not None


@contextlib.contextmanager
def pushwire_server(workdir: Path) -> Iterator[Server]:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "pushwire.log"
    process = _spawn(pushwire_argv(), workdir, log_path, PUSHWIRE_BENCH_ENV)
    try:
        ports: dict[str, int] = {}
        deadline = time.monotonic() + START_TIMEOUT_S
        while "mqtt" not in ports or "http" not in ports:
            if process.poll() is not None:
                raise BenchError(f"pushwire exited with {process.returncode} during start-up")
            if time.monotonic() > deadline:
                raise BenchError("pushwire did not log its listening ports in time")
            for kind, port in _LISTEN_LINE.findall(log_path.read_text(errors="replace")):
                ports[kind] = int(port)
            time.sleep(0.05)
        _wait_until_accepting(ports["mqtt"], process, "pushwire")
        yield Server("pushwire", process.pid, ports["mqtt"], log_path, http_port=ports["http"])
    finally:
        _stop_process(process)


def mosquitto_conf(port: int) -> str:
    return "\n".join(
        [
            f"listener {port} {HOST}",
            "allow_anonymous true",
            "max_connections -1",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            "persistence false",
            "",
        ]
    )


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(found, os.X_OK):
        raise BenchError("mosquitto not found; install the Debian package 'mosquitto'")
    return found


@contextlib.contextmanager
def mosquitto_server(workdir: Path) -> Iterator[Server]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf_path = workdir / "mosquitto.conf"
    conf_path.write_text(mosquitto_conf(port))
    log_path = workdir / "mosquitto.log"
    process = _spawn([mosquitto_binary(), "-c", str(conf_path)], workdir, log_path)
    try:
        _wait_until_accepting(port, process, "mosquitto")
        yield Server("mosquitto", process.pid, port, log_path)
    finally:
        _stop_process(process)


@contextlib.contextmanager
def stub_server(spec: StubSpec) -> Iterator[Server]:
    """The load generator's trivial peer. In `source` mode publishers and subscribers get one
    stub process each, so a flood of publishes cannot starve the subscribers' streams: the
    check then measures what each side of the load generator can do, at the same time."""
    with contextlib.ExitStack() as stack:
        pid, port = stack.enter_context(_stub_process(spec))
        if spec.mode != "source":
            yield Server("stub", pid, port, None)
            return
        publish_pid, publish_port = stack.enter_context(_stub_process(spec))
        yield Server("stub", pid, port, None, publish_port, (publish_pid,))


@contextlib.contextmanager
def _stub_process(spec: StubSpec) -> Iterator[tuple[int, int]]:
    parent_end, child_end = MP_CONTEXT.Pipe()
    process = MP_CONTEXT.Process(target=stub_process_main, args=(spec, child_end), daemon=True)
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(START_TIMEOUT_S):
            raise BenchError("stub broker did not start")
        _, port = parent_end.recv()
        assert process.pid is not None
        yield process.pid, int(port)
    finally:
        with contextlib.suppress(OSError):
            parent_end.send(("stop",))
        parent_end.close()
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            process.terminate()
            process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join(STOP_TIMEOUT_S)
