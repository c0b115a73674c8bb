"""AUTH (MQTT 5 enhanced authentication, spec 4.12): the packet family's rules.

The SCRAM-SHA-256 exchange itself is `enhanced_auth.EnhancedAuth` (sans-IO, one per
connection whose CONNECT named an Authentication Method). This module turns its decisions
into the machine's events:

- `Challenge` -> AUTH 0x18 Continue authentication, an `auth_deadline` `auth_timeout`
  ahead, and `AuthTimer(arm=True)`: the glue re-arms its timer, whose `tick` refuses an
  exchange still open at the deadline;
- `Accepted` at CONNECT -> `Authenticated`: the glue goes on as after a password check, and
  the CONNACK carries the server-final-message (`accept` adds `auth_connack`);
  `Accepted` on a live connection (re-authentication) -> AUTH 0x00 Success;
- `Refused` -> CONNACK (before the session) or DISCONNECT with its code, then a close.

AUTH from a client that named no Authentication Method in CONNECT is a protocol error
(0x82, MQTT-4.12.0-1 ... -7 leave no other reading).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pushwire.mqtt.enhanced_auth import (
    CONTINUE_AUTHENTICATION,
    Accepted,
    AuthStep,
    Challenge,
    EnhancedAuth,
    ScramAuthority,
)
from pushwire.mqtt.events import Authenticated, AuthTimer, Close, ConnectIn, Event, Send
from pushwire.mqtt.packets import Auth, Connack, Disconnect, ReasonCode
from pushwire.mqtt.violation import ProtocolViolation

if TYPE_CHECKING:
    from pushwire.mqtt.connection import MQTTConnection


def wants_enhanced_auth(request: ConnectIn) -> bool:
    return "authentication_method" in request.packet.properties


def start(
    conn: MQTTConnection, request: ConnectIn, authority: ScramAuthority, peer_ip: str
) -> list[Event]:
    """CONNECT named an Authentication Method: begin (or refuse) the exchange."""
    exchange = EnhancedAuth(authority, peer_ip)
    conn.enhanced_auth = exchange
    conn.pending_connect = request
    p = request.packet
    return _step(conn, exchange.connect(p.properties, p.username))


def handle_auth(conn: MQTTConnection, p: Auth, now: float) -> list[Event]:
    exchange = conn.enhanced_auth
    if exchange is None:
        raise ProtocolViolation("AUTH without an Authentication Method in CONNECT")
    return _step(conn, exchange.auth(p))


def timed_out(conn: MQTTConnection) -> list[Event]:
    exchange = conn.enhanced_auth
    step = exchange.timed_out() if exchange is not None else None
    return _step(conn, step) if step is not None else []


def _step(conn: MQTTConnection, step: AuthStep) -> list[Event]:
    if isinstance(step, Challenge):
        # the answer is due `auth_timeout` after the packet that led to the challenge
        due = conn.auth_deadline = conn.last_rx + conn.limits.auth_timeout
        if not conn.deadline or due < conn.deadline:
            conn.deadline = due
        return [Send(conn.send(Auth(CONTINUE_AUTHENTICATION, step.properties))), AuthTimer(True)]
    conn.auth_deadline = 0.0  # the exchange is over (the timer finds nothing due)
    if isinstance(step, Accepted):
        request = conn.pending_connect
        if request is not None:
            conn.pending_connect = None
            conn.auth_connack = step.properties
            return [AuthTimer(False), Authenticated(request, step.result)]
        return [
            AuthTimer(False),
            Send(conn.send(Auth(ReasonCode.SUCCESS, step.properties))),
        ]
    props = {"reason_string": step.reason}
    refusal = (
        Connack(False, step.reason_code, props)
        if conn.session is None
        else Disconnect(step.reason_code, props)
    )
    return [
        AuthTimer(False),
        Send(conn.send(refusal)),
        Close(f"enhanced authentication refused: {step.reason}", logging.INFO),
    ]
