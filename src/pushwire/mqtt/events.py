"""What the MQTT protocol machine asks its I/O glue to do, one small record per kind.

The machine (`connection.py`) never writes to a socket, reads a clock or calls the hub;
it returns these. The glue (`dispatch.py`) acts on them in order: bytes go to the
transport, `Close` ends the connection after what was already written, and the *In
events become hub calls whose results come back through the machine's methods
(`accept`, `refuse`, `unsuback`, `pubrel_for`, `ack_written`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pushwire.core.identity import AuthResult
from pushwire.core.session import Subscription
from pushwire.mqtt.packets import Connect, Publish


@dataclass(slots=True)
class Send:
    """Bytes to write now (CONNACK, SUBACK, PINGRESP, PUBREL, DISCONNECT)."""

    data: bytes


@dataclass(slots=True)
class SendAck:
    """An ack of an inbound flow (PUBACK, PUBREC, PUBCOMP): acks keep their order
    (MQTT-4.6.0-2), and a `durable` one waits for the store."""

    data: bytes
    durable: bool
    # writing it ends an inbound QoS 1/2 flow: call `ack_written()` (Receive Maximum)
    releases: bool = False


@dataclass(slots=True)
class Close:
    """End the connection once what was sent before is written."""

    reason: str
    level: int = logging.DEBUG
    protocol_error: bool = False  # counts in stats.protocol_errors


@dataclass(slots=True)
class ConnectIn:
    """A CONNECT that passed the protocol's checks: authenticate, then answer with
    `accept(session, present)` or `refuse(reason)`."""

    packet: Connect
    client_id: str
    assigned: bool  # the server chose client_id (MQTT 5 assigned_client_identifier)
    # session expiry the client asked for (None: never expires)
    expiry_interval: int | None


@dataclass(slots=True)
class PublishIn:
    """An application message to route; then the ack (if any) is sent like a SendAck,
    durable if the publish was journaled or `durable` says so."""

    packet: Publish
    ack: bytes | None
    durable: bool = False
    releases: bool = False
    received: float = -1.0  # when the PUBLISH arrived (monotonic), for the ack histogram


@dataclass(slots=True)
class SubscribeIn:
    """Subscriptions the machine accepted; subscribe them in order, send `suback`, then
    the retained messages of each."""

    subscriptions: list[Subscription]
    suback: bytes


@dataclass(slots=True)
class UnsubscribeIn:
    """Unsubscribe each filter, then send `unsuback(packet_id, results)`."""

    packet_id: int
    filters: list[str] = field(default_factory=list)


@dataclass(slots=True)
class OutboundAck:
    """The client acknowledged one of our deliveries: kind is "puback", "pubrec" (answer
    with `pubrel_for`) or "pubcomp"."""

    kind: str
    packet_id: int


@dataclass(slots=True)
class OutboundAcks:
    """The client acknowledged these QoS 1 deliveries with back-to-back PUBACKs
    (`PubAckRun`): acknowledge them in order, then refill the window once."""

    packet_ids: list[int]


@dataclass(slots=True)
class AuthTimer:
    """The enhanced-authentication exchange started (arm) or ended: with arm, the
    machine's `deadline` may have moved earlier, so re-arm the timer for it."""

    arm: bool


@dataclass(slots=True)
class Authenticated:
    """Enhanced authentication accepted the CONNECT: go on as after a password check."""

    request: ConnectIn
    result: AuthResult


Event = (
    Send
    | SendAck
    | Close
    | ConnectIn
    | PublishIn
    | SubscribeIn
    | UnsubscribeIn
    | OutboundAck
    | OutboundAcks
    | AuthTimer
    | Authenticated
)
