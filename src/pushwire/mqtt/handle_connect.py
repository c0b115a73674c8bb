"""CONNECT and DISCONNECT: who the client is, what the server grants, how a session ends.

Rules kept here: the over-capacity refusal, the will topic check, client-id assignment
(MQTT-3.1.3-6/8), refusal codes per protocol version, the will's ACL check, the keepalive
clamp (MQTT 5 Server Keep Alive), the CONNACK properties, session expiry changes at
DISCONNECT (MQTT-3.14.2-2), whether DISCONNECT keeps the will (MQTT-3.14.4-3) and when a
will is published (MQTT-3.1.3-9).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from pushwire.core.topics import TopicError, validate_topic_name
from pushwire.mqtt.codec.connect import CONNACK_ACCEPTED_311
from pushwire.mqtt.events import Close, ConnectIn, Event, Send
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    Connack,
    ConnackCode311,
    Connect,
    Disconnect,
    ReasonCode,
    Will,
)
from pushwire.mqtt.violation import ProtocolViolation

if TYPE_CHECKING:
    from pushwire.core.identity import AuthResult
    from pushwire.mqtt.connection import MQTTConnection, Rights, SessionView

# MQTT 5 session expiry value that means "never expires"
NEVER_EXPIRES = 0xFFFFFFFF

# a plain int: reading an IntEnum member costs ~70 ns, and every DISCONNECT compares it
_DISCONNECT_WITH_WILL = int(ReasonCode.DISCONNECT_WITH_WILL)

# CONNACK codes for a refused CONNECT, by AuthResult.reason (and "server_busy")
REFUSAL_V5: dict[str, int] = {
    "bad_credentials": ReasonCode.BAD_USER_NAME_OR_PASSWORD,
    "not_authorized": ReasonCode.NOT_AUTHORIZED,
    "rate_limited": ReasonCode.CONNECTION_RATE_EXCEEDED,
    "server_busy": ReasonCode.SERVER_BUSY,
    # one client id reconnecting in a loop (core/admission.py's per-client-id bucket)
    "client_id_rate": ReasonCode.CONNECTION_RATE_EXCEEDED,
    # engine=redis: the node holding the client id did not hand it over (mqtt/handover.py)
    "server_unavailable": ReasonCode.SERVER_UNAVAILABLE,
}
REFUSAL_V311: dict[str, int] = {
    "bad_credentials": ConnackCode311.BAD_USERNAME_OR_PASSWORD,
    "not_authorized": ConnackCode311.NOT_AUTHORIZED,
    "rate_limited": ConnackCode311.NOT_AUTHORIZED,
    "server_busy": ConnackCode311.SERVER_UNAVAILABLE,
    "client_id_rate": ConnackCode311.SERVER_UNAVAILABLE,
    "server_unavailable": ConnackCode311.SERVER_UNAVAILABLE,
}


def handle_connect(conn: MQTTConnection, p: Connect, now: float) -> list[Event]:
    request = connect_request(conn, p)
    if isinstance(request, ConnectIn):
        return [request]
    return request


def connect_request(conn: MQTTConnection, p: Connect) -> ConnectIn | list[Event]:
    """The rules of a CONNECT before authentication: the request to authenticate, or the
    refusal to send. The glue calls this directly for a CONNECT read alone (no event list
    for the common case); `handle_connect` wraps it for the general path."""
    v5 = p.protocol_level == PROTOCOL_V5
    if conn.over_capacity:
        conn.stats.connections_refused += 1
        return refuse(conn, "server_busy", "max_connections reached")
    if p.will is not None:
        try:
            validate_topic_name(p.will.topic, conn.limits.max_topic_levels)
        except TopicError as exc:
            events: list[Event] = []
            if v5:
                events.append(Send(conn.send(Connack(False, ReasonCode.TOPIC_NAME_INVALID))))
            events.append(Close(f"invalid will topic: {exc}", logging.INFO))
            return events
    client_id = p.client_id
    assigned = False
    if not client_id:
        if not v5 and not p.clean_start:
            # MQTT-3.1.3-8: a persistent session needs a client-chosen id
            return [
                Send(conn.send(Connack(False, ConnackCode311.IDENTIFIER_REJECTED))),
                Close("empty client id with clean session 0"),
            ]
        client_id = f"pushwire-{uuid.uuid4().hex}"
        assigned = True
    if v5:
        expiry = p.properties.get("session_expiry_interval", 0)
        expiry_interval: int | None = None if expiry == NEVER_EXPIRES else expiry
    else:
        expiry_interval = 0 if p.clean_start else None
    return ConnectIn(p, client_id, assigned, expiry_interval)


def refuse(conn: MQTTConnection, reason: str, message: str) -> list[Event]:
    table = REFUSAL_V5 if conn.v5 else REFUSAL_V311
    return [
        Send(conn.send(Connack(False, table[reason]))),
        Close(f"connect refused: {message}", logging.INFO),
    ]


def check_login(
    conn: MQTTConnection, request: ConnectIn, result: AuthResult, rights: Rights
) -> list[Event]:
    if result.reason != "ok" or result.identity is None:  # `result.ok`, without the call
        return refuse(conn, result.reason, result.message)
    will = request.packet.will
    if will is not None and not rights.can_publish(will.topic):
        events: list[Event] = []
        if conn.v5:
            events.append(Send(conn.send(Connack(False, ReasonCode.NOT_AUTHORIZED))))
        events.append(Close("will topic not authorized", logging.INFO))
        return events
    conn.rights = rights
    return []


def accept(conn: MQTTConnection, request: ConnectIn, session: SessionView, present: bool) -> bytes:
    p = request.packet
    conn.session = session
    conn.client_id = request.client_id
    conn.will = p.will
    conn.keepalive = p.keepalive
    if conn.protocol_level != PROTOCOL_V5:  # not the `v5` property: one call less
        return CONNACK_ACCEPTED_311[present]  # prebuilt: no properties below MQTT 5
    props: dict[str, Any] = {}
    limits = conn.limits
    conn.client_receive_maximum = p.properties.get("receive_maximum", 65535)
    conn.client_max_packet_size = p.properties.get("maximum_packet_size")
    conn.client_topic_alias_maximum = p.properties.get("topic_alias_maximum", 0)
    if conn.keepalive > limits.max_keepalive:
        conn.keepalive = limits.max_keepalive
        props["server_keep_alive"] = limits.max_keepalive
    if request.assigned:
        props["assigned_client_identifier"] = request.client_id
    props["receive_maximum"] = limits.receive_maximum
    props["topic_alias_maximum"] = limits.topic_alias_maximum
    props["maximum_packet_size"] = limits.max_packet_size
    if conn.auth_connack:
        # enhanced authentication: the server-final-message (handle_auth.py)
        props.update(conn.auth_connack)
        conn.auth_connack = {}
    return conn.send(Connack(present, 0, props))


def handle_disconnect(conn: MQTTConnection, p: Disconnect, now: float) -> list[Event]:
    disconnect(conn, p)
    return [Close(DISCONNECTED)]


# the reason a DISCONNECT from the client closes with (logged at DEBUG)
DISCONNECTED = "client disconnected"


def disconnect(conn: MQTTConnection, p: Disconnect) -> None:
    """The rules of a DISCONNECT (raises ProtocolViolation); the connection then closes
    with DISCONNECTED. The glue calls this directly for a DISCONNECT read alone (no event
    objects for the common case); `handle_disconnect` wraps it for the general path."""
    session = conn.session
    if conn.protocol_level == PROTOCOL_V5 and session is not None:
        expiry = p.properties.get("session_expiry_interval")
        if expiry is not None:
            if session.expiry_interval == 0 and expiry != 0:
                raise ProtocolViolation("session expiry set on DISCONNECT after 0")
            session.expiry_interval = None if expiry == NEVER_EXPIRES else expiry
    if p.reason_code != _DISCONNECT_WITH_WILL:
        conn.will = None  # a normal DISCONNECT discards the will (MQTT-3.14.4-3)


def will_delay(will: Will, session_expiry: int | None) -> int:
    """Seconds to wait before publishing a will: its Will Delay Interval or the end of the
    session, whichever comes first (MQTT-3.1.3-9). 0: publish now."""
    delay: int = will.properties.get("will_delay_interval", 0)
    if session_expiry is not None:
        delay = min(delay, session_expiry)
    return delay


def pending_will_goes_out(session_present: bool) -> bool:
    """A new connection took the session of a client whose will still waits for its delay
    (mqtt/wills.py keeps the timer): True when that will goes out now, False when it is
    never sent. A resumed session means the client is back within the delay, so its will
    is cancelled for good; a new session ends the old one, and a will is due at the end of
    its delay or of its session, whichever comes first (MQTT-3.1.3-9)."""
    return not session_present
