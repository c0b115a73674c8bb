"""AUTH (MQTT 5 enhanced authentication). No method is supported yet, so an AUTH packet
ends the connection with 0x8C Bad authentication method; a method (SCRAM-SHA-256) plugs in
here and returns the AUTH/CONNACK bytes as `Send` events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushwire.mqtt.events import Close, Event, Send
from pushwire.mqtt.packets import Auth, Disconnect, ReasonCode

if TYPE_CHECKING:
    from pushwire.mqtt.connection import MQTTConnection


def handle_auth(conn: MQTTConnection, p: Auth, now: float) -> list[Event]:
    return [
        Send(conn.send(Disconnect(ReasonCode.BAD_AUTHENTICATION_METHOD))),
        Close("enhanced authentication is not supported"),
    ]
