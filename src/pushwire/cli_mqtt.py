"""`pushwire pub` / `sub` over MQTT: TCP, TLS, and MQTT over WebSocket (paho-mqtt)."""

from __future__ import annotations

import queue
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pushwire.cli_common import (
    CliError,
    Endpoint,
    Exit,
    Outgoing,
    Ready,
    failed,
    refused,
)
from pushwire.cli_format import Received

CONNECT_TIMEOUT = 10.0
KEEPALIVE = 60
# CONNACK reasons that mean "who you are was refused" (MQTT 5 codes; paho maps the 3.1.1
# return codes 4 and 5 to 0x86 and 0x87)
_AUTH_REFUSALS = {0x86, 0x87, 0x8A, 0x8C, 4, 5}
_PRIORITY_PROPERTY = "priority"  # as http/encode.py: an MQTT 5 user property


def _client(ep: Endpoint, client_id: str, version: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"pushwire-cli-{uuid.uuid4().hex[:12]}",
        protocol=MQTTProtocolVersion.MQTTv5 if version == "5" else MQTTProtocolVersion.MQTTv311,
        transport="websockets" if ep.kind == "mqtt-ws" else "tcp",
        reconnect_on_failure=False,
    )
    if ep.kind == "mqtt-ws":
        client.ws_set_options(path=ep.path)
    ctx = ep.ssl_context()
    if ctx is not None:
        client.tls_set_context(ctx)
        if ep.insecure:
            client.tls_insecure_set(True)
    if ep.token:
        client.username_pw_set("", ep.token)  # a token is the password (docs/security.md)
    elif ep.username is not None:
        client.username_pw_set(ep.username, ep.password)
    return client


def _connack_error(reason: Any) -> CliError:
    value = int(getattr(reason, "value", reason))
    text = str(reason)
    if value in _AUTH_REFUSALS:
        return refused(f"connection refused: {text}")
    return failed(f"connection refused: {text}")


class _Connection:
    """A paho client with CONNACK and disconnects turned into events on `events`."""

    def __init__(self, ep: Endpoint, client_id: str, version: str, events: queue.Queue[Any]):
        self.ep = ep
        self.events = events
        self.client = _client(ep, client_id, version)
        self.connected = threading.Event()
        self.settled = threading.Event()  # CONNACK came (good or bad) or the link dropped
        self.closing = False
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    def open(self) -> None:
        try:
            self.client.connect(self.ep.host, self.ep.port, keepalive=KEEPALIVE)
        except (OSError, ValueError) as exc:
            raise failed(f"cannot connect to {self.ep.host}:{self.ep.port}: {exc}") from None
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self.events.put(_connack_error(reason))
            self.settled.set()
            return
        self.connected.set()
        self.settled.set()
        self.on_connected()

    def on_connected(self) -> None:
        pass

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if self.closing:
            return
        self.settled.set()
        if not self.connected.is_set():
            self.events.put(failed(f"connection closed before CONNACK ({reason})"))
        else:
            self.events.put(failed(f"connection lost: {reason}"))

    def close(self) -> None:
        self.closing = True
        if self.connected.is_set():
            self.client.disconnect()
        self.client.loop_stop()


class MqttSubscriber(_Connection):
    def __init__(
        self,
        ep: Endpoint,
        filters: list[str],
        qos: int,
        events: queue.Queue[Any],
        *,
        client_id: str = "",
        version: str = "5",
    ) -> None:
        super().__init__(ep, client_id, version, events)
        self.filters = filters
        self.qos = qos
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._pending: dict[int, list[str]] = {}

    def start(self) -> None:
        self.open()

    def on_connected(self) -> None:
        result, mid = self.client.subscribe([(f, self.qos) for f in self.filters])
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            self.events.put(failed(f"subscribe failed: {mqtt.error_string(result)}"))
            return
        self._pending[mid] = list(self.filters)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        filters = self._pending.pop(mid, [])
        for flt, code in zip(filters, codes, strict=False):
            if getattr(code, "is_failure", False) or int(getattr(code, "value", code)) >= 0x80:
                self.events.put(refused(f"subscription to {flt!r} refused: {code}"))
                return
        for flt in filters:
            self.events.put(Ready(flt))

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        content_type = getattr(props, "ContentType", None) if props is not None else None
        extra: dict[str, Any] = {}
        for key, value in getattr(props, "UserProperty", None) or []:
            if key == _PRIORITY_PROPERTY:
                extra["priority"] = int(value) if str(value).isdigit() else value
        self.events.put(
            Received(
                topic=msg.topic,
                payload=bytes(msg.payload),
                qos=msg.qos,
                retain=bool(msg.retain),
                content_type=content_type,
                extra=extra,
            )
        )


def _ttl_seconds(ttl: str) -> int:
    from pushwire.http.cursor import parse_duration

    try:
        seconds = float(ttl)
    except ValueError:
        try:
            seconds = parse_duration(ttl)
        except ValueError as exc:
            raise CliError(Exit.USAGE, f"--ttl: {exc}") from None
    if seconds <= 0:
        raise CliError(Exit.USAGE, f"--ttl must be positive, not {ttl!r}")
    return max(1, round(seconds))


def _priority_number(priority: str) -> int:
    names = {"min": 1, "low": 2, "default": 3, "normal": 3, "high": 4, "max": 5, "urgent": 5}
    value = priority.strip().lower()
    number = names.get(value) or (int(value) if value.isdigit() else 0)
    if not 1 <= number <= 5:
        raise CliError(Exit.USAGE, "--priority must be 1..5 or min/low/default/high/max")
    return number


class MqttPublisher(_Connection):
    def __init__(
        self, ep: Endpoint, *, client_id: str = "", version: str = "5", timeout: float = 10.0
    ) -> None:
        self.errors: queue.Queue[Any] = queue.Queue()
        super().__init__(ep, client_id, version, self.errors)
        self.version = version
        self.timeout = timeout
        self.client.on_publish = self._on_publish
        self._refusals: dict[int, str] = {}

    def connect(self) -> None:
        self.open()
        if not self.settled.wait(self.timeout) or not self.connected.is_set():
            self._raise_error_or(failed(f"no CONNACK within {self.timeout:g}s"))

    def _raise_error_or(self, fallback: CliError) -> None:
        try:
            error = self.errors.get_nowait()
        except queue.Empty:
            raise fallback from None
        raise error

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._refusals[mid] = str(reason)

    def publish(self, out: Outgoing) -> None:
        props: Properties | None = None
        if self.version == "5":
            props = Properties(PacketTypes.PUBLISH)
            if out.content_type:
                props.ContentType = out.content_type
            if out.ttl:
                props.MessageExpiryInterval = _ttl_seconds(out.ttl)
            if out.priority:
                props.UserProperty = (_PRIORITY_PROPERTY, str(_priority_number(out.priority)))
        elif out.ttl or out.priority or out.content_type:
            raise CliError(Exit.USAGE, "--ttl, --priority and --content-type need MQTT 5 (-V 5)")
        info = self.client.publish(out.topic, out.payload, out.qos, out.retain, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._raise_error_or(failed(f"publish failed: {mqtt.error_string(info.rc)}"))
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as exc:
            self._raise_error_or(failed(f"publish failed: {exc}"))
        if not info.is_published():
            self._raise_error_or(failed(f"publish not acknowledged within {self.timeout:g}s"))
        reason = self._refusals.pop(info.mid, None)
        if reason is not None:
            raise refused(f"publish to {out.topic!r} refused: {reason}")
        if not self.errors.empty():
            raise self.errors.get_nowait()
