"""GET /metrics: Prometheus text format (what dashboards and `make bench` read)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from pushwire.http.auth import CallerDep
from pushwire.http.errors import error_responses
from pushwire.http.guard import head_timeouts_total
from pushwire.http.state import HttpState, get_state

READERS = ("poll", "longpoll", "sse", "ws")
STREAMING = ("longpoll", "sse", "ws")

router = APIRouter(tags=["admin"])


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_text: str, samples: Sequence[tuple[str, float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            v = int(value) if float(value).is_integer() else value
            self.lines.append(f"{name}{labels} {v}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _t(transport: str) -> str:
    return f'{{transport="{transport}"}}'


def render(state: HttpState) -> str:
    hub = state.hub
    s = hub.stats
    h = state.stats
    log = state.log
    w = _Writer()
    http_in = sum(h.messages_in.values())
    w.metric(
        "pushwire_connections",
        "gauge",
        "open connections per transport (longpoll: requests being held)",
        [(_t("mqtt"), s.clients_connected)] + [(_t(t), h.connections[t]) for t in STREAMING],
    )
    w.metric(
        "pushwire_connections_total",
        "counter",
        "connections (requests for poll/longpoll) accepted per transport",
        [(_t(t), h.connections_total[t]) for t in READERS],
    )
    w.metric(
        "pushwire_messages_in_total",
        "counter",
        "messages published, per transport they came in through",
        [(_t("mqtt"), max(0, s.messages_received - http_in))]
        + [(_t(t), h.messages_in[t]) for t in ("http", "ws")],
    )
    w.metric(
        "pushwire_messages_out_total",
        "counter",
        "messages handed to subscribers, per transport",
        [(_t("mqtt"), s.messages_sent)] + [(_t(t), h.messages_out[t]) for t in READERS],
    )
    w.metric("pushwire_log_messages", "gauge", "messages held in the message log", [("", log.size)])
    w.metric("pushwire_log_topics", "gauge", "topics in the message log", [("", log.topic_count)])
    w.metric(
        "pushwire_log_last_id", "gauge", "last id issued by the message log", [("", log.last_id)]
    )
    w.metric(
        "pushwire_log_appended_total",
        "counter",
        "messages appended to the log",
        [("", log.appended_total)],
    )
    w.metric(
        "pushwire_log_evicted_total",
        "counter",
        "messages evicted from the log by retention",
        [("", log.evicted_total)],
    )
    w.metric(
        "pushwire_log_holes_total",
        "counter",
        "log entries the store refused to keep (each is a gap for readers crossing it)",
        [("", log.holes_total)],
    )
    w.metric(
        "pushwire_log_memory_bytes",
        "gauge",
        "bytes of log entries held in memory (payload + topic + properties + overhead)",
        [("", log.memory_bytes)],
    )
    w.metric(
        "pushwire_log_memory_limit_bytes",
        "gauge",
        "the log's memory budget: all topics (scope=total) and per topic (scope=topic)",
        [
            ('{scope="total"}', log.budget.total_bytes),
            ('{scope="topic"}', log.budget.topic_bytes),
        ],
    )
    w.metric(
        "pushwire_log_disk_only_messages",
        "gauge",
        "log entries kept on disk only (out of memory for the budget; read back on demand)",
        [("", log.cold_count)],
    )
    w.metric(
        "pushwire_log_spilled_total",
        "counter",
        "log entries moved from memory to disk only for the memory budget",
        [("", s.log_spilled)],
    )
    w.metric(
        "pushwire_log_memory_evicted_total",
        "counter",
        "log entries evicted for the memory budget (memory engine: readers get a gap)",
        [("", s.log_memory_evicted)],
    )
    w.metric(
        "pushwire_log_disk_reads_total",
        "counter",
        "log entries read back from disk for readers",
        [("", s.log_disk_reads)],
    )
    w.metric(
        "pushwire_log_listeners",
        "gauge",
        "long-poll waiters + SSE streams + WebSocket subscriptions registered on the log",
        [("", log.listener_count)],
    )
    w.metric(
        "pushwire_longpoll_waiters",
        "gauge",
        "long-poll requests being held",
        [("", h.connections["longpoll"])],
    )
    w.metric("pushwire_gaps_total", "counter", "replies that reported a gap", [("", h.gaps)])
    w.metric(
        "pushwire_stream_overflows_total",
        "counter",
        "SSE/WebSocket streams closed because the client was too slow",
        [("", h.stream_overflows)],
    )
    w.metric(
        "pushwire_ws_heartbeat_timeouts_total",
        "counter",
        "JSON WebSockets closed for missed heartbeats",
        [("", h.heartbeat_timeouts)],
    )
    w.metric(
        "pushwire_rejected_busy_total",
        "counter",
        "waiters/streams refused at http_max_listeners",
        [("", h.rejected_busy)],
    )
    w.metric(
        "pushwire_http_refused_total",
        "counter",
        "HTTP requests and JSON WebSockets refused: unauthorized (401, 4401), forbidden "
        "(403, incl. ACL), rate_limited (429, 4429: failed logins)",
        [
            ('{reason="unauthorized"}', h.unauthorized),
            ('{reason="forbidden"}', h.forbidden),
            ('{reason="rate_limited"}', h.rate_limited),
        ],
    )
    w.metric(
        "pushwire_http_revoked_total",
        "counter",
        "long-polls, SSE streams and WebSockets ended because their token was revoked or "
        "expired, or their user removed",
        [("", state.live.revoked_total)],
    )
    w.metric(
        "pushwire_http_head_timeouts_total",
        "counter",
        "HTTP connections closed for not sending a request head within http_header_timeout",
        [("", head_timeouts_total())],
    )
    w.metric(
        "pushwire_mqtt_dropped_total",
        "counter",
        "MQTT QoS 0 messages dropped and QoS 1/2 refused by full queues",
        [("", s.publish_dropped + s.queue_overflow)],
    )
    w.metric(
        "pushwire_mqtt_queue_overflow_total",
        "counter",
        "MQTT QoS 1/2 messages refused by full session queues, by the bound that was hit",
        [
            ('{bound="messages"}', s.queue_overflow - s.queue_bytes_overflow),
            ('{bound="bytes"}', s.queue_bytes_overflow),
        ],
    )
    w.metric(
        "pushwire_mqtt_queued_bytes",
        "gauge",
        "bytes of MQTT QoS 1/2 messages queued or inflight, all sessions",
        [("", s.queued_bytes)],
    )
    w.metric(
        "pushwire_store_pending_bytes",
        "gauge",
        "payload bytes waiting to be written to the store (SQLite write-behind backlog)",
        [("", hub.engine.pending_bytes)],
    )
    w.metric(
        "pushwire_store_backlogged_total",
        "counter",
        "times publishers were held because the store's write backlog was full",
        [("", s.store_backlogged)],
    )
    w.metric("pushwire_uptime_seconds", "gauge", "seconds since start", [("", s.uptime())])
    # other parts of the server (the push gateway) add their own families
    return w.text() + "".join(extra() for extra in state.extra_metrics)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **error_responses(401, 429),
    },
)
async def metrics(
    state: Annotated[HttpState, Depends(get_state)], _caller: CallerDep
) -> PlainTextResponse:
    """Connections and messages in/out per transport, log sizes, waiters. Any identity the
    server admits may read it (no topic ACL applies)."""
    return PlainTextResponse(render(state), media_type="text/plain; version=0.0.4")
