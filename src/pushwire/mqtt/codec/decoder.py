"""The incremental decoder: stream framing of one connection's bytes and the hot
`Decoder._decode_all` loop (the 3.1.1 QoS 1 PUBLISH, plain PUBACK runs, PINGREQ and a bare
DISCONNECT inline; everything else through the per-type decoder table)."""

from __future__ import annotations

from typing import Final

from pushwire.mqtt.codec import publish_caches
from pushwire.mqtt.codec.connect import (
    _connect_level,
    _decode_connack,
    _decode_connect,
    decode_lone_connect,
)
from pushwire.mqtt.codec.control import (
    _decode_auth,
    _decode_disconnect,
    _decode_pingreq,
    _decode_pingresp,
)
from pushwire.mqtt.codec.errors import DecodeError, PacketTooLarge
from pushwire.mqtt.codec.header import _HEADER_ERRORS
from pushwire.mqtt.codec.primitives import _read_packet_id, _read_remaining_length
from pushwire.mqtt.codec.publish import (
    _PUBACK_CODES_V5,
    _PUBACK_PROPS,
    _PUBCOMP_PROPS,
    _PUBREC_PROPS,
    _PUBREL_CODES_V5,
    _PUBREL_PROPS,
    _ack_decoder,
    _decode_publish,
)
from pushwire.mqtt.codec.subscribe import (
    _decode_suback,
    _decode_subscribe,
    _decode_unsuback,
    _decode_unsubscribe,
)
from pushwire.mqtt.codec.wire import (
    _AUTH,
    _CONNACK,
    _CONNECT,
    _CONNECT_BYTE0,
    _DISCONNECT,
    _PINGREQ,
    _PINGRESP,
    _PUBACK,
    _PUBCOMP,
    _PUBLISH,
    _PUBLISH_DUP,
    _PUBLISH_RETAIN,
    _PUBREC,
    _PUBREL,
    _QOS1_BITS,
    _SUBACK,
    _SUBSCRIBE,
    _TYPE_SHIFT,
    _UNSUBACK,
    _UNSUBSCRIBE,
    _VBI_CONTINUATION,
    _PacketDecoder,
)
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
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
)

# assigned, not `from`-imported, so calls on it keep LOAD_METHOD (see wire.py `_U16`)
_TOPICS: Final = publish_caches._TOPICS

DEFAULT_MAX_PACKET_SIZE: Final = 1_048_576


_DECODERS: Final[dict[int, _PacketDecoder]] = {
    _CONNECT: _decode_connect,
    _CONNACK: _decode_connack,
    _PUBLISH: _decode_publish,
    _PUBACK: _ack_decoder(PubAck, _PUBACK_PROPS, _PUBACK_CODES_V5),
    _PUBREC: _ack_decoder(PubRec, _PUBREC_PROPS, _PUBACK_CODES_V5),
    _PUBREL: _ack_decoder(PubRel, _PUBREL_PROPS, _PUBREL_CODES_V5),
    _PUBCOMP: _ack_decoder(PubComp, _PUBCOMP_PROPS, _PUBREL_CODES_V5),
    _SUBSCRIBE: _decode_subscribe,
    _SUBACK: _decode_suback,
    _UNSUBSCRIBE: _decode_unsubscribe,
    _UNSUBACK: _decode_unsuback,
    _PINGREQ: _decode_pingreq,
    _PINGRESP: _decode_pingresp,
    _DISCONNECT: _decode_disconnect,
    _AUTH: _decode_auth,
}
_PUBACK_DECODER: Final = _DECODERS[_PUBACK]


class Decoder:
    """Incremental decoder for one connection's byte stream.

    protocol_level is 4 until a decoded CONNECT says otherwise (server side); a client-side
    user sets it after sending its CONNECT. server_side=True decodes what a client sends.
    A CONNECT that fails to decode still sets protocol_level when its protocol name and level
    were readable and supported, so the connection can pick the CONNACK format.
    """

    # Starting values as class attributes, set on the instance when they change (every
    # connection makes a decoder; a connect storm's decode one CONNECT and one DISCONNECT).
    protocol_level = PROTOCOL_V311
    # Total size of the packet at the start of _pending once its header is known, so
    # a large packet arriving in many chunks is not re-parsed on every chunk.
    _need = 0
    _error: DecodeError | None = None

    def __init__(
        self,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        server_side: bool = True,
        ack_runs: bool = False,
    ) -> None:
        self.max_packet_size = max_packet_size
        self.server_side = server_side
        # hand over back-to-back plain PUBACKs as one PubAckRun (the server's connections)
        self.ack_runs = ack_runs
        self._pending = bytearray()

    @property
    def idle(self) -> bool:
        """Nothing buffered and no fault: the next read starts at a packet boundary."""
        return not self._pending and self._error is None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """Buffer data and return every complete packet decoded, in order.

        Raises DecodeError on the first violation (with the packets decoded before it in
        its `packets` attribute); after that the decoder raises the same error on every call.
        """
        if self._error is not None:
            raise self._error
        pending = self._pending
        if pending:
            pending += data
            if len(pending) < self._need:
                return []
            buf = bytes(pending)
            pending.clear()
        else:
            buf = data if isinstance(data, bytes) else bytes(data)
            if buf and buf[0] == _CONNECT_BYTE0 and self.server_side:
                connect = self._lone_connect(buf)
                if connect is not None:
                    return [connect]
        self._need = 0
        packets: list[Packet] = []
        try:
            pos = self._decode_all(buf, packets)
        except DecodeError as exc:
            exc.packets = packets
            self._error = exc
            raise
        if pos < len(buf):
            pending += buf[pos:]
        return packets

    def _lone_connect(self, buf: bytes) -> Connect | None:
        """`decode_lone_connect`, at this decoder's limits; a CONNECT decoded sets the level
        everything after it is framed at."""
        connect = decode_lone_connect(buf, self.max_packet_size, self.protocol_level)
        if connect is not None:
            self.protocol_level = connect.protocol_level
        return connect

    def _decode_all(self, buf: bytes, packets: list[Packet]) -> int:
        """Decode whole packets from buf into packets; return where the unfinished tail starts."""
        server_side = self.server_side
        max_size = self.max_packet_size
        level = self.protocol_level
        header_errors = _HEADER_ERRORS[level == PROTOCOL_V5, server_side]
        ack_runs = self.ack_runs
        available = len(buf)
        pos = 0
        append = packets.append
        while pos < available:
            byte0 = buf[pos]
            error = header_errors[byte0]
            if error is not None:
                raise DecodeError(*error)
            if pos + 1 >= available:
                break
            length = buf[pos + 1]
            if length < _VBI_CONTINUATION:
                start = pos + 2
            else:
                length, start = _read_remaining_length(buf, pos + 1, available)
                if start < 0:
                    break
            end = start + length
            if end - pos > max_size:
                raise PacketTooLarge(
                    f"packet of {end - pos} bytes exceeds the maximum of {max_size}",
                    end - pos,
                    max_size,
                )
            if end > available:
                self._need = end - pos
                break
            ptype = byte0 >> _TYPE_SHIFT
            if ptype == _PUBLISH:
                if byte0 & _QOS1_BITS and level != PROTOCOL_V5 and start + 2 <= end:
                    # _decode_publish inlined for a 3.1.1 QoS 1 PUBLISH to a topic name
                    # already checked (the cache holds only valid names; an empty one is
                    # refused by the general path); the header check above refused QoS 3,
                    # so these bits mean QoS 1. `topic_stop`: after the packet id.
                    topic_stop = start + 4 + ((buf[start] << 8) | buf[start + 1])
                    topic = _TOPICS.get(buf[start + 2 : topic_stop - 2])
                    if topic and topic_stop <= end:
                        packet_id = (buf[topic_stop - 2] << 8) | buf[topic_stop - 1]
                        if packet_id:
                            append(
                                Publish(
                                    topic,
                                    buf[topic_stop:end],
                                    1,
                                    (byte0 & _PUBLISH_RETAIN) != 0,
                                    (byte0 & _PUBLISH_DUP) != 0,
                                    packet_id,
                                    {},
                                )
                            )
                            pos = end
                            continue
                append(_decode_publish(buf, byte0, start, end, level, server_side))
            elif ptype == _PUBACK:
                if ack_runs and end - start == 2:
                    # a PUBACK with only its packet id: take the ones right behind it in a
                    # tight loop (a subscriber acks a burst of deliveries in one write)
                    ids = [_read_packet_id(buf, start, end, "PUBACK")]
                    pos = end
                    while pos + 4 <= available and buf[pos] == byte0 and buf[pos + 1] == 2:
                        packet_id = (buf[pos + 2] << 8) | buf[pos + 3]
                        if not packet_id:
                            break  # malformed: the general path below says so
                        ids.append(packet_id)
                        pos += 4
                    append(PubAckRun(ids) if len(ids) > 1 else PubAck(ids[0]))
                    continue
                append(_PUBACK_DECODER(buf, byte0, start, end, level, server_side))
            elif ptype == _PINGREQ and start == end:
                append(PingReq())
            elif ptype == _DISCONNECT and start == end:
                append(Disconnect())  # no body: reason 0, no properties, at either level
            elif ptype == _CONNECT and server_side:
                try:
                    connect = _decode_connect(buf, byte0, start, end, level, server_side)
                except DecodeError:
                    # Lets the connection answer a faulty v5 CONNECT with a v5 CONNACK.
                    self.protocol_level = _connect_level(buf, start, end, level)
                    raise
                append(connect)
                # Everything after CONNECT is framed at the level it announced.
                level = self.protocol_level = connect.protocol_level
                header_errors = _HEADER_ERRORS[level == PROTOCOL_V5, server_side]
            else:
                append(_DECODERS[ptype](buf, byte0, start, end, level, server_side))
            pos = end
        return pos
