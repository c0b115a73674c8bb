"""`pushwire bench gateway` at a tiny size: every phase runs against real servers and the
devices receive what the server accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushwire.bench.gateway import Settings, run_all


@pytest.mark.slow  # two servers and nine phases: ~10-20 s
@pytest.mark.timeout(120)
def test_gateway_bench_tiny_run(tmp_path: Path) -> None:
    s = Settings(
        devices=3,
        duration=0.3,
        concurrency=2,
        batch_size=5,
        latency_rate=20.0,
        mqtt_window=5,
        batch_window=0.4,
        wake_devices=2,
        wake_duration=1.0,
        wake_interval=0.25,
    )
    results = run_all(s, tmp_path)
    assert results.devices_connected == 3
    for name in ("single", "batch", "latency", "mqtt_plain", "mqtt_plain_latency"):
        phase = results.phases[name]
        assert phase.accepted > 0 and phase.refused == 0, (name, phase)
        assert phase.received == phase.accepted, (name, phase)
    assert results.phases["latency"].samples == results.phases["latency"].accepted
    assert results.phases["mqtt_plain_latency"].p50_ms is not None
    assert results.rss_connected_kb > 0
    batched, unbatched = results.wake["batched"], results.wake["unbatched"]
    assert batched.received == batched.pushes > 0
    assert unbatched.received == unbatched.pushes > 0
    assert batched.server_wakeups > 0 and unbatched.server_wakeups > 0
    ratios = results.ratios()
    assert all(value is not None and value > 0 for value in ratios.values()), ratios
