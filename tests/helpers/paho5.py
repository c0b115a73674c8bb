"""A paho-mqtt client speaking MQTT 5, with the CONNACK and DISCONNECT it got, for
conformance tests of MQTT 5 properties (Maximum Packet Size, topic aliases, will delay)."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from helpers.server import ServerProcess


def properties(packet_type: int, **values: Any) -> Properties:
    """Properties(PacketTypes.CONNECT, SessionExpiryInterval=60) in one line."""
    props = Properties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props


class Paho5:
    def __init__(
        self,
        srv: ServerProcess,
        client_id: str,
        *,
        clean_start: bool = True,
        connect: dict[str, Any] | None = None,
        will: tuple[str, bytes, int, bool, dict[str, Any]] | None = None,
    ) -> None:
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        if will is not None:
            topic, payload, qos, retain, will_props = will
            self.c.will_set(
                topic, payload, qos, retain, properties(PacketTypes.WILLMESSAGE, **will_props)
            )
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack = threading.Event()
        self.gone = threading.Event()
        self.connack_properties: Any = None
        self.session_present = False
        self.disconnect_reason: int | None = None
        self._subacked: queue.Queue[list[int]] = queue.Queue()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.c.on_subscribe = self._on_subscribe
        self.c.connect(
            srv.host,
            srv.mqtt_port,
            keepalive=30,
            clean_start=clean_start,
            properties=properties(PacketTypes.CONNECT, **(connect or {})),
        )
        self.c.loop_start()
        assert self.connack.wait(10), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, flags: Any, _rc: Any, props: Any) -> None:
        self.connack_properties = props
        self.session_present = bool(flags.session_present)
        self.connack.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.disconnect_reason = int(rc.value) if hasattr(rc, "value") else int(rc)
        self.gone.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        self._subacked.put([int(c.value) if hasattr(c, "value") else int(c) for c in codes])

    def subscribe(self, flt: str, qos: int = 1) -> list[int]:
        self.c.subscribe(flt, qos)
        return self._subacked.get(timeout=10)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.c.publish(topic, payload, qos)
        if qos:
            info.wait_for_publish(10)

    def get(self, timeout: float = 10.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def disconnect(self) -> None:
        self.c.disconnect()
        self.gone.wait(10)
        self.c.loop_stop()

    def drop(self) -> None:
        """End the connection without DISCONNECT (the will's case). The socket closes
        before paho's loop stops, as stopping it waits up to a second for its select."""
        sock = self.c.socket()
        # over TCP paho's socket is a socket.socket (its type only promises close())
        assert sock is None or isinstance(sock, socket.socket), sock
        if sock is not None:
            # shutdown first: the FIN goes out even if paho still holds the socket
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.c.loop_stop()

    def close(self) -> None:
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()
