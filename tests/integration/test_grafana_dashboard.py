"""examples/grafana-dashboard.json only queries metrics a real server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers.metrics import metrics_url

from .http_util import StartServer, http_server

__all__ = ["http_server"]  # the fixture

pytestmark = pytest.mark.pushwire_only("/metrics is pushwire's")

DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana-dashboard.json"
METRIC = re.compile(r"\bpushwire_[a-z0-9_]+")


def _queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            exprs.append(var["definition"])
    return exprs


def test_every_metric_the_dashboard_queries_exists(http_server: StartServer) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = _queries(dashboard)
    used = {name for q in queries for name in METRIC.findall(q)}
    # the panels the dashboard promises are there
    for expected in (
        "pushwire_messages_in_total",
        "pushwire_messages_out_total",
        "pushwire_open_connections",
        "pushwire_delivery_latency_seconds_bucket",
        "pushwire_mqtt_publish_ack_latency_seconds_bucket",
        "pushwire_store_commit_duration_seconds_bucket",
        "pushwire_mqtt_queue_depth_messages_bucket",
        "pushwire_mqtt_queue_depth_messages_gsum",
        "pushwire_mqtt_dropped_total",
    ):
        assert expected in used, expected
    srv = http_server(memory=False)
    text = httpx.get(metrics_url(srv)).text
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert used <= exported, sorted(used - exported)
    # per-transport queries group by a label the metric has
    labels = {
        s.name: set(s.labels) for f in text_string_to_metric_families(text) for s in f.samples
    }
    for q in queries:
        if "by (transport" in q:
            for name in METRIC.findall(q):
                assert "transport" in labels[name], (name, q)
