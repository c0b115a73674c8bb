"""`pushwire bench modes` at a tiny size: every mode delivers the stream through a real
pushwire process, the table, the JSON and the three plots are written; plus the pieces of
the load generator's own wire code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pushwire.bench.modes import MODES, Plan, ws_frame
from pushwire.bench.modes import main as modes_main


def test_ws_frame_is_masked_text() -> None:
    text = b'{"type":"subscribe"}'
    frame = ws_frame(text)
    assert frame[0] == 0x81 and frame[1] == 0x80 | len(text)
    mask, body = frame[2:6], frame[6:]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(body)) == text
    long = ws_frame(b"x" * 300)
    assert long[1] == 0x80 | 126 and int.from_bytes(long[2:4], "big") == 300


def test_plan_labels() -> None:
    assert Plan("poll", 0.5).label == "poll 0.5s"
    assert Plan("mqtt1").label == "MQTT QoS 1"
    assert Plan("gateway").label == "device gateway"


def test_modes_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "modes"
    code = modes_main(
        [
            *("--clients", "4", "--topics", "2", "--rate", "40"),
            *("--duration", "0.5", "--warmup", "0.1", "--intervals", "0.1"),
            *("--one-server", "--quiet", "--out", str(out)),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    labels = ("poll 0.1s", "long-poll", "SSE", "WebSocket", "MQTT QoS 0", "MQTT QoS 1")
    for label in (*labels, "device gateway"):
        assert f"| {label}" in table
    results = json.loads((out / "modes.json").read_text())["results"]
    assert [r["mode"] for r in results] == list(MODES)
    for r in results:
        assert r["errors"] == [], r
        assert r["expected"] > 0 and r["delivered"] > 0, r
        assert r["rx_bytes_per_msg"] > 0 and math.isfinite(r["p50_ms"] or math.inf), r
    by_mode = {r["mode"]: r for r in results}
    # clients of request modes send requests; pushed streams send nothing once subscribed
    assert by_mode["poll"]["requests_per_s"] > 0 and by_mode["poll"]["tx_bytes_per_msg"] > 0
    assert by_mode["sse"]["tx_bytes_per_msg"] == 0 and by_mode["mqtt0"]["requests_per_s"] == 0
    assert by_mode["mqtt1"]["requests_per_s"] > 0  # PUBACKs
    # the gateway: pushes over POST /v1/push (one shared batch per topic here: 2 devices
    # each), devices acknowledge what reaches them; empty replies do not apply
    gateway = by_mode["gateway"]
    assert 0 < gateway["delivered"] <= gateway["expected"] and gateway["requests_per_s"] > 0
    assert gateway["empty_responses"] is None and "| device gateway" in table
    assert gateway["rss_kb_per_client"] >= 0 and gateway["cpu_s_per_1000"] > 0
    for name in ("modes-latency.png", "modes-bytes.png", "modes-cpu.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")


def test_cli_offers_the_modes_suite() -> None:
    from pushwire.cli import build_parser

    ns = build_parser().parse_args(["bench", "modes", "--clients", "3"])
    assert ns.suite == "modes" and ns.args == ["--clients", "3"]
