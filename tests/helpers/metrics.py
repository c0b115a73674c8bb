"""Read a server's /metrics with prometheus_client's own parsers."""

from __future__ import annotations

import httpx
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from helpers.server import ServerProcess

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def metrics_url(srv: ServerProcess) -> str:
    assert srv.http_port is not None
    return f"http://{srv.host}:{srv.http_port}/metrics"


def scrape(srv: ServerProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the text format: (sample name, labels) -> value."""
    text = httpx.get(metrics_url(srv), timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}"
    return samples[key]


__all__ = ["OPENMETRICS", "metrics_url", "openmetrics_families", "sample", "scrape"]
