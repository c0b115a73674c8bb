"""The MQTT protocol machine (sans-IO): bytes and timer ticks in, events and bytes out.

Like h11's `_connection.py`, it owns no socket, no event loop and no clock: the glue
(`protocol.py` and its mixins) feeds it bytes with `receive_data`, hands each checked
packet to `handle`, and acts on the events it returns (`events.py`). Every rule of the
protocol lives here or in the handler of its packet family, as in mosquitto
(docs/mqtt-machine.md maps each rule to its function):

- `handle_connect.py`: CONNECT and DISCONNECT, client-id assignment, refusal codes per
  version, the keepalive clamp, CONNACK properties, session expiry at DISCONNECT, will delay;
- `handle_publish.py`: inbound PUBLISH (topic aliases, depth, ACL, the inbound QoS 2 table,
  Receive Maximum) and outbound PUBLISH encoding (encode once, Maximum Packet Size, aliases);
- `handle_subscribe.py`: SUBSCRIBE and UNSUBSCRIBE;
- `handle_acks.py`: PUBACK, PUBREC, PUBREL, PUBCOMP and PINGREQ;
- `handle_auth.py`: AUTH (enhanced authentication; the SCRAM exchange is enhanced_auth.py).

Entry points for the glue: `receive_data` (and `decode_failed` when it raises), `handle`,
`check_login`, `start_enhanced_auth`, `accept`, `refuse`, `quota_exceeded`, `unsuback`,
`pubrel_for`, `ack_written`, `encode_delivery`, `tick` (the one timer, due at `deadline`:
the CONNECT deadline, an AUTH challenge's, the keepalive check), `take_will`,
`protocol_error`, `server_close`, `taken_over`, `send`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from pushwire.core.stats import Stats
from pushwire.mqtt import handle_acks, handle_auth, handle_connect, handle_publish, handle_subscribe
from pushwire.mqtt.codec.connect import decode_lone_connect
from pushwire.mqtt.codec.decoder import Decoder
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.codec.errors import DecodeError, PacketTooLarge, UnsupportedProtocolVersion
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
    from collections.abc import Callable

    from pushwire.config import Settings
    from pushwire.core.identity import AuthResult
    from pushwire.mqtt.enhanced_auth import EnhancedAuth, ScramAuthority

# control packet type of CONNECT (the high nibble of the first byte)
_CONNECT_TYPE = 1
_CONNECT_BYTE0 = _CONNECT_TYPE << 4  # a CONNECT's first byte (its flags must be 0)


# what a CONNECT's variable header starts with: the protocol name "MQTT"
_PROTOCOL_NAME = b"\x00\x04MQTT"


def _claimed_level(data: bytes, default: int) -> int:
    """The protocol level (4 or 5) a CONNECT at the start of `data` claims, read past its
    fixed header without decoding the rest; `default` when it claims none."""
    pos = 1
    while pos < 5 and pos < len(data) and data[pos] & 0x80:
        pos += 1  # the remaining length is a variable byte integer of 1-4 bytes
    pos += 1
    if data[pos : pos + 6] != _PROTOCOL_NAME or len(data) <= pos + 6:
        return default
    level = data[pos + 6]
    return level if level in (PROTOCOL_V311, PROTOCOL_V5) else default


class State(enum.Enum):
    AWAIT_CONNECT = "await-connect"
    CONNECTED = "connected"
    CLOSED = "closed"


# the states as module globals for the checks made on every read: `State.CLOSED` is a
# global and an attribute lookup on the enum class (~70 ns), `_CLOSED` only the global
_AWAIT_CONNECT = State.AWAIT_CONNECT
_CONNECTED = State.CONNECTED
_CLOSED = State.CLOSED

# a DISCONNECT without a body (reason 0, no properties, at either level): how a clean
# client says goodbye, in a read of its own
_BARE_DISCONNECT = b"\xe0\x00"


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
    connect_timeout: float = 10.0  # seconds from the socket's open to CONNECT
    auth_timeout: float = 10.0  # seconds a client has to answer an AUTH challenge

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
            connect_timeout=s.connect_timeout,
            auth_timeout=s.auth_timeout,
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
    # Starting values that most connections never change (a connect storm's CONNECT and
    # DISCONNECT set none of them) are class attributes, set on the instance only when
    # they change: fewer stores per connection, and a smaller instance dict.
    protocol_level = PROTOCOL_V311
    # set by the glue when the server is over max_connections: CONNECT is refused
    over_capacity = False
    # known once CONNECT is accepted
    client_id = ""
    will: Will | None = None
    keepalive = 0
    session: SessionView | None = None
    rights: Rights | None = None
    client_receive_maximum = 65535
    client_max_packet_size: int | None = None  # None: the client set no limit
    client_topic_alias_maximum = 0
    # inbound QoS 1/2 flows whose final ack is not yet written (Receive Maximum)
    inbound_open = 0
    auth_deadline = 0.0  # an AUTH challenge must be answered by then
    # MQTT 5 enhanced authentication (handle_auth.py), when CONNECT named a method
    enhanced_auth: EnhancedAuth | None = None
    pending_connect: ConnectIn | None = None  # CONNECT awaiting the exchange
    # server-final-message for the CONNACK (replaced, never changed in place)
    auth_connack: Mapping[str, Any] = MappingProxyType({})

    # no bytes yet: the first one must start a CONNECT (MQTT-3.1.0-1)
    _first_byte_seen = False
    last_rx = 0.0  # monotonic time of the last bytes received
    # made at the first read that is not one lone CONNECT (`_make_decoder`): a connect
    # storm's connections decode CONNECT without one and DISCONNECT by its bytes
    _decoder: Decoder | None = None

    def __init__(
        self, limits: Limits | None = None, stats: Stats | None = None, now: float = 0.0
    ) -> None:
        """`now`: when the socket opened (monotonic); CONNECT is due `connect_timeout`
        later (a client that never finishes CONNECT is dropped, the slowloris guard)."""
        self.limits = limits = limits or Limits()
        self.stats = stats if stats is not None else Stats()
        self.state = _AWAIT_CONNECT
        # when `tick` is due next (monotonic; 0: never): the glue runs one timer for it,
        # and re-arms after `accept` and an `AuthTimer` event
        self.deadline = self._connect_deadline = now + limits.connect_timeout

    # the topic-alias tables, made on first use (MQTT 5 clients that use aliases only)
    @cached_property
    def _aliases(self) -> dict[int, str]:
        """Inbound topic aliases the client set."""
        return {}

    @cached_property
    def out_aliases(self) -> dict[str, int]:
        """Outbound topic aliases: topic -> alias, least recently used first."""
        return {}

    def _make_decoder(self) -> Decoder:
        decoder = self._decoder = Decoder(
            max_packet_size=self.limits.max_packet_size, server_side=True, ack_runs=True
        )
        if self.protocol_level != decoder.protocol_level:
            decoder.protocol_level = self.protocol_level  # a lone CONNECT announced it
        return decoder

    @property
    def v5(self) -> bool:
        return self.protocol_level == PROTOCOL_V5

    # -- bytes in --------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float = 0.0) -> list[Packet]:
        """Decode and check order; raises DecodeError (or ProtocolViolation) on the first
        fault. The error's `packets` holds the checked packets that came before the fault,
        so the caller can still act on them (a PUBLISH followed by garbage is delivered)."""
        if self.state is _CLOSED:
            return []
        self.last_rx = now
        decoder = self._decoder
        if (
            data == _BARE_DISCONNECT
            and self.state is _CONNECTED
            and (decoder is None or decoder.idle)
        ):
            # what feed and _check give for it, without the decoder (connect storms)
            self.state = _CLOSED  # nothing after DISCONNECT counts (MQTT-3.14.4-1/2)
            return [Disconnect()]
        if decoder is None:
            # no decoder, awaiting CONNECT: this is the first read
            if self.state is _AWAIT_CONNECT and data and data[0] == _CONNECT_BYTE0:
                connect = decode_lone_connect(data, self.limits.max_packet_size)
                if connect is not None:
                    # what feed and _check give for it, without a decoder
                    self.protocol_level = connect.protocol_level
                    self.state = _CONNECTED
                    return [connect]
            decoder = self._make_decoder()
        if self.state is _AWAIT_CONNECT and not self._first_byte_seen and data:
            self._first_byte_seen = True
            if data[0] >> 4 != _CONNECT_TYPE:
                # MQTT-3.1.0-1: judged on the first byte, so a partial packet (or one that
                # claims a large body and never sends it) cannot hold the socket open
                self.state = _CLOSED
                raise ProtocolViolation("first packet must be CONNECT")
        try:
            packets = decoder.feed(data)
        except DecodeError as exc:
            if self.state is _AWAIT_CONNECT:
                # a CONNECT that was readable up to its level: answer at that level; one
                # refused for its size alone still shows its level in the first bytes
                self.protocol_level = decoder.protocol_level
                if isinstance(exc, PacketTooLarge) and not exc.packets:
                    self.protocol_level = _claimed_level(data, self.protocol_level)
            exc.packets = self._check(exc.packets)
            self.state = _CLOSED
            raise
        return self._check(packets)

    def _check(self, packets: list[Packet]) -> list[Packet]:
        for i, packet in enumerate(packets):
            try:
                if self.state is _AWAIT_CONNECT:
                    if not isinstance(packet, Connect):
                        raise ProtocolViolation("first packet must be CONNECT")
                    self.protocol_level = packet.protocol_level
                    self.state = _CONNECTED
                elif isinstance(packet, Connect):
                    raise ProtocolViolation("second CONNECT on one connection")
                elif isinstance(packet, Publish) and self.protocol_level == PROTOCOL_V5:
                    handle_publish.resolve_alias(self._aliases, self.limits, packet)
                elif isinstance(packet, Disconnect):
                    # nothing after DISCONNECT counts (MQTT-3.14.4-1/2)
                    self.state = _CLOSED
                    return packets if i + 1 == len(packets) else packets[: i + 1]
            except ProtocolViolation as exc:
                self.state = _CLOSED
                exc.packets = packets[:i]
                raise
        return packets

    # -- the direct path of a CONNECT or DISCONNECT read alone (no event objects) ----------

    def connect_request(self, packet: Connect) -> ConnectIn | list[Event]:
        """What `handle` does for a checked CONNECT, without the event list: the request
        to authenticate (the one `ConnectIn`), or the refusal to act on."""
        return handle_connect.connect_request(self, packet)

    def disconnect(self, packet: Disconnect) -> str:
        """What `handle` does for a checked DISCONNECT (raises ProtocolViolation), without
        the event list: the reason to close with, as the `Close` it would return."""
        handle_connect.disconnect(self, packet)
        return handle_connect.DISCONNECTED

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
        """The AUTH challenge went unanswered for `auth_timeout` (`tick` calls this)."""
        return handle_auth.timed_out(self)

    def refuse(self, reason: str, message: str) -> list[Event]:
        """Refuse the CONNECT; reason is an AuthResult reason or "server_busy"."""
        return handle_connect.refuse(self, reason, message)

    def accept(self, request: ConnectIn, session: SessionView, present: bool) -> bytes:
        """The CONNACK for an accepted CONNECT, bound to `session`."""
        connack = handle_connect.accept(self, request, session, present)
        # the keepalive check joins the deadline; an earlier one (the CONNECT deadline)
        # stays, and `tick` then finds the keepalive due later
        if self.keepalive:
            due = self.last_rx + self.keepalive * 1.5
            if not self.deadline or due < self.deadline:
                self.deadline = due
        return connack

    # -- answers to the glue's hub calls ---------------------------------------------------

    def quota_exceeded(self, ev: PublishIn) -> tuple[bytes, bool]:
        """The ack of `ev` when the hub refused the message for every subscriber: (ack
        bytes, releases). MQTT 5 says so (0x97); 3.1.1 has no code for it, so the ack of
        `ev` stands."""
        if not self.v5:
            assert ev.ack is not None
            return ev.ack, ev.releases
        return handle_publish.quota_exceeded(self, ev)

    def store_failed(self, ev: PublishIn) -> tuple[bytes, bool] | None:
        """The ack of `ev` when the store did not take a write it vouches for (engine=redis
        with Redis unreachable, a failed write): MQTT 5 answers 0x80 Unspecified error
        (PUBACK/PUBREC have no code closer to it; 0x89 Server busy is DISCONNECT-only), so
        the connection lives on; None for 3.1.1, which has no failure ack: close instead."""
        if not self.v5:
            return None
        return handle_publish.failed_ack(self, ev, ReasonCode.UNSPECIFIED_ERROR)

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

    def tick(self, now: float) -> list[Event]:
        """The timer fired at `now` (at or after `deadline`): close what timed out (no
        CONNECT, an unanswered AUTH challenge, a keepalive of 1.5 periods without a byte,
        MQTT-3.1.2-24) and set `deadline` to the next check."""
        self.deadline = 0.0
        if self.state is _CLOSED:
            return []
        if self.auth_deadline and now >= self.auth_deadline:
            self.auth_deadline = 0.0
            events = handle_auth.timed_out(self)
            if events:
                return events
        if self.session is None:
            if now >= self._connect_deadline:
                return [Close("no CONNECT in time")]
            due = self._connect_deadline
        else:
            due = self._keepalive_due()
            if due and now >= due:
                events = []
                if self.v5:
                    events.append(Send(self.send(Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT))))
                events.append(Close(f"keepalive timeout after {now - self.last_rx:.1f}s"))
                return events
        auth_due = self.auth_deadline
        self.deadline = auth_due if auth_due and (not due or auth_due < due) else due
        return []

    def _keepalive_due(self) -> float:
        limit = self.keepalive * 1.5
        return self.last_rx + limit if limit > 0 else 0.0

    def take_will(self, at_once: bool) -> tuple[Will, int] | None:
        """The connection ended without DISCONNECT (or the server is stopping): the will
        to publish and its delay in seconds, once; None when there is none or the rights
        to its topic were lost since CONNECT. `at_once`: the server cannot wait."""
        will, session = self.will, self.session
        if will is None or session is None:
            return None
        self.will = None
        if self.rights is not None and not self.rights.can_publish(will.topic):
            return None
        return will, 0 if at_once else handle_connect.will_delay(will, session.expiry_interval)

    def decode_failed(self, exc: DecodeError) -> list[Event]:
        """`receive_data` raised `exc`: what to send before closing, to be called once the
        packets that came complete before the fault (`exc.packets`) were handled.

        Before CONNACK an MQTT 5 client gets a CONNACK with the fault's reason code (0x81
        Malformed, 0x82 Protocol Error, 0x95 Packet too large ...); a 3.1.1 client gets
        none, as a CONNECT that does not conform is closed without one (MQTT-3.1.4-1).
        After CONNACK an MQTT 5 client gets DISCONNECT with the code."""
        if isinstance(exc, UnsupportedProtocolVersion):
            return self.unsupported_version(exc.protocol_level)
        if self.v5 and self.session is None:
            return [
                Send(self.send(Connack(False, exc.reason_code))),
                Close(f"protocol error: {exc}", logging.INFO, protocol_error=True),
            ]
        return self.protocol_error(str(exc), exc.reason_code)

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
        self.state = _CLOSED


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
