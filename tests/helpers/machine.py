"""A protocol machine connected without any I/O, for unit tests of the MQTT rules: a plain
session and plain rights stand in for the hub's (they are data, not mocks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pushwire.core.identity import AuthResult, Identity
from pushwire.mqtt.codec.decoder import Decoder
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.connection import Limits, MQTTConnection
from pushwire.mqtt.events import ConnectIn, Event, Send, SendAck
from pushwire.mqtt.packets import PROTOCOL_V5, Connect, Packet


@dataclass
class PlainSession:
    """The state the machine reads and changes of a session (core.session.Session)."""

    expiry_interval: int | None = 0
    subscriptions: dict[str, Any] = field(default_factory=dict)
    inbound_qos2: set[int] = field(default_factory=set)

    @property
    def persistent(self) -> bool:
        return self.expiry_interval != 0

    def inbound_qos2_seen(self, packet_id: int) -> bool:
        return packet_id in self.inbound_qos2

    def inbound_qos2_add(self, packet_id: int) -> None:
        self.inbound_qos2.add(packet_id)

    def inbound_qos2_release(self, packet_id: int) -> bool:
        if packet_id not in self.inbound_qos2:
            return False
        self.inbound_qos2.discard(packet_id)
        return True


@dataclass
class PrefixRights:
    """May publish and subscribe below `prefix` ("" allows everything)."""

    prefix: str = ""

    def can_publish(self, topic: str) -> bool:
        return topic.startswith(self.prefix)

    def can_subscribe(self, flt: str) -> bool:
        return flt.startswith(self.prefix)


OK = AuthResult(Identity(username=None), "ok", "welcome")


def connect_events(conn: MQTTConnection, packet: Connect) -> list[Event]:
    packets = conn.receive_data(encode(packet, packet.protocol_level), 0.0)
    assert len(packets) == 1
    return conn.handle(packets[0], 0.0)


def connected(
    level: int = PROTOCOL_V5,
    limits: Limits | None = None,
    session: PlainSession | None = None,
    rights: PrefixRights | None = None,
    present: bool = False,
    **connect: Any,
) -> tuple[MQTTConnection, PlainSession, list[Packet]]:
    """A machine past CONNACK: (machine, its session, [the CONNACK])."""
    conn = MQTTConnection(limits or Limits(max_packet_size=1 << 20, topic_alias_maximum=8))
    events = connect_events(conn, Connect(connect.pop("client_id", "c"), level, **connect))
    (request,) = events
    assert isinstance(request, ConnectIn)
    assert conn.check_login(request, OK, rights or PrefixRights()) == []
    session = session or PlainSession(expiry_interval=request.expiry_interval)
    connack = conn.accept(request, session, present)
    return conn, session, decode_out(connack, level)


def feed(conn: MQTTConnection, packet: Packet, now: float = 0.0) -> list[Event]:
    """One packet from the client through the machine: its events."""
    out: list[Event] = []
    for p in conn.receive_data(encode(packet, conn.protocol_level), now):
        out.extend(conn.handle(p, now))
    return out


def decode_out(data: bytes, level: int) -> list[Packet]:
    """What the server sent, as the client decodes it."""
    decoder = Decoder(server_side=False)
    decoder.protocol_level = level
    return decoder.feed(data)


def sent(events: list[Event], level: int) -> list[Packet]:
    """The packets of every Send and SendAck, in order."""
    data = b"".join(e.data for e in events if isinstance(e, (Send, SendAck)))
    return decode_out(data, level)
