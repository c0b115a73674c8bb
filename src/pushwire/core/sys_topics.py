"""$SYS/broker/... status topics (the names mosquitto uses), published retained."""

from __future__ import annotations

import asyncio
import heapq
import json

from pushwire import __version__
from pushwire.core.hub import Hub
from pushwire.core.message import Message

# per-client overflow counts published (and exported to /metrics): the worst ones only
OVERFLOW_CLIENTS = 100


def overflowed_sessions(hub: Hub, limit: int) -> list[tuple[str, int]]:
    """(client id, messages its full queue refused) of the `limit` sessions that refused
    the most, most first (O(sessions), at $SYS interval or scrape: off the hot path)."""
    counts = ((s.client_id, s.overflowed) for s in hub.sessions.values() if s.overflowed)
    return heapq.nlargest(limit, counts, key=lambda item: item[1])


def sys_values(hub: Hub) -> dict[str, str]:
    s = hub.stats
    return {
        "$SYS/broker/version": f"pushwire {__version__}",
        "$SYS/broker/uptime": str(s.uptime()),
        "$SYS/broker/clients/connected": str(s.clients_connected),
        "$SYS/broker/clients/maximum": str(s.clients_maximum),
        "$SYS/broker/clients/total": str(len(hub.sessions)),
        "$SYS/broker/messages/received": str(s.messages_received),
        "$SYS/broker/messages/sent": str(s.messages_sent),
        "$SYS/broker/messages/dropped": str(s.publish_dropped + s.queue_overflow),
        "$SYS/broker/messages/too-large": str(s.publish_too_large),
        "$SYS/broker/bytes/received": str(s.bytes_received),
        "$SYS/broker/bytes/sent": str(s.bytes_sent),
        "$SYS/broker/subscriptions/count": str(hub.subscription_count),
        "$SYS/broker/retained messages/count": str(len(hub.retained)),
        # byte bounds: session queues (queued + inflight) and the message log's memory
        "$SYS/broker/store/queued/bytes": str(s.queued_bytes),
        "$SYS/broker/messages/dropped/byte bound": str(s.queue_bytes_overflow),
        "$SYS/broker/messages/dropped/queue full": str(s.queue_overflow),
        # {client id: messages refused by its full queue}, the worst OVERFLOW_CLIENTS
        "$SYS/broker/queues/overflow": json.dumps(
            dict(overflowed_sessions(hub, OVERFLOW_CLIENTS)), separators=(",", ":")
        ),
        "$SYS/broker/log/spilled": str(s.log_spilled),
        "$SYS/broker/log/evicted for memory": str(s.log_memory_evicted),
    }


def publish_sys(hub: Hub) -> None:
    for topic, value in sys_values(hub).items():
        previous = hub.retained.get(topic)
        if previous is not None and previous.payload == value.encode():
            continue  # unchanged: don't wake subscribers
        hub.publish(Message(topic, value.encode(), 0, True), internal=True)


async def run_sys_publisher(hub: Hub, interval: float) -> None:
    """Publish the $SYS tree every `interval` seconds until cancelled."""
    while True:
        publish_sys(hub)
        await asyncio.sleep(interval)
