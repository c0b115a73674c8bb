"""The MQTT protocol machine (sans-IO): bytes and timer ticks in, events and bytes out.

Like h11's `_connection.py`, it owns no socket, no event loop and no clock: the glue
(`protocol.py`) feeds it bytes with `receive_data`, hands each checked packet to
`handle`, and acts on the events it returns (`events.py`). Every rule of the protocol
lives here or in the handler of its packet family, as in mosquitto:

- `handle_connect.py`: CONNECT and DISCONNECT, client-id assignment, refusal codes per
  version, the keepalive clamp, CONNACK properties, session expiry at DISCONNECT, will delay;
- `handle_publish.py`: inbound PUBLISH (topic aliases, depth, ACL, the inbound QoS 2 table,
  Receive Maximum) and outbound PUBLISH encoding (encode once, Maximum Packet Size, aliases);
- `handle_subscribe.py`: SUBSCRIBE and UNSUBSCRIBE;
- `handle_acks.py`: PUBACK, PUBREC, PUBREL, PUBCOMP and PINGREQ;
- `handle_auth.py`: AUTH (enhanced authentication; the SCRAM exchange is enhanced_auth.py).

Entry points for the glue: `receive_data`, `handle`, `accept`, `refuse`, `check_login`,
`start_enhanced_auth`, `auth_timed_out`, `quota_exceeded`, `unsuback`, `pubrel_for`,
`ack_written`, `encode_delivery`, `keepalive_tick`, `connect_timed_out`, `protocol_error`,
`server_close`, `taken_over`, `send`.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pushwire.core.stats import Stats
from pushwire.mqtt import handle_acks, handle_auth, handle_connect, handle_publish, handle_subscribe
from pushwire.mqtt.codec import DecodeError, Decoder, encode
from pushwire.mqtt.events import Close, ConnectIn, Event, PublishIn, Send
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    Auth,
    Connack,
    ConnackCode311,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PubAck,
    PubAckRun,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    Subscribe,
    Unsubscribe,
    Will,
)
from pushwire.mqtt.violation import ProtocolViolation

__all__ = ["Limits", "MQTTConnection", "ProtocolViolation", "SessionView", "State"]

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pushwire.config import Settings
    from pushwire.core.auth import AuthResult
    from pushwire.mqtt.enhanced_auth import EnhancedAuth, ScramAuthority

# control packet type of CONNECT (the high nibble of the first byte)
_CONNECT_TYPE = 1


class State(enum.Enum):
    AWAIT_CONNECT = "await-connect"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Limits:
    """The server's side of the negotiation, from the settings of the same names."""

    max_packet_size: int = 1_048_576
    topic_alias_maximum: int = 0  # aliases the client may define towards us
    receive_maximum: int = 65535  # inbound QoS 1/2 flows a v5 client may have open
    max_keepalive: int = 65535
    max_topic_levels: int = 128
    max_subscriptions: int = 1000
    outgoing_topic_aliases: int = 0  # aliases we may define towards the client

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(
            max_packet_size=s.max_packet_size,
            topic_alias_maximum=s.topic_alias_maximum,
            receive_maximum=s.receive_maximum,
            max_keepalive=s.max_keepalive,
            max_topic_levels=s.max_topic_levels,
            max_subscriptions=s.max_subscriptions_per_client,
            outgoing_topic_aliases=s.outgoing_topic_aliases,
        )


class SessionView(Protocol):
    """What the machine reads and changes of the session (core.session.Session): pure
    state, whose persistence is the session's own business."""

    expiry_interval: int | None

    @property
    def subscriptions(self) -> Mapping[str, Any]: ...
    @property
    def persistent(self) -> bool: ...
    def inbound_qos2_seen(self, packet_id: int) -> bool: ...
    def inbound_qos2_add(self, packet_id: int) -> None: ...
    def inbound_qos2_release(self, packet_id: int) -> bool: ...


class Rights(Protocol):
    """Write and subscribe rights of the connected identity (core.auth.Permissions)."""

    def can_publish(self, topic: str) -> bool: ...
    def can_subscribe(self, flt: str) -> bool: ...


class MQTTConnection:
    def __init__(self, limits: Limits | None = None, stats: Stats | None = None) -> None:
        self.limits = limits or Limits()
        self.stats = stats if stats is not None else Stats()
        self._decoder = Decoder(
            max_packet_size=self.limits.max_packet_size, server_side=True, ack_runs=True
        )
        self.state = State.AWAIT_CONNECT
        self.protocol_level = PROTOCOL_V311
        self._aliases: dict[int, str] = {}  # inbound topic aliases the client set
        self._first_byte_seen = False
        # set by the glue when the server is over max_connections: CONNECT is refused
        self.over_capacity = False
        # known once CONNECT is accepted
        self.client_id = ""
        self.will: Will | None = None
        self.keepalive = 0
        self.session: SessionView | None = None
        self.rights: Rights | None = None
        self.client_receive_maximum = 65535
        self.client_max_packet_size: int | None = None  # None: the client set no limit
        self.client_topic_alias_maximum = 0
        # inbound QoS 1/2 flows whose final ack is not yet written (Receive Maximum)
        self.inbound_open = 0
        # outbound topic aliases: topic -> alias, least recently used first
        self.out_aliases: dict[str, int] = {}
        self.last_rx = 0.0  # monotonic time of the last bytes received
        # MQTT 5 enhanced authentication (handle_auth.py), when CONNECT named a method
        self.enhanced_auth: EnhancedAuth | None = None
        self.pending_connect: ConnectIn | None = None  # CONNECT awaiting the exchange
        self.auth_connack: dict[str, Any] = {}  # server-final-message for the CONNACK

    @property
    def v5(self) -> bool:
        return self.protocol_level == PROTOCOL_V5

    # -- bytes in --------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float = 0.0) -> list[Packet]:
        """Decode and check order; raises DecodeError (or ProtocolViolation) on the first
        fault. The error's `packets` holds the checked packets that came before the fault,
        so the caller can still act on them (a PUBLISH followed by garbage is delivered)."""
        if self.state is State.CLOSED:
            return []
        self.last_rx = now
        if not self._first_byte_seen and data:
            self._first_byte_seen = True
            if data[0] >> 4 != _CONNECT_TYPE:
                # MQTT-3.1.0-1: judged on the first byte, so a partial packet (or one that
                # claims a large body and never sends it) cannot hold the socket open
                self.state = State.CLOSED
                raise ProtocolViolation("first packet must be CONNECT")
        try:
            packets = self._decoder.feed(data)
        except DecodeError as exc:
            if self.state is State.AWAIT_CONNECT:
                # a CONNECT that was readable up to its level: answer at that level
                self.protocol_level = self._decoder.protocol_level
            exc.packets = self._check(exc.packets)
            self.state = State.CLOSED
            raise
        return self._check(packets)

    def _check(self, packets: list[Packet]) -> list[Packet]:
        for i, packet in enumerate(packets):
            try:
                if self.state is State.AWAIT_CONNECT:
                    if not isinstance(packet, Connect):
                        raise ProtocolViolation("first packet must be CONNECT")
                    self.protocol_level = packet.protocol_level
                    self.state = State.CONNECTED
                elif isinstance(packet, Connect):
                    raise ProtocolViolation("second CONNECT on one connection")
                elif isinstance(packet, Publish) and self.v5:
                    handle_publish.resolve_alias(self._aliases, self.limits, packet)
                elif isinstance(packet, Disconnect):
                    # nothing after DISCONNECT counts (MQTT-3.14.4-1/2)
                    self.state = State.CLOSED
                    return packets[: i + 1]
            except ProtocolViolation as exc:
                self.state = State.CLOSED
                exc.packets = packets[:i]
                raise
        return packets

    def handle(self, packet: Packet, now: float = -1.0) -> list[Event]:
        """Apply the rules of one checked packet; raises ProtocolViolation. `now`: the
        monotonic time it arrived, passed through to the publish-to-ack histogram."""
        handler = _HANDLERS.get(type(packet))
        if handler is None:
            raise ProtocolViolation(f"unexpected {type(packet).__name__}")
        if self.session is None and not isinstance(packet, (Connect, Auth, Disconnect)):
            # only the enhanced-authentication exchange (or its end) comes before CONNACK;
            # packets after a CONNECT whose password is being checked wait in the glue
            raise ProtocolViolation(f"{type(packet).__name__} before CONNACK")
        return handler(self, packet, now)

    # -- CONNECT answers -------------------------------------------------------------------

    def check_login(self, request: ConnectIn, result: AuthResult, rights: Rights) -> list[Event]:
        """The identity's answer: [] to go on with `accept`, else the refusal to send."""
        return handle_connect.check_login(self, request, result, rights)

    def start_enhanced_auth(
        self, request: ConnectIn, authority: ScramAuthority, peer_ip: str
    ) -> list[Event]:
        """CONNECT named an Authentication Method (`handle_auth.wants_enhanced_auth`)."""
        return handle_auth.start(self, request, authority, peer_ip)

    def auth_timed_out(self) -> list[Event]:
        """The `auth_timeout` timer armed by `AuthTimer` fired."""
        return handle_auth.timed_out(self)

    def refuse(self, reason: str, message: str) -> list[Event]:
        """Refuse the CONNECT; reason is an AuthResult reason or "server_busy"."""
        return handle_connect.refuse(self, reason, message)

    def accept(self, request: ConnectIn, session: SessionView, present: bool) -> bytes:
        """The CONNACK for an accepted CONNECT, bound to `session`."""
        return handle_connect.accept(self, request, session, present)

    # -- answers to the glue's hub calls ---------------------------------------------------

    def quota_exceeded(self, ev: PublishIn) -> tuple[bytes, bool]:
        """The ack of `ev` when the hub refused the message for every subscriber (MQTT 5):
        (ack bytes, releases)."""
        return handle_publish.quota_exceeded(self, ev)

    def unsuback(self, packet_id: int, results: list[bool]) -> bytes:
        return handle_subscribe.unsuback(self, packet_id, results)

    def pubrel_for(self, packet_id: int, found: bool) -> bytes:
        return handle_acks.pubrel_for(self, packet_id, found)

    def ack_written(self) -> None:
        """An ack that ends an inbound QoS 1/2 flow reached the transport."""
        if self.inbound_open > 0:
            self.inbound_open -= 1

    # -- bytes out -------------------------------------------------------------------------

    def send(self, packet: Packet) -> bytes:
        return encode(packet, self.protocol_level)

    # A PUBLISH for this client, or None when it is larger than the client accepts
    # (dropped and counted; the caller completes the flow, MQTT-3.1.2-25). Bound straight
    # to the handler's function: this runs once per subscriber of every message.
    encode_delivery = handle_publish.encode_delivery

    # -- timers and closes -----------------------------------------------------------------

    def keepalive_tick(self, now: float) -> tuple[list[Event], float]:
        """The keepalive timer fired: (events, seconds until the next check). The limit is
        1.5 times the keepalive (MQTT-3.1.2-24); 0 seconds means no timer."""
        limit = self.keepalive * 1.5
        if limit <= 0 or self.state is State.CLOSED:
            return [], 0.0
        idle = now - self.last_rx
        if idle < limit:
            return [], limit - idle
        events: list[Event] = []
        if self.v5:
            events.append(Send(self.send(Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT))))
        events.append(Close(f"keepalive timeout after {idle:.1f}s"))
        return events, 0.0

    def connect_timed_out(self) -> list[Event]:
        if self.session is not None:
            return []
        return [Close("no CONNECT in time")]

    def unsupported_version(self, level: int) -> list[Event]:
        """A CONNECT of a protocol level we do not speak: answered in the format of the
        level it claims, as far as we know it (MQTT 5 reason code or 3.1.1 return code)."""
        code = (
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION
            if level == PROTOCOL_V5
            else ConnackCode311.UNACCEPTABLE_PROTOCOL_VERSION
        )
        return [Send(self.send(Connack(False, code))), Close(f"unsupported protocol level {level}")]

    def protocol_error(self, message: str, code: int) -> list[Event]:
        events: list[Event] = []
        if self.v5 and self.session is not None:
            events.append(Send(self.send(Disconnect(code))))
        events.append(Close(f"protocol error: {message}", logging.INFO, protocol_error=True))
        return events

    def server_close(self, reason_code: int) -> list[Event]:
        """The server ends the connection (shutdown, admin action, revoked rights)."""
        events: list[Event] = []
        if self.v5 and self.session is not None:
            events.append(Send(self.send(Disconnect(reason_code))))
        events.append(Close("closed by server"))
        return events

    def taken_over(self) -> list[Event]:
        events: list[Event] = []
        if self.v5:
            events.append(Send(self.send(Disconnect(ReasonCode.SESSION_TAKEN_OVER))))
        events.append(Close("session taken over by a new connection"))
        return events

    def close(self) -> None:
        self.state = State.CLOSED


_HANDLERS: dict[type, Callable[[MQTTConnection, Any, float], list[Event]]] = {
    Connect: handle_connect.handle_connect,
    Disconnect: handle_connect.handle_disconnect,
    Publish: handle_publish.handle_publish,
    PubAck: handle_acks.handle_puback,
    PubAckRun: handle_acks.handle_puback_run,
    PubRec: handle_acks.handle_pubrec,
    PubRel: handle_acks.handle_pubrel,
    PubComp: handle_acks.handle_pubcomp,
    PingReq: handle_acks.handle_pingreq,
    Subscribe: handle_subscribe.handle_subscribe,
    Unsubscribe: handle_subscribe.handle_unsubscribe,
    Auth: handle_auth.handle_auth,
}
