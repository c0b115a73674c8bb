"""GET /metrics through prometheus_client: both exposition formats parse, and the latency
and queue-depth histograms grow with real traffic on every transport."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest
from httpx_sse import aconnect_sse
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from helpers.clients import PahoClient
from helpers.metrics import OPENMETRICS, metrics_url, openmetrics_families, sample, scrape
from helpers.server import ServerProcess

from .http_util import StartServer, base, http_server, ws_url

__all__ = ["http_server"]  # the fixture

pytestmark = pytest.mark.pushwire_only("/metrics is pushwire's")
PahoFactory = Callable[..., PahoClient]

HISTOGRAMS = (
    "pushwire_delivery_latency_seconds",
    "pushwire_mqtt_publish_ack_latency_seconds",
    "pushwire_store_commit_duration_seconds",
)
DEPTH = "pushwire_mqtt_queue_depth_messages"  # a gauge histogram: sampled at scrape
READERS = ("mqtt", "sse", "ws", "poll", "longpoll")


def test_text_format_and_openmetrics_both_parse(http_server: StartServer) -> None:
    srv = http_server(memory=False)
    url = metrics_url(srv)
    text = httpx.get(url)
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(text.text)}
    om = httpx.get(url, headers={"Accept": OPENMETRICS})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    om_families = {f.name: f for f in openmetrics_families(om.text)}
    # the same families in both formats (the text format has no gauge histogram type: it
    # writes one as a histogram plus _gcount and _gsum gauges), counters typed as counters
    assert set(om_families) == set(families) - {DEPTH + "_gcount", DEPTH + "_gsum"}
    assert om_families[DEPTH].type == "gaugehistogram"
    assert families[DEPTH].type == "histogram"
    assert {s.name for s in om_families[DEPTH].samples} == {
        DEPTH + "_bucket",
        DEPTH + "_gcount",
        DEPTH + "_gsum",
    }
    assert families[DEPTH + "_gcount"].type == "gauge"
    assert families["pushwire_messages_in"].type == "counter"
    assert families["pushwire_open_connections"].type == "gauge"
    for name in HISTOGRAMS:
        for fams in (families, om_families):
            assert fams[name].type == "histogram", name
            suffixes = {s.name.removeprefix(name) for s in fams[name].samples}
            assert {"_bucket", "_count", "_sum"} <= suffixes, (name, suffixes)
            infs = [s for s in fams[name].samples if s.labels.get("le") == "+Inf"]
            assert infs, name


async def _sse_messages(client: httpx.AsyncClient, url: str, n: int) -> int:
    got = 0
    async with aconnect_sse(client, "GET", url) as source:
        async for event in source.aiter_sse():
            if event.event in ("", "message"):
                got += 1
                if got >= n:
                    return got
    return got


async def _ws_messages(srv: ServerProcess, n: int) -> int:
    got = 0
    async with connect(ws_url(srv)) as ws:
        await ws.send(
            json.dumps({"type": "subscribe", "sub": "s", "filter": "h/#", "since": "all"})
        )
        while got < n:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "message":
                got += 1
    return got


def _counts(srv: ServerProcess) -> dict[str, float]:
    s = scrape(srv)
    out = {t: sample(s, "pushwire_delivery_latency_seconds_count", transport=t) for t in READERS}
    for name in HISTOGRAMS[1:]:
        out[name] = sample(s, name + "_count")
    out[DEPTH] = sample(s, DEPTH + "_gcount")  # sessions sampled
    return out


async def test_histograms_grow_with_traffic_on_every_transport(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    srv = http_server(memory=False)
    url = base(srv)
    before = _counts(srv)
    sub = paho_client(srv)
    sub.subscribe("h/#", 1)
    pub = paho_client(srv)
    pub.publish("h/mqtt", b"m", qos=1)  # waits for the PUBACK
    assert httpx.post(f"{url}/v1/publish/h/http", content=b"h").status_code in (200, 201)
    assert sorted(m.payload for m in (sub.get(), sub.get())) == [b"h", b"m"]

    async with httpx.AsyncClient(timeout=10) as client:
        assert await asyncio.wait_for(_sse_messages(client, f"{url}/v1/sse/h/%23?since=all", 2), 10)
        assert await asyncio.wait_for(_ws_messages(srv, 2), 10)
        for reader in ("poll", "longpoll"):
            r = await client.get(f"{url}/v1/{reader}/h/%23?since=all")
            assert r.status_code == 200 and len(r.json()["messages"]) == 2, r.text

    # the counters are updated before the bytes leave: poll for them, with a deadline
    deadline = time.monotonic() + 10
    while True:
        after = _counts(srv)
        grown = {k for k in after if after[k] > before[k]}
        if grown == set(after) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert grown == set(after), {k: (before[k], after[k]) for k in after}
    for t in READERS:
        assert after[t] - before[t] >= 2, t
    assert (
        after["pushwire_mqtt_publish_ack_latency_seconds"]
        - before["pushwire_mqtt_publish_ack_latency_seconds"]
        == 1
    )
    s = scrape(srv)
    for t in READERS:
        # the +Inf bucket is the count, and the sum is a real latency (non-negative)
        inf = sample(s, "pushwire_delivery_latency_seconds_bucket", transport=t, le="+Inf")
        assert inf == sample(s, "pushwire_delivery_latency_seconds_count", transport=t)
        assert sample(s, "pushwire_delivery_latency_seconds_sum", transport=t) >= 0


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_queue_depth_shows_a_session_with_messages_waiting(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    srv = http_server()
    offline = paho_client(srv, "depth-sub", clean_session=False)
    offline.subscribe("d/#", 1)
    pub = paho_client(srv)
    offline.disconnect()
    _until(
        lambda: sample(scrape(srv), "pushwire_open_connections", transport="mqtt") == 1,
        "the subscriber's connection never closed",
    )
    for i in range(3):
        pub.publish("d/x", b"%d" % i, qos=1)  # acked: queued for the offline session
    s = scrape(srv)
    assert sample(s, DEPTH + "_gsum") == 3
    assert sample(s, DEPTH + "_gcount") == 2  # two sessions
    # one session in the bucket (2, 5], the publisher's in the first (le 0)
    assert sample(s, DEPTH + "_bucket", le="0.0") == 1
    assert sample(s, DEPTH + "_bucket", le="2.0") == 1
    assert sample(s, DEPTH + "_bucket", le="5.0") == 2
