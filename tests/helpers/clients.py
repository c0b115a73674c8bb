"""A thin synchronous wrapper around paho-mqtt 2.x (callback API v2) for tests."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

PahoMessage = mqtt.MQTTMessage


class PahoClient:
    def __init__(
        self,
        host: str,
        port: int,
        client_id: str = "",
        *,
        clean_session: bool = True,
        keepalive: int = 60,
        will: tuple[str, bytes, int, bool] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,
        )
        self.keepalive = keepalive
        if auth is not None:
            self.client.username_pw_set(*auth)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.session_present: bool | None = None
        self.connect_rc: Any = None
        self._subacks: dict[int, list[int]] = {}
        self._unsubacks: set[int] = set()
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe

    # -- callbacks ---------------------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.session_present = bool(flags.session_present)
        self.connect_rc = rc
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnected.set()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(msg)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._cond:
            self._subacks[mid] = [int(getattr(c, "value", c)) for c in codes]
            self._cond.notify_all()

    def _on_unsubscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._cond:
            self._unsubacks.add(mid)
            self._cond.notify_all()

    # -- actions -----------------------------------------------------------------------------
    def connect(self, timeout: float = 5.0) -> bool:
        """Connect and wait for CONNACK 0; return the session-present flag."""
        self.client.connect(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise AssertionError(f"no CONNACK within {timeout}s")
        if self.connect_rc != 0:
            raise AssertionError(f"connection refused: {self.connect_rc}")
        assert self.session_present is not None
        return self.session_present

    def subscribe(
        self, filters: str | list[tuple[str, int]], qos: int = 0, timeout: float = 5.0
    ) -> list[int]:
        """Subscribe and wait for the SUBACK; return its return codes."""
        rc, mid = (
            self.client.subscribe(filters, qos)
            if isinstance(filters, str)
            else (self.client.subscribe(filters))
        )
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        assert mid is not None
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, timeout):
                raise AssertionError(f"no SUBACK within {timeout}s for {filters!r}")
            return self._subacks.pop(mid)

    def unsubscribe(self, topic_filter: str, timeout: float = 5.0) -> None:
        rc, mid = self.client.unsubscribe(topic_filter)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._unsubacks, timeout):
                raise AssertionError(f"no UNSUBACK within {timeout}s")

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        timeout: float = 5.0,
    ) -> None:
        """Publish and wait until it is acknowledged (QoS 1/2) or written (QoS 0)."""
        info = self.client.publish(topic, payload, qos, retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError(f"publish to {topic!r} not completed within {timeout}s")

    def get(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None

    def get_until(
        self, predicate: Callable[[mqtt.MQTTMessage], bool], timeout: float = 5.0
    ) -> list[mqtt.MQTTMessage]:
        """All messages up to and including the first one matching ``predicate``."""
        deadline = time.monotonic() + timeout
        got: list[mqtt.MQTTMessage] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"expected message not received within {timeout}s; got "
                    f"(topic, payload, qos, retain): "
                    f"{[(m.topic, m.payload, m.qos, m.retain) for m in got]}"
                )
            try:
                msg = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            got.append(msg)
            if predicate(msg):
                return got

    def drain(self) -> list[mqtt.MQTTMessage]:
        out: list[mqtt.MQTTMessage] = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def disconnect(self, timeout: float = 5.0) -> None:
        """Send DISCONNECT and wait until the connection is gone."""
        self.client.disconnect()
        self.disconnected.wait(timeout)
        self.client.loop_stop()

    def close(self) -> None:
        """Best-effort cleanup for teardown."""
        try:
            if self.connected.is_set() and not self.disconnected.is_set():
                self.client.disconnect()
                self.disconnected.wait(2)
        finally:
            self.client.loop_stop()
