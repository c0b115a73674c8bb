"""One MQTT connection on asyncio: moves bytes between the socket and the state machine,
and turns packets into hub calls. One method per packet type (`_on_connect`,
`_on_publish`, ...), so the code for a packet is found by its name.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from pushwire.core.auth import AuthResult, Identity, Permissions
from pushwire.core.logthrottle import ThrottledLog
from pushwire.core.message import Message
from pushwire.core.pressure import MAX_WAIT as PRESSURE_MAX_WAIT
from pushwire.core.ratelimit import TokenBucket
from pushwire.core.session import Delivery, Session, Subscription
from pushwire.core.topics import TopicError, split_shared, validate_filter, validate_topic_name
from pushwire.engines.base import WriteError
from pushwire.mqtt.auth_link import AuthLink
from pushwire.mqtt.codec import (
    DecodeError,
    UnsupportedProtocolVersion,
    encode_publish_template,
    patch_publish,
)
from pushwire.mqtt.connection import MQTTConnection, ProtocolViolation, State
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    Auth,
    Connack,
    ConnackCode311,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)
from pushwire.mqtt.properties import forwarded
from pushwire.tls import certificate_username

if TYPE_CHECKING:
    from pushwire.mqtt.broker import MQTTBroker

log = logging.getLogger(__name__)
refusals = ThrottledLog(log)

# MQTT 5 session expiry value that means "never expires"
NEVER_EXPIRES = 0xFFFFFFFF
# how many topic aliases a v5 client may define towards the server
TOPIC_ALIAS_MAXIMUM = 64
# the most one read takes from a socket; a read that fills it means more is waiting, so the
# connection yields to the rest of the loop before reading again
READ_CHUNK_BYTES = 64 * 1024
READ_TURN_BYTES = READ_CHUNK_BYTES
# one read buffer for every connection of the process: the loop reads into it, and
# buffer_updated copies the bytes out at once, so idle connections hold no buffer
_READ_VIEW = memoryview(bytearray(READ_CHUNK_BYTES))
# CONNACK codes for a refused login, by AuthResult.reason
_REFUSAL_V5: dict[str, int] = {
    "bad_credentials": ReasonCode.BAD_USER_NAME_OR_PASSWORD,
    "not_authorized": ReasonCode.NOT_AUTHORIZED,
    "rate_limited": ReasonCode.CONNECTION_RATE_EXCEEDED,
}
_REFUSAL_V311: dict[str, int] = {
    "bad_credentials": ConnackCode311.BAD_USERNAME_OR_PASSWORD,
    "not_authorized": ConnackCode311.NOT_AUTHORIZED,
    "rate_limited": ConnackCode311.NOT_AUTHORIZED,
}
# bytes buffered towards a client before it counts as congested (asyncio's default is 64 KiB)
WRITE_BUFFER_HIGH = 256 * 1024
# receive maximum the server announces: QoS 1/2 publishes a client may have unacknowledged
SERVER_RECEIVE_MAXIMUM = 65535


class MQTTServerProtocol(asyncio.BufferedProtocol):
    """A client connection; also the `Link` its session sends through."""

    def __init__(self, broker: MQTTBroker) -> None:
        self.broker = broker
        self.hub = broker.hub
        self.conn = MQTTConnection(broker.settings.max_packet_size, TOPIC_ALIAS_MAXIMUM)
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.client_id = ""
        self.peer = "?"
        self.connected_at = time.time()  # wall clock, for the admin API's client list
        self.ip = "?"
        self.receive_maximum = 65535
        # MQTT 5 Maximum Packet Size the client declared (the push gateway sends a small
        # notice instead of a push that would not fit); None: no limit declared
        self.client_max_packet_size: int | None = None
        self.will: Will | None = None
        self.keepalive = 0
        self._last_rx = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0  # bytes in _out, not yet handed to the transport
        self._flush_scheduled = False
        self._paused = False
        self._closing = False
        self._refused = False  # over max_connections: answer CONNECT with a refusal
        self._slow_timer: asyncio.TimerHandle | None = None
        self.admitted_ip: str | None = None  # counted against max_connections_per_ip
        self._publish_bucket: TokenBucket | None = None
        self._throttled = False
        self._reading = True
        self._yielding = False
        self._backlog: list[Packet] = []  # packets held while throttled or authenticating
        self._auth_pending = False
        self._pressured = False
        self._pressure_timer: asyncio.TimerHandle | None = None
        self.identity: Identity | None = None
        self._auth_link: AuthLink | None = None  # MQTT 5 enhanced authentication (SCRAM)
        self.permissions: Permissions | None = None
        self._registered = False
        # acks held back until the journal they depend on is durable, kept in order
        # (sync future or None, encoded ack, the message whose storage it confirms, the
        # engine's failure mark when the ack was queued, the PUBLISH's receipt on the
        # monotonic clock or -1.0 when the ack is not a PUBACK/PUBREC to time)
        self._acks: deque[tuple[asyncio.Future[None] | None, bytes, Message | None, int, float]] = (
            deque()
        )
        self._awaited: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        ip = str(peer[0]) if isinstance(peer, tuple) else self.peer
        self.ip = ip
        refusal = self.broker.admit(ip)
        if refusal is not None:
            # refused before a byte is read: a flood costs one accept and one close
            self.hub.stats.connections_refused += 1
            self._closing = True
            refusals.log(logging.WARNING, ip, "refused connection from %s: %s", ip, refusal)
            self.transport.abort()
            return
        self.admitted_ip = ip
        rate = self.broker.settings.publish_rate_per_client
        self._publish_bucket = TokenBucket(rate, max(1.0, 2 * rate)) if rate > 0 else None
        # a subscriber may fall behind by this much before QoS 0 is dropped for it
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self._refused = not self.broker.register(self)
        self._registered = True
        loop = asyncio.get_running_loop()
        # a client that never finishes CONNECT is dropped (slowloris guard)
        self._timer = loop.call_later(self.broker.settings.connect_timeout, self._connect_timeout)

    # asyncio.BufferedProtocol: the loop reads into our buffer, so we choose how much one
    # read may take (uvloop would otherwise hand over up to 256 KiB per read)
    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW  # shared: each read is copied out before the next one starts

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ_VIEW[:nbytes]))

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if len(data) >= READ_TURN_BYTES and not self._yielding:
            # uvloop keeps reading a busy socket many times per loop iteration; one full
            # buffer per turn lets the writes this data causes reach subscribers before the
            # next read, instead of piling up (fan-in/fan-out under load)
            self._yielding = True
            self._sync_reading()
            asyncio.get_running_loop().call_soon(self._end_turn)
        self._last_rx = time.monotonic()
        self.hub.stats.bytes_received += len(data)
        try:
            packets = self.conn.receive_data(data)
        except UnsupportedProtocolVersion as exc:
            code = (
                ReasonCode.UNSUPPORTED_PROTOCOL_VERSION
                if exc.protocol_level == PROTOCOL_V5
                else ConnackCode311.UNACCEPTABLE_PROTOCOL_VERSION
            )
            self._write(self.conn.send(Connack(False, code)))
            self._abort(f"unsupported protocol level {exc.protocol_level}")
            return
        except DecodeError as exc:
            # act on what came complete before the fault, then close
            self._handle(exc.packets)
            if self.session is None and self.conn.v5 and not self._closing:
                self._send(Connack(False, exc.reason_code))  # a malformed v5 CONNECT
            self._protocol_error(str(exc), exc.reason_code)
            return
        self._handle(packets)

    def _handle(self, packets: list[Packet]) -> None:
        if self._backlog or self._held():
            self._backlog.extend(packets)  # keep order behind what is already waiting
            return
        self._run(packets)

    def _held(self) -> bool:
        """Packets wait while the client is throttled, its CONNECT is being checked, or a
        subscriber it publishes to needs to catch up."""
        return self._throttled or self._auth_pending or self._pressured

    def _hold_for_pressure(self) -> None:
        self._pressured = True
        self.hub.stats.publishers_held += 1
        self._sync_reading()
        self.hub.pressure.wait(self._pressure_gone)
        # never longer than MAX_WAIT: a subscriber may stop keeping up while we wait
        self._pressure_timer = asyncio.get_running_loop().call_later(
            PRESSURE_MAX_WAIT, self._pressure_gone
        )

    def _pressure_gone(self) -> None:
        if not self._pressured:
            return
        self._pressured = False
        if self._pressure_timer is not None:
            self._pressure_timer.cancel()
            self._pressure_timer = None
        # run on the next turn: the release may come from inside another connection's ack
        asyncio.get_running_loop().call_soon(self._release_held)

    def _run(self, packets: list[Packet]) -> None:
        bucket = self._publish_bucket
        for i, packet in enumerate(packets):
            if self._closing:
                return
            if bucket is not None and isinstance(packet, Publish) and not bucket.try_acquire():
                # over its publish rate: keep the rest for later and stop reading
                self._backlog.extend(packets[i:])
                self._throttle(bucket.retry_after())
                return
            try:
                self._dispatch(packet)
            except ProtocolViolation as exc:
                self._protocol_error(str(exc), exc.reason_code)
                return
            except Exception:
                # a bug must cost one connection, never the server
                log.exception("error handling %s from %s", type(packet).__name__, self.peer)
                self._protocol_error("internal error", ReasonCode.UNSPECIFIED_ERROR)
                return
            if self._auth_pending:
                self._backlog.extend(packets[i + 1 :])
                return
            if (
                self.hub.pressure.active
                and isinstance(packet, Publish)
                and (packet.qos or self.hub.store_held)
            ):
                # a subscriber that keeps up is behind, or the store's write backlog is
                # full: wait for it instead of making it drop (or growing memory)
                self._backlog.extend(packets[i + 1 :])
                self._hold_for_pressure()
                return

    def _sync_reading(self) -> None:
        """Read from the client unless something says wait: its CONNECT is being checked,
        it is over its publish rate, it is not reading what we send (symmetric
        backpressure), or it already had its turn in this loop iteration."""
        want = not (self._closing or self._held() or self._paused or self._yielding)
        if want != self._reading and self.transport is not None:
            self._reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _hold_reading(self) -> None:
        self._sync_reading()

    def _end_turn(self) -> None:
        self._yielding = False
        self._sync_reading()

    def _release_held(self) -> None:
        """Run what waited (throttle over, or CONNECT answered), then read again."""
        if self._closing or self._held():
            return
        backlog, self._backlog = self._backlog, []
        self._run(backlog)  # may hold again
        self._sync_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._registered:
            return  # refused in connection_made: nothing to undo
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None
        self.broker.unregister(self)
        self.broker.untrack_identity(self)
        session = self.session
        if session is None:
            return
        self.session = None
        self.hub.stats.clients_connected -= 1
        try:
            if self.will is not None and not self.broker.shutting_down:
                will, self.will = self.will, None
                self._publish_will(will, session)
        except Exception:
            # whatever the will hit, the session must still leave the hub
            log.exception("publishing the will of %s failed", self.client_id)
        finally:
            self.hub.disconnect(session, self)
            if self.broker.handover is not None:
                self.broker.handover.gone(session.client_id)

    def pause_writing(self) -> None:
        # the client is not reading: stop reading from it too (its acks and our answers
        # would otherwise pile up), drop QoS 0 for it, and give it a bounded time to recover
        self._paused = True
        self._sync_reading()
        self._slow_timer = asyncio.get_running_loop().call_later(
            self.broker.settings.slow_consumer_timeout, self._slow_consumer
        )

    def resume_writing(self) -> None:
        self._paused = False
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None
        self._sync_reading()
        if self.session is not None:
            self.session.pump()

    def _slow_consumer(self) -> None:
        self._slow_timer = None
        self.hub.stats.slow_consumers_disconnected += 1
        self._abort("slow consumer: send buffer full too long", logging.WARNING)
        if self.transport is not None:
            # close() would wait for the full buffer to drain; this peer is not reading
            self.transport.abort()

    # -- output --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is None or self._closing:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= WRITE_BUFFER_HIGH:
            # a burst (fan-out, retained messages on subscribe) goes to the transport now,
            # so its high-water mark (pause_writing -> writable() False) bounds it; else one
            # tick could pile up any number of bytes here
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        # one write per loop tick: a fan-out burst becomes one syscall per subscriber
        self._flush_scheduled = False
        if not self._out or self.transport is None:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        self._out_bytes = 0
        self.hub.stats.bytes_sent += len(data)
        if not self.transport.is_closing():
            self.transport.write(data)

    def _send(self, packet: Packet) -> None:
        self._write(self.conn.send(packet))

    def _abort(self, reason: str, level: int = logging.DEBUG) -> None:
        """Close after what is already written (CONNACK, DISCONNECT) has been sent."""
        if self._closing:
            return
        log.log(level, "closing %s (%s): %s", self.client_id or "-", self.peer, reason)
        self._flush()
        self._closing = True
        self.conn.close()
        if self.transport is not None:
            self.transport.close()

    def _protocol_error(self, reason: str, code: int) -> None:
        self.hub.stats.protocol_errors += 1
        if self.conn.v5 and self.conn.state is not State.AWAIT_CONNECT and self.session:
            self._send(Disconnect(code))
        self._abort(f"protocol error: {reason}", logging.INFO)

    def close(self, reason_code: int = ReasonCode.SERVER_SHUTTING_DOWN) -> None:
        """Server-initiated close (shutdown, admin action)."""
        if self.conn.v5 and self.session is not None:
            self._send(Disconnect(reason_code))
        self._abort("closed by server")

    # -- Link (what the session sends through) --------------------------------------------

    def writable(self) -> bool:
        return not self._paused and not self._closing

    def send_message(
        self, delivery: Delivery, dup: bool, wire_cache: dict[Any, Any] | None
    ) -> None:
        msg = delivery.message
        # the hub's fan-out passes a cache and observes the latency of all its sends at once
        observe = wire_cache is None
        props: dict[str, Any] = msg.properties if self.conn.v5 else {}
        per_delivery = self.conn.v5 and (delivery.subscription_ids or msg.expires_at is not None)
        if per_delivery:
            props = dict(props)
            if delivery.subscription_ids:
                props["subscription_identifier"] = list(delivery.subscription_ids)
            remaining = msg.remaining_expiry()
            if remaining is not None:
                props["message_expiry_interval"] = remaining
            wire_cache = None
        key = (self.conn.protocol_level, delivery.qos, delivery.retain)
        cached = wire_cache.get(key) if wire_cache is not None else None
        if cached is None:
            cached = encode_publish_template(
                Publish(msg.topic, msg.payload, delivery.qos, delivery.retain, False, None, props),
                self.conn.protocol_level,
            )
            if wire_cache is not None:
                wire_cache[key] = cached
        template, offset = cached
        if delivery.qos and delivery.packet_id is not None:
            self._write(patch_publish(template, offset, delivery.packet_id, dup))
        else:
            self._write(template)
        stats = self.hub.stats
        stats.messages_sent += 1
        if observe:
            stats.delivery_latency.observe(time.time() - msg.created_at)

    def send_release(self, packet_id: int) -> None:
        self._send(PubRel(packet_id))

    def close_taken_over(self) -> None:
        if self.conn.v5:
            self._send(Disconnect(ReasonCode.SESSION_TAKEN_OVER))
        self._abort("session taken over by a new connection")

    # -- keepalive -----------------------------------------------------------------------

    def _connect_timeout(self) -> None:
        self._timer = None
        if self.session is None:
            self._abort("no CONNECT in time")

    def _arm_keepalive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.keepalive > 0:
            # one timer per connection that fires once per period; activity in between only
            # updates a timestamp, so idle connections cost nothing per packet
            self._timer = asyncio.get_running_loop().call_later(
                self.keepalive * 1.5, self._check_keepalive
            )

    def _check_keepalive(self) -> None:
        limit = self.keepalive * 1.5
        idle = time.monotonic() - self._last_rx
        if idle >= limit:
            self._timer = None
            if self.conn.v5:
                self._send(Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT))
            self._abort(f"keepalive timeout after {idle:.1f}s")
            return
        self._timer = asyncio.get_running_loop().call_later(limit - idle, self._check_keepalive)

    # -- acks in order ---------------------------------------------------------------------

    def _ack(
        self,
        packet: Packet,
        durable: bool,
        message: Message | None = None,
        received: float = -1.0,
    ) -> None:
        """Send an ack now, or once the journal is durable; acks never overtake each other
        (MQTT-4.6.0-2). `message`: the published message the ack confirms; when the store
        refused it, the ack is withheld (see `_release_acks`). `received`: when the PUBLISH
        this acks arrived (time.monotonic()), for the publish-to-ack histogram."""
        data = self.conn.send(packet)
        wait = durable and self.hub.engine.durable
        if not wait and not self._acks:
            self._write(data)
            if received >= 0:
                self.hub.stats.publish_ack_latency.observe(time.monotonic() - received)
            return
        fut = self.hub.sync_future() if wait else None
        self._acks.append((fut, data, message, self.hub.engine.failure_mark(), received))
        if fut is not None and fut is not self._awaited:
            # many acks in one tick share one future: one callback releases them all
            self._awaited = fut
            fut.add_done_callback(self._release_acks)

    def _store_refused(self, message: Message | None, mark: int) -> bool:
        """Did the store refuse a write this ack vouches for: the message's, or one of this
        client's session (its QoS 2 packet ids, its queue) since the ack was queued?"""
        engine = self.hub.engine
        if message is not None and engine.write_failed(message):
            return True
        return bool(self.client_id) and engine.session_failed_since(self.client_id, mark)

    def _release_acks(self, _: asyncio.Future[None]) -> None:
        # one clock read for every ack this commit releases
        now = time.monotonic()
        latency = self.hub.stats.publish_ack_latency
        while self._acks:
            fut, data, message, mark, received = self._acks[0]
            if fut is not None:
                if not fut.done():
                    return
                error = None if fut.cancelled() else fut.exception()
                if isinstance(error, WriteError):
                    # a write of no message or session failed: not this ack's concern
                    log.warning("journal: %s", error)
                    error = None
                if fut.cancelled() or error is not None or self._store_refused(message, mark):
                    # not durable: withhold the ack; the client resends after reconnect.
                    # Only this client's: another client's failed write is not its own.
                    log.error("journal write failed; closing %s", self.client_id)
                    self._acks.clear()
                    self._abort("storage failure")
                    return
            self._acks.popleft()
            self._write(data)
            if received >= 0:
                latency.observe(now - received)

    # -- packets ---------------------------------------------------------------------------

    def _dispatch(self, packet: Packet) -> None:
        if self.session is None and not isinstance(packet, (Connect, Auth, Disconnect)):
            raise ProtocolViolation("only AUTH or DISCONNECT before CONNACK")
        if isinstance(packet, Publish):
            self._on_publish(packet)
        elif isinstance(packet, PubAck):
            if self.session is not None:
                self.session.acknowledge(packet.packet_id)
        elif isinstance(packet, PubRec):
            self._on_pubrec(packet)
        elif isinstance(packet, PubRel):
            self._on_pubrel(packet)
        elif isinstance(packet, PubComp):
            if self.session is not None:
                self.session.completed(packet.packet_id)
        elif isinstance(packet, Subscribe):
            self._on_subscribe(packet)
        elif isinstance(packet, Unsubscribe):
            self._on_unsubscribe(packet)
        elif isinstance(packet, PingReq):
            self._send(PingResp())
        elif isinstance(packet, Connect):
            self._on_connect(packet)
        elif isinstance(packet, Disconnect):
            self._on_disconnect(packet)
        elif isinstance(packet, Auth):
            if self._auth_link is None:
                raise ProtocolViolation("AUTH without an Authentication Method in CONNECT")
            self._auth_link.auth(packet)
        else:
            raise ProtocolViolation(f"unexpected {type(packet).__name__}")

    def _on_connect(self, p: Connect) -> None:
        v5 = p.protocol_level == PROTOCOL_V5
        if self._refused:
            self.hub.stats.connections_refused += 1
            code = ReasonCode.SERVER_BUSY if v5 else ConnackCode311.SERVER_UNAVAILABLE
            self._send(Connack(False, code))
            self._abort("max_connections reached")
            return
        if p.will is not None:
            try:
                validate_topic_name(p.will.topic, self.broker.settings.max_topic_levels)
            except TopicError as exc:
                if v5:
                    self._send(Connack(False, ReasonCode.TOPIC_NAME_INVALID))
                self._abort(f"invalid will topic: {exc}", logging.INFO)
                return
        client_id = p.client_id
        assigned = False
        if not client_id:
            if not v5 and not p.clean_start:
                # MQTT-3.1.3-8: a persistent session needs a client-chosen id
                self._send(Connack(False, ConnackCode311.IDENTIFIER_REJECTED))
                self._abort("empty client id with clean session 0")
                return
            client_id = f"pushwire-{uuid.uuid4().hex}"
            assigned = True
        self._authenticate(p, client_id, assigned)

    def _authenticate(self, p: Connect, client_id: str, assigned: bool) -> None:
        if "authentication_method" in p.properties:
            self._auth_link = AuthLink(self)
            self._auth_link.connect(p, client_id, assigned)
            return
        auth = self.broker.auth
        ip = self.ip
        if p.username is None and p.password is None:
            cert_user = self._certificate_username()
            result = (
                auth.authenticate_certificate(cert_user, ip)
                if cert_user is not None
                else auth.admit_anonymous(ip)
            )
            self._connect_authenticated(p, client_id, assigned, result)
            return
        # password checks are slow by design (argon2id, on a thread): hold the packets
        # that follow CONNECT until the answer is in
        self._auth_pending = True
        self._hold_reading()
        task = asyncio.ensure_future(
            auth.authenticate_password(p.username, p.password, ip, client_id)
        )

        def done(t: asyncio.Future[AuthResult]) -> None:
            self._auth_pending = False
            if self._closing:
                return
            if t.cancelled() or t.exception() is not None:
                log.error("authentication failed with an error for %s", self.peer)
                result = AuthResult(None, "not_authorized", "authentication error")
            else:
                result = t.result()
            self._connect_authenticated(p, client_id, assigned, result)
            self._flush()
            self._release_held()

        task.add_done_callback(done)

    def _certificate_username(self) -> str | None:
        if self.broker.settings.tls_client_auth == "none" or self.transport is None:
            return None
        return certificate_username(self.transport.get_extra_info("peercert"))

    def _connect_authenticated(
        self, p: Connect, client_id: str, assigned: bool, result: AuthResult
    ) -> None:
        v5 = p.protocol_level == PROTOCOL_V5
        if not result.ok or result.identity is None:
            code = _REFUSAL_V5[result.reason] if v5 else _REFUSAL_V311[result.reason]
            self._send(Connack(False, code))
            self._abort(f"connect refused: {result.message}", logging.INFO)
            return
        if not self.broker.admission.admit_client_id(client_id):
            # one client id reconnecting in a loop: slowed without touching its neighbours
            self.hub.stats.connections_refused += 1
            code = ReasonCode.CONNECTION_RATE_EXCEEDED if v5 else ConnackCode311.SERVER_UNAVAILABLE
            self._send(Connack(False, code))
            self._abort(f"connect rate of client id {client_id!r}", logging.INFO)
            return
        self.identity = result.identity
        self.permissions = self.broker.auth.permissions(result.identity, client_id)
        if p.will is not None and not self.permissions.can_publish(p.will.topic):
            if v5:
                self._send(Connack(False, ReasonCode.NOT_AUTHORIZED))
            self._abort("will topic not authorized", logging.INFO)
            return
        if v5:
            expiry = p.properties.get("session_expiry_interval", 0)
            expiry_interval: int | None = None if expiry == NEVER_EXPIRES else expiry
            self.receive_maximum = p.properties.get("receive_maximum", 65535)
            self.client_max_packet_size = p.properties.get("maximum_packet_size")
        else:
            expiry_interval = 0 if p.clean_start else None
        self.client_id = client_id
        self.will = p.will
        self.keepalive = p.keepalive
        props: dict[str, Any] = {}
        if v5:
            max_keepalive = self.broker.settings.max_keepalive
            if self.keepalive > max_keepalive:
                self.keepalive = max_keepalive
                props["server_keep_alive"] = max_keepalive
            if assigned:
                props["assigned_client_identifier"] = client_id
            props["receive_maximum"] = SERVER_RECEIVE_MAXIMUM
            props["topic_alias_maximum"] = TOPIC_ALIAS_MAXIMUM
            props["maximum_packet_size"] = self.broker.settings.max_packet_size
            if self._auth_link is not None:
                props.update(self._auth_link.connack_properties())
        handover = self.broker.handover
        if handover is not None and client_id not in self.hub.sessions:
            # engine=redis: another node may hold this client id (mqtt/handover.py); take it,
            # with its session, before answering. Packets after CONNECT wait meanwhile.
            self._auth_pending = True
            self._hold_reading()
            claim = asyncio.ensure_future(handover.claim(client_id))

            def claimed(t: asyncio.Future[bool]) -> None:
                self._auth_pending = False
                if self._closing:
                    handover.gone(client_id)  # the client left meanwhile: no lock for nothing
                    return
                if t.cancelled() or t.exception() is not None or not t.result():
                    if t.done() and not t.cancelled() and t.exception() is not None:
                        log.error(
                            "taking client %r from its node failed: %s", client_id, t.exception()
                        )
                    code = (
                        ReasonCode.SERVER_UNAVAILABLE if v5 else ConnackCode311.SERVER_UNAVAILABLE
                    )
                    self._send(Connack(False, code))
                    self._abort(f"client id {client_id!r} not handed over", logging.INFO)
                    return
                self._open_session(p, client_id, expiry_interval, props)
                self._flush()
                self._release_held()

            claim.add_done_callback(claimed)
            return
        self._open_session(p, client_id, expiry_interval, props)

    def _open_session(
        self, p: Connect, client_id: str, expiry_interval: int | None, props: dict[str, Any]
    ) -> None:
        assert self.identity is not None
        session, present = self.hub.connect(
            client_id,
            p.clean_start,
            p.protocol_level,
            expiry_interval,
            self,
            owner=self.identity.username,
            permissions=self.permissions,
        )
        self.session = session
        self.broker.track_identity(self)
        stats = self.hub.stats
        stats.clients_connected += 1
        stats.clients_maximum = max(stats.clients_maximum, stats.clients_connected)
        self._send(Connack(present, 0, props))
        self._arm_keepalive()
        # resend what was unacknowledged, then the queue, after CONNACK (MQTT-4.4.0-1)
        session.attach(self)
        if self.broker.handover is not None:
            self.broker.handover.connected(client_id)

    def _on_disconnect(self, p: Disconnect) -> None:
        session = self.session
        if self.conn.v5 and session is not None:
            expiry = p.properties.get("session_expiry_interval")
            if expiry is not None:
                if session.expiry_interval == 0 and expiry != 0:
                    raise ProtocolViolation("session expiry set on DISCONNECT after 0")
                session.expiry_interval = None if expiry == NEVER_EXPIRES else expiry
        if p.reason_code != ReasonCode.DISCONNECT_WITH_WILL:
            self.will = None  # a normal DISCONNECT discards the will (MQTT-3.14.4-3)
        self._abort("client disconnected")

    def _publish_will(self, will: Will, session: Session) -> None:
        if self.permissions is not None and not self.permissions.can_publish(will.topic):
            return  # rights may have changed since CONNECT
        props = forwarded(will.properties)
        expiry = will.properties.get("message_expiry_interval")
        msg = Message(
            will.topic,
            will.payload,
            will.qos,
            will.retain,
            props,
            expires_at=time.time() + expiry if expiry is not None else None,
            origin=session.client_id,
        )
        delay = will.properties.get("will_delay_interval", 0)
        if delay:
            self.broker.schedule_will(session, msg, delay)
        else:
            self.hub.publish(msg)

    def _on_publish(self, p: Publish) -> None:
        received = time.monotonic() if p.qos else -1.0
        session = self.session
        assert session is not None
        # the codec already refused wildcards, U+0000 and bad UTF-8 in the topic, and the
        # connection resolved MQTT 5 aliases, so the name is valid here but for its depth
        max_levels = self.broker.settings.max_topic_levels
        if p.topic.count("/") >= max_levels:
            self._refuse_deep_topic(p, max_levels)
            return
        qos = p.qos
        if qos == 2 and p.packet_id is not None and session.inbound_qos2_seen(p.packet_id):
            # a resend before PUBREL: the message was routed already (exactly once)
            self._ack(PubRec(p.packet_id), False, None, received)
            return
        journaled = False
        published: Message | None = None
        allowed = self.permissions is not None and self.permissions.can_publish(p.topic)
        if not allowed:
            self.hub.stats.publish_denied += 1
            log.debug("publish to %r denied for %s", p.topic, self.client_id)
        elif not p.topic.startswith("$SYS"):
            expiry = p.properties.get("message_expiry_interval") if p.properties else None
            msg = Message(
                p.topic,
                p.payload,
                qos,
                p.retain,
                forwarded(p.properties),
                expires_at=time.time() + expiry if expiry is not None else None,
                origin=session.client_id,
            )
            journaled = self.hub.publish(msg)
            published = msg
        if qos == 0:
            return
        assert p.packet_id is not None
        denied = 0 if allowed or not self.conn.v5 else ReasonCode.NOT_AUTHORIZED
        if published is not None and self.conn.v5 and self.hub.quota_exceeded:
            denied = ReasonCode.QUOTA_EXCEEDED  # every matching queue was full (docs/queues.md)
        if qos == 1:
            self._ack(PubAck(p.packet_id, denied), journaled, published, received)
        elif denied:
            # a failed PUBREC ends the flow
            self._ack(PubRec(p.packet_id, denied), False, None, received)
        else:
            session.inbound_qos2_add(p.packet_id)
            self._ack(PubRec(p.packet_id), journaled or session.persistent, published, received)

    def _refuse_deep_topic(self, p: Publish, max_levels: int) -> None:
        """More levels than max_topic_levels: MQTT 5 answers 0x90 Topic Name invalid (in the
        PUBACK/PUBREC, so the connection lives on; a QoS 0 publish has no ack, so it gets
        DISCONNECT 0x90), MQTT 3.1.1 has no way to say it and closes."""
        self.hub.stats.publish_denied += 1
        reason = f"topic has more than {max_levels} levels"
        if not self.conn.v5:
            self._abort(reason, logging.INFO)
        elif p.qos == 1 and p.packet_id is not None:
            self._ack(PubAck(p.packet_id, ReasonCode.TOPIC_NAME_INVALID), False)
        elif p.qos == 2 and p.packet_id is not None:
            self._ack(PubRec(p.packet_id, ReasonCode.TOPIC_NAME_INVALID), False)
        else:
            self._send(Disconnect(ReasonCode.TOPIC_NAME_INVALID))
            self._abort(reason, logging.INFO)

    def _throttle(self, delay: float) -> None:
        """Over its publish rate: stop reading from this client for a while. TCP pushes
        back on it; nothing it sent is dropped, and other clients are not slowed."""
        self._throttled = True
        self.hub.stats.publish_throttled += 1
        self._hold_reading()
        asyncio.get_running_loop().call_later(max(delay, 0.001), self._unthrottle)

    def _unthrottle(self) -> None:
        self._throttled = False
        self._release_held()

    def _on_pubrec(self, p: PubRec) -> None:
        session = self.session
        assert session is not None
        if session.received(p.packet_id):
            self._send(PubRel(p.packet_id))
        elif self.conn.v5:
            self._send(PubRel(p.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))
        else:
            self._send(PubRel(p.packet_id))

    def _on_pubrel(self, p: PubRel) -> None:
        session = self.session
        assert session is not None
        found = session.inbound_qos2_release(p.packet_id)
        code = 0 if found or not self.conn.v5 else ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
        # the id must be forgotten durably before PUBCOMP, or a reused id would be taken
        # for a duplicate after a crash
        self._ack(PubComp(p.packet_id, code), found and session.persistent)

    def _on_subscribe(self, p: Subscribe) -> None:
        session = self.session
        assert session is not None
        v5 = self.conn.v5
        sub_id = p.properties.get("subscription_identifier") if v5 else None
        codes: list[int] = []
        added: list[tuple[Subscription, bool]] = []
        for flt, options in p.subscriptions:
            try:
                validate_filter(flt, self.broker.settings.max_topic_levels)
                group, _ = split_shared(flt)
            except TopicError as exc:
                # the filter may be 64 KB: its head is enough to recognise it in the log
                log.info("refused filter %r from %s: %s", flt[:100], self.client_id, exc)
                codes.append(ReasonCode.TOPIC_FILTER_INVALID if v5 else 0x80)
                continue
            if group is not None and v5 and options.no_local:
                raise ProtocolViolation("no local on a shared subscription (MQTT-3.8.3-4)")
            if self.permissions is None or not self.permissions.can_subscribe(flt):
                log.info("subscription %r denied for %s", flt, self.client_id)
                codes.append(ReasonCode.NOT_AUTHORIZED if v5 else 0x80)
                continue
            if (
                flt not in session.subscriptions
                and len(session.subscriptions) >= self.broker.settings.max_subscriptions_per_client
            ):
                codes.append(ReasonCode.QUOTA_EXCEEDED if v5 else 0x80)
                continue
            sub = Subscription(flt, options, sub_id)
            added.append((sub, self.hub.subscribe(session, sub)))
            codes.append(min(options.qos, 2))
        self._send(Suback(p.packet_id, codes))
        # retained messages follow the SUBACK
        for sub, new in added:
            self.hub.send_retained(session, sub, new)

    def _on_unsubscribe(self, p: Unsubscribe) -> None:
        session = self.session
        assert session is not None
        codes: list[int] = [
            ReasonCode.SUCCESS
            if self.hub.unsubscribe(session, flt)
            else ReasonCode.NO_SUBSCRIPTION_EXISTED
            for flt in p.filters
        ]
        self._send(Unsuback(p.packet_id, codes if self.conn.v5 else []))
