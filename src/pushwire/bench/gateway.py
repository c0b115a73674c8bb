"""`pushwire bench gateway`: the device push gateway under load, and what its layer costs.

One pushwire process (SQLite store, temporary data dir) with N registered devices, each
holding one MQTT connection (persistent session, QoS 1 on `devices/{id}/#`). Measured:

- pushes/s accepted by `POST /v1/push/{token}` (single, `--concurrency` requests in flight)
  and by `POST /v1/push` (batches of `--batch-size`), and how many reached the devices;
- p50/p99 from the provider's request to the device's receipt, at `--latency-rate` pushes/s;
- server RSS per registered-and-connected device;
- wake-ups per device per hour for a stated mix, with priority-5 batching (`--batch-window`)
  and without it (window 0), each on a fresh server;
- the physical frame: the same pushes as plain MQTT QoS 1 publishes to the same device topics
  on the same server (throughput with a `--mqtt-window` in flight; latency at the same rate),
  and gateway/plain ratios.

The provider side is the SDK's AsyncPushProvider (httpx) in this process; devices run in
worker processes (pushwire/bench/gateway_devices.py). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from pushwire.bench.common import own_cpu_seconds, run_cli, write_json
from pushwire.bench.gateway_devices import DeviceFleet
from pushwire.bench.gateway_plain import plain_payload, plain_publisher, stamp
from pushwire.bench.gateway_setup import (
    GatewayServer,
    create_app,
    gateway_server,
    register_devices,
    wakeups,
)
from pushwire.bench.loadgen import BenchError
from pushwire.bench.peers import HOST, cpu_seconds, raise_nofile_limit, settled_rss_kb
from pushwire.client import AsyncPushProvider, BatchPush, PushError

DRAIN_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Settings:
    devices: int = 1000
    duration: float = 5.0
    concurrency: int = 8
    batch_size: int = 100
    latency_rate: float = 200.0
    mqtt_window: int = 100
    batch_window: float = 1.0
    wake_devices: int = 100
    wake_duration: float = 10.0
    wake_interval: float = 0.5
    wake_p10_share: float = 0.2
    device_processes: int = 1
    seed: int = 1


@dataclass
class Phase:
    """One measured phase: pushes accepted by the server, received by devices."""

    accepted: int = 0
    refused: int = 0
    received: int = 0
    seconds: float = 0.0
    server_cpu: float | None = None  # cores used by the server during the phase
    client_cpu: float | None = None  # cores used by this process (the provider side)
    p50_ms: float | None = None
    p99_ms: float | None = None
    samples: int = 0

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


@dataclass
class WakeMix:
    window: float
    devices: int
    pushes: int = 0
    received: int = 0
    server_wakeups: int = 0
    device_bursts: int = 0
    seconds: float = 0.0

    @property
    def wakeups_per_device_hour(self) -> float:
        return self.server_wakeups / self.devices / self.seconds * 3600 if self.seconds else 0.0

    @property
    def bursts_per_device_hour(self) -> float:
        return self.device_bursts / self.devices / self.seconds * 3600 if self.seconds else 0.0


@dataclass
class Results:
    settings: Settings
    devices_connected: int = 0
    rss_baseline_kb: int = 0
    rss_registered_kb: int = 0
    rss_connected_kb: int = 0
    latency_rate: float = 0.0  # the rate the latency phases ran at (<= settings')
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    phases: dict[str, Phase] = field(default_factory=dict)
    wake: dict[str, WakeMix] = field(default_factory=dict)

    @property
    def rss_per_device_kb(self) -> float:
        n = max(1, self.devices_connected)
        return (self.rss_connected_kb - self.rss_baseline_kb) / n

    @property
    def rss_per_connection_kb(self) -> float:
        n = max(1, self.devices_connected)
        return (self.rss_connected_kb - self.rss_registered_kb) / n

    def ratios(self) -> dict[str, float | None]:
        def ratio(a: float | None, b: float | None) -> float | None:
            return a / b if a is not None and b else None

        def rate(name: str) -> float | None:
            phase = self.phases.get(name)
            return phase.rate if phase is not None else None

        def lat(name: str, which: str) -> float | None:
            phase = self.phases.get(name)
            return cast(float | None, getattr(phase, which)) if phase is not None else None

        return {
            "single_vs_plain_rate": ratio(rate("single"), rate("mqtt_plain")),
            "batch_vs_plain_rate": ratio(rate("batch"), rate("mqtt_plain")),
            "p50_vs_plain": ratio(lat("latency", "p50_ms"), lat("mqtt_plain_latency", "p50_ms")),
            "p99_vs_plain": ratio(lat("latency", "p99_ms"), lat("mqtt_plain_latency", "p99_ms")),
        }


def _provider(url: str, api_key: str, concurrency: int) -> AsyncPushProvider:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    http = httpx.AsyncClient(base_url=url, limits=limits, timeout=60)
    return AsyncPushProvider(url, api_key=api_key, http=http)


async def _measured(
    server: GatewayServer, phase: Phase, work: Callable[[], Awaitable[None]]
) -> None:
    cpu0, own0, t0 = cpu_seconds(server.pid), own_cpu_seconds(), time.monotonic()
    await work()
    phase.seconds = time.monotonic() - t0
    phase.server_cpu = (cpu_seconds(server.pid) - cpu0) / phase.seconds
    phase.client_cpu = (own_cpu_seconds() - own0) / phase.seconds


async def drain(fleet: DeviceFleet, phase: Phase, expected: int) -> None:
    """Wait until the devices received what the server accepted (or give up)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        report = await asyncio.to_thread(fleet.report)
        phase.received = report.received
        if report.received >= expected or time.monotonic() > deadline:
            samples = sorted(report.latencies_ns)
            phase.samples = len(samples)
            if samples:
                phase.p50_ms = percentile(samples, 0.50) / 1e6
                phase.p99_ms = percentile(samples, 0.99) / 1e6
            return
        await asyncio.sleep(0.2)


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return float(sorted_values[rank - 1])


async def phase_single(
    server: GatewayServer, fleet: DeviceFleet, provider: AsyncPushProvider,
    tokens: list[str], s: Settings,
) -> Phase:  # fmt: skip
    phase = Phase()
    await asyncio.to_thread(fleet.reset, False)

    async def work() -> None:
        stop_at = time.monotonic() + s.duration

        async def worker(start: int) -> None:
            n = start
            while time.monotonic() < stop_at:
                try:
                    await provider.push(tokens[n % len(tokens)], stamp())
                    phase.accepted += 1
                except PushError:
                    phase.refused += 1
                n += s.concurrency

        await asyncio.gather(*(worker(i) for i in range(s.concurrency)))

    await _measured(server, phase, work)
    await drain(fleet, phase, phase.accepted)
    return phase


async def phase_batch(
    server: GatewayServer, fleet: DeviceFleet, provider: AsyncPushProvider,
    tokens: list[str], s: Settings,
) -> Phase:  # fmt: skip
    phase = Phase()
    await asyncio.to_thread(fleet.reset, False)
    workers = max(1, min(s.concurrency, 8))  # a batch is big: few in flight saturate

    async def work() -> None:
        stop_at = time.monotonic() + s.duration

        async def worker(start: int) -> None:
            n = start * s.batch_size
            while time.monotonic() < stop_at:
                items = [
                    BatchPush(tokens[(n + i) % len(tokens)], stamp()) for i in range(s.batch_size)
                ]
                n += workers * s.batch_size
                for result in await provider.push_batch(items):
                    if result.ok:
                        phase.accepted += 1
                    else:
                        phase.refused += 1

        await asyncio.gather(*(worker(i) for i in range(workers)))

    await _measured(server, phase, work)
    await drain(fleet, phase, phase.accepted)
    return phase


async def paced(
    rate: float, duration: float, send: Callable[[int], Coroutine[Any, Any, None]]
) -> None:
    """Call `send(n)` `rate` times a second for `duration` seconds (open loop)."""
    interval = 1.0 / rate
    start = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()
    n = 0
    while (due := start + n * interval) < start + duration:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.gather(*tasks)


async def phase_latency(
    server: GatewayServer, fleet: DeviceFleet, provider: AsyncPushProvider,
    tokens: list[str], s: Settings, rate: float,
) -> Phase:  # fmt: skip
    phase = Phase()
    await asyncio.to_thread(fleet.reset, True)

    async def send(n: int) -> None:
        try:
            await provider.push(tokens[n % len(tokens)], stamp())
            phase.accepted += 1
        except PushError:
            phase.refused += 1

    await _measured(server, phase, lambda: paced(rate, s.duration, send))
    await drain(fleet, phase, phase.accepted)
    return phase


async def phase_plain(
    server: GatewayServer, fleet: DeviceFleet, topics: list[str], app_id: str, s: Settings
) -> Phase:
    phase = Phase()
    await asyncio.to_thread(fleet.reset, False)
    pub = await plain_publisher(server)

    async def work() -> None:
        stop_at = time.monotonic() + s.duration
        n = 0
        while time.monotonic() < stop_at:
            while pub.inflight >= s.mqtt_window:
                pub.room.clear()
                await pub.room.wait()
            pub.publish(topics[n % len(topics)], plain_payload(app_id, n))
            n += 1
            if n % 64 == 0:
                await asyncio.sleep(0)  # let PUBACKs in
        while pub.inflight > 0:
            pub.room.clear()
            await pub.room.wait()

    await _measured(server, phase, work)
    phase.accepted = pub.acked
    assert pub.transport is not None
    pub.transport.close()
    await drain(fleet, phase, phase.accepted)
    return phase


async def phase_plain_latency(
    server: GatewayServer, fleet: DeviceFleet, topics: list[str], app_id: str, s: Settings,
    rate: float,
) -> Phase:  # fmt: skip
    phase = Phase()
    await asyncio.to_thread(fleet.reset, True)
    pub = await plain_publisher(server)

    async def send(n: int) -> None:
        pub.publish(topics[n % len(topics)], plain_payload(app_id, n))

    async def work() -> None:
        await paced(rate, s.duration, send)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while pub.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    await _measured(server, phase, work)
    phase.accepted = pub.acked
    assert pub.transport is not None
    pub.transport.close()
    await drain(fleet, phase, phase.accepted)
    return phase


# ---------------------------------------------------------------------------------------------
# Runs


async def _main_run(server: GatewayServer, s: Settings, results: Results) -> None:
    app_id, api_key = create_app(server, "bench")
    results.rss_baseline_kb = settled_rss_kb(server.pid)
    devices = await register_devices(server.url, app_id, s.devices, s.concurrency)
    results.rss_registered_kb = settled_rss_kb(server.pid)
    tokens = [d[2] for d in devices]
    topics = [f"devices/{d[0]}/{app_id}" for d in devices]
    with DeviceFleet(HOST, server.mqtt_port, [d[:2] for d in devices], s.device_processes) as fleet:
        results.devices_connected = await asyncio.to_thread(
            fleet.connect, max(60.0, s.devices / 50)
        )
        results.rss_connected_kb = settled_rss_kb(server.pid)
        print(
            f"  {results.devices_connected} devices connected; server RSS "
            f"{results.rss_baseline_kb / 1024:.1f} -> {results.rss_registered_kb / 1024:.1f} "
            f"(registered) -> {results.rss_connected_kb / 1024:.1f} MB (connected)",
            flush=True,
        )
        provider = _provider(server.url, api_key, s.concurrency)
        async with provider:
            steps: list[tuple[str, Callable[[], Awaitable[Phase]]]] = [
                ("single", lambda: phase_single(server, fleet, provider, tokens, s)),
                ("batch", lambda: phase_batch(server, fleet, provider, tokens, s)),
                ("latency",
                 lambda: phase_latency(server, fleet, provider, tokens, s, results.latency_rate)),
                ("mqtt_plain", lambda: phase_plain(server, fleet, topics, app_id, s)),
                ("mqtt_plain_latency",
                 lambda: phase_plain_latency(
                     server, fleet, topics, app_id, s, results.latency_rate)),
            ]  # fmt: skip
            for name, step in steps:
                phase = await step()
                results.phases[name] = phase
                print(f"  {name:18} {_phase_line(phase)}", flush=True)
                if name == "single":
                    # latency is measured below saturation: an open-loop rate above what
                    # the server accepts would measure the backlog, not the path
                    results.latency_rate = min(s.latency_rate, max(1.0, phase.rate / 2))


async def _wake_run(server: GatewayServer, s: Settings, window: float) -> WakeMix:
    """The stated mix: every device gets one push each `wake_interval` seconds, a share
    `wake_p10_share` of them priority 10, the rest priority 5 (sent as one batch request per
    tick). Wake-ups are the server's writes to a device connection (a flushed batch counts
    once) and, as a cross-check, the device-side bursts."""
    app_id, api_key = create_app(server, "wake")
    devices = await register_devices(server.url, app_id, s.wake_devices, s.concurrency)
    tokens = [d[2] for d in devices]
    mix = WakeMix(window, len(devices))
    rng = random.Random(s.seed)
    with DeviceFleet(HOST, server.mqtt_port, [d[:2] for d in devices], 1) as fleet:
        await asyncio.to_thread(fleet.connect, 60.0)
        await asyncio.to_thread(fleet.reset, False)
        before = wakeups(server)
        provider = _provider(server.url, api_key, 4)
        async with provider:

            async def tick(_: int) -> None:
                items = [
                    BatchPush(t, stamp(), priority=10 if rng.random() < s.wake_p10_share else 5)
                    for t in tokens
                ]
                accepted = sum(r.ok for r in await provider.push_batch(items))
                mix.pushes += accepted  # not `+= await ...`: that reads the count before

            ticks = 0

            async def counted_tick(n: int) -> None:
                nonlocal ticks
                ticks += 1
                await tick(n)

            await paced(1.0 / s.wake_interval, s.wake_duration, counted_tick)
            # the span the mix covers (one interval per tick), not the wall time of the
            # requests: a slow last request must not dilute the per-hour figure
            mix.seconds = ticks * s.wake_interval
        phase = Phase()
        await drain(fleet, phase, mix.pushes)
        mix.received = phase.received
        report = await asyncio.to_thread(fleet.report)
        mix.device_bursts = report.bursts
        mix.server_wakeups = wakeups(server) - before
    return mix


def _phase_line(p: Phase) -> str:
    text = f"{p.rate:9.0f}/s accepted ({p.accepted}, {p.refused} refused), {p.received} received"
    if p.p50_ms is not None:
        text += f", p50 {p.p50_ms:.2f} ms p99 {p.p99_ms:.2f} ms ({p.samples} samples)"
    if p.server_cpu is not None and p.client_cpu is not None:
        text += f"; cpu server {p.server_cpu:.0%} provider {p.client_cpu:.0%}"
    return text


def run_all(s: Settings, workdir: Path) -> Results:
    results = Results(s, latency_rate=s.latency_rate)

    def record(label: str, mix: WakeMix) -> None:
        results.wake[label] = mix
        print(
            f"  wake mix {label:9} window {mix.window:g}s: {mix.pushes} pushes, {mix.received} "
            f"received, {mix.wakeups_per_device_hour:.0f} wake-ups/device/hour "
            f"(device-side bursts {mix.bursts_per_device_hour:.0f})",
            flush=True,
        )

    # the main server has the batch window: the batched mix runs there, after the phases
    with gateway_server(workdir / "main", s.batch_window) as server:
        try:
            asyncio.run(_main_run(server, s, results))
            record("batched", asyncio.run(_wake_run(server, s, s.batch_window)))
        except BenchError:
            print(server.log_tail(), file=sys.stderr)
            raise
    with gateway_server(workdir / "unbatched", 0.0, plain_publisher=False) as server:
        record("unbatched", asyncio.run(_wake_run(server, s, 0.0)))
    results.load_average = os.getloadavg()
    return results


# ---------------------------------------------------------------------------------------------
# Report


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}f}"


def render(results: Results) -> str:
    s, p, r = results.settings, results.phases, results.ratios()
    rows = [
        ("devices connected (MQTT, persistent session)", str(results.devices_connected), ""),
        ("POST /v1/push/{token}, pushes/s", _fmt(p["single"].rate), f"{s.concurrency} in flight"),
        ("POST /v1/push batch, pushes/s", _fmt(p["batch"].rate), f"batches of {s.batch_size}"),
        ("plain MQTT QoS 1 publish, msgs/s", _fmt(p["mqtt_plain"].rate), f"window {s.mqtt_window}"),
        ("latency p50 / p99, gateway (ms)",
         f"{_fmt(p['latency'].p50_ms)} / {_fmt(p['latency'].p99_ms)}",
         f"{results.latency_rate:.0f} pushes/s"),
        ("latency p50 / p99, plain MQTT (ms)",
         f"{_fmt(p['mqtt_plain_latency'].p50_ms)} / {_fmt(p['mqtt_plain_latency'].p99_ms)}",
         f"{results.latency_rate:.0f} msgs/s"),
        ("server RSS per device (registered + connected)",
         f"{_fmt(results.rss_per_device_kb)} KB", ""),
        ("  of which the connection", f"{_fmt(results.rss_per_connection_kb)} KB", ""),
        ("ratio single / plain (throughput)", _fmt(r["single_vs_plain_rate"]), ""),
        ("ratio batch / plain (throughput)", _fmt(r["batch_vs_plain_rate"]), ""),
        ("ratio p50 / p99 gateway / plain (latency)",
         f"{_fmt(r['p50_vs_plain'])} / {_fmt(r['p99_vs_plain'])}", ""),
    ]  # fmt: skip
    for label, mix in results.wake.items():
        rows.append(
            (
                f"wake-ups/device/hour, {label} (window {mix.window:g}s)",
                _fmt(mix.wakeups_per_device_hour),
                f"device bursts {_fmt(mix.bursts_per_device_hour)}",
            )
        )
    width = max(len(row[0]) for row in rows)
    lines = [f"{a:<{width}}  {b:>14}  {c}" for a, b, c in rows]
    mix_text = (
        f"mix: each of {s.wake_devices} devices gets a push every {s.wake_interval:g}s "
        f"({s.wake_p10_share:.0%} priority 10, the rest priority 5) for {s.wake_duration:g}s"
    )
    notes = [mix_text]
    one, five, _ = results.load_average
    notes.append(
        f"machine load average {one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} CPUs"
        + ("; other processes were competing for the CPUs" if five > (os.cpu_count() or 1) else "")
    )
    if any((p.client_cpu or 0) > 0.9 for p in results.phases.values()):
        notes.append("warning: the provider side used >90% of a core in a phase: client-bound")
    return "\n".join([*lines, *notes])


def results_json(results: Results) -> dict[str, Any]:
    return {
        "settings": asdict(results.settings),
        "devices_connected": results.devices_connected,
        "latency_rate": results.latency_rate,
        "load_average": list(results.load_average),
        "rss_kb": {
            "baseline": results.rss_baseline_kb,
            "registered": results.rss_registered_kb,
            "connected": results.rss_connected_kb,
            "per_device": results.rss_per_device_kb,
            "per_connection": results.rss_per_connection_kb,
        },
        "phases": {k: {**asdict(v), "rate": v.rate} for k, v in results.phases.items()},
        "wake": {
            k: {
                **asdict(v),
                "wakeups_per_device_hour": v.wakeups_per_device_hour,
                "bursts_per_device_hour": v.bursts_per_device_hour,
            }
            for k, v in results.wake.items()
        },
        "ratios": results.ratios(),
    }


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="pushwire bench gateway",
        description="Device push gateway benchmark (see bench/README.md).",
    )
    parser.add_argument(
        "--devices", type=int, default=d.devices, help="connected devices (e.g. 10000)"
    )
    parser.add_argument("--duration", type=float, default=d.duration, help="seconds per phase")
    parser.add_argument(
        "--concurrency", type=int, default=d.concurrency, help="HTTP requests in flight"
    )
    parser.add_argument(
        "--batch-size", type=int, default=d.batch_size, help="pushes per batch request"
    )
    parser.add_argument(
        "--latency-rate", type=float, default=d.latency_rate, help="pushes/s in the latency phases"
    )
    parser.add_argument(
        "--mqtt-window",
        type=int,
        default=d.mqtt_window,
        help="plain-MQTT QoS 1 publishes in flight",
    )
    parser.add_argument(
        "--batch-window",
        type=float,
        default=d.batch_window,
        help="server's priority-5 batch window, s",
    )
    parser.add_argument(
        "--wake-devices", type=int, default=d.wake_devices, help="devices in the wake-up mix"
    )
    parser.add_argument(
        "--wake-duration", type=float, default=d.wake_duration, help="seconds of the wake-up mix"
    )
    parser.add_argument(
        "--wake-interval",
        type=float,
        default=d.wake_interval,
        help="seconds between pushes to a device in the mix",
    )
    parser.add_argument(
        "--wake-p10-share",
        type=float,
        default=d.wake_p10_share,
        help="share of priority-10 pushes in the mix",
    )
    parser.add_argument(
        "--device-processes",
        type=int,
        default=d.device_processes,
        help="worker processes for the devices",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)  # fmt: skip
    if args.devices < 1 or args.wake_devices < 1 or args.concurrency < 1:
        parser.error("--devices, --wake-devices and --concurrency must be >= 1")
    if not 1 <= args.batch_size <= 1000:
        parser.error("--batch-size must be between 1 and 1000")
    if not 0.2 <= args.duration <= 300 or not 0.5 <= args.wake_duration <= 600:
        parser.error("--duration must be 0.2-300 s and --wake-duration 0.5-600 s")
    if args.latency_rate <= 0 or args.wake_interval <= 0 or not 0 <= args.wake_p10_share <= 1:
        parser.error("rates and intervals must be > 0, --wake-p10-share between 0 and 1")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        devices=args.devices,
        duration=args.duration,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        latency_rate=args.latency_rate,
        mqtt_window=args.mqtt_window,
        batch_window=args.batch_window,
        wake_devices=args.wake_devices,
        wake_duration=args.wake_duration,
        wake_interval=args.wake_interval,
        wake_p10_share=args.wake_p10_share,
        device_processes=args.device_processes,
    )


def run(args: argparse.Namespace) -> int:
    s = settings_from(args)
    fd_limit = raise_nofile_limit()
    if s.devices + 200 > fd_limit:
        print(f"open-file limit {fd_limit} is too low for {s.devices} devices", file=sys.stderr)
        return 2
    print(
        f"gateway benchmark on {os.cpu_count()} CPUs: {s.devices} devices, {s.duration:g} s "
        f"per phase, batch window {s.batch_window:g} s",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="pushwire-bench-gw-") as tmp:
            results = run_all(s, Path(tmp))
    except (BenchError, OSError, PushError, httpx.HTTPError) as exc:
        print(f"gateway benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print()
    print(render(results))
    write_json(args.json, results_json(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
