"""Counters the broker exposes through $SYS and /metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pushwire.core.histogram import Histogram


@dataclass(slots=True)
class Stats:
    started_at: float = field(default_factory=time.time)
    messages_received: int = 0
    messages_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    publish_dropped: int = 0  # QoS 0 to a congested subscriber, or a full offline queue
    queue_overflow: int = 0  # QoS 1/2 refused because a session queue was full
    expired: int = 0  # messages whose expiry passed before delivery
    clients_connected: int = 0
    clients_maximum: int = 0
    connections_refused: int = 0
    protocol_errors: int = 0
    slow_consumers_disconnected: int = 0
    # MQTT 5 deliveries dropped: larger than the client's Maximum Packet Size
    publish_too_large: int = 0
    publish_denied: int = 0  # publishes the publisher's ACL refused
    delivery_denied: int = 0  # deliveries the subscriber's ACL refused
    publishers_held: int = 0  # times a publisher waited for a subscriber to catch up
    publish_throttled: int = 0  # times a client was paused for its publish rate
    queue_bytes_overflow: int = 0  # of queue_overflow: refused for the session's byte bound
    queued_bytes: int = 0  # gauge: bytes of QoS 1/2 messages queued or inflight, all sessions
    log_spilled: int = 0  # log entries moved from memory to disk only (memory budget)
    log_memory_evicted: int = 0  # log entries evicted for the memory budget (memory engine)
    log_disk_reads: int = 0  # log entries read back from disk for a reader
    store_backlogged: int = 0  # times publishers were held for the store's write backlog
    # publish to bytes handed to an MQTT subscriber's transport
    delivery_latency: Histogram = field(default_factory=Histogram)
    # receipt of a QoS 1/2 PUBLISH to the write of its PUBACK/PUBREC
    publish_ack_latency: Histogram = field(default_factory=Histogram)

    def uptime(self) -> int:
        return int(time.time() - self.started_at)
