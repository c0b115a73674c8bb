"""The few paho-mqtt internals the agent needs, in one place.

aiomqtt 2.5 (the installed version) has no ``manual_ack`` option and no hook for the
keepalive, so the agent reaches the paho client aiomqtt wraps (``Client._client``):

- ``manual_ack_set(True)`` / ``ack(mid, qos)`` (public paho API): PUBACK only after the
  handler returned;
- its keepalive bookkeeping (private): paho's own rule closes the link after ONE unanswered
  ping; the agent turns it off after CONNECT and runs :class:`~pushwire.client.heartbeat.Heartbeat`
  instead, which allows a configurable number of misses.

:func:`check_supported` fails loudly at start if a paho release renamed any of these.
"""

from __future__ import annotations

from typing import Any

import aiomqtt
from paho.mqtt.client import PINGREQ, Client

_PRIVATE = (
    "_keepalive",
    "_last_bytes_received",
    "_last_msg_out",
    "_send_simple_command",
    "_sock_close",
)


def paho_of(client: aiomqtt.Client) -> Client:
    paho: Client = client._client
    return paho


def check_supported(client: aiomqtt.Client) -> None:
    paho: Any = getattr(client, "_client", None)
    missing = [name for name in _PRIVATE if not hasattr(paho, name)]
    if paho is None or missing or not hasattr(paho, "manual_ack_set"):
        raise RuntimeError(
            f"this paho-mqtt/aiomqtt release lacks what DeviceAgent needs ({missing}); "
            "pin paho-mqtt 2.x and aiomqtt 2.x"
        )


def enable_manual_ack(client: aiomqtt.Client) -> None:
    paho_of(client).manual_ack_set(True)


def ack(client: aiomqtt.Client, mid: int, qos: int) -> bool:
    """Send the PUBACK; False when the link is already gone (the server will redeliver)."""
    if qos == 0:
        return True
    return int(paho_of(client).ack(mid, qos)) == 0


def take_over_keepalive(client: aiomqtt.Client) -> None:
    """After CONNACK: stop paho's one-miss keepalive rule (the CONNECT packet already told the
    server our keepalive); the agent's heartbeat pings from now on."""
    paho: Any = paho_of(client)
    paho._keepalive = 0


def last_heard(client: aiomqtt.Client) -> float:
    """time.monotonic() of the last byte received from the server."""
    paho: Any = paho_of(client)
    return float(paho._last_bytes_received)


def last_sent(client: aiomqtt.Client) -> float:
    paho: Any = paho_of(client)
    return float(paho._last_msg_out)


def send_ping(client: aiomqtt.Client) -> None:
    paho: Any = paho_of(client)
    paho._send_simple_command(PINGREQ)


def drop_link(client: aiomqtt.Client) -> None:
    """Close the socket of a connection the heartbeat declared dead."""
    paho: Any = paho_of(client)
    paho._sock_close()
