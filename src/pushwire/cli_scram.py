"""`pushwire pub/sub --scram`: MQTT 5 login with SCRAM-SHA-256 enhanced authentication.

paho cannot send AUTH packets, so this is a small blocking client on pushwire's own codec
(the mqtt/codec/ package) and SCRAM math (core/scram.py): CONNECT names the method and carries the
client-first-message, the server's AUTH challenge is answered with the client-final-message,
and the CONNACK's server-final-message must prove that the server knows the user's verifier
(mutual authentication; the password itself never crosses the wire). TCP and TLS only.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import uuid
from typing import Any

from pushwire.cli_common import CliError, Endpoint, Exit, Outgoing, Ready, failed, refused
from pushwire.cli_format import Received
from pushwire.core.scram import ScramClient, ScramError
from pushwire.mqtt.codec.decoder import Decoder
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.codec.errors import DecodeError
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Suback,
    Subscribe,
    SubscriptionOptions,
)

METHOD = "SCRAM-SHA-256"
CONTINUE_AUTHENTICATION = 0x18
KEEPALIVE = 60
# CONNACK reasons that mean "who you are was refused"
_AUTH_REFUSALS = {0x86, 0x87, 0x8A, 0x8C}
_PRIORITY_PROPERTY = "priority"  # as http/encode.py: an MQTT 5 user property


def check_version(version: str) -> None:
    if version != "5":
        raise CliError(Exit.USAGE, "--scram needs MQTT 5 (-V 5): AUTH packets are MQTT 5 only")


class ScramConnection:
    """One MQTT 5 connection logged in with SCRAM-SHA-256; `send` is thread-safe."""

    def __init__(self, ep: Endpoint, client_id: str = "", timeout: float = 10.0) -> None:
        if ep.kind != "mqtt":
            raise CliError(Exit.USAGE, "--scram needs an mqtt:// or mqtts:// URL")
        if ep.token or ep.username is None or ep.password is None:
            raise CliError(Exit.USAGE, "--scram needs -u USER and -P PASSWORD (not --token)")
        self.ep = ep
        self.client_id = client_id or f"pushwire-cli-{uuid.uuid4().hex[:12]}"
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._decoder = Decoder(server_side=False)
        self._decoder.protocol_level = PROTOCOL_V5
        self._pending: list[Packet] = []
        self._send_lock = threading.Lock()
        self._next_id = 0

    def open(self) -> None:
        ep = self.ep
        assert ep.username is not None and ep.password is not None
        try:
            sock = socket.create_connection((ep.host, ep.port), timeout=self.timeout)
            ctx = ep.ssl_context()
            if ctx is not None:
                sock = ctx.wrap_socket(sock, server_hostname=ep.host)
        except OSError as exc:
            raise failed(f"cannot connect to {ep.host}:{ep.port}: {exc}") from None
        self.sock = sock
        scram = ScramClient(ep.username, ep.password)
        props = {"authentication_method": METHOD, "authentication_data": scram.first()}
        self.send(
            Connect(
                self.client_id,
                PROTOCOL_V5,
                keepalive=KEEPALIVE,
                username=ep.username,
                properties=props,
            )
        )
        challenge = self.recv()
        if not isinstance(challenge, Auth) or challenge.reason_code != CONTINUE_AUTHENTICATION:
            raise _refusal(challenge)
        try:
            final = scram.final(challenge.properties.get("authentication_data", b""))
        except ScramError as exc:
            raise failed(f"SCRAM: {exc}") from None
        self.send(
            Auth(
                CONTINUE_AUTHENTICATION,
                {"authentication_method": METHOD, "authentication_data": final},
            )
        )
        connack = self.recv()
        if not isinstance(connack, Connack) or connack.reason_code != 0:
            raise _refusal(connack)
        try:
            scram.verify(connack.properties.get("authentication_data", b""))
        except ScramError as exc:
            # the server could not prove it knows the verifier: not the server we trust
            raise failed(f"SCRAM: {exc}") from None

    def packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def send(self, packet: Packet) -> None:
        if self.sock is None:
            raise failed("not connected")
        data = encode(packet, PROTOCOL_V5)
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError as exc:
            raise failed(f"connection lost: {exc}") from None

    def recv(self, timeout: float | None = None) -> Packet:
        """The next packet; TimeoutError when none came within `timeout` (default: the
        connection's), CliError when the connection closed or sent garbage."""
        sock = self.sock
        if sock is None:
            raise failed("connection closed")
        sock.settimeout(self.timeout if timeout is None else timeout)
        while not self._pending:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise
            except OSError as exc:
                raise failed(f"connection lost: {exc}") from None
            if not data:
                raise failed("connection closed by the server")
            try:
                self._pending.extend(self._decoder.feed(data))
            except DecodeError as exc:
                raise failed(f"bad packet from the server: {exc}") from None
        return self._pending.pop(0)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError), self._send_lock:
            sock.sendall(encode(Disconnect(), PROTOCOL_V5))
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv()
        sock.close()


def _refusal(packet: Packet) -> CliError:
    code = getattr(packet, "reason_code", None)
    if isinstance(packet, (Connack, Disconnect)) and code is not None:
        reason = packet.properties.get("reason_string", "")
        text = f"connection refused: reason code 0x{code:02X}" + (f" ({reason})" if reason else "")
        return refused(text) if code in _AUTH_REFUSALS else failed(text)
    return failed(f"unexpected {type(packet).__name__} during SCRAM login")


class ScramPublisher:
    """`pushwire pub --scram`: the Publisher of cli_pub.py."""

    def __init__(self, ep: Endpoint, *, client_id: str = "", timeout: float = 10.0) -> None:
        self.conn = ScramConnection(ep, client_id, timeout)

    def connect(self) -> None:
        self.conn.open()

    def publish(self, out: Outgoing) -> None:
        from pushwire.cli_mqtt import _priority_number, _ttl_seconds

        props: dict[str, Any] = {}
        if out.content_type:
            props["content_type"] = out.content_type
        if out.ttl:
            props["message_expiry_interval"] = _ttl_seconds(out.ttl)
        if out.priority:
            props["user_property"] = [(_PRIORITY_PROPERTY, str(_priority_number(out.priority)))]
        pid = self.conn.packet_id() if out.qos else None
        self.conn.send(Publish(out.topic, out.payload, out.qos, out.retain, False, pid, props))
        if pid is None:
            return
        ack = self._ack(pid)
        if ack.reason_code >= 0x80:
            raise refused(f"publish to {out.topic!r} refused: reason code 0x{ack.reason_code:02X}")
        if isinstance(ack, PubRec):
            self.conn.send(PubRel(pid))
            self._ack(pid)

    def _ack(self, pid: int) -> PubAck | PubRec | PubComp:
        while True:
            try:
                packet = self.conn.recv()
            except TimeoutError:
                raise failed(f"publish not acknowledged within {self.conn.timeout:g}s") from None
            if isinstance(packet, (PubAck, PubRec, PubComp)) and packet.packet_id == pid:
                return packet
            if isinstance(packet, Disconnect):
                raise _refusal(packet)

    def close(self) -> None:
        self.conn.close()


class ScramSubscriber:
    """`pushwire sub --scram`: the Subscriber of cli_sub.py; a reader thread puts Ready,
    Received and CliError on `events`, acks QoS 1/2 deliveries and keeps the connection
    alive with PINGREQ."""

    def __init__(
        self,
        ep: Endpoint,
        filters: list[str],
        qos: int,
        events: queue.Queue[Any],
        *,
        client_id: str = "",
    ) -> None:
        self.conn = ScramConnection(ep, client_id)
        self.filters = filters
        self.qos = qos
        self.events = events
        self._closing = False
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        self.conn.open()
        options = SubscriptionOptions(qos=self.qos)
        self._sub_id = self.conn.packet_id()
        self.conn.send(Subscribe(self._sub_id, [(f, options) for f in self.filters]))
        self._reader.start()

    def _read(self) -> None:
        try:
            while not self._closing:
                try:
                    packet = self.conn.recv(timeout=KEEPALIVE / 2)
                except TimeoutError:
                    self.conn.send(PingReq())
                    continue
                self._handle(packet)
        except CliError as exc:
            if not self._closing:
                self.events.put(exc)

    def _handle(self, packet: Packet) -> None:
        if isinstance(packet, Suback) and packet.packet_id == self._sub_id:
            for flt, code in zip(self.filters, packet.reason_codes, strict=False):
                if code >= 0x80:
                    self.events.put(refused(f"subscription to {flt!r} refused: 0x{code:02X}"))
                    return
            for flt in self.filters:
                self.events.put(Ready(flt))
        elif isinstance(packet, Publish):
            self._deliver(packet)
        elif isinstance(packet, PubRel):
            self.conn.send(PubComp(packet.packet_id))
        elif isinstance(packet, Disconnect):
            raise _refusal(packet)

    def _deliver(self, p: Publish) -> None:
        extra: dict[str, Any] = {}
        for key, value in p.properties.get("user_property", []):
            if key == _PRIORITY_PROPERTY:
                extra["priority"] = int(value) if value.isdigit() else value
        self.events.put(
            Received(
                topic=p.topic,
                payload=p.payload,
                qos=p.qos,
                retain=p.retain,
                content_type=p.properties.get("content_type"),
                extra=extra,
            )
        )
        if p.qos == 1 and p.packet_id is not None:
            self.conn.send(PubAck(p.packet_id))
        elif p.qos == 2 and p.packet_id is not None:
            self.conn.send(PubRec(p.packet_id))

    def close(self) -> None:
        self._closing = True
        self.conn.close()
        if self._reader.is_alive():
            self._reader.join(2.0)
