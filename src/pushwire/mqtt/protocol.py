"""One MQTT connection on asyncio: moves bytes between the socket and the protocol
machine (`connection.py`), runs its timers, and turns the machine's events into hub calls.

No protocol rule lives here; what is left is I/O: one write per loop tick, read pausing
(publish rate, pressure from slow subscribers, a CONNECT being authenticated), the order
of acks that wait for the store, and the will at the end of a connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, cast

from pushwire.core.auth import AuthResult, Identity, Permissions
from pushwire.core.logthrottle import ThrottledLog
from pushwire.core.message import Message
from pushwire.core.ratelimit import TokenBucket
from pushwire.core.session import Delivery, Session
from pushwire.mqtt.acks import AckQueue
from pushwire.mqtt.codec import DecodeError, UnsupportedProtocolVersion
from pushwire.mqtt.connection import MQTTConnection, ProtocolViolation
from pushwire.mqtt.events import (
    Authenticated,
    AuthTimer,
    Close,
    ConnectIn,
    Event,
    OutboundAck,
    PublishIn,
    Send,
    SendAck,
    SubscribeIn,
    UnsubscribeIn,
)
from pushwire.mqtt.handle_auth import wants_enhanced_auth
from pushwire.mqtt.handle_connect import will_delay
from pushwire.mqtt.packets import (
    Connack,
    Packet,
    Publish,
    PubRel,
    ReasonCode,
)
from pushwire.mqtt.properties import forwarded
from pushwire.mqtt.reading import ReadControl
from pushwire.mqtt.wills import will_message
from pushwire.tls import certificate_username

if TYPE_CHECKING:
    from pushwire.mqtt.broker import MQTTBroker
    from pushwire.mqtt.handover import SessionHandover

log = logging.getLogger(__name__)
refusals = ThrottledLog(log)

# the most one read takes from a socket; a read that fills it means more is waiting, so the
# connection yields to the rest of the loop before reading again
READ_CHUNK_BYTES = 64 * 1024
READ_TURN_BYTES = READ_CHUNK_BYTES
# one read buffer for every connection of the process: the loop reads into it, and
# buffer_updated copies the bytes out at once, so idle connections hold no buffer
_READ_VIEW = memoryview(bytearray(READ_CHUNK_BYTES))
# bytes buffered towards a client before it counts as congested (asyncio's default is 64 KiB)
WRITE_BUFFER_HIGH = 256 * 1024


class MQTTServerProtocol(ReadControl, asyncio.BufferedProtocol):
    """A client connection; also the `Link` its session sends through."""

    # What a connection starts with. Immutable starting values are class attributes, set on
    # the instance only when they change: a connect storm creates thousands of these a
    # second, most of which end after CONNECT and DISCONNECT.
    transport: asyncio.Transport | None = None
    session: Session | None = None
    _peername: Any = "?"  # the transport's "peername"
    ip = "?"
    # one timer per connection: the CONNECT deadline, then the keepalive check
    _timer: asyncio.TimerHandle | None = None
    _timer_due = 0.0  # when _timer fires, on the loop's clock
    _out_bytes = 0  # bytes in _out, not yet handed to the transport
    _flush_scheduled = False
    _paused = False
    _closing = False
    _slow_timer: asyncio.TimerHandle | None = None
    _auth_timer: asyncio.TimerHandle | None = None  # enhanced authentication
    admitted_ip: str | None = None  # counted against max_connections_per_ip
    _publish_bucket: TokenBucket | None = None
    _throttled = False
    _reading = True
    _yielding = False
    # packets held while throttled, authenticating or under pressure: those from
    # _backlog_at on wait (an index, not a slice: a hold under pressure often lets one
    # packet through at a time, and slicing the rest off each time was quadratic)
    _backlog_at = 0
    _auth_pending = False
    _pressured = False
    _pressure_timer: asyncio.TimerHandle | None = None
    identity: Identity | None = None
    permissions: Permissions | None = None
    _registered = False

    def __init__(self, broker: MQTTBroker) -> None:
        self.broker = broker
        self.hub = broker.hub
        self.conn = MQTTConnection(broker.limits, broker.hub.stats)
        self.connected_at = time.time()  # wall clock, for the admin API's client list
        # asyncio.get_running_loop() costs a getpid() syscall per call: the listener's loop
        self._loop = broker.loop or asyncio.get_running_loop()
        self._out: list[bytes] = []
        self._backlog: list[Packet] = []
        self._acks = AckQueue(self)

    # -- what others read of the connection -------------------------------------------------

    @property
    def peer(self) -> str:
        """ "ip:port" of the client, for logs and the admin API (formatted when asked)."""
        peer = self._peername
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    @property
    def client_id(self) -> str:
        return self.conn.client_id

    @property
    def receive_maximum(self) -> int:
        """The client's Receive Maximum (Link): inflight deliveries it accepts."""
        return self.conn.client_receive_maximum

    @receive_maximum.setter
    def receive_maximum(self, value: int) -> None:
        self.conn.client_receive_maximum = value

    @property
    def client_max_packet_size(self) -> int | None:
        """MQTT 5 Maximum Packet Size the client declared (the push gateway sends a small
        notice instead of a push that would not fit); None: no limit declared."""
        return self.conn.client_max_packet_size

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        peer = self._peername = self.transport.get_extra_info("peername")
        ip = self.ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
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
        self.conn.over_capacity = not self.broker.register(self)
        self._registered = True
        # a client that never finishes CONNECT is dropped (slowloris guard)
        timeout = self.broker.settings.connect_timeout
        self._timer_due = self._loop.time() + timeout
        self._timer = self._loop.call_later(timeout, self._on_timer)

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
            self._loop.call_soon(self._end_turn)
        self.hub.stats.bytes_received += len(data)
        try:
            packets = self.conn.receive_data(data, time.monotonic())
        except UnsupportedProtocolVersion as exc:
            self._act(self.conn.unsupported_version(exc.protocol_level))
            return
        except DecodeError as exc:
            # act on what came complete before the fault, then close
            self._handle(exc.packets)
            if self.session is None and self.conn.v5 and not self._closing:
                self._write(self.conn.send(Connack(False, exc.reason_code)))  # malformed CONNECT
            self._act(self.conn.protocol_error(str(exc), exc.reason_code))
            return
        self._handle(packets)

    def _handle(self, packets: list[Packet]) -> None:
        if self._backlog_at < len(self._backlog) or self._held():
            self._backlog.extend(packets)  # keep order behind what is already waiting
            return
        self._run(packets)

    def _wait(self, packets: list[Packet], start: int) -> None:
        """packets[start:] wait for _release_held (the list is ours: the decoder's or
        the backlog's, never shared)."""
        self._backlog = packets
        self._backlog_at = start

    def _run(self, packets: list[Packet], start: int = 0) -> None:
        bucket = self._publish_bucket
        conn = self.conn
        for i in range(start, len(packets)):
            if self._closing:
                return
            packet = packets[i]
            is_publish = isinstance(packet, Publish)
            # receipt time of a QoS 1/2 PUBLISH, for the publish-to-ack histogram
            now = time.monotonic() if is_publish and cast(Publish, packet).qos else -1.0
            if bucket is not None and is_publish and not bucket.try_acquire():
                # over its publish rate: keep the rest for later and stop reading
                self._wait(packets, i)
                self._throttle(bucket.retry_after())
                return
            try:
                self._act(conn.handle(packet, now))
            except ProtocolViolation as exc:
                self._act(conn.protocol_error(str(exc), exc.reason_code))
                return
            except Exception:
                # a bug must cost one connection, never the server
                log.exception("error handling %s from %s", type(packet).__name__, self.peer)
                self._act(conn.protocol_error("internal error", ReasonCode.UNSPECIFIED_ERROR))
                return
            if self._auth_pending:
                self._wait(packets, i + 1)
                return
            if (
                is_publish
                and self.hub.pressure.active
                and (cast(Publish, packet).qos or self.hub.store_held)
            ):
                # a subscriber that keeps up is behind, or the store's write backlog is
                # full: wait for it instead of making it drop (or growing memory)
                self._wait(packets, i + 1)
                self._hold_for_pressure()
                return

    # -- the machine's events ----------------------------------------------------------------

    def _act(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, PublishIn):
                self._publish(ev)
            elif isinstance(ev, SendAck):
                self._acks.add(ev.data, ev.durable, None, -1.0, ev.releases)
            elif isinstance(ev, Send):
                self._write(ev.data)
            elif isinstance(ev, OutboundAck):
                self._outbound_ack(ev)
            elif isinstance(ev, Close):
                if ev.protocol_error:
                    self.hub.stats.protocol_errors += 1
                self._abort(ev.reason, ev.level)
            elif isinstance(ev, SubscribeIn):
                self._subscribe(ev)
            elif isinstance(ev, UnsubscribeIn):
                session = self.session
                assert session is not None
                found = [self.hub.unsubscribe(session, flt) for flt in ev.filters]
                self._write(self.conn.unsuback(ev.packet_id, found))
            elif isinstance(ev, ConnectIn):
                self._authenticate(ev)
            elif isinstance(ev, Authenticated):
                self._connect_authenticated(ev.request, ev.result)
            elif isinstance(ev, AuthTimer):
                self._set_auth_timer(ev.arm)

    def _publish(self, ev: PublishIn) -> None:
        p = ev.packet
        session = self.session
        assert session is not None
        expiry = p.properties.get("message_expiry_interval") if p.properties else None
        msg = Message(
            p.topic,
            p.payload,
            p.qos,
            p.retain,
            forwarded(p.properties),
            expires_at=time.time() + expiry if expiry is not None else None,
            origin=session.client_id,
        )
        journaled = self.hub.publish(msg)
        ack = ev.ack
        if ack is not None:
            releases = ev.releases
            if self.hub.quota_exceeded and self.conn.v5:
                # every matching queue was full (docs/queues.md): 0x97 instead of success
                ack, releases = self.conn.quota_exceeded(ev)
            self._acks.add(ack, journaled or ev.durable, msg, ev.received, releases)

    def _subscribe(self, ev: SubscribeIn) -> None:
        session = self.session
        assert session is not None
        added = [(sub, self.hub.subscribe(session, sub)) for sub in ev.subscriptions]
        self._write(ev.suback)
        # retained messages follow the SUBACK
        for sub, new in added:
            self.hub.send_retained(session, sub, new)

    def _outbound_ack(self, ev: OutboundAck) -> None:
        session = self.session
        assert session is not None
        if ev.kind == "puback":
            session.acknowledge(ev.packet_id)
        elif ev.kind == "pubcomp":
            session.completed(ev.packet_id)
        else:
            found = session.received(ev.packet_id)
            self._write(self.conn.pubrel_for(ev.packet_id, found))

    # -- CONNECT ------------------------------------------------------------------------------

    def _authenticate(self, ev: ConnectIn) -> None:
        auth = self.broker.auth
        if wants_enhanced_auth(ev):
            # MQTT 5 enhanced authentication (SCRAM-SHA-256): AUTH packets follow
            self._act(self.conn.start_enhanced_auth(ev, auth, self.ip))
            return
        p = ev.packet
        if p.username is None and p.password is None:
            cert_user = self._certificate_username()
            result = (
                auth.authenticate_certificate(cert_user, self.ip)
                if cert_user is not None
                else auth.admit_anonymous(self.ip)
            )
            self._connect_authenticated(ev, result)
            return
        # password checks are slow by design (argon2id, on a thread): hold the packets
        # that follow CONNECT until the answer is in
        self._auth_pending = True
        self._sync_reading()
        task = asyncio.ensure_future(
            auth.authenticate_password(p.username, p.password, self.ip, ev.client_id)
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
            self._connect_authenticated(ev, result)
            self._flush()
            self._release_held()

        task.add_done_callback(done)

    def _certificate_username(self) -> str | None:
        if self.broker.settings.tls_client_auth == "none" or self.transport is None:
            return None
        return certificate_username(self.transport.get_extra_info("peercert"))

    def _connect_authenticated(self, ev: ConnectIn, result: AuthResult) -> None:
        conn = self.conn
        if not result.ok or result.identity is None:
            self._act(conn.refuse(result.reason, result.message))
            return
        permissions = self.broker.auth.permissions(result.identity, ev.client_id)
        refusal = conn.check_login(ev, result, permissions)
        if refusal:
            self._act(refusal)
            return
        if not self.broker.admission.admit_client_id(ev.client_id):
            # one client id reconnecting in a loop: slowed without touching its neighbours
            self.hub.stats.connections_refused += 1
            self._act(conn.refuse("client_id_rate", f"connect rate of client id {ev.client_id!r}"))
            return
        self.identity = result.identity
        self.permissions = permissions
        handover = self.broker.handover
        if handover is not None and ev.client_id not in self.hub.sessions:
            # engine=redis: another node may hold this client id (mqtt/handover.py); take it,
            # with its session, before answering. Packets after CONNECT wait meanwhile.
            self._claim(handover, ev)
            return
        self._open_session(ev)

    def _claim(self, handover: SessionHandover, ev: ConnectIn) -> None:
        client_id = ev.client_id
        self._auth_pending = True
        self._sync_reading()
        claim = asyncio.ensure_future(handover.claim(client_id))

        def claimed(t: asyncio.Future[bool]) -> None:
            self._auth_pending = False
            if self._closing:
                handover.gone(client_id)  # the client left meanwhile: no lock for nothing
                return
            error = None if t.cancelled() else t.exception()
            if error is not None:
                log.error("taking client %r from its node failed: %s", client_id, error)
            if t.cancelled() or error is not None or not t.result():
                self._act(
                    self.conn.refuse(
                        "server_unavailable", f"client id {client_id!r} not handed over"
                    )
                )
                return
            self._open_session(ev)
            self._flush()
            self._release_held()

        claim.add_done_callback(claimed)

    def _open_session(self, ev: ConnectIn) -> None:
        conn = self.conn
        assert self.identity is not None
        session, present = self.hub.connect(
            ev.client_id,
            ev.packet.clean_start,
            ev.packet.protocol_level,
            ev.expiry_interval,
            self,
            owner=self.identity.username,
            permissions=self.permissions,
        )
        self.session = session
        # a new connection to a session stops its pending will for good; a new session
        # ends the old one, whose pending will goes out now (MQTT-3.1.3-9)
        self.broker.wills.session_connected(ev.client_id, present)
        self.broker.track_identity(self)
        stats = self.hub.stats
        stats.clients_connected += 1
        stats.clients_maximum = max(stats.clients_maximum, stats.clients_connected)
        # CONNACK, and what attach resends, go out in one write when this returns rather
        # than one loop turn later: no callback per connection (connect storms)
        flush_now = not self._flush_scheduled
        self._flush_scheduled = True
        try:
            self._write(conn.accept(ev, session, present))
            self._arm_keepalive()
            # resend what was unacknowledged, then the queue, after CONNACK (MQTT-4.4.0-1)
            session.attach(self)
        finally:
            if flush_now:
                self._flush()
        if self.broker.handover is not None:
            self.broker.handover.connected(ev.client_id)

    # -- the end of a connection ------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self._acks.detach()  # the one reference cycle of a connection, broken here
        if not self._registered:
            return  # refused in connection_made: nothing to undo
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None
        if self._auth_timer is not None:
            self._set_auth_timer(False)
        self.broker.unregister(self)
        self.broker.untrack_identity(self)
        session = self.session
        if session is None:
            return
        self.session = None
        self.hub.stats.clients_connected -= 1
        try:
            self.publish_will(session, at_once=self.broker.shutting_down)
        except Exception:
            # whatever the will hit, the session must still leave the hub
            log.exception("publishing the will of %s failed", self.client_id)
        finally:
            self.hub.disconnect(session, self)
            if self.broker.handover is not None:
                self.broker.handover.gone(session.client_id)

    def publish_will(self, session: Session | None = None, at_once: bool = False) -> None:
        """Publish the will, if the connection still has one (once); `at_once` ignores
        the will delay (the server is stopping and cannot wait)."""
        session = session or self.session
        will = self.conn.will
        if will is None or session is None:
            return
        self.conn.will = None
        if self.permissions is not None and not self.permissions.can_publish(will.topic):
            return  # rights may have changed since CONNECT
        msg = will_message(will, session.client_id)
        delay = 0 if at_once else will_delay(will, session.expiry_interval)
        if delay:
            self.broker.wills.schedule(session.client_id, msg, delay)
        else:
            self.hub.publish(msg)

    def pause_writing(self) -> None:
        # the client is not reading: stop reading from it too (its acks and our answers
        # would otherwise pile up), drop QoS 0 for it, and give it a bounded time to recover
        self._paused = True
        self._sync_reading()
        self._slow_timer = self._loop.call_later(
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
            self._loop.call_soon(self._flush)

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

    def _abort(self, reason: str, level: int = logging.DEBUG) -> None:
        """Close after what is already written (CONNACK, DISCONNECT) has been sent."""
        if self._closing:
            return
        if log.isEnabledFor(level):  # the arguments cost more than the check
            log.log(level, "closing %s (%s): %s", self.client_id or "-", self.peer, reason)
        self._flush()
        self._closing = True
        self.conn.close()
        if self.transport is not None:
            self.transport.close()

    def close(self, reason_code: int = ReasonCode.SERVER_SHUTTING_DOWN) -> None:
        """Server-initiated close (shutdown, admin action)."""
        self._act(self.conn.server_close(reason_code))

    # -- Link (what the session sends through) --------------------------------------------

    def writable(self) -> bool:
        return not self._paused and not self._closing

    def send_message(
        self, delivery: Delivery, dup: bool, wire_cache: dict[Any, Any] | None
    ) -> None:
        data = self.conn.encode_delivery(delivery, dup, wire_cache)
        if data is None:
            # too large for this client: complete the flow as if sent (MQTT-3.1.2-25), on
            # the next turn, as the session is in the middle of its pump
            if delivery.qos and delivery.packet_id is not None:
                self._loop.call_soon(self._complete_dropped, delivery)
            return
        self._write(data)
        stats = self.hub.stats
        stats.messages_sent += 1
        if wire_cache is None:
            # the hub's fan-out passes a cache and observes the latency of all its sends
            stats.delivery_latency.observe(time.time() - delivery.message.created_at)

    def _complete_dropped(self, delivery: Delivery) -> None:
        session = self.session
        pid = delivery.packet_id
        if session is None or pid is None or session.inflight.get(pid) is not delivery:
            return
        if delivery.qos == 1:
            session.acknowledge(pid)
        else:
            session.received(pid)
            session.completed(pid)

    def send_release(self, packet_id: int) -> None:
        self._write(self.conn.send(PubRel(packet_id)))

    def close_taken_over(self) -> None:
        self._act(self.conn.taken_over())

    # -- timers --------------------------------------------------------------------------

    def _set_auth_timer(self, arm: bool) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        if arm and not self._closing:
            self._auth_timer = self._loop.call_later(
                self.broker.settings.auth_timeout, self._auth_timed_out
            )

    def _auth_timed_out(self) -> None:
        self._auth_timer = None
        self._act(self.conn.auth_timed_out())

    def _on_timer(self) -> None:
        if self.session is None:
            self._timer = None
            self._act(self.conn.connect_timed_out())
        else:
            self._check_keepalive()

    def _arm_keepalive(self) -> None:
        # the CONNECT deadline's timer goes on as the keepalive check when it fires no
        # later than the first check is due (the check then reschedules itself); a
        # connection that ends before that never touched a second timer
        limit = self.conn.keepalive * 1.5
        if self._timer is not None:
            if limit <= 0 or self._timer_due <= self._loop.time() + limit:
                return
            self._timer.cancel()
            self._timer = None
        self._check_keepalive()

    def _check_keepalive(self) -> None:
        # one timer per connection that fires once per period; activity in between only
        # updates a timestamp in the machine, so idle connections cost nothing per packet
        self._timer = None
        events, delay = self.conn.keepalive_tick(time.monotonic())
        self._act(events)
        if delay > 0:
            self._timer_due = self._loop.time() + delay
            self._timer = self._loop.call_later(delay, self._check_keepalive)
