"""The gateway benchmark's own MQTT framing, percentiles and report, on hand-made data
(no sockets)."""

from __future__ import annotations

import pytest

from pushwire.bench.gateway import Phase, Results, Settings, WakeMix, percentile, render
from pushwire.bench.gateway_devices import (
    STAMP,
    encode_connect_auth,
    publish_parts,
    split_packets,
)
from pushwire.bench.gateway_plain import plain_payload
from pushwire.bench.loadgen import BenchError, encode_publish


def test_connect_has_credentials_and_a_persistent_session() -> None:
    packet = encode_connect_auth("dev_a", "dev_a", "pwd_b", 600)
    assert packet[0] == 0x10
    body = packet[2:]
    assert body[:6] == b"\x00\x04MQTT" and body[6] == 4
    assert body[7] == 0xC0  # username + password, clean session off
    assert body[8:10] == (600).to_bytes(2, "big")
    assert body[10:] == b"\x00\x05dev_a\x00\x05dev_a\x00\x05pwd_b"


@pytest.mark.parametrize("cut", range(0, 40))
def test_split_packets_across_reads(cut: int) -> None:
    stream = (
        b"\x20\x02\x00\x00"
        + encode_publish("devices/d/a", b'{"t": 1795732009007000123}', qos=1, packet_id=7)
        + b"\x90\x03\x00\x01\x01"
    )
    buf = bytearray(stream[:cut])
    first, used = split_packets(buf)
    del buf[:used]
    buf += stream[cut:]
    second, used2 = split_packets(buf)
    packets = first + second
    assert used2 == len(buf)
    assert [p[0] >> 4 for p in packets] == [2, 3, 9]
    packet_id, payload = publish_parts(*packets[1])
    assert packet_id == 7
    match = STAMP.search(payload)
    assert match is not None and int(match.group(1)) == 1795732009007000123


def test_bad_remaining_length_is_refused() -> None:
    with pytest.raises(BenchError):
        split_packets(bytearray(b"\x30\xff\xff\xff\xff\x01"))


def test_plain_payload_carries_a_stamp_like_a_push() -> None:
    payload = plain_payload("app_x", 3)
    assert STAMP.search(payload) is not None
    assert b'"app": "app_x"' in payload


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN


def test_report_shows_rates_ratios_and_wakeups() -> None:
    results = Results(Settings(devices=2), devices_connected=2, latency_rate=10.0)
    results.rss_baseline_kb, results.rss_registered_kb, results.rss_connected_kb = 100, 110, 120
    results.phases = {
        "single": Phase(accepted=100, seconds=1.0),
        "batch": Phase(accepted=400, seconds=1.0),
        "latency": Phase(accepted=10, seconds=1.0, p50_ms=4.0, p99_ms=8.0),
        "mqtt_plain": Phase(accepted=1000, seconds=1.0),
        "mqtt_plain_latency": Phase(accepted=10, seconds=1.0, p50_ms=1.0, p99_ms=2.0),
    }
    results.wake = {
        "batched": WakeMix(1.0, 2, server_wakeups=10, seconds=10.0),
        "unbatched": WakeMix(0.0, 2, server_wakeups=20, seconds=10.0),
    }
    ratios = results.ratios()
    assert ratios["single_vs_plain_rate"] == pytest.approx(0.1)
    assert ratios["batch_vs_plain_rate"] == pytest.approx(0.4)
    assert ratios["p50_vs_plain"] == pytest.approx(4.0)
    assert results.rss_per_device_kb == 10 and results.rss_per_connection_kb == 5
    assert results.wake["batched"].wakeups_per_device_hour == pytest.approx(1800)
    text = render(results)
    assert "1,800" in text and "3,600" in text and "4.00 / 4.00" in text
