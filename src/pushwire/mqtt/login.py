"""From an accepted CONNECT to an open session: the asyncio glue's wiring of a CONNECT to
the auth service (password on a thread, certificate, anonymous, or the machine's SCRAM
exchange), the per-client-id admission, the cross-node handover (engine=redis) and the
hub. The protocol's answers (refusal codes, CONNACK) come from the machine."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pushwire.core.identity import AuthResult, Identity
from pushwire.core.permissions import Permissions
from pushwire.mqtt.handle_connect import check_login
from pushwire.tls import certificate_username

if TYPE_CHECKING:
    from pushwire.core.hub import Hub
    from pushwire.mqtt.broker import MQTTBroker
    from pushwire.mqtt.connection import MQTTConnection
    from pushwire.mqtt.events import ConnectIn, Event
    from pushwire.mqtt.handover import SessionHandover
    from pushwire.mqtt.session import MqttSession

log = logging.getLogger(__name__)


class Login:
    """Mixed into MQTTServerProtocol, which owns these attributes and methods."""

    broker: MQTTBroker
    hub: Hub
    conn: MQTTConnection
    transport: asyncio.Transport | None
    session: MqttSession | None
    ip: str
    # who authenticated, and their rights (None until CONNECT is accepted)
    identity: Identity | None = None
    permissions: Permissions | None = None
    _closing: bool
    _auth_pending: bool
    _timer_due: float
    _flush_scheduled: bool
    _out: list[bytes]

    if TYPE_CHECKING:

        @property
        def peer(self) -> str: ...  # "ip:port", formatted when asked
        def _act(self, events: list[Event]) -> None: ...
        def _write(self, data: bytes) -> None: ...
        def _flush(self) -> None: ...
        def _write_now(self, data: bytes) -> None: ...
        def _arm_timer(self) -> None: ...
        def _sync_reading(self) -> None: ...
        def _release_held(self) -> None: ...

    def _authenticate(self, ev: ConnectIn) -> None:
        p = ev.packet
        if p.properties and "authentication_method" in p.properties:  # wants_enhanced_auth
            # MQTT 5 enhanced authentication (SCRAM-SHA-256): AUTH packets follow
            self._act(self.conn.start_enhanced_auth(ev, self.broker.auth, self.ip))
            return
        auth = self.broker.auth
        if p.username is None and p.password is None:
            cert_user = (
                self._certificate_username()
                if self.broker.settings.tls_client_auth != "none"
                else None
            )
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
        identity = result.identity
        if result.reason != "ok" or identity is None:  # not `result.ok`: one call less
            self._act(conn.refuse(result.reason, result.message))
            return
        broker = self.broker
        permissions = broker.auth.permissions(identity, ev.client_id)
        refusal = check_login(conn, ev, result, permissions)  # conn.check_login's rule
        if refusal:
            self._act(refusal)
            return
        admission = broker.admission
        if admission.per_client_id is not None and not admission.admit_client_id(ev.client_id):
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
        identity = self.identity
        assert identity is not None
        broker = self.broker
        # an MqttSession: the hub makes them with the factory mqtt/broker.py gives it
        # (narrowed by annotation, not cast(): that is a call per connect)
        session: MqttSession
        session, present = self.hub.connect(  # type: ignore[assignment]
            ev.client_id,
            ev.packet.clean_start,
            ev.packet.protocol_level,
            ev.expiry_interval,
            self,  # type: ignore[arg-type]  # the protocol is the session's Link
            owner=identity.username,
            permissions=self.permissions,
        )
        self.session = session
        # a new connection to a session stops its pending will for good; a new session
        # ends the old one, whose pending will goes out now (MQTT-3.1.3-9)
        wills = broker.wills
        if wills.pending:  # else session_connected has nothing to do (no will waits)
            wills.session_connected(ev.client_id, present)
        if identity.token_id is not None or identity.username is not None:
            broker.track_identity(self)  # type: ignore[arg-type]  # (never anonymous)
        stats = self.hub.stats
        stats.clients_connected += 1
        if stats.clients_connected > stats.clients_maximum:
            stats.clients_maximum = stats.clients_connected
        conn = self.conn
        connack = conn.accept(ev, session, present)
        if conn.deadline < self._timer_due:
            self._arm_timer()  # the keepalive check is due before the CONNECT deadline
        if not present and not self._out:
            # a new session (every clean reconnect) has nothing to resend: CONNACK goes
            # to the transport now, in one write, without a callback (connect storms)
            self._write_now(connack)
            session.attach(self)  # type: ignore[arg-type]
        else:
            # CONNACK, and what attach resends, go out in one write when this returns
            # rather than one loop turn later
            flush_now = not self._flush_scheduled
            self._flush_scheduled = True
            try:
                self._write(connack)
                # resend what was unacknowledged, then the queue, after CONNACK (MQTT-4.4.0-1)
                session.attach(self)  # type: ignore[arg-type]
            finally:
                if flush_now:
                    self._flush()
        if broker.handover is not None:
            broker.handover.connected(ev.client_id)
