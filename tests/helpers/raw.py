"""Hand-built MQTT 3.1.1 packets and a blocking raw-socket client.

Deliberately independent of ``pushwire.mqtt``: every byte here is written from the OASIS
MQTT 3.1.1 specification, so the tests check the server's codec rather than share its bugs.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# Control packet types (MQTT 3.1.1 section 2.2.1).
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

PINGREQ_BYTES = b"\xc0\x00"
PINGRESP_BYTES = b"\xd0\x00"
DISCONNECT_BYTES = b"\xe0\x00"

# Largest value the variable-length "Remaining Length" can carry (section 2.2.3).
MAX_REMAINING_LENGTH = 268_435_455


class ConnectionClosed(Exception):
    """The peer closed (or reset) the TCP connection."""


class MalformedStream(Exception):
    """The bytes received from the server are not a well-formed MQTT packet stream."""


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


def encode_remaining_length(n: int) -> bytes:
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length out of range: {n}")
    out = bytearray()
    while True:
        digit = n % 128
        n //= 128
        if n:
            digit |= 0x80
        out.append(digit)
        if not n:
            return bytes(out)


def encode_str(value: str | bytes) -> bytes:
    """UTF-8 string with a two byte length prefix (section 1.5.3). Bytes are sent as given."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_remaining_length(len(body)) + body


def connect(
    client_id: str | bytes = "",
    *,
    clean_session: bool = True,
    keepalive: int = 60,
    will_topic: str | None = None,
    will_payload: bytes = b"",
    will_qos: int = 0,
    will_retain: bool = False,
    username: str | None = None,
    password: bytes | None = None,
    protocol_name: str = "MQTT",
    protocol_level: int = 4,
    reserved_flag: bool = False,
) -> bytes:
    flags = 0
    if reserved_flag:
        flags |= 0x01
    if clean_session:
        flags |= 0x02
    payload = encode_str(client_id)
    if will_topic is not None:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
        payload += encode_str(will_topic) + struct.pack("!H", len(will_payload)) + will_payload
    if username is not None:
        flags |= 0x80
        payload += encode_str(username)
    if password is not None:
        flags |= 0x40
        payload += struct.pack("!H", len(password)) + password
    variable = (
        encode_str(protocol_name) + bytes([protocol_level, flags]) + struct.pack("!H", keepalive)
    )
    return packet(0x10, variable + payload)


def publish(
    topic: str | bytes,
    payload: bytes = b"",
    *,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
) -> bytes:
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = encode_str(topic)
    if qos > 0:
        if packet_id is None:
            raise ValueError("QoS > 0 needs a packet id")
        body += struct.pack("!H", packet_id)
    return packet(first, body + payload)


def puback(packet_id: int) -> bytes:
    return packet(0x40, struct.pack("!H", packet_id))


def pubrec(packet_id: int) -> bytes:
    return packet(0x50, struct.pack("!H", packet_id))


def pubrel(packet_id: int) -> bytes:
    return packet(0x62, struct.pack("!H", packet_id))


def pubcomp(packet_id: int) -> bytes:
    return packet(0x70, struct.pack("!H", packet_id))


def subscribe(packet_id: int, filters: list[tuple[str | bytes, int]]) -> bytes:
    body = struct.pack("!H", packet_id)
    for topic_filter, qos in filters:
        body += encode_str(topic_filter) + bytes([qos])
    return packet(0x82, body)


def unsubscribe(packet_id: int, filters: list[str | bytes]) -> bytes:
    body = struct.pack("!H", packet_id)
    for topic_filter in filters:
        body += encode_str(topic_filter)
    return packet(0xA2, body)


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Packet:
    """One packet as read from the wire."""

    raw: bytes  # the whole packet, fixed header included
    first_byte: int
    body: bytes  # variable header + payload

    @property
    def type(self) -> int:
        return self.first_byte >> 4

    @property
    def flags(self) -> int:
        return self.first_byte & 0x0F

    # PUBLISH accessors --------------------------------------------------------------------
    @property
    def qos(self) -> int:
        return (self.first_byte >> 1) & 0x03

    @property
    def dup(self) -> bool:
        return bool(self.first_byte & 0x08)

    @property
    def retain(self) -> bool:
        return bool(self.first_byte & 0x01)

    def _publish_parts(self) -> tuple[str, int | None, bytes]:
        if self.type != PUBLISH:
            raise ValueError(f"not a PUBLISH: {self!r}")
        (tlen,) = struct.unpack_from("!H", self.body, 0)
        topic = self.body[2 : 2 + tlen].decode("utf-8")
        offset = 2 + tlen
        pid: int | None = None
        if self.qos > 0:
            (pid,) = struct.unpack_from("!H", self.body, offset)
            offset += 2
        return topic, pid, self.body[offset:]

    @property
    def topic(self) -> str:
        return self._publish_parts()[0]

    @property
    def payload(self) -> bytes:
        return self._publish_parts()[2]

    @property
    def packet_id(self) -> int:
        """Packet identifier of PUBLISH (QoS>0), PUBACK..PUBCOMP, SUBACK, UNSUBACK."""
        if self.type == PUBLISH:
            pid = self._publish_parts()[1]
            if pid is None:
                raise ValueError("QoS 0 PUBLISH has no packet id")
            return pid
        (pid,) = struct.unpack_from("!H", self.body, 0)
        return int(pid)

    # CONNACK / SUBACK accessors -----------------------------------------------------------
    @property
    def session_present(self) -> bool:
        assert self.type == CONNACK
        return bool(self.body[0] & 0x01)

    @property
    def return_code(self) -> int:
        assert self.type == CONNACK
        return self.body[1]

    @property
    def granted(self) -> list[int]:
        assert self.type == SUBACK
        return list(self.body[2:])

    def __repr__(self) -> str:
        return f"Packet(type={self.type}, flags={self.flags:#x}, raw={self.raw[:64]!r})"


def split_packets(data: bytes) -> tuple[list[Packet], bytes]:
    """Split complete packets off the front of ``data``; return them and the rest."""
    packets: list[Packet] = []
    pos = 0
    while True:
        if len(data) - pos < 2:
            break
        multiplier = 1
        length = 0
        i = pos + 1
        complete_header = False
        for n in range(4):
            if i >= len(data):
                break
            byte = data[i]
            i += 1
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            if not byte & 0x80:
                complete_header = True
                break
            if n == 3:
                raise MalformedStream(f"remaining length longer than 4 bytes: {data[pos:i]!r}")
        if not complete_header or len(data) - i < length:
            break
        packets.append(
            Packet(raw=data[pos : i + length], first_byte=data[pos], body=data[i : i + length])
        )
        pos = i + length
    return packets, data[pos:]


def remaining_length_of(data: bytes) -> tuple[int, int] | None:
    """Decode the fixed header at the start of ``data``: (header size, remaining length).

    None when the header is incomplete or malformed (more than 4 length bytes).
    """
    multiplier = 1
    length = 0
    for n in range(4):
        if 1 + n >= len(data):
            return None
        byte = data[1 + n]
        length += (byte & 0x7F) * multiplier
        multiplier *= 128
        if not byte & 0x80:
            return 2 + n, length
    return None


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------


class RawClient:
    """A blocking TCP connection that speaks bytes; every read has a deadline."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        self._pending: list[Packet] = []
        self.closed = False

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- sending -------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, tolerating a connection the server already closed. True if sent."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    # -- receiving -----------------------------------------------------------------------------
    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from server before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no data from server before the deadline") from None
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
            self.closed = True
            raise ConnectionClosed(str(exc)) from exc
        if not chunk:
            self.closed = True
            raise ConnectionClosed("EOF")
        self._buf += chunk
        packets, self._buf = split_packets(self._buf)
        self._pending.extend(packets)

    def recv_packet(self, timeout: float = 5.0) -> Packet:
        """Next packet; TimeoutError if none in time, ConnectionClosed on EOF/reset."""
        deadline = time.monotonic() + timeout
        while not self._pending:
            self._fill(deadline)
        return self._pending.pop(0)

    def expect(self, ptype: int, timeout: float = 5.0) -> Packet:
        pkt = self.recv_packet(timeout)
        if pkt.type != ptype:
            raise AssertionError(f"expected packet type {ptype}, got {pkt!r}")
        return pkt

    def recv_matching(self, predicate: Callable[[Packet], bool], timeout: float = 5.0) -> Packet:
        """First packet matching ``predicate``; others stay queued, in order, for later reads."""
        deadline = time.monotonic() + timeout
        scanned = 0
        while True:
            for i in range(scanned, len(self._pending)):
                if predicate(self._pending[i]):
                    return self._pending.pop(i)
            scanned = len(self._pending)
            self._fill(deadline)

    def read_until_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Read until the server closes the connection; return what arrived before that.

        Raises TimeoutError (with what was read) if the connection is still open at the deadline.
        """
        deadline = time.monotonic() + timeout
        got: list[Packet] = []
        while True:
            while self._pending:
                got.append(self._pending.pop(0))
            try:
                self._fill(deadline)
            except ConnectionClosed:
                got.extend(self._pending)
                self._pending.clear()
                return got
            except TimeoutError:
                raise TimeoutError(
                    f"connection still open after {timeout}s; received {got!r}"
                ) from None

    def is_open(self, timeout: float = 2.0) -> bool:
        """Send PINGREQ, wait for PINGRESP (skipping other packets). False if closed."""
        if not self.try_send(PINGREQ_BYTES):
            return False
        deadline = time.monotonic() + timeout
        others: list[Packet] = []
        try:
            while True:
                pkt = self.recv_packet(max(0.01, deadline - time.monotonic()))
                if pkt.type == PINGRESP:
                    return True
                others.append(pkt)
        except ConnectionClosed:
            return False
        finally:
            # keep whatever else arrived meanwhile, in order, for the next reads
            self._pending[:0] = others

    # -- conversations -------------------------------------------------------------------------
    def mqtt_connect(self, client_id: str = "", **kwargs: object) -> Packet:
        """Send CONNECT and return the CONNACK (any return code)."""
        self.send(connect(client_id, **kwargs))  # type: ignore[arg-type]
        return self.expect(CONNACK)

    def subscribe(self, packet_id: int, filters: list[tuple[str | bytes, int]]) -> Packet:
        self.send(subscribe(packet_id, filters))
        return self.expect(SUBACK)

    def recv_publish(self, timeout: float = 5.0) -> Packet:
        return self.expect(PUBLISH, timeout)

    def publish_complete(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        packet_id: int = 1,
        retain: bool = False,
        timeout: float = 5.0,
    ) -> None:
        """Publish and run the sender side of the QoS flow to completion."""
        pid = packet_id if qos else None
        self.send(publish(topic, payload, qos=qos, retain=retain, packet_id=pid))
        if qos == 1:
            got = self.expect(PUBACK, timeout)
            assert got.raw == puback(packet_id), got
        elif qos == 2:
            got = self.expect(PUBREC, timeout)
            assert got.raw == pubrec(packet_id), got
            self.send(pubrel(packet_id))
            got = self.expect(PUBCOMP, timeout)
            assert got.raw == pubcomp(packet_id), got

    def ack(self, pkt: Packet, timeout: float = 5.0) -> None:
        """Complete the receiver side of a QoS 1 / QoS 2 delivery."""
        if pkt.qos == 1:
            self.send(puback(pkt.packet_id))
        elif pkt.qos == 2:
            self.send(pubrec(pkt.packet_id))
            rel = self.recv_matching(
                lambda p: p.type == PUBREL and p.packet_id == pkt.packet_id, timeout
            )
            assert rel.raw == pubrel(pkt.packet_id), rel
            self.send(pubcomp(pkt.packet_id))


def connected_client(host: str, port: int, client_id: str = "", **kwargs: object) -> RawClient:
    """A RawClient that has completed CONNECT with return code 0."""
    client = RawClient(host, port)
    try:
        ack = client.mqtt_connect(client_id, **kwargs)
        assert ack.return_code == 0, f"CONNACK refused: {ack!r}"
    except BaseException:
        client.close()
        raise
    return client


def subscribed_clients(
    host: str, port: int, count: int, topic: str, prefix: str = "sub"
) -> Iterator[list[RawClient]]:
    """`count` connected clients (ids prefix0..), each subscribed to `topic` at QoS 0, for
    a fixture to `yield from`; all closed afterwards."""
    clients: list[RawClient] = []
    try:
        for n in range(count):
            client = connected_client(host, port, f"{prefix}{n}", keepalive=60)
            clients.append(client)
            assert client.subscribe(1, [(topic, 0)]).granted == [0]
        yield clients
    finally:
        for client in clients:
            client.close()


def has_data(sock: socket.socket) -> bool:
    """Whether bytes wait on `sock`, without reading them (nothing there also when the
    socket has a timeout)."""
    try:
        return bool(sock.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, TimeoutError):
        return False
