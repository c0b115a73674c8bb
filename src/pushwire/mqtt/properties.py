"""Which MQTT 5 properties travel with an application message (spec 3.3.2.3)."""

from __future__ import annotations

from typing import Any

# PUBLISH properties the server forwards unchanged to subscribers (MQTT-3.3.2-4 ... -20)
FORWARDED = frozenset(
    {
        "payload_format_indicator",
        "content_type",
        "response_topic",
        "correlation_data",
        "user_property",
    }
)


def forwarded(properties: dict[str, Any]) -> dict[str, Any]:
    """The subset of a PUBLISH's properties that belongs to the message itself."""
    if not properties:
        return {}
    return {k: v for k, v in properties.items() if k in FORWARDED}
