"""Subscription options: what a subscriber asked for, whatever transport it came through."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class SubscriptionOptions:
    qos: int = 0
    # MQTT 5: do not deliver the subscriber's own publications back to it
    no_local: bool = False
    # MQTT 5: keep the publisher's retain flag on forwarded messages
    retain_as_published: bool = False
    # 0: send retained messages on subscribe; 1: only if the subscription is new; 2: never
    retain_handling: int = 0
