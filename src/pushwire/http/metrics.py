"""GET /metrics: Prometheus exposition through prometheus_client.

The counters stay plain attributes of in-memory objects on the hot path (core Stats,
HttpStats, the message log, the gateway's stats); `ServerCollector` reads them when
/metrics is scraped and hands them to prometheus_client as metric families, which takes
care of the text format, escaping and OpenMetrics (content negotiation on `Accept`).
Each HttpState has its own CollectorRegistry (tests run several servers in one process).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pushwire.core.histogram import DEPTH_BUCKETS, Histogram
from pushwire.core.sys_topics import OVERFLOW_CLIENTS, overflowed_sessions
from pushwire.http.auth import CallerDep
from pushwire.http.errors import error_responses
from pushwire.http.guard import head_timeouts_total, heads_refused_total
from pushwire.http.state import HttpState, get_state

READERS = ("poll", "longpoll", "sse", "ws")
STREAMING = ("longpoll", "sse", "ws")

router = APIRouter(tags=["admin"])

Samples = Sequence[tuple[Sequence[str], float]]


def counter(name: str, doc: str, samples: Samples, labels: Sequence[str] = ()) -> Metric:
    """A counter family; `name` without `_total` (prometheus_client adds it)."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def gauge(name: str, doc: str, samples: Samples, labels: Sequence[str] = ()) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def histogram(
    name: str,
    doc: str,
    samples: Sequence[tuple[Sequence[str], Histogram]],
    labels: Sequence[str] = (),
) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, h in samples:
        family.add_metric(values, h.cumulative(), h.sum)
    return family


def one(value: float) -> Samples:
    return [((), value)]


class ServerCollector(Collector):
    """The broker's, the log's, the store's and the HTTP transports' metrics."""

    def __init__(self, state: HttpState) -> None:
        self.state = state

    def collect(self) -> Iterable[Metric]:
        yield from _traffic(self.state)
        yield from _latency(self.state)
        yield from _log(self.state)
        yield from _http(self.state)
        yield from _mqtt_and_store(self.state)


def _traffic(state: HttpState) -> Iterator[Metric]:
    s = state.hub.stats
    h = state.stats
    http_in = sum(h.messages_in.values())
    transport = ["transport"]
    yield gauge(
        "pushwire_open_connections",
        "open connections per transport (longpoll: requests being held)",
        [(["mqtt"], s.clients_connected)] + [([t], h.connections[t]) for t in STREAMING],
        transport,
    )
    yield counter(
        "pushwire_connections",
        "connections (requests for poll/longpoll) accepted per transport",
        [([t], h.connections_total[t]) for t in READERS],
        transport,
    )
    yield counter(
        "pushwire_messages_in",
        "messages published, per transport they came in through",
        [(["mqtt"], max(0, s.messages_received - http_in))]
        + [([t], h.messages_in[t]) for t in ("http", "ws")],
        transport,
    )
    yield counter(
        "pushwire_messages_out",
        "messages handed to subscribers, per transport",
        [(["mqtt"], s.messages_sent)] + [([t], h.messages_out[t]) for t in READERS],
        transport,
    )


def _latency(state: HttpState) -> Iterator[Metric]:
    s = state.hub.stats
    h = state.stats
    yield histogram(
        "pushwire_delivery_latency_seconds",
        "from a message's publish to its bytes handed to a subscriber's transport (messages "
        "read from history or queued for an offline session count with their full age)",
        [(["mqtt"], s.delivery_latency)] + [([t], h.delivery_latency[t]) for t in READERS],
        ["transport"],
    )
    yield histogram(
        "pushwire_mqtt_publish_ack_latency_seconds",
        "from receipt of an MQTT QoS 1/2 PUBLISH to the write of its PUBACK/PUBREC (which "
        "waits for the store when the message is journaled)",
        [((), s.publish_ack_latency)],
    )
    yield histogram(
        "pushwire_store_commit_duration_seconds",
        "one commit of the store's writer (a transaction of a batch of writes, fsync "
        "included); empty for the memory engine",
        [((), state.hub.engine.commit_seconds)],
    )
    # sampled now, over every session (O(sessions) per scrape, nothing on the hot path)
    depth = Histogram(DEPTH_BUCKETS)
    for session in state.hub.sessions.values():
        depth.observe(session.waiting)
    family = GaugeHistogramMetricFamily(
        "pushwire_mqtt_queue_depth_messages",
        "MQTT sessions by the length of their queue (messages waiting in memory and in the "
        "store, inflight not included), sampled at scrape",
    )
    family.add_metric([], depth.cumulative(), depth.sum)
    yield family


def _log(state: HttpState) -> Iterator[Metric]:
    s = state.hub.stats
    log = state.log
    yield gauge("pushwire_log_messages", "messages held in the message log", one(log.size))
    yield gauge("pushwire_log_topics", "topics in the message log", one(log.topic_count))
    yield gauge("pushwire_log_last_id", "last id issued by the message log", one(log.last_id))
    yield counter("pushwire_log_appended", "messages appended to the log", one(log.appended_total))
    yield counter(
        "pushwire_log_evicted",
        "messages evicted from the log by retention",
        one(log.evicted_total),
    )
    yield counter(
        "pushwire_log_reads_spared",
        "long-poll re-asks held again without reading the log: their topic had nothing "
        "newer than the cursor (per-user topics, MessageLog.quiet_after)",
        one(log.reads_spared),
    )
    yield counter(
        "pushwire_log_holes",
        "log entries the store refused to keep (each is a gap for readers crossing it)",
        one(log.holes_total),
    )
    yield gauge(
        "pushwire_log_memory_bytes",
        "bytes of log entries held in memory (payload + topic + properties + overhead)",
        one(log.memory_bytes),
    )
    yield gauge(
        "pushwire_log_memory_limit_bytes",
        "the log's memory budget: all topics (scope=total) and per topic (scope=topic)",
        [(["total"], log.budget.total_bytes), (["topic"], log.budget.topic_bytes)],
        ["scope"],
    )
    yield gauge(
        "pushwire_log_disk_only_messages",
        "log entries kept on disk only (out of memory for the budget; read back on demand)",
        one(log.cold_count),
    )
    yield counter(
        "pushwire_log_spilled",
        "log entries moved from memory to disk only for the memory budget",
        one(s.log_spilled),
    )
    yield counter(
        "pushwire_log_memory_evicted",
        "log entries evicted for the memory budget (memory engine: readers get a gap)",
        one(s.log_memory_evicted),
    )
    yield counter(
        "pushwire_log_disk_reads",
        "log entries read back from disk for readers",
        one(s.log_disk_reads),
    )
    yield gauge(
        "pushwire_log_listeners",
        "long-poll waiters + SSE streams + WebSocket subscriptions registered on the log",
        one(log.listener_count),
    )


def _http(state: HttpState) -> Iterator[Metric]:
    h = state.stats
    yield gauge(
        "pushwire_longpoll_waiters", "long-poll requests being held", one(h.connections["longpoll"])
    )
    yield counter("pushwire_gaps", "replies that reported a gap", one(h.gaps))
    yield counter(
        "pushwire_stream_overflows",
        "SSE/WebSocket streams closed because the client was too slow",
        one(h.stream_overflows),
    )
    yield counter(
        "pushwire_ws_heartbeat_timeouts",
        "JSON WebSockets closed for missed heartbeats",
        one(h.heartbeat_timeouts),
    )
    yield counter(
        "pushwire_rejected_busy",
        "waiters/streams refused at http_max_listeners",
        one(h.rejected_busy),
    )
    yield counter(
        "pushwire_http_refused",
        "HTTP requests and JSON WebSockets refused: unauthorized (401, 4401), forbidden "
        "(403, incl. ACL), rate_limited (429, 4429: failed logins)",
        [
            (["unauthorized"], h.unauthorized),
            (["forbidden"], h.forbidden),
            (["rate_limited"], h.rate_limited),
        ],
        ["reason"],
    )
    yield counter(
        "pushwire_http_revoked",
        "long-polls, SSE streams and WebSockets ended because their token was revoked or "
        "expired, or their user removed",
        one(state.live.revoked_total),
    )
    yield counter(
        "pushwire_http_head_timeouts",
        "HTTP connections closed for not sending a request head within http_header_timeout",
        one(head_timeouts_total()),
    )
    yield counter(
        "pushwire_http_heads_refused",
        "HTTP request heads refused: too_long (414 over http_max_request_line, 431 over "
        "http_max_head), malformed (400)",
        [([reason], n) for reason, n in heads_refused_total().items()],
        ["reason"],
    )


def _mqtt_and_store(state: HttpState) -> Iterator[Metric]:
    hub = state.hub
    s = hub.stats
    yield counter(
        "pushwire_mqtt_dropped",
        "MQTT QoS 0 messages dropped and QoS 1/2 refused by full queues",
        one(s.publish_dropped + s.queue_overflow),
    )
    yield counter(
        "pushwire_mqtt_queue_overflow",
        "MQTT QoS 1/2 messages refused by full session queues, by the bound that was hit",
        [
            (["messages"], s.queue_overflow - s.queue_bytes_overflow),
            (["bytes"], s.queue_bytes_overflow),
        ],
        ["bound"],
    )
    yield counter(
        "pushwire_mqtt_queue_overflow_client",
        "MQTT QoS 1/2 messages refused by a full session queue, per client (the "
        f"{OVERFLOW_CLIENTS} sessions with the most; docs/queues.md)",
        [([cid], n) for cid, n in overflowed_sessions(hub, OVERFLOW_CLIENTS)],
        ["client_id"],
    )
    yield gauge(
        "pushwire_mqtt_stored_queued_messages",
        "queued messages of persistent sessions waiting in the store, beyond the memory window",
        one(sum(x.stored_count for x in hub.sessions.values())),
    )
    yield counter(
        "pushwire_mqtt_too_large",
        "MQTT 5 deliveries dropped for one client: larger than its Maximum Packet Size",
        one(s.publish_too_large),
    )
    yield gauge(
        "pushwire_mqtt_queued_bytes",
        "bytes of MQTT QoS 1/2 messages queued or inflight, all sessions",
        one(s.queued_bytes),
    )
    yield gauge(
        "pushwire_store_pending_bytes",
        "payload bytes waiting to be written to the store (SQLite write-behind backlog)",
        one(hub.engine.pending_bytes),
    )
    yield counter(
        "pushwire_store_backlogged",
        "times publishers were held because the store's write backlog was full",
        one(s.store_backlogged),
    )
    yield gauge("pushwire_uptime_seconds", "seconds since start", one(s.uptime()))


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            }
        },
        **error_responses(401, 429),
    },
)
async def metrics(
    request: Request, state: Annotated[HttpState, Depends(get_state)], _caller: CallerDep
) -> Response:
    """Connections and messages in/out per transport, latency histograms, log sizes,
    waiters. Prometheus text format, or OpenMetrics for `Accept: application/openmetrics-text`.
    Any identity the server admits may read it (no topic ACL applies)."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(state.registry), media_type=content_type)
