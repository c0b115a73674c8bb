"""`pushwire bench cluster`: configurations whose engine is missing are skipped cleanly,
the goal lines and the table read the results right, and the SQLite configuration starts
a real server (one process) that answers on the ports it logged."""

from __future__ import annotations

import socket
from pathlib import Path

from pushwire.bench.cluster import (
    CONFIG_SPECS,
    Result,
    Settings,
    goal_lines,
    pushwire_cluster,
    render_table,
)


def test_goal_lines_compare_the_right_figures() -> None:
    results = {
        "fanout": {
            "redis-1": Result({"fanout": 100_000.0}),
            "redis-w2": Result({"fanout": 150_000.0}),
        },
        "fanin": {
            "redis-w2": Result({"fanin": 90_000.0}),
            "mosquitto": Result({"fanin": 80_000.0}),
        },
    }
    assert goal_lines(results) == [
        "goal: redis-w2 fanout >= 1.6x redis-1: 1.50x, NOT met",
        "goal: redis-w2 fanin >= 1x mosquitto: 1.12x, met",
    ]
    table = render_table(results, ["redis-1", "redis-w2"], True, Settings(n=10))
    fanin = next(line for line in table.splitlines() if line.startswith("QoS 0 fan-in"))
    assert "mosquitto 80,000" in fanin and fanin.split()[-2] == "1.12"


def test_sqlite_configuration_serves_on_its_logged_ports(tmp_path: Path) -> None:
    with pushwire_cluster(CONFIG_SPECS["sqlite-1"], tmp_path, Settings()) as running:
        assert len(running.pids) == 1
        for port in (running.mqtt_port, running.http_port):
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
        assert "engine sqlite" in running.log_path.read_text()
    assert (tmp_path / "data" / "pushwire.db").exists()
