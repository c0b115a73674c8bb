"""`pushwire bench mqtt`: the same MQTT load against pushwire and mosquitto, one table.

Every scenario runs on a freshly started server (so no scenario inherits another's queues
or heap), first pushwire, then the peer. Throughput is counted only inside a window that
starts after a warm-up; CPU of the server and of every load-generator process is sampled
at the same window edges. See bench/README.md for what each scenario does.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pushwire.bench.common import other_cpu, print_busy_note, run_cli, write_json
from pushwire.bench.cpuclock import cpu_seconds_precise
from pushwire.bench.loadgen import (
    DRAIN_TIMEOUT_S,
    BenchError,
    ClientFleet,
    ClientReport,
    ClientSpec,
    StubMode,
    StubSpec,
)
from pushwire.bench.peers import (
    HOST,
    Server,
    cpu_seconds,
    machine_busy_seconds,
    mosquitto_server,
    pushwire_available,
    pushwire_server,
    raise_nofile_limit,
    settled_rss_kb,
    stub_server,
)

SCENARIOS = ("fanin", "fanout", "qos1", "latency", "memory", "connect", "qos1lat")
FD_HEADROOM = 200  # descriptors a process needs besides the benchmark's connections
SETUP_TIMEOUT_S = 60.0
GO_LEAD_S = 0.2  # time for "go" to reach every client process before the warm-up starts
LOAD_TAIL_S = 0.3  # load continues this long past the window


@dataclass(frozen=True, slots=True)
class Settings:
    duration: float = 5.0
    warmup: float = 1.0
    connections: int = 10_000
    payload: int = 64
    fanin_publishers: int = 8
    fanout_subscribers: int = 100
    qos1_publishers: int = 4
    qos1_window: int = 100
    latency_rate: float = 1000.0
    # Client connections of one role are spread over this many processes.
    publisher_processes: int = 2
    subscriber_processes: int = 2
    idle_warm_connections: int = 20
    # connect: CONNECT/CONNACK/DISCONNECT cycles, this many in flight over this many
    # processes, cycling through connect_clients client ids (clean sessions)
    connect_in_flight: int = 50
    connect_processes: int = 2
    connect_clients: int = 2000
    # qos1lat: issue 12's QoS 1 shape, publishers with this many PUBLISH unacknowledged
    qos1lat_window: int = 32


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool


def metrics_for(settings: Settings) -> dict[str, list[Metric]]:
    s = settings
    return {
        "fanin": [Metric("fanin", f"QoS 0 fan-in {s.fanin_publishers}->1, msg/s received", True)],
        "fanout": [
            Metric("fanout", f"QoS 0 fan-out 1->{s.fanout_subscribers}, deliveries/s", True)
        ],
        "qos1": [
            Metric(
                "qos1",
                f"QoS 1 {s.qos1_publishers} pub (window {s.qos1_window})->1 sub, msg/s",
                True,
            )
        ],
        "latency": [
            Metric("latency_p50", f"latency p50 at {s.latency_rate:.0f} msg/s, ms", False),
            Metric("latency_p99", f"latency p99 at {s.latency_rate:.0f} msg/s, ms", False),
        ],
        "memory": [Metric("memory", f"RSS per idle connection (N={s.connections}), KB", False)],
        "connect": [
            Metric(
                "connect",
                f"connects/s ({s.connect_clients} clients, {s.connect_in_flight} in flight)",
                True,
            )
        ],
        "qos1lat": [
            Metric(
                "qos1lat",
                f"QoS 1 {s.qos1_publishers} pub (window {s.qos1lat_window})->1 sub, msg/s",
                True,
            ),
            Metric("qos1lat_p50", "  its end-to-end p50, ms", False),
            Metric("qos1lat_p99", "  its end-to-end p99, ms", False),
            Metric("qos1lat_lost", "  its lost (PUBACKed, never delivered)", False),
        ],
    }


@dataclass(slots=True)
class Outcome:
    """What one scenario measured on one server."""

    metrics: dict[str, float] = field(default_factory=dict)
    server_cpu: float | None = None  # fraction of one core inside the window
    # the same per server process (`Server.pids`, in order), nanosecond CPU clocks
    process_cpu: list[tuple[int, float]] = field(default_factory=list)
    machine_cpu: float | None = None  # busy cores of the whole machine inside the window
    clients: list[ClientReport] = field(default_factory=list)
    detail: str = ""
    error: str | None = None


# ---------------------------------------------------------------------------------------------
# Scenarios


def _split(total: int, processes: int) -> list[tuple[int, int]]:
    """(first index, count) for `total` connections over at most `processes` processes."""
    processes = max(1, min(processes, total))
    base, extra = divmod(total, processes)
    parts, first = [], 0
    for index in range(processes):
        count = base + (1 if index < extra else 0)
        parts.append((first, count))
        first += count
    return parts


def _specs(template: ClientSpec, total: int, processes: int) -> list[ClientSpec]:
    return [
        replace(template, name=f"{template.name}{n}", first_index=first, connections=count)
        for n, (first, count) in enumerate(_split(total, processes))
    ]


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


def measure_window(
    server: Server,
    subscribers: list[ClientSpec],
    publishers: list[ClientSpec],
    settings: Settings,
) -> Outcome:
    """Subscribers connect first, then publishers; all start together; count in the window."""
    with ClientFleet() as fleet:
        fleet.start(subscribers, SETUP_TIMEOUT_S)
        fleet.start(publishers, SETUP_TIMEOUT_S)
        window_start = time.monotonic() + GO_LEAD_S + settings.warmup
        window_end = window_start + settings.duration
        stop_at = window_end + LOAD_TAIL_S
        fleet.go(window_start, window_end, stop_at)
        _sleep_until(window_start)
        cpu_start = [cpu_seconds_precise(pid) for pid in server.pids]
        busy_start = machine_busy_seconds()
        started = time.monotonic()
        _sleep_until(window_end)
        cpu_end = [cpu_seconds_precise(pid) for pid in server.pids]
        busy_end = machine_busy_seconds()
        ended = time.monotonic()
        timed = [spec for spec in subscribers if spec.timed]
        if timed:
            # timed QoS 1 (qos1lat): the publishers drain first (their last PUBACKs), then
            # each subscriber is told how many were acknowledged in all and drains until it
            # has them (bounded), so "lost" is what the server really never delivered
            pub_reports = fleet.collect(LOAD_TAIL_S + DRAIN_TIMEOUT_S + SETUP_TIMEOUT_S, publishers)
            fleet.send_all(("expect", sum(r.total for r in pub_reports)), timed)
            reports = [
                *fleet.collect(DRAIN_TIMEOUT_S + SETUP_TIMEOUT_S, subscribers),
                *pub_reports,
            ]
        else:
            reports = fleet.collect(timeout=LOAD_TAIL_S + SETUP_TIMEOUT_S)
    window = ended - started
    per_process = [
        (pid, (end - start) / window)
        for pid, start, end in zip(server.pids, cpu_start, cpu_end, strict=True)
    ]
    return Outcome(
        server_cpu=sum(share for _, share in per_process),
        process_cpu=per_process,
        machine_cpu=(busy_end - busy_start) / window,
        clients=reports,
    )


def _rate(reports: list[ClientReport], role: str) -> float:
    return sum(r.rate for r in reports if r.role == role)


def run_fanin(server: Server, s: Settings) -> Outcome:
    # Publisher topics have equal length, so the subscriber sees one run of identical headers.
    sub = ClientSpec(
        "sub", "count-sub", HOST, server.mqtt_port, topic="bench/fanin/+", payload_size=s.payload
    )
    pub = replace(
        sub, name="pub", role="blast-pub", port=server.publisher_port, topic="bench/fanin/{i:03d}"
    )
    outcome = measure_window(
        server, [sub], _specs(pub, s.fanin_publishers, s.publisher_processes), s
    )
    received = _rate(outcome.clients, "count-sub")
    outcome.metrics["fanin"] = received
    outcome.detail = fanin_detail(outcome.clients)
    return outcome


def fanin_detail(reports: list[ClientReport]) -> str:
    """What the fan-in publishers wrote in the window, and the backlog the subscriber's
    figure includes: messages written before the window and not yet received at its start
    (blast publishers fill their sockets' buffers during the warm-up; with many
    connections those hold more than a window's worth, and the server then reads a backlog
    while the publishers wait for room)."""
    written = _rate(reports, "blast-pub")
    detail = f"publishers wrote {written:,.0f} msg/s in the window"
    backlog = sum(r.before for r in reports if r.role == "blast-pub") - sum(
        r.before for r in reports if r.role == "count-sub"
    )
    received = sum(r.count for r in reports if r.role == "count-sub")
    if backlog > 0 and received:
        share = min(backlog, received) / received
        detail += (
            f"; {backlog:,} written before it were not yet received at its start"
            f" (up to {share:.0%} of what the subscriber got in the window)"
        )
    return detail


def run_fanout(server: Server, s: Settings) -> Outcome:
    sub = ClientSpec(
        "sub", "count-sub", HOST, server.mqtt_port, topic="bench/fanout", payload_size=s.payload
    )
    pub = replace(sub, name="pub", role="blast-pub", port=server.publisher_port)
    outcome = measure_window(
        server, _specs(sub, s.fanout_subscribers, s.subscriber_processes), [pub], s
    )
    outcome.metrics["fanout"] = deliveries = _rate(outcome.clients, "count-sub")
    outcome.detail = f"{deliveries / s.fanout_subscribers:,.0f} msg/s to each subscriber"
    return outcome


def run_qos1(server: Server, s: Settings) -> Outcome:
    sub = ClientSpec(
        "sub",
        "count-sub",
        HOST,
        server.mqtt_port,
        topic="bench/qos1",
        qos=1,
        payload_size=s.payload,
    )
    pub = replace(
        sub, name="pub", role="window-pub", port=server.publisher_port, window=s.qos1_window
    )
    outcome = measure_window(
        server, [sub], _specs(pub, s.qos1_publishers, s.publisher_processes), s
    )
    outcome.metrics["qos1"] = _rate(outcome.clients, "count-sub")
    acked = _rate(outcome.clients, "window-pub")
    # Publishers outrun a subscriber held to an inflight window of 20, so a server drops
    # (queue full) or slows its publishers; either way the subscriber's rate is the result.
    outcome.detail = f"PUBACKed to publishers {acked:,.0f} msg/s"
    return outcome


# /metrics' count of QoS 1/2 messages refused for a full queue (either bound), by label
_OVERFLOW_SAMPLE = re.compile(r"^pushwire_mqtt_queue_overflow_total\{[^}]*\} (\S+)$", re.M)


def queue_refusals(server: Server) -> int | None:
    """How many messages pushwire refused for a full queue (its /metrics), or None for a
    server without them (a peer) or when they cannot be read."""
    if not server.http_port:
        return None
    url = f"http://{HOST}:{server.http_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10.0) as response:
            text = response.read().decode("utf-8", "replace")
    except OSError:
        return None
    return int(sum(float(value) for value in _OVERFLOW_SAMPLE.findall(text)))


def run_qos1lat(server: Server, s: Settings) -> Outcome:
    sub = ClientSpec(
        "sub",
        "count-sub",
        HOST,
        server.mqtt_port,
        topic="bench/qos1lat",
        qos=1,
        payload_size=max(8, s.payload),
        timed=True,
    )
    pub = replace(
        sub, name="pub", role="window-pub", port=server.publisher_port, window=s.qos1lat_window
    )
    outcome = measure_window(
        server, [sub], _specs(pub, s.qos1_publishers, s.publisher_processes), s
    )
    samples = sorted(ns for r in outcome.clients for ns in r.latencies_ns)
    acked = sum(r.total for r in outcome.clients if r.role == "window-pub")
    delivered = sum(r.total for r in outcome.clients if r.role == "count-sub")
    outcome.metrics["qos1lat"] = _rate(outcome.clients, "count-sub")
    outcome.metrics["qos1lat_p50"] = percentile(samples, 0.50) / 1e6
    outcome.metrics["qos1lat_p99"] = percentile(samples, 0.99) / 1e6
    # what the server acknowledged to publishers and never delivered (duplicates would hide
    # losses; none are expected on connections that never reconnect)
    outcome.metrics["qos1lat_lost"] = float(max(0, acked - delivered))
    outcome.detail = (
        f"PUBACKed {_rate(outcome.clients, 'window-pub'):,.0f} msg/s; in all {acked:,} "
        f"acknowledged, {delivered:,} delivered"
    )
    refused = queue_refusals(server)
    if refused:
        # MQTT 3.1.1 publishers get a plain PUBACK for a message a full queue refused
        # (docs/queues.md): that much of "lost" is the server's queue bound, counted there
        outcome.detail += f"; {refused:,} refused for a full queue (server /metrics)"
    for report in outcome.clients:
        report.latencies_ns = []
    return outcome


CONNECT_STORM_C = Path(__file__).parent / "c" / "connect_storm.c"


def connect_storm_binary() -> Path | None:
    """The C connect generator, compiled once per user into the temp dir; None without a C
    compiler (the Python generator is then used, and said to be the likely limit)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source = CONNECT_STORM_C.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    binary = Path(tempfile.gettempdir()) / f"pushwire-connect-storm-{os.getuid()}-{digest}"
    if not binary.exists():
        partial = binary.with_suffix(f".{os.getpid()}")
        subprocess.run(
            [compiler, "-O2", "-o", str(partial), str(CONNECT_STORM_C)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        partial.replace(binary)
    return binary


def run_connect(server: Server, s: Settings) -> Outcome:
    binary = connect_storm_binary()
    if binary is None:
        return run_connect_python(server, s)
    window_start = time.monotonic() + s.warmup
    window_end = window_start + s.duration
    stop_at = window_end + LOAD_TAIL_S
    argv = [str(binary), str(server.mqtt_port), str(s.connect_in_flight)]
    argv += [str(s.connect_clients), "pwbench-conn-"]
    argv += [f"{t:.6f}" for t in (window_start, window_end, stop_at)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as generator:
        try:
            _sleep_until(window_start)
            cpu_start, busy_start = cpu_seconds(*server.pids), machine_busy_seconds()
            started = time.monotonic()
            _sleep_until(window_end)
            cpu_end, busy_end = cpu_seconds(*server.pids), machine_busy_seconds()
            ended = time.monotonic()
            out, err = generator.communicate(timeout=SETUP_TIMEOUT_S)
        finally:
            if generator.poll() is None:
                generator.kill()
    if generator.returncode != 0:
        raise BenchError(f"connect generator failed: {err.decode(errors='replace')}")
    count, failures, window_s, cpu_s = out.split()
    report = ClientReport("conn-c", "connect-cycle", s.connect_in_flight)
    report.count, report.failures = int(count), int(failures)
    report.window_s, report.cpu_s = float(window_s), float(cpu_s)
    outcome = Outcome(
        server_cpu=(cpu_end - cpu_start) / (ended - started),
        machine_cpu=(busy_end - busy_start) / (ended - started),
        clients=[report],
    )
    outcome.metrics["connect"] = report.rate
    outcome.detail = f"{report.failures} failed in the window (C generator)"
    return outcome


def run_connect_python(server: Server, s: Settings) -> Outcome:
    processes = max(1, min(s.connect_processes, s.connect_in_flight))
    specs = [
        ClientSpec(
            f"conn{n}",
            "connect-cycle",
            HOST,
            server.mqtt_port,
            open_concurrency=count,
            client_ids=max(1, s.connect_clients // processes),
        )
        for n, (_, count) in enumerate(_split(s.connect_in_flight, processes))
    ]
    outcome = measure_window(server, [], specs, s)
    outcome.metrics["connect"] = _rate(outcome.clients, "connect-cycle")
    failures = sum(r.failures for r in outcome.clients)
    outcome.detail = f"{failures} failed in the window (Python generator: may be the limit)"
    return outcome


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


def run_latency(server: Server, s: Settings) -> Outcome:
    sub = ClientSpec(
        "sub",
        "latency-sub",
        HOST,
        server.mqtt_port,
        topic="bench/latency",
        payload_size=max(8, s.payload),
    )
    pub = replace(sub, name="pub", role="rate-pub", rate=s.latency_rate)
    outcome = measure_window(server, [sub], [pub], s)
    samples = sorted(ns for r in outcome.clients for ns in r.latencies_ns)
    outcome.metrics["latency_p50"] = percentile(samples, 0.50) / 1e6
    outcome.metrics["latency_p99"] = percentile(samples, 0.99) / 1e6
    expected = s.latency_rate * s.duration
    maximum = samples[-1] / 1e6 if samples else float("nan")
    outcome.detail = f"{len(samples)} of ~{expected:.0f} samples, max {maximum:.2f} ms"
    for report in outcome.clients:
        report.latencies_ns = []  # keep the JSON small
    return outcome


def run_memory(server: Server, s: Settings) -> Outcome:
    spec = ClientSpec(
        "idle",
        "idle",
        HOST,
        server.mqtt_port,
        connections=s.connections,
        warm_connections=s.idle_warm_connections,
    )
    # A few connections first, so the baseline includes whatever a server allocates
    # once on its first connections (code paths, pools) rather than per connection.
    with ClientFleet() as fleet:
        fleet.start([spec], SETUP_TIMEOUT_S)
        before = settled_rss_kb(server.pid)
        cpu_start = cpu_seconds(server.pid)
        fleet.send_all(("go",))
        (report,) = fleet.collect(timeout=max(SETUP_TIMEOUT_S, s.connections / 100))
        cpu_used = cpu_seconds(server.pid) - cpu_start
        after = settled_rss_kb(server.pid)
        fleet.send_all(("close",))
    if report.failures:
        # A per-connection figure over fewer connections than asked for would be misleading.
        raise BenchError(
            f"{report.failures} of {s.connections} idle connections failed "
            f"(connection limits? see the server log)"
        )
    outcome = Outcome(clients=[report])
    outcome.server_cpu = cpu_used / report.window_s if report.window_s > 0 else None
    outcome.metrics["memory"] = (after - before) / report.count
    outcome.detail = (
        f"{report.count} connected ({report.failures} failed) in {report.window_s:.1f} s, "
        f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MB"
    )
    return outcome


RUNNERS: dict[str, Callable[[Server, Settings], Outcome]] = {
    "fanin": run_fanin,
    "fanout": run_fanout,
    "qos1": run_qos1,
    "latency": run_latency,
    "memory": run_memory,
    "connect": run_connect,
    "qos1lat": run_qos1lat,
}


@contextlib.contextmanager
def start_server(name: str, scenario: str, workdir: Path, s: Settings) -> Iterator[Server]:
    if name == "pushwire":
        with pushwire_server(workdir) as server:
            yield server
    elif name == "mosquitto":
        with mosquitto_server(workdir) as server:
            yield server
    else:
        mode: StubMode = "relay" if scenario == "latency" else "source"
        with stub_server(StubSpec(mode, max(8, s.payload))) as server:
            yield server


# ---------------------------------------------------------------------------------------------
# Report


def _format_value(value: float | None) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.1f}"


def _client_cpu_text(outcome: Outcome) -> str:
    parts = [f"{r.name} {r.cpu_util:.0%}" for r in outcome.clients]
    total = sum(r.cpu_util for r in outcome.clients)
    return f"{', '.join(parts)} (sum {total:.0%})"


LOADGEN_LIMIT = 0.9  # a client process above this share of a core may be the bottleneck
# Busy cores outside server and load generator above which a run is flagged as disturbed
# (at a few 100k msg/s, loopback TCP's softirq work alone is ~10-20% of a core).


def loadgen_saturated(outcome: Outcome) -> bool:
    # Opening idle connections is meant to run flat out; only load roles can limit a result.
    return any(r.cpu_util > LOADGEN_LIMIT for r in outcome.clients if r.role != "idle")


def render_table(
    results: dict[str, dict[str, Outcome]], servers: list[str], settings: Settings
) -> str:
    ratio = servers[:2] == ["pushwire", "mosquitto"]
    header = ["scenario", *servers]
    if ratio:
        header.append("pushwire/mosquitto")
    header.append("better")
    rows = [header]
    all_metrics = metrics_for(settings)
    for scenario, outcomes in results.items():
        for metric in all_metrics[scenario]:
            values = [outcomes[name].metrics.get(metric.key) for name in servers]
            row = [metric.label, *(_format_value(v) for v in values)]
            if ratio:
                pw, mq = values[0], values[1]
                row.append(f"{pw / mq:.2f}" if pw is not None and mq else "-")
            row.append("higher" if metric.higher_is_better else "lower")
            rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render_cpu(results: dict[str, dict[str, Outcome]], servers: list[str]) -> str:
    lines = ["CPU inside the window, % of one core (server | load-generator processes):"]
    for scenario, outcomes in results.items():
        for name in servers:
            outcome = outcomes[name]
            if outcome.error:
                lines.append(f"  {scenario:8} {name:9} error: {outcome.error}")
                continue
            server_cpu = "-" if outcome.server_cpu is None else f"{outcome.server_cpu:.0%}"
            rest = other_cpu(outcome)
            rest_text = "" if rest is None else f" | rest of machine {rest:.0%}"
            flag = "  <- load generator near its limit" if loadgen_saturated(outcome) else ""
            lines.append(
                f"  {scenario:8} {name:9} server {server_cpu:>4} | {_client_cpu_text(outcome)}"
                f"{rest_text}; {outcome.detail}{flag}"
            )
    return "\n".join(lines)


def results_json(
    results: dict[str, dict[str, Outcome]], servers: list[str], settings: Settings
) -> dict[str, object]:
    def outcome_json(outcome: Outcome) -> dict[str, object]:
        return {
            "metrics": outcome.metrics,
            "server_cpu": outcome.server_cpu,
            "machine_cpu": outcome.machine_cpu,
            "other_cpu": other_cpu(outcome),
            "detail": outcome.detail,
            "error": outcome.error,
            "clients": [
                {
                    "name": r.name,
                    "role": r.role,
                    "connections": r.connections,
                    "rate": r.rate,
                    "cpu": r.cpu_util,
                }
                for r in outcome.clients
            ],
        }

    return {
        "settings": asdict(settings),
        "servers": servers,
        "cpus": os.cpu_count(),
        "results": {
            scenario: {name: outcome_json(o) for name, o in outcomes.items()}
            for scenario, outcomes in results.items()
        },
    }


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pushwire bench mqtt",
        description="MQTT benchmark: pushwire side by side with mosquitto on this machine.",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before the window")
    parser.add_argument("--connections", type=int, default=10_000, help="idle connections")
    parser.add_argument("--payload", type=int, default=64, help="payload bytes")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--peer", choices=("mosquitto", "none"), default="mosquitto")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--without-pushwire",
        action="store_true",
        help="measure only the peer (to validate the harness when pushwire is unavailable)",
    )
    parser.add_argument(
        "--loadgen-check",
        action="store_true",
        help="run the scenarios against a do-nothing stub broker: the load generator's ceiling",
    )
    args = parser.parse_args(argv)
    if not 0.5 <= args.duration <= 300:  # keepalive is 600 s and no client pings
        parser.error("--duration must be between 0.5 and 300 seconds")
    if not 0 <= args.warmup <= 60:
        parser.error("--warmup must be between 0 and 60 seconds")
    if args.connections < 1 or args.payload < 0:
        parser.error("--connections must be >= 1 and --payload >= 0")
    unknown = set(filter(None, args.only.split(","))) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
    return args


def _choose_servers(args: argparse.Namespace) -> list[str]:
    if args.loadgen_check:
        return ["stub"]
    servers = [] if args.without_pushwire else ["pushwire"]
    if args.peer == "mosquitto":
        servers.append("mosquitto")
    return servers


def run(args: argparse.Namespace) -> int:
    servers = _choose_servers(args)
    if not servers:
        print("nothing to measure: --without-pushwire with --peer none", file=sys.stderr)
        return 2
    if "pushwire" in servers and not pushwire_available():
        print(
            "`python -m pushwire` is not available yet (no pushwire/__main__.py)", file=sys.stderr
        )
        return 2
    fd_limit = raise_nofile_limit()
    connections = min(args.connections, fd_limit - FD_HEADROOM)
    if connections < args.connections:
        print(f"open-file limit {fd_limit}: measuring {connections} idle connections")
    settings = Settings(
        duration=args.duration, warmup=args.warmup, connections=connections, payload=args.payload
    )
    selected = [name for name in SCENARIOS if name in args.only.split(",")] or list(SCENARIOS)
    if args.loadgen_check and "memory" in selected:
        selected.remove("memory")  # a stub's memory says nothing about the load generator
    print(
        f"MQTT benchmark on {os.cpu_count()} CPUs: {', '.join(servers)}; payload "
        f"{settings.payload} B; {settings.duration:g} s window after {settings.warmup:g} s "
        "warm-up; fresh server per run",
        flush=True,
    )
    results: dict[str, dict[str, Outcome]] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="pushwire-bench-") as tmp:
        for scenario in selected:
            results[scenario] = {}
            for name in servers:
                workdir = Path(tmp) / f"{scenario}-{name}"
                try:
                    with start_server(name, scenario, workdir, settings) as server:
                        try:
                            outcome = RUNNERS[scenario](server, settings)
                        except BenchError:
                            print(server.log_tail(), file=sys.stderr)
                            raise
                except (BenchError, OSError) as exc:  # OSError: a client process died
                    outcome = Outcome(error=f"{type(exc).__name__}: {exc}")
                    failed = True
                results[scenario][name] = outcome
                shown = ", ".join(f"{k} {_format_value(v)}" for k, v in outcome.metrics.items())
                print(f"  {scenario:8} {name:9} {outcome.error or shown}", flush=True)
    print()
    print(render_table(results, servers, settings))
    print()
    print(render_cpu(results, servers))
    if any(loadgen_saturated(o) for outcomes in results.values() for o in outcomes.values()):
        print("\nwarning: a load-generator process used >90% of a core; that row may be")
        print("limited by the client side, not the server")
    print_busy_note(results, "the 2 cores")
    if args.json is not None:
        write_json(args.json, results_json(results, servers, settings))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
