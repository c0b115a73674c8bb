"""`pushwire bench cluster`: pushwire on one process and on many, beside mosquitto and nchan.

Configurations (each run gets a fresh server; a Redis configuration also gets a fresh
private redis-server, `appendonly yes` with `--appendfsync`, on a free port):

* `sqlite-1`: one process, engine sqlite (the embedded default);
* `redis-1`: one process, engine redis;
* `redis-w2`: `--workers 2` on engine redis (two processes on the same ports).

Scenarios reuse the load generators of `bench mqtt` (loadgen.py) and `bench http`; N is
the count on the "many" side of each (default 10,000):

* `fanin`: N QoS 0 publishers -> 1 subscriber, msg/s received;
* `fanout`: 1 QoS 0 publisher -> N subscribers, deliveries/s;
* `qos1`: N QoS 1 publishers (window 100 each) -> 1 QoS 1 subscriber, msg/s received;
* `sse`: N SSE streams on one topic, a publisher at a low fixed rate: latency, delivered.

The peers run in the same invocation, interleaved per scenario: mosquitto for the MQTT
scenarios, nginx + nchan for SSE. Two goal lines from issue 8 close the report: on fan-out
`redis-w2` >= 1.6x `redis-1`, and on QoS 0 fan-in `redis-w2` >= 1.0x mosquitto. A
configuration whose engine is not part of this build is reported as skipped, not failed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pushwire.bench import http as bench_http
from pushwire.bench import mqtt as bench_mqtt
from pushwire.bench.common import run_cli, write_json
from pushwire.bench.loadgen import BenchError
from pushwire.bench.nchan import HttpServer, child_pids, nchan_server
from pushwire.bench.peers import (
    _LISTEN_LINE,
    HOST,
    PUSHWIRE_BENCH_ENV,
    START_TIMEOUT_S,
    Server,
    _spawn,
    _stop_process,
    _wait_until_accepting,
    free_port,
    mosquitto_server,
    pushwire_available,
    raise_nofile_limit,
)
from pushwire.server import redis_engine_available

CONFIGS = ("sqlite-1", "redis-1", "redis-w2")
PEERS = ("mosquitto", "nchan")
SCENARIOS = ("fanin", "fanout", "qos1", "sse")
FD_HEADROOM = 200
# issue 8's goals: (scenario, metric, config, against, at least)
GOALS = (
    ("fanout", "fanout", "redis-w2", "redis-1", 1.6),
    ("fanin", "fanin", "redis-w2", "mosquitto", 1.0),
)


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    engine: str
    workers: int


CONFIG_SPECS = {
    "sqlite-1": Config("sqlite-1", "sqlite", 1),
    "redis-1": Config("redis-1", "redis", 1),
    "redis-w2": Config("redis-w2", "redis", 2),
}


@dataclass(frozen=True, slots=True)
class Settings:
    duration: float = 5.0
    warmup: float = 1.0
    n: int = 10_000
    payload: int = 64
    sse_rate: float = 2.0
    drain: float = 2.0
    appendfsync: str = "always"


@dataclass(slots=True)
class Result:
    """One scenario on one server: metrics, or why there are none."""

    metrics: dict[str, float] = field(default_factory=dict)
    server_cpu: float | None = None
    detail: str = ""
    error: str | None = None
    skipped: str | None = None
    # MQTT scenarios: each server process's and each load-generator process's share of a
    # core inside the window, by name ("worker1", "redis-server", "pub0", ...)
    processes: list[tuple[str, float]] = field(default_factory=list)
    loadgen: list[tuple[str, float]] = field(default_factory=list)


class Skipped(Exception):
    """A configuration that cannot run in this build (its engine does not exist yet)."""


def engine_available(engine: str) -> bool:
    return engine != "redis" or redis_engine_available()


# ---------------------------------------------------------------------------------------------
# Servers


@dataclass(frozen=True, slots=True)
class Running:
    """A running pushwire configuration: its ports, and every process whose CPU and RSS
    count as the server's (supervisor, workers, redis-server)."""

    name: str
    pids: tuple[int, ...]
    mqtt_port: int
    http_port: int
    log_path: Path
    roles: tuple[str, ...] = ()  # a name per pid ("supervisor", "worker1", "redis-server")

    def mqtt(self) -> Server:
        return Server(self.name, self.pids[0], self.mqtt_port, self.log_path, 0, self.pids[1:])

    def http(self) -> HttpServer:
        return HttpServer(self.name, self.pids[0], self.http_port, self.log_path, self.pids[1:])


@contextlib.contextmanager
def private_redis(workdir: Path, appendfsync: str) -> Iterator[tuple[int, int]]:
    """(pid, port) of a redis-server of our own, in `workdir`; stopped by its PID."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server not found; install the Debian package 'redis-server'")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "redis.conf"
    conf.write_text(
        f"bind {HOST}\nport {port}\ndir {workdir}\ndaemonize no\nappendonly yes\n"
        f'appendfsync {appendfsync}\nsave ""\nlogfile ""\n'
    )
    process = _spawn([binary, str(conf)], workdir, workdir / "redis.log")
    try:
        _wait_until_accepting(port, process, "redis-server")
        yield process.pid, port
    finally:
        _stop_process(process)


def pushwire_cluster_argv(config: Config, workdir: Path, redis_url: str | None) -> list[str]:
    argv = [
        *(sys.executable, "-m", "pushwire", "serve", "--bind", HOST),
        *("--mqtt-port", "0", "--http-port", "0", "--sys-interval", "0"),
        *("--engine", config.engine, "--data-dir", str(workdir / "data")),
        # as `bench http`: no SSE heartbeats during the run (nchan sends none)
        *("--sse-heartbeat", "3600"),
    ]
    if config.workers > 1:
        argv += ["--workers", str(config.workers)]
    if redis_url is not None:
        argv += ["--redis-url", redis_url]
    return argv


def _listening_ports(log_path: Path, workers: int) -> dict[str, int] | None:
    """The MQTT and HTTP ports once every worker logged both (they share them)."""
    found = _LISTEN_LINE.findall(log_path.read_text(errors="replace"))
    kinds = [kind for kind, _ in found]
    if kinds.count("mqtt") < workers or kinds.count("http") < workers:
        return None
    return {kind: int(port) for kind, port in found}


@contextlib.contextmanager
def pushwire_cluster(config: Config, workdir: Path, s: Settings) -> Iterator[Running]:
    if not engine_available(config.engine):
        raise Skipped(f"engine {config.engine} not available")
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        extra: tuple[int, ...] = ()
        redis_url = None
        if config.engine == "redis":
            redis_pid, redis_port = stack.enter_context(
                private_redis(workdir / "redis", s.appendfsync)
            )
            extra, redis_url = (redis_pid,), f"redis://{HOST}:{redis_port}/0"
        log_path = workdir / "pushwire.log"
        argv = pushwire_cluster_argv(config, workdir, redis_url)
        process = _spawn(argv, workdir, log_path, PUSHWIRE_BENCH_ENV)
        stack.callback(_stop_process, process)
        deadline = time.monotonic() + START_TIMEOUT_S
        while (ports := _listening_ports(log_path, config.workers)) is None:
            if process.poll() is not None:
                raise BenchError(f"pushwire exited with {process.returncode} during start-up")
            if time.monotonic() > deadline:
                raise BenchError("pushwire did not log its listening ports in time")
            time.sleep(0.05)
        _wait_until_accepting(ports["mqtt"], process, "pushwire")
        workers = tuple(child_pids(process.pid)) if config.workers > 1 else ()
        roles = (
            "supervisor" if workers else "pushwire",
            *(f"worker{i}" for i in range(1, len(workers) + 1)),
            *("redis-server" for _ in extra),
        )
        yield Running(
            config.name,
            (process.pid, *workers, *extra),
            ports["mqtt"],
            ports["http"],
            log_path,
            roles,
        )


# ---------------------------------------------------------------------------------------------
# Scenarios


def mqtt_settings(s: Settings) -> bench_mqtt.Settings:
    return bench_mqtt.Settings(
        duration=s.duration,
        warmup=s.warmup,
        connections=s.n,
        payload=s.payload,
        fanin_publishers=s.n,
        fanout_subscribers=s.n,
        qos1_publishers=s.n,
    )


def http_settings(s: Settings) -> bench_http.Settings:
    return bench_http.Settings(
        duration=s.duration,
        warmup=s.warmup,
        drain=s.drain,
        subscribers=(s.n,),
        rate=s.sse_rate,
        payload=s.payload,
    )


def run_mqtt(scenario: str, server: Server, s: Settings, roles: tuple[str, ...] = ()) -> Result:
    """`roles`: a name per server pid (else the server's name, numbered)."""
    outcome = bench_mqtt.RUNNERS[scenario](server, mqtt_settings(s))
    names = roles or tuple(
        server.name if i == 0 else f"{server.name}-{i}" for i in range(len(server.pids))
    )
    return Result(
        dict(outcome.metrics),
        outcome.server_cpu,
        outcome.detail,
        processes=[
            (names[i] if i < len(names) else str(pid), share)
            for i, (pid, share) in enumerate(outcome.process_cpu)
        ],
        loadgen=[(r.name, r.cpu_util) for r in outcome.clients],
    )


def run_sse(server: HttpServer, s: Settings) -> Result:
    outcome = bench_http.run_delivery(server, http_settings(s), "sse", s.n)
    m = outcome.metrics
    metrics = {
        "sse_p50": m["latency_p50"],
        "sse_p99": m["latency_p99"],
        "sse_delivered": m["delivered"] / m["expected"] if m.get("expected") else 0.0,
    }
    return Result(metrics, outcome.server_cpu, outcome.detail)


def run_one(scenario: str, name: str, workdir: Path, s: Settings) -> Result:
    """One scenario on one configuration or peer, on a freshly started server."""
    try:
        if name in CONFIG_SPECS:
            with pushwire_cluster(CONFIG_SPECS[name], workdir, s) as running:
                if scenario == "sse":
                    return run_sse(running.http(), s)
                return run_mqtt(scenario, running.mqtt(), s, running.roles)
        if name == "mosquitto":
            with mosquitto_server(workdir) as server:
                return run_mqtt(scenario, server, s)
        with nchan_server(workdir) as http_server:
            return run_sse(http_server, s)
    except Skipped as exc:
        return Result(skipped=str(exc))
    except (BenchError, OSError, http.client.HTTPException) as exc:
        return Result(error=f"{type(exc).__name__}: {exc}")


def peer_for(scenario: str) -> str:
    return "nchan" if scenario == "sse" else "mosquitto"


# ---------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    key: str
    label: str
    higher_is_better: bool


def table_rows(scenarios: list[str], s: Settings) -> list[Row]:
    n = f"{s.n:,}"
    rows = {
        "fanin": [Row("fanin", "fanin", f"QoS 0 fan-in {n}->1, msg/s", True)],
        "fanout": [Row("fanout", "fanout", f"QoS 0 fan-out 1->{n}, deliveries/s", True)],
        "qos1": [Row("qos1", "qos1", f"QoS 1 {n} pub->1 sub, msg/s", True)],
        "sse": [
            Row("sse", "sse_p50", f"SSE fan-out N={n} @ {s.sse_rate:g}/s: p50 ms", False),
            Row("sse", "sse_p99", f"SSE fan-out N={n} @ {s.sse_rate:g}/s: p99 ms", False),
            Row("sse", "sse_delivered", f"SSE fan-out N={n}: delivered share", True),
        ],
    }
    return [row for scenario in scenarios for row in rows[scenario]]


def _cell(result: Result | None, key: str) -> str:
    if result is None:
        return "-"
    if result.skipped:
        return "skipped"
    if result.error:
        return "error"
    return bench_mqtt._format_value(result.metrics.get(key))


def _ratio(result: Result | None, peer: Result | None, key: str) -> str:
    if result is None or peer is None:
        return "-"
    ours, theirs = result.metrics.get(key), peer.metrics.get(key)
    if ours is None or not theirs or ours != ours or theirs != theirs:
        return "-"
    return f"{ours / theirs:.2f}"


def render_table(
    results: dict[str, dict[str, Result]], configs: list[str], peers: bool, s: Settings
) -> str:
    header = ["scenario", *configs]
    if peers:
        header += ["peer", *(f"{c}/peer" for c in configs)]
    header.append("better")
    lines = [header]
    for row in table_rows(list(results), s):
        outcomes = results[row.scenario]
        line = [row.label, *(_cell(outcomes.get(c), row.key) for c in configs)]
        if peers:
            peer = outcomes.get(peer_for(row.scenario))
            line.append(f"{peer_for(row.scenario)} {_cell(peer, row.key)}")
            line += [_ratio(outcomes.get(c), peer, row.key) for c in configs]
        line.append("higher" if row.higher_is_better else "lower")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for i, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        out.append("  ".join(cells))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def goal_lines(results: dict[str, dict[str, Result]]) -> list[str]:
    lines = []
    for scenario, key, config, against, target in GOALS:
        label = f"goal: {config} {scenario} >= {target:g}x {against}"
        outcomes = results.get(scenario)
        if outcomes is None or config not in outcomes or against not in outcomes:
            lines.append(f"{label}: not measured in this run")
            continue
        ours, theirs = outcomes[config], outcomes[against]
        why = next((r.skipped for r in (ours, theirs) if r.skipped), None)
        if why:
            lines.append(f"{label}: skipped: {why}")
            continue
        ratio = _ratio(ours, theirs, key)
        if ratio == "-":
            lines.append(f"{label}: no figure (error: {ours.error or theirs.error})")
            continue
        verdict = "met" if float(ratio) >= target else "NOT met"
        lines.append(f"{label}: {ratio}x, {verdict}")
    return lines


# what one message of a scenario is, for CPU per message (its metric is a rate of them)
PER_MESSAGE = {
    "fanin": ("fanin", "fan-in message"),
    "fanout": ("fanout", "delivery"),
    "qos1": ("qos1", "QoS 1 message"),
}


def cpu_breakdown(scenario: str, r: Result) -> list[str]:
    """Where the CPU of a run went: each server process and each load-generator process,
    as a share of a core and as microseconds of CPU per message of the scenario (its
    metric's rate), so that a result explains itself from the bench's own output."""
    if not r.processes:
        return []
    key, what = PER_MESSAGE.get(scenario, ("", "message"))
    rate = r.metrics.get(key, 0.0)

    def part(name: str, share: float) -> str:
        cost = f" {share / rate * 1e6:.1f} us" if rate > 0 else ""
        return f"{name} {share:.0%}{cost}"

    unit = f", us of CPU per {what} at {rate:,.0f}/s" if rate > 0 else f"; no {what}s counted"
    lines = [f"      per process (% of a core{unit}):"]
    lines.append("        server: " + ", ".join(part(n, c) for n, c in r.processes))
    if r.loadgen:
        total = sum(c for _, c in r.loadgen)
        lines.append(
            "        load generator: "
            + ", ".join(part(n, c) for n, c in r.loadgen)
            + f" (sum {part('', total).strip()})"
        )
    return lines


def results_json(results: dict[str, dict[str, Result]], s: Settings) -> dict[str, object]:
    return {
        "settings": {k: getattr(s, k) for k in s.__dataclass_fields__},
        "cpus": os.cpu_count(),
        "results": {
            scenario: {
                name: {
                    "metrics": r.metrics,
                    "server_cpu": r.server_cpu,
                    "detail": r.detail,
                    "processes": dict(r.processes),
                    "loadgen": dict(r.loadgen),
                    "error": r.error,
                    "skipped": r.skipped,
                }
                for name, r in outcomes.items()
            }
            for scenario, outcomes in results.items()
        },
        "goals": goal_lines(results),
    }


# ---------------------------------------------------------------------------------------------
# Command line


def _subset(text: str, choices: tuple[str, ...], what: str) -> list[str]:
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(wanted) - set(choices)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {sorted(unknown)}; choose from {choices}")
    return [c for c in choices if c in wanted] or list(choices)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pushwire bench cluster",
        description="pushwire on SQLite, on Redis and on --workers 2 with Redis, beside "
        "mosquitto (MQTT) and nginx + nchan (SSE), in one run.",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before the window")
    parser.add_argument("--n", type=int, default=10_000, help="connections on the many side")
    parser.add_argument("--payload", type=int, default=64, help="payload bytes")
    parser.add_argument("--sse-rate", type=float, default=2.0, help="SSE publishes per second")
    parser.add_argument("--drain", type=float, default=2.0, help="SSE read time after window")
    parser.add_argument(
        "--only",
        type=lambda t: _subset(t, SCENARIOS, "scenario"),
        default=list(SCENARIOS),
        help=f"comma-separated subset of {SCENARIOS}",
    )
    parser.add_argument(
        "--configs",
        type=lambda t: _subset(t, CONFIGS, "configuration"),
        default=list(CONFIGS),
        help=f"comma-separated subset of {CONFIGS}",
    )
    parser.add_argument("--peer", choices=("on", "none"), default="on", help="mosquitto/nchan")
    parser.add_argument(
        "--appendfsync",
        choices=("always", "everysec"),
        default="always",
        help="the private redis-server's AOF fsync policy (docs/cluster.md)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if not 0.5 <= args.duration <= 300:
        parser.error("--duration must be between 0.5 and 300 seconds")
    if not 0 <= args.warmup <= 60:
        parser.error("--warmup must be between 0 and 60 seconds")
    if args.n < 1 or args.payload < 0 or args.sse_rate <= 0:
        parser.error("--n must be >= 1, --payload >= 0, --sse-rate > 0")
    return args


def run(args: argparse.Namespace) -> int:
    if not pushwire_available():
        print("`python -m pushwire` is not available", file=sys.stderr)
        return 2
    fd_limit = raise_nofile_limit()
    n = min(args.n, fd_limit - FD_HEADROOM)
    if n < args.n:
        print(f"open-file limit {fd_limit}: measuring N={n}")
    s = Settings(
        duration=args.duration,
        warmup=args.warmup,
        n=n,
        payload=args.payload,
        sse_rate=args.sse_rate,
        drain=args.drain,
        appendfsync=args.appendfsync,
    )
    configs: list[str] = args.configs
    peers = args.peer == "on"
    print(
        f"cluster benchmark on {os.cpu_count()} CPUs: {', '.join(configs)}"
        f"{' + peers' if peers else ''}; N={s.n:,}; {s.duration:g} s window after "
        f"{s.warmup:g} s warm-up; redis appendfsync {s.appendfsync}; fresh server per run",
        flush=True,
    )
    results: dict[str, dict[str, Result]] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="pushwire-bench-cluster-") as tmp:
        for scenario in args.only:
            results[scenario] = {}
            names = [*configs, *([peer_for(scenario)] if peers else [])]
            for name in names:
                result = run_one(scenario, name, Path(tmp) / f"{scenario}-{name}", s)
                results[scenario][name] = result
                failed = failed or result.error is not None
                shown = result.skipped and f"skipped: {result.skipped}"
                shown = shown or result.error
                shown = shown or ", ".join(
                    f"{k} {bench_mqtt._format_value(v)}" for k, v in result.metrics.items()
                )
                print(f"  {scenario:7} {name:9} {shown}", flush=True)
    print()
    print(render_table(results, configs, peers, s))
    print()
    print("server CPU inside the window, % of one core (all its processes, redis included):")
    for scenario, outcomes in results.items():
        for name, r in outcomes.items():
            if r.server_cpu is not None:
                print(f"  {scenario:7} {name:9} {r.server_cpu:.0%}; {r.detail}")
                for line in cpu_breakdown(scenario, r):
                    print(line)
    print()
    for line in goal_lines(results):
        print(line)
    if args.json is not None:
        write_json(args.json, results_json(results, s))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
