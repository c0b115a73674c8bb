"""SUBSCRIBE and UNSUBSCRIBE: filter checks, No Local on shared subscriptions
(MQTT-3.8.3-4), the subscriber's ACL, the per-session subscription quota, and the reason
codes of SUBACK/UNSUBACK per protocol version."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pushwire.core.session import Subscription
from pushwire.core.topics import TopicError, split_shared, validate_filter
from pushwire.mqtt.events import Event, SubscribeIn, UnsubscribeIn
from pushwire.mqtt.packets import ReasonCode, Suback, Subscribe, Unsuback, Unsubscribe
from pushwire.mqtt.violation import ProtocolViolation

if TYPE_CHECKING:
    from pushwire.mqtt.connection import MQTTConnection

log = logging.getLogger(__name__)

# MQTT 3.1.1 SUBACK return code for any refused filter
FAILURE_V311 = 0x80


def handle_subscribe(conn: MQTTConnection, p: Subscribe, now: float) -> list[Event]:
    session = conn.session
    assert session is not None
    v5 = conn.v5
    sub_id = p.properties.get("subscription_identifier") if v5 else None
    codes: list[int] = []
    accepted: list[Subscription] = []
    held = session.subscriptions
    new_filters: set[str] = set()
    for flt, options in p.subscriptions:
        try:
            validate_filter(flt, conn.limits.max_topic_levels)
            group, _ = split_shared(flt)
        except TopicError as exc:
            # the filter may be 64 KB: its head is enough to recognise it in the log
            log.info("refused filter %r from %s: %s", flt[:100], conn.client_id, exc)
            codes.append(ReasonCode.TOPIC_FILTER_INVALID if v5 else FAILURE_V311)
            continue
        if group is not None and v5 and options.no_local:
            raise ProtocolViolation("no local on a shared subscription (MQTT-3.8.3-4)")
        if conn.rights is None or not conn.rights.can_subscribe(flt):
            log.info("subscription %r denied for %s", flt, conn.client_id)
            codes.append(ReasonCode.NOT_AUTHORIZED if v5 else FAILURE_V311)
            continue
        known = flt in held or flt in new_filters
        if not known and len(held) + len(new_filters) >= conn.limits.max_subscriptions:
            codes.append(ReasonCode.QUOTA_EXCEEDED if v5 else FAILURE_V311)
            continue
        if flt not in held:
            new_filters.add(flt)
        accepted.append(Subscription(flt, options, sub_id))
        codes.append(min(options.qos, 2))
    return [SubscribeIn(accepted, conn.send(Suback(p.packet_id, codes)))]


def handle_unsubscribe(conn: MQTTConnection, p: Unsubscribe, now: float) -> list[Event]:
    return [UnsubscribeIn(p.packet_id, list(p.filters))]


def unsuback(conn: MQTTConnection, packet_id: int, results: list[bool]) -> bytes:
    """UNSUBACK; results[i]: filters[i] was subscribed (MQTT 5 reason codes only)."""
    codes: list[int] = [
        ReasonCode.SUCCESS if found else ReasonCode.NO_SUBSCRIPTION_EXISTED for found in results
    ]
    return conn.send(Unsuback(packet_id, codes if conn.v5 else []))
